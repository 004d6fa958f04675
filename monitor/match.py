"""Matching articles against watch rules: evaluates parsed queries (pure, no I/O).

The query language
==================

A query runs over an article's text: its title, then its body (the title is
its own sentence and paragraph). The text is cut into word tokens, maximal
runs of letters and digits; every other character (space, hyphen,
apostrophe, dot...) separates tokens and is skipped. So "Park Byung-hwan" and
"Park Byung Hwan" are the same three tokens, "Putin's" is ``putin`` ``s`` and
"U.S." is ``u`` ``s``. Matching ignores case and accents ("Sao Paulo" matches
"São Paulo", in NFC or NFD).

=========================  ==================================================
``word``                   a token equal to word; a word with inner
                           punctuation (``Byung-hwan``, ``U.S.``) is the
                           phrase of its tokens
``word*``                  a token starting with word (at least 3 characters
                           before ``*``; ``*`` only at the end of a word)
``"a b c"``                the tokens in sequence (inside quotes every
                           non-letter, ``*`` included, separates tokens); a
                           phrase may run over a line break, not from the
                           title into the body
``=US``, ``="New York"``   as above, but case-sensitive (accents still ignored)
``~word``, ``~"a b"``      the word (each word of the phrase) or any of its
                           inflected forms in the article's language
                           (``monitor.forms``); ``forms: inflected`` makes
                           every bare word and phrase of a rule so, while
                           ``=word`` and ``word*`` stay exact
``A B``                    same as ``A AND B``
``A AND B``, ``A OR B``    both; either
``NOT A``                  A does not occur
``( )``                    grouping; precedence NOT > NEAR > AND > OR
``A NEAR/n B``             an occurrence of A and another of B, not
                           overlapping, with at most n tokens between them,
                           either order (``x NEAR/3 x`` needs two x)
``A ONEAR/n B``            the same, A before B
``A NEAR/S B``             A and B in the same sentence
``A NEAR/P B``             A and B in the same paragraph (a line break starts one)
``title:X``                X occurs in the title (X: a word, phrase, group
                           or entity)
``source:name``            the article's source has that name (case-insensitive;
                           a filter, it matches no text)
``entity:id``              any of the entity's name and aliases, as phrases,
                           in the forms their language gives a name (Korean
                           particles, Russian cases; a romanised Korean name
                           in its other orders and spellings; an alias word
                           ending in ``*`` a prefix); one span per mention,
                           its longest name
``person:X`` ``org:X``     X counts only inside a named entity labelled
``gpe:X``                  PERSON, ORG or GPE by the ``nlp.model`` pipeline
                           (rules using them are disabled without a model)
=========================  ==================================================

Word forms count where they apply to the article's language: its source's
``language:`` setting, else its script (``monitor.languages``).

Operators are uppercase; ``and``, ``or``, ``near`` are ordinary words. NEAR
operands are words, phrases, entities or parenthesised OR-groups of them, so
``NOT a NEAR/2 b`` and ``a NEAR/2 b NEAR/2 c`` are errors. A query must need
at least one word that is not under NOT: ``NOT x``, ``a OR NOT b`` and
``source:x`` alone are errors. Errors give the 1-based column.

A match reports the character span (into ``Article.text``) of each term
occurrence that made the query true: all of an AND's, those of every true
branch of an OR, none from NOT, and for NEAR the occurrences that take part
in a satisfying pair. A phrase occurrence is one span, first token to last.
"""

from __future__ import annotations

import gc
import logging
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain

from monitor.domain import Article, Hit, Match, Rule
from monitor.errors import ModelError
from monitor.languages import forms_apply
from monitor.nlp import EntityRecognizer
from monitor.presearch import PresearchIndex
from monitor.query import (
    And,
    EntityRef,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Query,
    Scope,
    Source,
    Term,
    Title,
    walk,
)
from monitor.rarity import DocumentFrequencies, Rarity
from monitor.tokens import Recognizer, TokenizedText

log = logging.getLogger("monitor.match")

Occurrence = tuple[int, int]  # first and last token index


def evaluate(query: Query, text: TokenizedText, source_name: str) -> tuple[Match, ...] | None:
    """The spans that make ``query`` true on ``text``, sorted; None when it is false."""
    found = _Compiler().compile(query.root)(_Context(text, source_name))
    return None if found is None else _spans(text, found)


