"""Word tokens as the query language defines them, and an article's tokens ready to match.

A token is a maximal run of letters and digits; every other character separates
tokens and is skipped, so "Park Byung-hwan" and "Park Byung Hwan" are the same
three tokens and "U.S." is ``u`` ``s``. Combining marks stay inside a token so
that NFD text ("Sa" + U+0303 + "o") tokenises like NFC text. Each token keeps
its character span in the original string and two normalised forms:

- ``cased``: NFKD with combining marks removed (accents gone, case kept), for
  case-sensitive terms (``=US``);
- ``folded``: ``cased`` casefolded, for everything else.

``TokenizedText`` holds one article's tokens, a folded-token index built once,
and paragraph and sentence numbers computed only when a query asks for them.
Sentences come from spaCy's rule-based sentencizer on a blank English pipeline.
"""

from __future__ import annotations

import re
import sys
import threading
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from functools import cached_property, lru_cache
from itertools import accumulate, compress
from operator import add
from typing import Any, NamedTuple, Protocol

# A named-entity recogniser: text -> (start char, end char, label) per entity (monitor.nlp).
Recognizer = Callable[[str], list[tuple[int, int, str]]]


def _ranges(code_points: list[int]) -> str:
    """A regex character-class body for sorted code points, as ranges."""
    parts: list[str] = []
    start = prev = code_points[0]
    for cp in [*code_points[1:], sys.maxunicode + 2]:
        if cp != prev + 1:
            parts.append(re.escape(chr(start)) + "-" + re.escape(chr(prev)))
            start = cp
        prev = cp
    return "".join(parts)


def _mark_classes() -> tuple[str, str, str]:
    """Class bodies of every combining mark (category M*), of the accents among them,
    and of the one range from the first mark to the last.

    Accents are the marks with a non-zero combining class (Latin and Greek
    accents, Arabic and Hebrew vowel points); Indic vowel signs have class 0
    and are kept, or folding would merge distinct words.
    """
    # Marks live only in planes 0, 1 and the variation selectors of plane 14;
    # scanning those (~30 ms) instead of all of Unicode keeps import cheap.
    code_points = [*range(0x20000), *range(0xE0100, 0xE01F0)]
    marks = [cp for cp in code_points if unicodedata.category(chr(cp)).startswith("M")]
    accents = [cp for cp in marks if unicodedata.combining(chr(cp))]
    return _ranges(marks), _ranges(accents), _ranges([*range(marks[0], marks[-1] + 1)])


_MARKS, _ACCENT_MARKS, _MARK_SPAN = _mark_classes()
# A run of letters and digits (`[^\W_]`: Python's `\w` minus the underscore),
# then any marks and more letters: marks stay inside a token but never start
# one. The group makes re.split return the tokens at its odd indices. The
# lookahead spares the long mark class (a linear scan of ranges in `re`) at the
# usual end of a token, a space or ASCII punctuation: it halves the time.
_TOKEN = re.compile(rf"([^\W_]+(?:(?=[{_MARK_SPAN}])[{_MARKS}]+[^\W_]*)*)")
# ASCII text has no marks and its letters and digits are exactly [A-Za-z0-9]:
# the same tokens, found ~30 % faster than through the Unicode classes above.
_ASCII_TOKEN = re.compile(r"([A-Za-z0-9]+)")
# ASCII fast path of the fast path: every ASCII character that is not a letter or
# digit becomes a space, so ``str.split`` (C, no regex) yields exactly the tokens
# ``_ASCII_TOKEN`` finds, ~5x faster (bench/bench_matching.py, issue #5).
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_ACCENTS = re.compile(rf"[{_ACCENT_MARKS}]+")
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")

# The title is sentence 0 and paragraph 0; body numbers start above it.
TITLE_UNIT = 0


class Token(NamedTuple):
    """One word token: ``text[start:end]`` and its normalised forms."""

    start: int
    end: int
    folded: str
    cased: str


@lru_cache(maxsize=65536)
def strip_accents(word: str) -> str:
    """NFKD with accents (combining marks of non-zero class) removed; case is kept."""
    if word.isascii():
        return word
    # A letter that decomposes to accents alone keeps its own form.
    return _ACCENTS.sub("", unicodedata.normalize("NFKD", word)) or word


def fold(word: str) -> str:
    """The case- and accent-insensitive form of a word (what ``folded`` holds)."""
    return strip_accents(word).casefold()


def _scan(text: str) -> tuple[list[int], list[int], list[str]]:
    """Token starts, ends and words; split, map and accumulate keep the loop in C."""
    pattern = _ASCII_TOKEN if text.isascii() else _TOKEN
    parts = pattern.split(text)  # separator, token, separator, ..., token, separator
    offsets = list(accumulate(map(len, parts), initial=0))
    return offsets[1:-1:2], offsets[2:-1:2], parts[1::2]


