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
``A B``                    same as ``A AND B``
``A AND B``, ``A OR B``    both; either
``NOT A``                  A does not occur
``( )``                    grouping; precedence NOT > NEAR > AND > OR
``A NEAR/n B``             an occurrence of A and one of B, not overlapping,
                           with at most n tokens between them, either order
``A ONEAR/n B``            the same, A before B
``A NEAR/S B``             A and B in the same sentence
``A NEAR/P B``             A and B in the same paragraph (a line break starts one)
``title:X``                X occurs in the title (X: a word, phrase, group
                           or entity)
``source:name``            the article's source has that name (case-insensitive;
                           a filter, it matches no text)
``entity:id``              any of the entity's name and aliases, as phrases;
                           one span per mention, its longest name
``person:X`` ``org:X``     X counts only inside a named entity labelled
``gpe:X``                  PERSON, ORG or GPE by the ``nlp.model`` pipeline
                           (rules using them are disabled without a model)
=========================  ==================================================

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

import logging
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from heapq import merge

from monitor.domain import Article, Hit, Match, Rule
from monitor.errors import ModelError
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
)
from monitor.tokens import Recognizer, SentenceUnits, TokenizedText

log = logging.getLogger("monitor.match")

Occurrence = tuple[int, int]  # first and last token index


def evaluate(query: Query, text: TokenizedText, source_name: str) -> tuple[Match, ...] | None:
    """The spans that make ``query`` true on ``text``, sorted; None when it is false."""
    found = _Evaluator(text, source_name).eval(query.root, EVERYWHERE)
    if found is None:
        return None
    starts, ends, raw = text.starts, text.ends, text.text
    spans = sorted({(starts[first], ends[last]) for first, last in found})
    return tuple(Match(start, end, raw[start:end]) for start, end in spans)


def match_article(rules: Iterable[tuple[Rule, Query]], article: Article) -> list[Hit]:
    """The hits of enabled rules whose source filter admits ``article``, by rule id.

    Every rule is evaluated (no presearch): the reference ``Matcher`` must agree with.
    """
    text = TokenizedText.from_article(article)
    return _hits(rules, text, article.source)


def _hits(rules: Iterable[tuple[Rule, Query]], text: TokenizedText, source: str) -> list[Hit]:
    hits = []
    for rule, query in rules:
        if not rule.enabled or (rule.sources and source not in rule.sources):
            continue
        found = evaluate(query, text, source)
        if found is not None:
            hits.append(Hit(rule, found))
    return sorted(hits, key=lambda hit: hit.rule.id)


class Matcher:
    """Compiled watch rules: a presearch index over their required terms, and their queries.

    Per article the text is tokenised once, its distinct tokens are looked up
    in the index (``monitor.presearch``) and only the candidate rules are
    evaluated; results are identical to ``match_article`` over every rule.
    Sentences and named entities are computed lazily, so only a candidate
    that needs them pays. Rules whose queries use ``person:``/``org:``/``gpe:``
    need ``nlp_model``; without one (or if it cannot load) they are left out
    and listed in ``disabled`` with the reason.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        queries: Mapping[str, Query],
        nlp_model: str | None = None,
        recognizer: Recognizer | None = None,
    ):
        self.rules = [(rule, queries[rule.id]) for rule in rules]
        self.disabled: dict[str, str] = {}
        self.recognizer = recognizer
        needs_model = [r.id for r, q in self.rules if r.enabled and q.entity_labels]
        if needs_model and recognizer is None:
            self.recognizer = self._load_recognizer(nlp_model, needs_model)
        active = [
            (rule, query)
            for rule, query in self.rules
            if rule.enabled and rule.id not in self.disabled
        ]
        self.active = active
        self.index = PresearchIndex([query for _, query in active])

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
        active = self.active
        candidates = sorted(self.index.candidates(text.positions.keys()))
        return _hits((active[i] for i in candidates), text, source)


# Where an operand is looked for: (title only?, spaCy entity label or None).
Zone = tuple[bool, str | None]
EVERYWHERE: Zone = (False, None)


class _Evaluator:
    def __init__(self, text: TokenizedText, source_name: str):
        self.text = text
        self.source = source_name.casefold()

    def eval(self, node: Node, zone: Zone) -> list[Occurrence] | None:
        """The occurrences that make ``node`` true, or None when it is false."""
        if isinstance(node, Term | Phrase | EntityRef):
            return self.occurrences(node, zone) or None
        if isinstance(node, And):
            found: list[Occurrence] = []
            for child in node.children:
                part = self.eval(child, zone)
                if part is None:
                    return None
                found += part
            return found
        if isinstance(node, Or):
            parts = [self.eval(child, zone) for child in node.children]
            true_parts = [part for part in parts if part is not None]
            return [occ for part in true_parts for occ in part] if true_parts else None
        if isinstance(node, Not):
            return [] if self.eval(node.child, zone) is None else None
        if isinstance(node, Near):
            return self.near(node, zone)
        if isinstance(node, Title):
            return self.eval(node.child, (True, zone[1]))
        if isinstance(node, Scope):
            return self.eval(node.child, (zone[0], node.label))
        assert isinstance(node, Source)
        return [] if node.name.casefold() == self.source else None

    def operand(self, node: Node, zone: Zone) -> list[Occurrence]:
        """A NEAR operand's occurrences, sorted: a term, phrase, entity or OR of those."""
        if isinstance(node, Or):
            parts = [self.operand(child, zone) for child in node.children]
            return sorted(set(merge(*parts)))
        assert isinstance(node, Term | Phrase | EntityRef)
        return self.occurrences(node, zone)

    def near(self, node: Near, zone: Zone) -> list[Occurrence] | None:
        left = self.operand(node.left, zone)
        right = self.operand(node.right, zone)
        if not left or not right:
            return None
        if node.kind == "n":
            assert node.distance is not None
            used_left, used_right = _within(left, right, node.distance)
            if not node.ordered:
                back_right, back_left = _within(right, left, node.distance)
                used_left |= back_left
                used_right |= back_right
        else:
            paragraphs = self.text.paragraphs
            units: Sequence[int] | SentenceUnits = paragraphs
            if node.kind == "S":
                # No sentence crosses a paragraph (monitor.tokens): only paragraphs holding
                # both sides are split into sentences (spaCy, ~2.4x the cost of tokenising).
                shared = {paragraphs[f] for f, _ in left} & {paragraphs[f] for f, _ in right}
                left = [occ for occ in left if paragraphs[occ[0]] in shared]
                right = [occ for occ in right if paragraphs[occ[0]] in shared]
                units = self.text.sentence_units
            used_left = _partnered(left, right, units)
            used_right = _partnered(right, left, units)
        if not used_left:
            return None
        return [left[i] for i in used_left] + [right[j] for j in used_right]

    def occurrences(self, node: Term | Phrase | EntityRef, zone: Zone) -> list[Occurrence]:
        """Sorted occurrences, memoised on the text so rules sharing a term share the work."""
        key = (node, zone)
        memo = self.text.memo
        if key not in memo:
            if isinstance(node, Term):
                found = _term(self.text, node)
            elif isinstance(node, Phrase):
                found = _phrase(self.text, node)
            else:
                found = _outermost(merge(*(_phrase(self.text, p) for p in node.names)))
            title_only, label = zone
            if title_only:
                found = found[: bisect_left(found, (self.text.title_count, -1))]
                found = [occ for occ in found if occ[1] < self.text.title_count]
            if label is not None:
                found = _inside(found, self.text.entity_spans.get(label, []))
            memo[key] = found
        result: list[Occurrence] = memo[key]
        return result