def match_article(rules: Iterable[tuple[Rule, Query]], article: Article) -> list[Hit]:
    """The hits of enabled rules whose source filter admits ``article``, by rule id.

    Every rule is evaluated (no presearch): the reference ``Matcher`` must agree with.
    """
    pairs = list(rules)
    matcher = Matcher([r for r, _ in pairs], {r.id: q for r, q in pairs}, use_index=False)
    return matcher.match(article)


def _spans(text: TokenizedText, found: list[Occurrence]) -> tuple[Match, ...]:
    raw = text.text
    spans = sorted(set(text.spans_of(set(found))))
    return tuple(Match(start, end, raw[start:end]) for start, end in spans)


class _Context:
    """One text being matched: what compiled queries read, and the work they share."""

    __slots__ = ("memo", "source", "text")

    def __init__(self, text: TokenizedText, source_name: str):
        self.text = text
        self.source = source_name.casefold()
        # Leaf slot -> its occurrences: rules sharing a term (in the same zone) share the work.
        self.memo: dict[int, list[Occurrence]] = {}


# A compiled query part: its occurrences when true, None when false.
Evaluate = Callable[[_Context], "list[Occurrence] | None"]
# A compiled NEAR operand or leaf: its sorted occurrences, maybe none.
Find = Callable[[_Context], "list[Occurrence]"]


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    evaluate: Evaluate
    words: frozenset[str]  # every exact folded word its leaves look up, fetched in one pass
    prefixes: tuple[str, ...]  # its wildcards' folded stems, expanded per article


class Matcher:
    """Compiled watch rules: a presearch index over their required terms, and their queries.

    Each query is compiled once into closures (no tree walking per article);
    equal leaves of different rules share one memo slot, so a word is looked
    up once per article however many rules use it. Per article the text is
    tokenised once, its distinct tokens are looked up in the index
    (``monitor.presearch``) and only the candidate rules are evaluated;
    results are identical to evaluating every rule (``use_index=False``, what
    ``match_article`` does). Sentences and named entities are computed
    lazily, so only a candidate that needs them pays. Rules whose queries use
    ``person:``/``org:``/``gpe:`` need ``nlp_model``; without one (or if it
    cannot load) they are left out and listed in ``disabled`` with the reason.
    The index keys each rule on what the fewest articles hold, by wordfreq's
    lists for the rules' and sources' languages and, given ``documents``, the
    document frequencies of stored articles (``monitor.rarity``).
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        queries: Mapping[str, Query],
        nlp_model: str | None = None,
        recognizer: Recognizer | None = None,
        use_index: bool = True,
        languages: Mapping[str, str] | None = None,
        documents: DocumentFrequencies | None = None,
    ):
        self.rules = [(rule, queries[rule.id]) for rule in rules]
        # Source name -> its configured language; other sources' articles are told by script.
        self.languages = dict(languages or {})
        self.disabled: dict[str, str] = {}
        self.recognizer = recognizer
        needs_model = [r.id for r, q in self.rules if r.enabled and q.entity_labels]
        if needs_model and recognizer is None:
            self.recognizer = self._load_recognizer(nlp_model, needs_model)
        # Sorted by id, so candidates in number order give hits in rule-id order.
        active = sorted(
            ((r, q) for r, q in self.rules if r.enabled and r.id not in self.disabled),
            key=lambda pair: pair[0].id,
        )
        self.active = active
        with _collector_paused():
            compiler = _Compiler()
            self._compiled = [
                _CompiledRule(rule, compiler.compile(query.root), *_words(query.root))
                for rule, query in active
            ]
            self.index = None
            if use_index:
                rarity = Rarity(self.languages.values(), documents)
                self.index = PresearchIndex([query for _, query in active], rarity)
        self._everything = set(range(len(active)))

    def _load_recognizer(self, model: str | None, rule_ids: list[str]) -> Recognizer | None:
        if model is None:
            reason = "needs a named-entity model (set nlp.model to an installed spaCy pipeline)"
        else:
            try:
                return EntityRecognizer(model)
            except ModelError as e:
                reason = f"needs nlp.model, which cannot be loaded: {e}"
        for rule_id in rule_ids:
            self.disabled[rule_id] = reason
            log.warning("rule disabled rule=%s reason=%r", rule_id, reason)
        return None

    def match(self, article: Article) -> list[Hit]:
        return self.match_text(TokenizedText.from_article(article), article.source)

    def match_text(self, text: TokenizedText, source: str) -> list[Hit]:
        """Hits on an already tokenised text, evaluating only the index's candidates."""
        text.recognizer = self.recognizer
        language = self.languages.get(source)
        if language is not None:
            text.language = language
        if self.index is None:
            candidates = self._everything
        else:
            candidates = self.index.candidates(text.positions.keys())
            if not candidates:
                return []
        compiled = self._compiled
        chosen = [compiled[i] for i in sorted(candidates)]
        # One pass over the tokens finds every word the candidates may ask for.
        words = [*chain.from_iterable(c.words for c in chosen)]
        for c in chosen:
            for prefix in c.prefixes:
                words += text.words_starting(prefix)
        text.positions.prefetch(words)
        context = _Context(text, source)
        hits = []
        for rule in chosen:
            sources = rule.rule.sources
            if sources and source not in sources:
                continue
            found = rule.evaluate(context)
            if found is not None:
                hits.append(Hit(rule.rule, _spans(text, found)))
        return hits


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many long-lived objects are built.

    Compiling 10,000 rules makes ~100,000 closures and cells; each collection
    the allocations trigger walks all of them, which was 70 % of the build.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _words(root: Node) -> tuple[frozenset[str], tuple[str, ...]]:
    """The exact folded words a query's leaves look up (word forms among them), and its
    wildcards' folded stems."""
    words: set[str] = set()
    prefixes: set[str] = set()
    for node in walk(root):
        terms: Iterable[Term] = ()
        if isinstance(node, Term):
            terms = (node,)
        elif isinstance(node, Phrase):
            terms = node.words
        elif isinstance(node, EntityRef):
            terms = (term for name in node.names for term in name.words)
        for term in terms:
            (prefixes if term.prefix else words).add(term.word.casefold())
            if term.forms is not None:
                words.update(term.forms.words)
    return frozenset(words), tuple(sorted(prefixes))


