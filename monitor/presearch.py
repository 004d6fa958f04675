"""The presearch index: which rules could possibly match an article, from its distinct words.

Evaluating every rule on every article costs time linear in the rules. Like
Lucene Monitor (Luwak) and the Elasticsearch percolator, we index the queries
themselves: each query is reduced to a set of *required keys* such that the
query can only be true on a text containing at least one of them. An article
then looks up its distinct folded tokens, and only the rules they name (the
candidates) are evaluated exactly by ``monitor.match``. A key set is a
superset condition, never a decision: the exact evaluation decides, so the
hits are identical to evaluating every rule (tests/test_presearch.py checks
this property on generated rules and texts).

How a query reduces to keys (``required_keys``):

- a word: itself, folded (a case-sensitive ``=US`` indexes ``us``: the index
  may over-select, never under-select); a word with forms (``~report``, a
  name's cases): each of its forms, whichever language the article is in;
- a wildcard ``visit*``: the prefix, looked up through the article's tokens
  grouped by their first three letters (every prefix has at least three);
- a phrase: its rarest word's keys (every word of it must occur);
- ``entity:id``: the union over its names;
- ``A OR B``: the union, and if any branch cannot be indexed, neither can the OR;
- ``A AND B``, ``A NEAR B``: the indexable branch the fewest articles hold (both
  must hold), by measured word frequencies (``monitor.rarity``);
- ``title:X``: X's keys (the title is part of the text);
- ``person:X`` (and the other entity scopes): X's keys;
- ``NOT X`` and ``source:name``: nothing (they cannot be indexed on their own).

A query with no indexable branch would be a candidate for every article; the
parser rejects such queries (a query needs a positive term), so in practice
the "always" list is empty, but it is kept for safety.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence, Set

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
from monitor.rarity import Key, Rarity

HEAD = 3  # = query.MIN_PREFIX: every wildcard has at least this many letters
# The rarity used where no Matcher gives one: wordfreq alone, each script's default language.
DEFAULT_RARITY = Rarity()


def _term_keys(term: Term) -> frozenset[Key]:
    # Exactly the lookup keys monitor.match uses: a case-sensitive word is stored
    # accent-stripped with case, and casefolding it gives the folded form; a word
    # with forms occurs as one of them (the word itself is among them).
    if term.prefix:
        return frozenset(((True, term.word.casefold()),))
    if term.forms is not None:
        return frozenset((False, word) for word in term.forms.words)
    return frozenset(((False, term.word.casefold()),))


def _phrase_keys(phrase: Phrase, rarity: Rarity) -> frozenset[Key]:
    """Its rarest word's keys: every word of a phrase must occur."""
    return min((_term_keys(term) for term in phrase.words), key=rarity.cost)