def tokenize(text: str) -> list[Token]:
    """The word tokens of ``text`` in order (used for articles and query words alike)."""
    starts, ends, words = _scan(text)
    cased = list(map(strip_accents, words))
    return list(map(Token, starts, ends, map(str.casefold, cased), cased))


def _count_before(spaced: str, end: int) -> int:
    """How many tokens of ``spaced`` (ASCII, separators as spaces) end at or before ``end``."""
    count = len(spaced[:end].split())
    if 0 < end < len(spaced) and spaced[end - 1] != " " and spaced[end] != " ":
        count -= 1  # the token that runs over ``end`` ends after it
    return count


class ArticleLike(Protocol):
    @property
    def title(self) -> str: ...

    @property
    def body(self) -> str: ...


class Positions:
    """Folded token -> its sorted token indices, each list built on first lookup.

    Building the whole index eagerly was a third of tokenising an article
    (bench/bench_matching.py, issue #5), yet an article is usually asked for a
    few dozen words: ``distinct`` (a set, built in C) answers the presearch and
    "absent" at once, and a present word's list comes from ``list.index``
    scans in C.
    """

    __slots__ = ("_folded", "_found", "distinct")

    def __init__(self, folded: list[str]):
        self._folded = folded
        self._found: dict[str, list[int]] = {}
        self.distinct = set(folded)

    def __getitem__(self, word: str) -> list[int]:
        found = self._found.get(word)
        if found is None:
            found = self._found[word] = self._scan(word) if word in self.distinct else []
        return found

    def __contains__(self, word: object) -> bool:
        return word in self.distinct

    def keys(self) -> set[str]:
        return self.distinct

    def _scan(self, word: str) -> list[int]:
        index, found, at = self._folded.index, [], -1
        try:
            while True:
                at = index(word, at + 1)
                found.append(at)
        except ValueError:
            return found


class TokenizedText:
    """One text's tokens, ready for many queries to be evaluated against it.

    ``title_count`` tokens at the front are the title's. ``folded`` is built
    at once; ``starts``, ``ends`` and ``cased`` (per-token lists, cheaper than
    Token objects) only when a match needs spans or case, for ASCII text;
    ``positions`` maps a folded token to its sorted token indices. ``memo`` is
    scratch space for the matcher to share work between rules evaluated on
    the same text.
    """

    def __init__(self, text: str, title_end: int = 0, body_start: int = 0):
        self.text = text
        self.body_start = body_start
        if text.isascii():
            # Tokens are the runs between spaces of the translated text, and for ASCII
            # casefold is lower: no regex, no per-token Python call.
            self._spaced = text.translate(_ASCII_SEPARATORS)
            self.folded = self._spaced.lower().split()
            self.title_count = _count_before(self._spaced, title_end)
        else:
            starts, ends, words = _scan(text)
            cased = list(map(strip_accents, words))
            vars(self).update(starts=starts, ends=ends, cased=cased)  # the cached properties
            self.folded = list(map(str.casefold, cased))
            self.title_count = bisect_right(ends, title_end)
        self.positions = Positions(self.folded)
        self.memo: dict[Any, Any] = {}
        # Set by the matcher when a rule with an entity scope (person: ...) is a
        # candidate; nothing runs a model until ``entity_spans`` is read.
        self.recognizer: Recognizer | None = None

    @cached_property
    def starts(self) -> list[int]:
        """Character offset of each token's start (ASCII text: computed on first use)."""
        pieces = self._spaced.split(" ")  # a token, or "" between two separators
        offsets = accumulate(map((1).__add__, map(len, pieces)), initial=0)
        return list(compress(offsets, pieces))

    @cached_property
    def ends(self) -> list[int]:
        return list(map(add, self.starts, map(len, self.cased)))

    @cached_property
    def cased(self) -> list[str]:
        return self._spaced.split()  # ASCII has no accents to strip

    @classmethod
    def from_parts(cls, title: str, body: str) -> TokenizedText:
        """Title and body joined as ``Article.text`` joins them."""
        if not body:
            return cls(title, len(title), len(title))
        return cls(f"{title}\n\n{body}", len(title), len(title) + 2)

    @classmethod
    def from_article(cls, article: ArticleLike) -> TokenizedText:
        return cls.from_parts(article.title, article.body)

    @classmethod
    def from_text(cls, text: str) -> TokenizedText:
        """Plain text with no title: every token is body."""
        return cls(text)

    def __len__(self) -> int:
        return len(self.folded)

    @cached_property
    def tokens(self) -> list[Token]:
        return list(map(Token, self.starts, self.ends, self.folded, self.cased))

    @cached_property
    def sorted_words(self) -> list[str]:
        """The distinct folded tokens, sorted: a wildcard finds its words by bisection."""
        return sorted(self.positions.distinct)

    @cached_property
    def line_breaks(self) -> list[int]:
        """Offsets of the body's line breaks: paragraph p >= 1 ends at line_breaks[p - 1]."""
        return [m.start() for m in _LINE_BREAK.finditer(self.text, self.body_start)]

    @cached_property
    def paragraphs(self) -> list[int]:
        """Paragraph number per token: the title is 0, every line break starts a new one."""
        breaks = self.line_breaks
        numbers = [TITLE_UNIT] * self.title_count
        numbers += [1 + bisect_right(breaks, start) for start in self.starts[self.title_count :]]
        return numbers

    @cached_property
    def sentence_units(self) -> SentenceUnits:
        """Sentence ids per token like ``sentences``, splitting only the paragraphs asked for."""
        return SentenceUnits(self)

    @cached_property
    def sentences(self) -> list[int]:
        """Sentence number per token: the title is 0; no sentence crosses a paragraph."""
        if self.title_count == len(self):
            return [TITLE_UNIT] * self.title_count
        starts = [self.body_start + s for s in sentence_starts(self.text[self.body_start :])]
        numbers = [TITLE_UNIT] * self.title_count
        paragraphs = self.paragraphs
        current, last_key = TITLE_UNIT, None
        for i in range(self.title_count, len(self)):
            key = (paragraphs[i], bisect_right(starts, self.starts[i]))
            if key != last_key:
                current, last_key = current + 1, key
            numbers.append(current)
        return numbers

    @cached_property
    def entity_spans(self) -> dict[str, list[tuple[int, int]]]:
        """Label -> sorted (first, last) token indices of each named entity; {} without a model.

        Entities are found on the whole text (title and body); an entity that
        covers no whole token is dropped.
        """
        spans: dict[str, list[tuple[int, int]]] = {}
        if self.recognizer is None:
            return spans
        for start, end, label in self.recognizer(self.text):
            first = bisect_left(self.starts, start)
            last = bisect_right(self.ends, end) - 1
            if first <= last:
                spans.setdefault(label, []).append((first, last))
        for found in spans.values():
            found.sort()
        return spans