# Where an operand is looked for: (title only?, spaCy entity label or None).
Zone = tuple[bool, str | None]
EVERYWHERE: Zone = (False, None)
_TRUE: list[Occurrence] = []  # true with no occurrence (NOT, source:); never mutated


class _Compiler:
    """Query trees -> closures. Equal leaves in one zone get one memo slot and one closure."""

    def __init__(self) -> None:
        self._leaves: dict[tuple[Node, Zone], Find] = {}

    def compile(self, root: Node) -> Evaluate:
        return self._node(root, EVERYWHERE)

    def _node(self, node: Node, zone: Zone) -> Evaluate:
        if isinstance(node, Term | Phrase | EntityRef):
            return _true_if_any(self._leaf(node, zone))
        if isinstance(node, And):
            return _all_of([self._node(child, zone) for child in node.children])
        if isinstance(node, Or):
            return _any_of([self._node(child, zone) for child in node.children])
        if isinstance(node, Not):
            return _none_of(self._node(node.child, zone))
        if isinstance(node, Near):
            left, right = self._operand(node.left, zone), self._operand(node.right, zone)
            return _near(node, left, right)
        if isinstance(node, Title):
            return self._node(node.child, (True, zone[1]))
        if isinstance(node, Scope):
            return self._node(node.child, (zone[0], node.label))
        assert isinstance(node, Source)
        return _from_source(node.name.casefold())

    def _operand(self, node: Node, zone: Zone) -> Find:
        """A NEAR operand: a term, phrase, entity or OR of those, as sorted occurrences."""
        if isinstance(node, Or):
            parts = [self._operand(child, zone) for child in node.children]
            return lambda context: sorted(set(chain.from_iterable(part(context) for part in parts)))
        assert isinstance(node, Term | Phrase | EntityRef)
        return self._leaf(node, zone)

    def _leaf(self, node: Term | Phrase | EntityRef, zone: Zone) -> Find:
        key = (node, zone)
        leaf = self._leaves.get(key)
        if leaf is None:
            leaf = self._leaves[key] = _memoised(len(self._leaves), _finder(node), zone)
        return leaf


def _true_if_any(find: Find) -> Evaluate:
    return lambda context: find(context) or None


def _all_of(parts: list[Evaluate]) -> Evaluate:
    def all_of(context: _Context) -> list[Occurrence] | None:
        found: list[Occurrence] = []
        for part in parts:
            got = part(context)
            if got is None:
                return None
            found += got
        return found

    return all_of


