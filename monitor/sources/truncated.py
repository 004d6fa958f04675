"""Tell a feed cut off inside an entry from one that is merely sloppy at its end (H5).

feedparser recovers from a document that ends too early: its loose parser
closes whatever is open and returns the last, half-received entry as if it
were whole (a GUID with no title, say). Stored, that GUID counts as seen, so
when the complete item arrives on the next poll it never alerts. A body ends
early when a server declares a shorter ``Content-Length`` than it sends, or
serves a file still being written. So a document whose XML ends inside an
``<item>`` or ``<entry>`` is refused as ``truncated_feed`` and retried whole
later; one that only lacks its closing ``</rss>`` (all entries complete, as
in feedparser's own corpus) parses as before.

The check is a second pass of expat over the bytes, run only when
feedparser's strict parse already failed at the end of the input.
"""

from __future__ import annotations

import xml.sax
from xml.parsers import expat

# expat's errors for "the input ended before the document did".
_AT_END = frozenset(
    expat.errors.codes[message]
    for message in (
        expat.errors.XML_ERROR_NO_ELEMENTS,
        expat.errors.XML_ERROR_UNCLOSED_TOKEN,
        expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)
_AT_END_MESSAGES = frozenset(expat.ErrorString(code) for code in _AT_END)
_ENTRY_ELEMENTS = frozenset({"item", "entry"})  # RSS 0.9x/1.0/2.0 and Atom, any prefix


def ended_early(bozo_exception: object) -> bool:
    """True if feedparser's strict parse stopped because the input ran out."""
    return (
        isinstance(bozo_exception, xml.sax.SAXParseException)
        and bozo_exception.getMessage() in _AT_END_MESSAGES
    )


def is_cut_inside_entry(body: bytes) -> bool:
    """True if ``body``'s XML ends while an item or entry element is still open."""
    open_entries = 0

    def start(name: str, _attributes: object) -> None:
        nonlocal open_entries
        open_entries += name.rpartition(":")[2] in _ENTRY_ELEMENTS

    def end(name: str) -> None:
        nonlocal open_entries
        open_entries -= name.rpartition(":")[2] in _ENTRY_ELEMENTS

    parser = expat.ParserCreate()
    # No DTD, external entity or parameter entity is ever loaded: only the shape counts.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(body, True)
    except expat.ExpatError as e:
        return e.code in _AT_END and open_entries > 0
    return False
