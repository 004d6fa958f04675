"""Optional statistical named-entity recognition for the ``person:``, ``org:``, ``gpe:`` scopes.

``nlp.model`` names an installed spaCy pipeline (a package such as
``en_core_web_sm``, or a directory written by ``nlp.to_disk``). Nothing is
ever downloaded: a model that is not installed is a ``ModelError``, and the
rules that need it stay disabled (``monitor check`` names them).

spaCy's vocabulary keeps every string it has ever seen (DESIGN.md measured
357 MiB for 1 M strings), so a daemon that runs for months reloads the
pipeline once its vocabulary holds ``max_new_strings`` more strings than the
model came with (a bound on documents let a few thousand articles of fresh
names grow it by 200 MiB); only the rules that are candidates
for an article (``monitor.presearch``) ever make it run.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

from monitor.errors import ModelError

MAX_NEW_STRINGS = 100_000  # ~36 MiB of StringStore (DESIGN.md: 357 MiB per million)


def _load(model: str) -> Any:
    import spacy  # deferred: only configs that name a model pay for the import here

    try:
        # Only the entity recogniser (and what it listens to) is needed: the
        # parser and lemmatizer would cost time per article for nothing.
        return spacy.load(model, exclude=["parser", "lemmatizer", "attribute_ruler"])
    except (OSError, ImportError, ValueError) as e:
        # OSError E050: "Can't find model"; a broken package raises the others.
        where = "directory" if Path(model).exists() else "package"
        raise ModelError(model, f"cannot load spaCy pipeline {where} {model!r}: {e}") from e


class EntityRecognizer:
    """Runs one spaCy pipeline's entity components over texts; thread-safe, bounded memory."""

    def __init__(self, model: str, max_new_strings: int = MAX_NEW_STRINGS):
        self.model = model
        self.max_new_strings = max_new_strings
        self._lock = threading.Lock()
        self._nlp = _load(model)  # fail now, at config load, not on the first article
        if not self._nlp.pipe_names:
            raise ModelError(model, f"spaCy pipeline {model!r} has no components to find entities")
        self._base_strings = len(self._nlp.vocab.strings)

    @property
    def strings(self) -> int:
        """How many strings the current pipeline's vocabulary holds (for tests and metrics)."""
        return len(self._nlp.vocab.strings)

    def __call__(self, text: str) -> list[tuple[int, int, str]]:
        """(start char, end char, label) of every named entity in ``text``."""
        with self._lock:
            if len(self._nlp.vocab.strings) - self._base_strings >= self.max_new_strings:
                self._nlp = _load(self.model)
                self._base_strings = len(self._nlp.vocab.strings)
                # The old pipeline is a reference cycle holding its memory in C, which the
                # collector's allocation counts never see: free it now, not some day.
                gc.collect()
            nlp = self._nlp
            nlp.max_length = max(nlp.max_length, len(text) + 1)
            doc = nlp(text)
        return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]