def _any_of(parts: list[Evaluate]) -> Evaluate:
    def any_of(context: _Context) -> list[Occurrence] | None:
        found: list[Occurrence] | None = None
        for part in parts:
            got = part(context)
            if got is not None:
                found = got if found is None else found + got  # never extend a memo's list
        return found

    return any_of


def _none_of(child: Evaluate) -> Evaluate:
    return lambda context: _TRUE if child(context) is None else None


def _from_source(name: str) -> Evaluate:
    return lambda context: _TRUE if context.source == name else None


def _memoised(slot: int, find: Callable[[TokenizedText], list[Occurrence]], zone: Zone) -> Find:
    title_only, label = zone

    def occurrences(context: _Context) -> list[Occurrence]:
        found = context.memo.get(slot)
        if found is None:
            text = context.text
            found = find(text)
            if title_only and found:
                found = [occ for occ in found if occ[1] < text.title_count]
            if label is not None and found:
                found = _inside(found, text.entity_spans.get(label, []))
            context.memo[slot] = found
        return found

    return occurrences


def _finder(node: Term | Phrase | EntityRef) -> Callable[[TokenizedText], list[Occurrence]]:
    """What finds a leaf's sorted occurrences in a text."""
    if isinstance(node, Term):
        if node.prefix or node.case_sensitive or node.forms is not None:
            return lambda text: [(p, p) for p in _positions(text, node)]
        word = node.word
        return lambda text: [(p, p) for p in text.positions[word]]
    if isinstance(node, Phrase):
        return lambda text: _phrase(text, node)
    names = node.names
    return lambda text: _outermost(chain.from_iterable(_phrase(text, name) for name in names))


def _near(node: Near, left_of: Find, right_of: Find) -> Evaluate:
    kind, distance, ordered = node.kind, node.distance, node.ordered

    def near(context: _Context) -> list[Occurrence] | None:
        left = left_of(context)
        if not left:
            return None
        right = right_of(context)
        if not right:
            return None
        if kind == "n":
            assert distance is not None
            used_left, used_right = _within(left, right, distance)
            if not ordered:
                back_right, back_left = _within(right, left, distance)
                used_left |= back_left
                used_right |= back_right
        elif kind == "P":
            paragraph_of = context.text.paragraph_of
            used_left, used_right = _in_units(left, right, paragraph_of)
        else:
            left, right, used_left, used_right = _same_sentence(context.text, left, right)
        if not used_left:
            return None
        return [left[i] for i in used_left] + [right[j] for j in used_right]

    return near


def _same_sentence(
    text: TokenizedText, left: list[Occurrence], right: list[Occurrence]
) -> tuple[list[Occurrence], list[Occurrence], set[int], set[int]]:
    """Left and right in the paragraphs they share, and the indices of those in a
    non-overlapping pair within one sentence (only shared paragraphs are split)."""
    paragraph_of = text.paragraph_of
    shared = {paragraph_of(f) for f, _ in left} & {paragraph_of(f) for f, _ in right}
    left = [occ for occ in left if paragraph_of(occ[0]) in shared]
    right = [occ for occ in right if paragraph_of(occ[0]) in shared]
    return left, right, *_in_units(left, right, text.sentence_units.__getitem__)


def _inside(found: list[Occurrence], spans: list[Occurrence]) -> list[Occurrence]:
    """The occurrences lying wholly inside one of ``spans`` (sorted, non-overlapping entities)."""
    kept = []
    for first, last in found:
        i = bisect_right(spans, (first, sys.maxsize)) - 1
        if i >= 0 and spans[i][0] <= first and last <= spans[i][1]:
            kept.append((first, last))
    return kept


def _positions(text: TokenizedText, term: Term) -> list[int]:
    """The sorted token positions where ``term`` occurs: a word, a prefix, a case-sensitive
    word, or any of a word's forms where they apply to the text's language."""
    if term.prefix:
        return _prefix(text, term)
    if term.case_sensitive:
        cased, word = text.cased, term.word
        return [p for p in text.positions[word.casefold()] if cased[p] == word]
    if term.forms is None or not forms_apply(term.forms.language, text.language):
        return text.positions[term.word]
    positions_of = text.positions
    # Most forms are absent: one C-level intersection instead of a lookup per form.
    present = positions_of.distinct.intersection(term.forms.words)
    if not present:
        return []
    if len(present) == 1:
        return positions_of[present.pop()]
    return sorted(chain.from_iterable(map(positions_of.__getitem__, present)))


