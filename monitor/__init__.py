"""monitor: a news-monitoring daemon.

Layers (imports point downwards only; tests/test_layers.py checks it):

- bottom, importable by everything: ``errors``, ``domain``, ``units``,
  ``tokens`` (the word-token rules of the query language) and ``query``
  (the query language's parser);
- one module per step of the flow, each importing only the bottom layer:
  ``config``, ``sources``, ``match``, ``store``, ``sinks``;
- ``pipeline`` is the only module that knows the order of the steps;
- ``daemon`` and ``cli`` sit on top, and nothing imports them.
"""

__version__ = "0.1.0"