def _inside(found: list[Occurrence], spans: list[Occurrence]) -> list[Occurrence]:
    """The occurrences lying wholly inside one of ``spans`` (sorted, non-overlapping entities)."""
    kept = []
    for first, last in found:
        i = bisect_right(spans, (first, sys.maxsize)) - 1
        if i >= 0 and spans[i][0] <= first and last <= spans[i][1]:
            kept.append((first, last))
    return kept


def _term(text: TokenizedText, term: Term) -> list[Occurrence]:
    key = term.word.casefold() if term.case_sensitive else term.word
    if term.prefix:
        # The words starting with the prefix are one run of the sorted distinct words.
        words, positions_of = text.sorted_words, text.positions
        lists = []
        for i in range(bisect_left(words, key), len(words)):
            if not words[i].startswith(key):
                break
            lists.append(positions_of[words[i]])
        positions = list(merge(*lists))
    else:
        positions = text.positions[key]
    if term.case_sensitive:
        cased, word = text.cased, term.word
        if term.prefix:
            positions = [p for p in positions if cased[p].startswith(word)]
        else:
            positions = [p for p in positions if cased[p] == word]
    return [(p, p) for p in positions]


def _phrase(text: TokenizedText, phrase: Phrase) -> list[Occurrence]:
    words = phrase.tokens
    forms = text.cased if phrase.case_sensitive else text.folded
    first = words[0].casefold() if phrase.case_sensitive else words[0]
    size, count, title = len(words), len(forms), text.title_count
    # A phrase may run over a line break (hard-wrapped text) but not from title into body.
    return [
        (p, p + size - 1)
        for p in text.positions[first]
        if p + size <= count
        and not p < title <= p + size - 1
        and all(forms[p + i] == words[i] for i in range(size))
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


def _partnered(
    xs: list[Occurrence], ys: list[Occurrence], units: Sequence[int] | SentenceUnits
) -> set[int]:
    """Indices of xs with some y in the same unit (sentence or paragraph) not overlapping it."""
    # Per unit, the earliest end and the latest start of its ys: a y ends
    # before x or starts after x exactly when one of those two does.
    bounds: dict[int, tuple[int, int]] = {}
    for first, last in ys:
        unit = units[first]
        if units[last] != unit:
            continue
        earliest_end, latest_start = bounds.get(unit, (last, first))
        bounds[unit] = (min(earliest_end, last), max(latest_start, first))
    used = set()
    for i, (first, last) in enumerate(xs):
        unit = units[first]
        if units[last] != unit or unit not in bounds:
            continue
        earliest_end, latest_start = bounds[unit]
        if earliest_end < first or latest_start > last:
            used.add(i)
    return used
