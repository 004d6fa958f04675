"""Word tokens as the query language defines them, and an article's tokens ready to match.

A token is a maximal run of letters and digits; every other character separates
tokens and is skipped, so "Park Byung-hwan" and "Park Byung Hwan" are the same
three tokens and "U.S." is ``u`` ``s``. Combining marks stay inside a token so
that NFD text ("Sa" + U+0303 + "o") tokenises like NFC text. Each token keeps
its character span in the original string and two normalised forms:

- ``cased``: NFKD with combining marks removed (accents gone, case kept), for
  case-sensitive terms (``=US``);
- ``folded``: ``cased`` casefolded, for everything else.

``TokenizedText`` holds one article's tokens, a folded-token index built on
demand, and character spans, paragraph and sentence numbers computed only for
the tokens a query asks about.
Sentences come from spaCy's rule-based sentencizer on a blank English pipeline.
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property, lru_cache
from itertools import accumulate, compress
from operator import add, methodcaller
from typing import Any, NamedTuple, Protocol

import numpy as np

from monitor.languages import detect_language

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
_SPACE = ord(" ")
_RARE_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # the line breaks other than "\n"

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


def fold_all(words: list[str]) -> list[str]:
    """``fold`` of each of ``words`` (none holding a line break), in one NFKD and one
    casefold over them all: in C, for lists of hundreds of thousands of words."""
    if not words:
        return []
    joined = "\n".join(words)
    if not joined.isascii():
        joined = unicodedata.normalize("NFKD", joined)
        # Each accent present deleted by one str.replace: a C scan each, ~10x faster than
        # the accent class of _ACCENTS (a linear scan of ranges in ``re``) or a translate.
        for accent in [c for c in set(joined) if unicodedata.combining(c)]:
            joined = joined.replace(accent, "")
    folded = joined.casefold().split("\n")
    # A word of accents alone keeps its own form, as strip_accents keeps it.
    return [f or fold(w) for f, w in zip(folded, words, strict=True)]


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


def _ascii_starts(padded: str) -> Sequence[int]:
    """Each token's start in the unpadded text, from ``padded`` (" " + ASCII text with
    separators as spaces + " "): where a space is followed by a non-space.

    numpy over the bytes, ~6 us for a 4 KB article; locating each reported word by
    ``str.find`` scans was a third of matching at 10,000 rules, and a Python pass
    over the tokens cost 65 us (bench/bench_matching.py, issue #5). The memoryview
    gives plain ints.
    """
    space = np.frombuffer(padded.encode("ascii"), dtype=np.uint8) == _SPACE
    return np.flatnonzero(space[:-1] > space[1:]).data


class ArticleLike(Protocol):
    @property
    def title(self) -> str: ...

    @property
    def body(self) -> str: ...


class Positions:
    """Folded token -> its sorted token indices, built only for the words asked for.

    Building the whole index eagerly was a third of tokenising an article
    (bench/bench_matching.py, issue #5), yet an article is usually asked for a
    few dozen words: ``distinct`` (a set, built in C) answers the presearch and
    "absent" at once. ``prefetch`` finds the positions of many words in one
    pass over the tokens (``compress`` over a set lookup, all in C), which is
    what the matcher does for its candidate rules' words; a word not
    prefetched is found by ``list.index`` scans on first lookup.
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

    def prefetch(self, words: Iterable[str]) -> None:
        """Find the positions of every one of ``words`` that occurs, in one pass."""
        wanted = self.distinct.intersection(words)
        wanted.difference_update(self._found)
        if len(wanted) < 2:
            for word in wanted:
                self._found[word] = self._scan(word)
            return
        found, folded = self._found, self._folded
        for word in wanted:
            found[word] = []
        for i in compress(range(len(folded)), map(wanted.__contains__, folded)):
            found[folded[i]].append(i)

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
    at once; ``positions`` maps a folded token to its sorted token indices.
    ``start_of(i)`` and ``end_of(i)`` give token i's character span: for
    ASCII text every token's start is found at the first of them (in one
    numpy pass, ``_ascii_starts``), so a text no query reports on never pays
    for it; ``starts``, ``ends`` and ``cased`` (whole lists) are built on
    first use.
    Paragraph and sentence numbers are computed only when a query asks.
    """

    def __init__(self, text: str, title_end: int = 0, body_start: int = 0):
        self.text = text
        self.body_start = body_start
        # Every token's offsets: set here for non-ASCII text, which is scanned by regex.
        self._starts: Sequence[int] | None = None
        self._ends: list[int] = []
        self._ascii = text.isascii()
        if self._ascii:
            # Tokens are the runs between spaces of the translated text, and for ASCII
            # casefold is lower: no regex, no per-token Python call.
            self._spaced = text.translate(_ASCII_SEPARATORS)
            lowered = self._spaced.lower()
            self.folded = lowered.split()
            self.title_count = _count_before(self._spaced, title_end)
            # Padded so that " prefix" finds each token starting with prefix.
            self._padded = f" {lowered} "
        else:
            starts, ends, words = _scan(text)
            cased = list(map(strip_accents, words))
            vars(self).update(starts=starts, ends=ends, cased=cased)  # the cached properties
            self.folded = list(map(str.casefold, cased))
            self.title_count = bisect_right(ends, title_end)
            self._starts, self._ends = starts, ends
        self.positions = Positions(self.folded)
        self._prefix_scans = 0
        self._starting: dict[str, list[str]] = {}  # wildcard stem -> its words here
        # Set by the matcher when a rule with an entity scope (person: ...) is a
        # candidate; nothing runs a model until ``entity_spans`` is read.
        self.recognizer: Recognizer | None = None

    def _token_starts(self) -> Sequence[int]:
        starts = self._starts
        if starts is None:  # ASCII text, asked for the first time
            starts = self._starts = _ascii_starts(self._padded)
        return starts

    def start_of(self, i: int) -> int:
        """Character offset of token i's start."""
        return self._token_starts()[i]

    def end_of(self, i: int) -> int:
        """Character offset just past token i."""
        if not self._ascii:
            return self._ends[i]
        return self.start_of(i) + len(self.folded[i])  # lower() keeps ASCII lengths

    def span_of(self, occurrence: tuple[int, int]) -> tuple[int, int]:
        """The characters from the start of token ``first`` to the end of token ``last``."""
        return self.spans_of((occurrence,))[0]

    def spans_of(self, occurrences: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """``span_of`` of each occurrence, in one pass (a hit reports several)."""
        starts = self._token_starts()
        if not self._ascii:
            ends = self._ends
            return [(starts[first], ends[last]) for first, last in occurrences]
        folded = self.folded
        return [(starts[first], starts[last] + len(folded[last])) for first, last in occurrences]

    def paragraph_of(self, i: int) -> int:
        """Token i's paragraph: the title is 0, every line break starts a new one."""
        if i < self.title_count:
            return TITLE_UNIT
        return 1 + bisect_right(self.line_breaks, self.start_of(i))

    @cached_property
    def starts(self) -> list[int]:
        """Character offset of each token's start (ASCII text: computed on first use)."""
        return list(self._token_starts())

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

    def words_starting(self, prefix: str) -> list[str]:
        """The distinct folded tokens that start with ``prefix``.

        For ASCII text each " prefix" in the padded text starts such a token
        (one ``str.find`` per occurrence); otherwise the first few wildcards
        scan the distinct words and, since sorting them costs about three
        scans, later ones bisect the sorted words.
        """
        found = self._starting.get(prefix)
        if found is None:
            found = self._starting[prefix] = self._words_starting(prefix)
        return found

    def _words_starting(self, prefix: str) -> list[str]:
        if self._ascii:
            padded, needle, found = self._padded, " " + prefix, set()
            at = padded.find(needle)
            while at >= 0:
                end = padded.index(" ", at + 1)
                found.add(padded[at + 1 : end])
                at = padded.find(needle, end)
            return list(found)
        if self._prefix_scans < 3:
            self._prefix_scans += 1
            return list(filter(methodcaller("startswith", prefix), self.positions.distinct))
        words = self.sorted_words
        start = end = bisect_left(words, prefix)
        while end < len(words) and words[end].startswith(prefix):
            end += 1
        return words[start:end]

    @cached_property
    def language(self) -> str | None:
        """The text's language from its script (``monitor.languages``), unless one is set:
        the matcher sets the source's ``language:`` when the config gives one."""
        return detect_language(self.text)

    @cached_property
    def line_breaks(self) -> list[int]:
        """Offsets of the body's line breaks: paragraph p >= 1 ends at line_breaks[p - 1]."""
        text = self.text
        if any(other in text for other in _RARE_BREAKS):
            return [m.start() for m in _LINE_BREAK.finditer(text, self.body_start)]
        # Only "\n": str.find is ~10x faster than scanning a character class.
        found, at = [], text.find("\n", self.body_start)
        while at >= 0:
            found.append(at)
            at = text.find("\n", at + 1)
        return found

    @cached_property
    def paragraphs(self) -> list[int]:
        """Paragraph number per token: the title is 0, every line break starts a new one."""
        breaks = self.line_breaks
        numbers = [TITLE_UNIT] * self.title_count
        numbers += [1 + bisect_right(breaks, start) for start in self.starts[self.title_count :]]
        return numbers  # the same numbers paragraph_of gives, for every token at once

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

    The ids are exactly those of spaCy's sentencizer run on each paragraph
    (``sentences`` runs it on the whole text; a Hypothesis test in
    tests/test_tokens.py compares the two), found without running it:

    - No sentence crosses a line break, and the sentencizer leaves a
      line-break token with no period pending, so paragraphs are independent.
    - The sentencizer starts a sentence at the first non-punctuation token
      after a token whose text is one of its marks (``.``, ``!``, ``?`` and
      their kin in other scripts). A token holding a letter or digit is never
      punctuation, so two word tokens are in different sentences exactly when
      a mark token lies between them: a sentence id is the paragraph and the
      count of mark tokens before the token.
    - spaCy's tokenizer cuts each whitespace-free chunk on its own, so which
      marks of a chunk are tokens of their own ("said." -> "said" "."; not
      "U.S.") depends on the chunk alone: ``_Sentencizer.mark_offsets``
      tokenises each chunk holding a mark once and remembers it.

    This costs about a tenth of running the pipeline on the paragraph.
    """

    def __init__(self, text: TokenizedText):
        self._text = text
        self._split: dict[int, list[int]] = {}  # paragraph -> offsets of its mark tokens
        self._known: dict[int, int] = {}  # token -> its id, once asked

    def __getitem__(self, i: int) -> int:
        unit = self._known.get(i)
        if unit is None:
            unit = self._known[i] = self._unit(i)
        return unit

    def _unit(self, i: int) -> int:
        paragraph = self._text.paragraph_of(i)
        if paragraph == TITLE_UNIT:
            return TITLE_UNIT
        marks = self._split.get(paragraph)
        if marks is None:
            marks = self._split[paragraph] = self._marks(paragraph)
        # Unique over the text: a paragraph's ids never reach the next paragraph's.
        start = self._text.start_of(i)
        return paragraph * (len(self._text.text) + 2) + bisect_right(marks, start)

    def _marks(self, paragraph: int) -> list[int]:
        text, breaks = self._text, self._text.line_breaks
        start = text.body_start if paragraph == 1 else breaks[paragraph - 2] + 1
        end = breaks[paragraph - 1] if paragraph - 1 < len(breaks) else len(text.text)
        chunks = SENTENCIZER.chunks_with_marks(text.text.isascii())
        return [
            chunk.start() + offset
            for chunk in chunks.finditer(text.text, start, end)
            for offset in SENTENCIZER.mark_offsets(chunk.group())
        ]


class _Sentencizer:
    """The shared spaCy pipeline, rebuilt once its vocabulary has ``max_new_strings`` more
    strings than it started with.

    spaCy's StringStore keeps every string it has seen (1 M strings took
    357 MiB, see DESIGN.md): a fresh pipeline now and then bounds a daemon
    that runs for months. Counting strings, not documents: a whole article
    of new names adds hundreds, a chunk (``SentenceUnits``) one or two, and a
    bound of 50,000 documents let 8,000 articles of fresh text grow RSS by
    180 MiB (tests/reliability/test_resources.py). The chunks' answers are
    remembered, up to ``CHUNKS`` of them.
    """

    CHUNKS = 100_000

    def __init__(self, max_new_strings: int = 100_000):
        self.max_new_strings = max_new_strings
        self._lock = threading.Lock()
        self._nlp: Any = None
        self._base_strings = 0
        self._docs = 0  # documents the current pipeline has made (for tests)
        self._punct: frozenset[str] = frozenset()
        self._chunks: tuple[re.Pattern[str], re.Pattern[str]] | None = None
        self._offsets: dict[str, tuple[int, ...]] = {}

    def _pipeline(self) -> Any:
        nlp = self._nlp
        if nlp is None or len(nlp.vocab.strings) - self._base_strings >= self.max_new_strings:
            import spacy  # deferred: only articles whose queries need sentences pay for it

            replacing = self._nlp is not None
            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            self._nlp, self._docs, self._base_strings = nlp, 0, len(nlp.vocab.strings)
            if replacing:
                # The old pipeline is a reference cycle holding its memory in C, which the
                # collector's allocation counts never see: free it now, not some day.
                gc.collect()
            sentencizer: Any = nlp.get_pipe("sentencizer")
            self._punct = frozenset(sentencizer.punct_chars)
            # A mark that is a letter or digit would break SentenceUnits' reasoning.
            assert not any(c.isalnum() or len(c) != 1 for c in self._punct)
        return self._nlp

    def chunks_with_marks(self, ascii_only: bool) -> re.Pattern[str]:
        """A pattern finding each whitespace-free chunk that holds a mark.

        Linear: a match starts only at a chunk's start and never backtracks
        (possessive quantifiers). ``ascii_only`` leaves out the marks outside
        ASCII, for ASCII text: a class of 128 characters, most outside the
        BMP, made the scan 50x slower.
        """
        if self._chunks is None:
            with self._lock:
                self._pipeline()
                punct = self._punct
            every, ascii_marks = (
                re.compile(rf"(?<!\S)[^\s{marks}]*+[{marks}]\S*+")
                for marks in (
                    "".join(map(re.escape, sorted(chars)))
                    for chars in (punct, {c for c in punct if c.isascii()})
                )
            )
            self._chunks = (every, ascii_marks)
        return self._chunks[1] if ascii_only else self._chunks[0]

    def mark_offsets(self, chunk: str) -> tuple[int, ...]:
        """Offsets in ``chunk`` of the tokens spaCy's tokenizer makes of a mark alone."""
        found = self._offsets.get(chunk)
        if found is None:
            with self._lock:
                tokenizer = self._pipeline().tokenizer
                self._docs += 1
                punct = self._punct
                found = tuple(token.idx for token in tokenizer(chunk) if token.text in punct)
                if len(self._offsets) >= self.CHUNKS:
                    self._offsets = {}
                self._offsets[chunk] = found
        return found

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