def _prefix(text: TokenizedText, term: Term) -> list[int]:
    words = text.words_starting(term.word.casefold() if term.case_sensitive else term.word)
    if not words:
        return []
    positions_of = text.positions
    positions_of.prefetch(words)
    positions = sorted(chain.from_iterable(map(positions_of.__getitem__, words)))
    if term.case_sensitive:
        cased, stem = text.cased, term.word
        return [p for p in positions if cased[p].startswith(stem)]
    return positions


def _accepts(text: TokenizedText, term: Term, p: int) -> bool:
    """Whether token ``p`` of ``text`` is an occurrence of ``term`` (as ``_positions`` finds)."""
    if term.case_sensitive:
        cased = text.cased[p]
        return cased.startswith(term.word) if term.prefix else cased == term.word
    folded = text.folded[p]
    if term.prefix:
        return folded.startswith(term.word)
    if term.forms is not None and forms_apply(term.forms.language, text.language):
        return folded in term.forms.words
    return folded == term.word


def _phrase(text: TokenizedText, phrase: Phrase) -> list[Occurrence]:
    first, *rest = phrase.words
    size, count, title = len(phrase.words), len(text), text.title_count
    # A phrase may run over a line break (hard-wrapped text) but not from title into body.
    return [
        (p, p + size - 1)
        for p in _positions(text, first)
        if p + size <= count
        and not p < title <= p + size - 1
        and all(_accepts(text, term, p + i) for i, term in enumerate(rest, 1))
    ]


def _outermost(occurrences: Iterable[Occurrence]) -> list[Occurrence]:
    """Sorted, without those inside another: an entity is one term, named by its longest name.

    So "Aleksandr Matsegora" reports one span, not also the alias "Matsegora" inside it.
    """
    kept: list[Occurrence] = []
    reach = -1
    for first, last in sorted(set(occurrences), key=lambda occ: (occ[0], -occ[1])):
        if last > reach:
            kept.append((first, last))
            reach = last
    return kept


def _within(xs: list[Occurrence], ys: list[Occurrence], distance: int) -> tuple[set[int], set[int]]:
    """Indices of xs and ys in some pair with y after x and at most ``distance`` tokens between.

    ``ys`` is sorted, so each x finds its partners by bisection, and a running
    sum over range marks flags the partners without listing every pair.
    """
    firsts = [y[0] for y in ys]
    marks = [0] * (len(ys) + 1)
    used_x = set()
    for i, (_, last) in enumerate(xs):
        lo = bisect_left(firsts, last + 1)
        hi = bisect_right(firsts, last + 1 + distance)
        if lo < hi:
            used_x.add(i)
            marks[lo] += 1
            marks[hi] -= 1
    used_y, running = set(), 0
    for j in range(len(ys)):
        running += marks[j]
        if running:
            used_y.add(j)
    return used_x, used_y


def _in_units(
    left: list[Occurrence], right: list[Occurrence], unit_of: Callable[[int], int]
) -> tuple[set[int], set[int]]:
    """Indices of left and right in some non-overlapping pair within one unit.

    Units are paragraphs or sentences; an occurrence spanning two units is in none.
    """
    left_units = [_unit(occ, unit_of) for occ in left]
    right_units = [_unit(occ, unit_of) for occ in right]
    return _partnered(left, left_units, right, right_units), _partnered(
        right, right_units, left, left_units
    )


def _unit(occurrence: Occurrence, unit_of: Callable[[int], int]) -> int | None:
    first, last = occurrence
    unit = unit_of(first)
    return unit if first == last or unit_of(last) == unit else None


def _partnered(
    xs: list[Occurrence], x_units: list[int | None], ys: list[Occurrence], y_units: list[int | None]
) -> set[int]:
    """Indices of xs with some y in the same unit not overlapping it."""
    # Per unit, the earliest end and the latest start of its ys: a y ends
    # before x or starts after x exactly when one of those two does.
    bounds: dict[int, tuple[int, int]] = {}
    for (first, last), unit in zip(ys, y_units, strict=True):
        if unit is None:
            continue
        earliest_end, latest_start = bounds.get(unit, (last, first))
        bounds[unit] = (min(earliest_end, last), max(latest_start, first))
    used = set()
    for i, ((first, last), unit) in enumerate(zip(xs, x_units, strict=True)):
        if unit is None or unit not in bounds:
            continue
        earliest_end, latest_start = bounds[unit]
        if earliest_end < first or latest_start > last:
            used.add(i)
    return used