class SentenceUnits:
    """``units[i]``: an id of token i's sentence, equal for tokens of one sentence.

    The sentencizer (~2.4x the cost of tokenising, DESIGN.md) runs on one
    paragraph at a time, when a token of it is first asked for: a NEAR/S pair
    is usually in one or two paragraphs of a long article. Splitting a
    paragraph alone gives the sentences splitting the whole text gives: no
    sentence crosses a line break, and spaCy's sentencizer leaves a line-break
    token with no period pending, so each paragraph starts afresh (a Hypothesis
    test in tests/test_tokens.py compares the two).
    """

    def __init__(self, text: TokenizedText):
        self._text = text
        self._paragraphs = text.paragraphs
        self._split: dict[int, list[int]] = {}  # paragraph -> its sentence starts

    def __getitem__(self, i: int) -> int:
        paragraph = self._paragraphs[i]
        if paragraph == TITLE_UNIT:
            return TITLE_UNIT
        starts = self._split.get(paragraph)
        if starts is None:
            starts = self._split[paragraph] = self._sentencize(paragraph)
        # Unique over the text: a paragraph's ids never reach the next paragraph's.
        return paragraph * (len(self._text.text) + 2) + bisect_right(starts, self._text.starts[i])

    def _sentencize(self, paragraph: int) -> list[int]:
        text, breaks = self._text, self._text.line_breaks
        start = text.body_start if paragraph == 1 else breaks[paragraph - 2] + 1
        end = breaks[paragraph - 1] if paragraph - 1 < len(breaks) else len(text.text)
        return [start + s for s in sentence_starts(text.text[start:end])]


class _Sentencizer:
    """The shared spaCy pipeline, rebuilt every ``rebuild_every`` documents.

    spaCy's StringStore keeps every string it has seen (1 M strings took
    357 MiB, see DESIGN.md): a fresh pipeline now and then bounds a daemon
    that runs for months. A doc is one paragraph (``SentenceUnits``), about a
    tenth of an article: 50,000 of them hold the strings 5,000 articles did.
    """

    def __init__(self, rebuild_every: int = 50_000):
        self.rebuild_every = rebuild_every
        self._lock = threading.Lock()
        self._nlp: Any = None
        self._docs = 0

    def _pipeline(self) -> Any:
        if self._nlp is None or self._docs >= self.rebuild_every:
            import spacy  # deferred: only articles whose queries need sentences pay for it

            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            self._nlp, self._docs = nlp, 0
        return self._nlp

    def starts(self, text: str) -> list[int]:
        with self._lock:
            nlp = self._pipeline()
            self._docs += 1
            # The length cap guards the memory of parsers and NER; the
            # sentencizer is linear, and bodies are already size-capped on fetch.
            nlp.max_length = max(nlp.max_length, len(text) + 1)
            doc = nlp(text)
        return [sent.start_char for sent in doc.sents]


SENTENCIZER = _Sentencizer()


def sentence_starts(text: str) -> list[int]:
    """Character offsets where spaCy's sentencizer starts each sentence of ``text``."""
    return SENTENCIZER.starts(text)
