"""How many articles a presearch key is expected to select, from word frequencies in data.

The presearch index (``monitor.presearch``) keys each rule on the branch of an
AND that the fewest articles contain; Lucene Monitor's presearcher does the
same with a ``TermWeightor`` that weighs terms by their frequency in a corpus
rather than by their length. A key's cost here is the chance that an article
contains it, from two sources:

- wordfreq (rspeer/wordfreq): each language's word frequencies among the tokens
  of a mix of sources (Wikipedia, subtitles, news, books, the web, social
  media), shipped with the package. Lists go down to a frequency of 1e-8
  ("large") or 1e-6 ("small"): we read English's large list and every other
  language's small one (``WORDLIST``). Its words are folded as our tokens are
  (``monitor.tokens.fold``), words that fold together summed, into one table
  per language, built once, when a rule first needs that language. A
  frequency f becomes the chance that an article of ``ARTICLE_TOKENS`` tokens
  holds the word, 1 - exp(-f * ARTICLE_TOKENS) (tokens drawn independently:
  it overstates common words, which repeat within an article, and the order
  of keys is what counts). A word not in the list is rare but not free: it
  gets the large lists' cutoff, as wordfreq's ``minimum=1e-8`` suggests, and
  more if it is short.
- the document frequencies of recently stored articles
  (``DocumentFrequencies``), when the daemon has a store: a beat's own words
  ("sanctions", "Pyongyang") are far commoner in its feeds than in wordfreq's
  mix. The two are blended as a Beta prior: wordfreq counts as ``PRIOR``
  articles, so a sample of a few thousand articles decides.

A word's script picks the languages whose lists it is looked up in (Latin:
English, Cyrillic: Russian, Hangul: Korean, plus every language a source
declares in that script), and the commonest of them gives its cost. Korean
lists count morphemes (wordfreq splits Korean text with MeCab), while our
Korean tokens are whole words with their particles attached: a Korean token
costs its longest listed leading part of at least two syllables (북한이 costs
북한, which every form of 북한 shares).
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

from monitor.languages import DEFAULT_LANGUAGE, script_of, script_of_language
from monitor.tokens import TokenizedText, fold_all, tokenize

Key = tuple[bool, str]  # (is_prefix, folded word or prefix), as monitor.presearch keys

ARTICLE_TOKENS = 600  # a news article's length in tokens
FLOOR = 1e-8  # the frequency of a word missing from the list: the large lists' cutoff
# Among words no list holds, a longer one is taken to be rarer: a name of 8 letters costs
# FLOOR, one of 4 twice that. Without it every unlisted word ties, and an AND of a first
# name and a surname keys on whichever comes first; the short one is the commoner.
FLOOR_LETTERS = 8
# The rarest words kept: below 1e-7 (700 centibels) the large lists hold two thirds of
# their words (English 225,000, Russian 460,000) but under 2 % of the tokens, spread so
# thin that no key's cost turns on them; they cost FLOOR like any unlisted word.
CUTOFF = 700
# Which of wordfreq's lists a language's table is read from. English, the language most
# rules are written in, gets the large one down to CUTOFF (13 MiB kept, 33 MiB while it
# is read); Russian's large list would keep 50 MiB and take 120 MiB to read, for words
# rarer than one in a million tokens, so Russian, like every other language, gets its
# small list (to 1e-6: a few MiB).
WORDLIST = {"en": "large"}
PRIOR = 50  # how many stored articles wordfreq's estimate is worth
_LAST = "\U0010ffff"  # sorts after every character: prefix + _LAST bounds the prefix's words
_DIGIT = re.compile(r"\d")


def chance(frequency: float) -> float:
    """The chance that an article of ``ARTICLE_TOKENS`` tokens holds a token of this
    frequency at least once (Poisson)."""
    return -math.expm1(-frequency * ARTICLE_TOKENS)


class WordTable:
    """One language's wordfreq list as folded word -> token frequency, and sorted words
    with their cumulative frequency for the mass of a prefix."""

    def __init__(self, language: str, buckets: list[list[str]]):
        self.language = language
        self.morphemes = language == "ko"
        frequencies: dict[str, float] = {}
        for centibels, words in enumerate(buckets[: CUTOFF + 1]):
            frequency = 10 ** (-centibels / 100)  # wordfreq's cB_to_freq
            for folded in _fold_all(words):
                frequencies[folded] = frequencies.get(folded, 0.0) + frequency
        self.frequencies = frequencies
        self.words = sorted(frequencies)
        self.cumulative = array("d", accumulate((frequencies[w] for w in self.words), initial=0))

    def word(self, folded: str) -> tuple[str, float]:
        """The listed entry that ``folded`` counts as, and its frequency (``unlisted`` if none)."""
        if _DIGIT.search(folded):
            return folded, _number_frequency(folded, self.frequencies)
        frequency = self.frequencies.get(folded)
        if frequency is not None:
            return folded, frequency
        if self.morphemes:
            syllables = unicodedata.normalize("NFC", folded)
            for end in range(len(syllables) - 1, 1, -1):
                stem = unicodedata.normalize("NFKD", syllables[:end])
                frequency = self.frequencies.get(stem)
                if frequency is not None:
                    return stem, frequency
        return folded, unlisted(folded)

    def prefix(self, folded: str) -> float:
        """The summed frequency of the listed words starting with ``folded``, at least
        ``unlisted``."""
        words = self.words
        start, end = bisect_left(words, folded), bisect_left(words, folded + _LAST)
        return max(unlisted(folded), self.cumulative[end] - self.cumulative[start])


def unlisted(folded: str) -> float:
    """The frequency given to a word (or prefix) that no list holds."""
    return FLOOR * FLOOR_LETTERS / min(FLOOR_LETTERS, len(folded))


def _fold_all(words: list[str]) -> Iterator[str]:
    """Each word's folded tokens. wordfreq keeps "don't" and "u.s" whole; they count for
    each of our tokens ("don", "t")."""
    for word in fold_all(words):
        if word.isalnum():
            yield word
        else:
            yield from (token.folded for token in tokenize(word))


def _number_frequency(folded: str, frequencies: Mapping[str, float]) -> float:
    """A token with digits as wordfreq's ``word_frequency`` prices it: lists hold runs of
    digits as zeros, shared out by ``digit_freq`` (Benford's law, years near now)."""
    from wordfreq.numbers import digit_freq, smash_numbers

    smashed = smash_numbers(folded)
    frequency = frequencies.get(smashed)
    if frequency is None:
        return FLOOR
    return max(FLOOR, frequency * digit_freq(folded)) if smashed != folded else frequency


_tables: dict[str, WordTable | None] = {}
_tables_lock = threading.Lock()


def word_table(language: str) -> WordTable | None:
    """The table of ``language`` (None: wordfreq has no list for it), built on first use."""
    table = _tables.get(language, False)
    if table is not False:
        return table  # type: ignore[return-value]
    with _tables_lock:
        if language not in _tables:
            import wordfreq  # deferred: only a Matcher pays for the lists, once per process

            known = wordfreq.available_languages()
            found = None
            if language in known:
                wordlist = WORDLIST.get(language, "small")
                found = wordfreq.get_frequency_list(language, wordlist=wordlist)
            _tables[language] = WordTable(language, found) if found is not None else None
            # wordfreq keeps every list it read in an lru_cache: the table is all we need.
            wordfreq.get_frequency_list.cache_clear()
        return _tables[language]


def release_tables() -> None:
    """Let go of the word tables (a daemon calls this once its index is built: they only
    price keys, and load again on the next build)."""
    with _tables_lock:
        _tables.clear()


@dataclass
class DocumentFrequencies:
    """How many of a sample of ``articles`` held each folded word at least once."""

    articles: int
    counts: Mapping[str, int]
    _sorted: tuple[list[str], array] | None = field(default=None, repr=False)

    def word(self, folded: str) -> int:
        return self.counts.get(folded, 0)

    def prefix(self, folded: str) -> int:
        """Articles holding a word that starts with ``folded``, at most (a sum over words)."""
        if self._sorted is None:
            words = sorted(self.counts)
            self._sorted = words, array("q", accumulate((self.counts[w] for w in words), initial=0))
        words, cumulative = self._sorted
        start, end = bisect_left(words, folded), bisect_left(words, folded + _LAST)
        return min(self.articles, cumulative[end] - cumulative[start])


def document_frequencies(texts: Iterable[tuple[str, str]]) -> DocumentFrequencies:
    """The document frequencies of the distinct folded tokens of (title, body) ``texts``."""
    counts: Counter[str] = Counter()
    total = 0
    for title, body in texts:
        counts.update(TokenizedText.from_parts(title, body).positions.distinct)
        total += 1
    return DocumentFrequencies(total, dict(counts))


class Rarity:
    """The cost of presearch keys: the chance that an article holds one of them.

    ``languages``: the languages sources declare, besides each script's default;
    ``documents``: the document frequencies of stored articles, if there are any.
    """

    def __init__(self, languages: Iterable[str] = (), documents: DocumentFrequencies | None = None):
        declared = set(languages)
        self.documents = documents if documents is not None and documents.articles else None
        # Script -> the languages whose lists a word in it is looked up in.
        self._languages: dict[str, tuple[str, ...]] = {}
        for script, language in DEFAULT_LANGUAGE.items():
            self._languages[script] = (language,)
        for language in sorted(declared):
            script = script_of_language(language)
            script = script if script in DEFAULT_LANGUAGE else "other"
            known = self._languages.get(script, ())
            if language not in known:
                self._languages[script] = (*known, language)
        self._costs: dict[frozenset[Key], float] = {}
        self._script_tables: dict[str, tuple[WordTable, ...]] = {}

    def _tables(self, word: str) -> tuple[WordTable, ...]:
        script = "latin" if word.isascii() else script_of(word)
        tables = self._script_tables.get(script)
        if tables is None:
            found = map(word_table, self._languages.get(script, ()))
            tables = self._script_tables[script] = tuple(t for t in found if t is not None)
        return tables

    def _listed(self, keys: Iterable[Key]) -> float:
        """wordfreq's chance that an article holds one of ``keys``, per language, the
        highest: keys counting as one listed entry count once."""
        entries: dict[tuple[str, bool, str], float] = {}
        for is_prefix, word in keys:
            for table in self._tables(word):
                if is_prefix:
                    entries[(table.language, True, word)] = table.prefix(word)
                else:
                    entry, frequency = table.word(word)
                    entries[(table.language, False, entry)] = frequency
        by_language: dict[str, float] = {}
        for (language, _, _), frequency in entries.items():
            by_language[language] = by_language.get(language, 0.0) + frequency
        if not by_language:  # no list for the script: a word of unknown frequency
            return chance(sum(unlisted(word) for _, word in set(keys)))
        return chance(max(by_language.values()))

    def cost(self, keys: frozenset[Key]) -> float:
        """The expected share of articles that hold at least one of ``keys`` (0 to 1)."""
        found = self._costs.get(keys)
        if found is None:
            found = self._listed(keys)
            documents = self.documents
            if documents is not None:
                held = sum(
                    documents.prefix(word) if is_prefix else documents.word(word)
                    for is_prefix, word in keys
                )
                seen = documents.articles
                found = (min(held, seen) + PRIOR * found) / (seen + PRIOR)
            self._costs[keys] = found
        return found