def required_keys(node: Node, rarity: Rarity = DEFAULT_RARITY) -> frozenset[Key] | None:
    """Keys of which at least one occurs in every text where ``node`` is true; None: unknown.

    Where several key sets would do (an AND's branches, a phrase's words), the one
    ``rarity`` expects in the fewest articles.
    """
    if isinstance(node, Term):
        return _term_keys(node)
    if isinstance(node, Phrase):
        return _phrase_keys(node, rarity)
    if isinstance(node, EntityRef):
        return frozenset().union(*(_phrase_keys(name, rarity) for name in node.names))
    if isinstance(node, Or):
        parts = [required_keys(child, rarity) for child in node.children]
        if any(part is None for part in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    if isinstance(node, And | Near):
        children = node.children if isinstance(node, And) else (node.left, node.right)
        indexable = [k for k in (required_keys(c, rarity) for c in children) if k is not None]
        return min(indexable, key=rarity.cost) if indexable else None
    if isinstance(node, Title | Scope):
        return required_keys(node.child, rarity)
    assert isinstance(node, Not | Source)
    return None


Clause = frozenset[str]  # folded words of which at least one must occur


def required_clauses(node: Node, rarity: Rarity = DEFAULT_RARITY) -> tuple[Clause, ...]:
    """Clauses that all hold (each: one of its words occurs) wherever ``node`` is true.

    A necessary condition, checked after the key lookup: a rule selected by one
    rare key (a surname that is also a common word elsewhere) is dropped before
    its exact evaluation when another word it needs is absent. Wildcards,
    ``NOT`` and ``source:`` add no clause; an OR gives one clause, the union of
    its branches' rarest clauses (by ``rarity``).
    """
    if isinstance(node, Term):
        return () if node.prefix else (frozenset(word for _, word in _term_keys(node)),)
    if isinstance(node, Phrase):
        return tuple(clause for term in node.words for clause in required_clauses(term, rarity))
    if isinstance(node, Or | EntityRef):
        branches = node.children if isinstance(node, Or) else node.names
        union: set[str] = set()
        for branch in branches:
            clauses = required_clauses(branch, rarity)
            if not clauses:
                return ()
            union |= min(clauses, key=lambda c: rarity.cost(frozenset((False, w) for w in c)))
        return (frozenset(union),) if union else ()
    if isinstance(node, And):
        return tuple(c for child in node.children for c in required_clauses(child, rarity))
    if isinstance(node, Near):
        return required_clauses(node.left, rarity) + required_clauses(node.right, rarity)
    if isinstance(node, Title | Scope):
        return required_clauses(node.child, rarity)
    assert isinstance(node, Not | Source)
    return ()


def _split_clauses(clauses: tuple[Clause, ...]) -> tuple[frozenset[str], tuple[Clause, ...]]:
    """One-word clauses as one set (checked by a single subset test), and the rest."""
    single = frozenset(word for clause in clauses if len(clause) == 1 for word in clause)
    return single, tuple(clause for clause in clauses if len(clause) > 1)


# How many distinct article words the index remembers wildcard answers for; then it
# starts afresh. News vocabularies grow without end (names, numbers, typos), and a
# daemon runs for months: the memory stays bounded, the cost is a re-learning pass.
KNOWN_WORDS = 200_000


class PresearchIndex:
    """Rule numbers by required key; ``candidates`` maps an article's words to rule numbers.

    Exact keys are one dict. Wildcard prefixes are resolved per distinct word
    once and remembered (``by_word`` then holds the word with every rule its
    exact key and its prefixes select), so an article's lookup is a C-level
    intersection of its words with ``by_word`` plus a Python step only for
    words the index has never seen.
    """

    def __init__(self, queries: Sequence[Query], rarity: Rarity = DEFAULT_RARITY):
        exact: dict[str, list[int]] = {}
        prefixes: dict[str, list[int]] = {}
        self.always: list[int] = []
        # Per rule: the words it needs every one of, and the groups it needs one word of.
        self.clauses = [_split_clauses(required_clauses(q.root, rarity)) for q in queries]
        for number, query in enumerate(queries):
            keys = required_keys(query.root, rarity)
            if keys is None:
                self.always.append(number)
                continue
            for is_prefix, word in keys:
                (prefixes if is_prefix else exact).setdefault(word, []).append(number)
        self.exact = {word: tuple(numbers) for word, numbers in exact.items()}
        # Prefixes grouped by their first HEAD letters: a new word is checked only
        # against the prefixes that share its head.
        heads: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for prefix, numbers in prefixes.items():
            heads.setdefault(prefix[:HEAD], []).append((prefix, tuple(numbers)))
        self.heads = {head: tuple(group) for head, group in heads.items()}
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        self.by_word: dict[str, tuple[int, ...]] = dict(self.exact)
        self._known: set[str] = set()

    def _learn(self, words: Set[str]) -> None:
        """Add the wildcard rules of words never seen to ``by_word``."""
        new = words - self._known
        if not new:
            return
        if len(self._known) + len(new) > KNOWN_WORDS:
            self._forget()
            new = set(words)
        self._known |= new
        heads, by_word = self.heads, self.by_word
        for word in new:
            group = heads.get(word[:HEAD])
            if group:
                rules = [n for prefix, numbers in group if word.startswith(prefix) for n in numbers]
                if rules:
                    by_word[word] = self.exact.get(word, ()) + tuple(rules)

    def candidates(self, words: Set[str]) -> set[int]:
        """Numbers of the rules that may match a text whose distinct folded tokens are ``words``."""
        with self._lock:  # poll threads share the index, and learning changes it
            if self.heads:
                self._learn(words)
            by_word = self.by_word
            found = set(self.always)
            for word in by_word.keys() & words:
                found.update(by_word[word])
        kept = set()
        for n in found:
            needed, groups = self.clauses[n]
            if needed <= words and all(not words.isdisjoint(group) for group in groups):
                kept.add(n)
        return kept
