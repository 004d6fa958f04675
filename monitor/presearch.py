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


Clause = frozenset[str]  # folded words of which at least one must occur
Leaf = Term | Phrase | EntityRef
Reduced = tuple[frozenset[Key] | None, tuple[Clause, ...]]  # a node's keys and clauses
LeafReduced = tuple[frozenset[Key], tuple[Clause, ...]]  # a leaf always has keys


class _Reducer:
    """Queries -> keys and clauses, remembering each leaf's: rules share their words,
    names and entities, and pricing a leaf's keys is most of building the index.

    Leaves are remembered by identity, not equality: hashing and comparing frozen
    dataclasses (a Term's forms, a Phrase's terms) cost more than the work saved.
    Identity finds what the parser shares: a word's ``Forms`` (one per word and
    language) and an entity's names. The leaf is kept beside its result, so an id
    is never reused while the reducer lives.
    """

    def __init__(self, rarity: Rarity):
        self.rarity = rarity
        self._leaves: dict[object, tuple[object, LeafReduced]] = {}
        self._clause_costs: dict[Clause, float] = {}

    def reduce(self, node: Node) -> Reduced:
        """``node``'s keys (None: cannot be indexed) and its clauses, in one pass."""
        if isinstance(node, Term | Phrase | EntityRef):
            return self._leaf(node)
        if isinstance(node, And | Near):
            parts = [*map(self.reduce, node.children if isinstance(node, And)
                          else (node.left, node.right))]  # fmt: skip
            indexable = [keys for keys, _ in parts if keys is not None]
            keys = min(indexable, key=self.rarity.cost) if indexable else None
            return keys, tuple(c for _, clauses in parts for c in clauses)
        if isinstance(node, Or):
            parts = [*map(self.reduce, node.children)]
            known = [keys for keys, _ in parts if keys is not None]
            union = frozenset().union(*known) if len(known) == len(parts) else None
            return union, self._union([clauses for _, clauses in parts])
        if isinstance(node, Title | Scope):
            return self.reduce(node.child)
        assert isinstance(node, Not | Source)
        return None, ()

    def _leaf(self, leaf: Leaf) -> LeafReduced:
        # Remembered by identity (see the class docstring): a Term with forms by its
        # Forms, one without by its word, a phrase or an entity by itself.
        if isinstance(leaf, Term):
            forms = leaf.forms
            plain = forms is None or leaf.prefix
            identity: object = (leaf.prefix, leaf.word) if plain else id(forms)
            owner: object = forms
        else:
            identity, owner = id(leaf), leaf
        known = self._leaves.get(identity)
        if known is not None:
            return known[1]
        found: LeafReduced
        if isinstance(leaf, Term):
            keys = _term_keys(leaf)
            found = keys, () if leaf.prefix else (frozenset(w for _, w in keys),)
        elif isinstance(leaf, Phrase):  # its rarest word's keys: every word must occur
            parts = [*map(self._leaf, leaf.words)]
            keys = min((keys for keys, _ in parts), key=self.rarity.cost)
            found = keys, tuple(c for _, clauses in parts for c in clauses)
        else:
            parts = [*map(self._leaf, leaf.names)]
            found = frozenset().union(*(k for k, _ in parts)), self._union([c for _, c in parts])
        self._leaves[identity] = (owner, found)
        return found

    def _clause_cost(self, clause: Clause) -> float:
        found = self._clause_costs.get(clause)
        if found is None:
            found = self._clause_costs[clause] = self.rarity.cost(
                frozenset((False, word) for word in clause)
            )
        return found

    def _union(self, branches: list[tuple[Clause, ...]]) -> tuple[Clause, ...]:
        """One clause: the union of every branch's rarest clause (none if one has none)."""
        union: set[str] = set()
        for clauses in branches:
            if not clauses:
                return ()
            rarest: Clause = min(clauses, key=self._clause_cost)
            union |= rarest
        return (frozenset(union),) if union else ()


def required_keys(node: Node, rarity: Rarity = DEFAULT_RARITY) -> frozenset[Key] | None:
    """Keys of which at least one occurs in every text where ``node`` is true; None: unknown.

    Where several key sets would do (an AND's branches, a phrase's words), the one
    ``rarity`` expects in the fewest articles.
    """
    return _Reducer(rarity).reduce(node)[0]


def required_clauses(node: Node, rarity: Rarity = DEFAULT_RARITY) -> tuple[Clause, ...]:
    """Clauses that all hold (each: one of its words occurs) wherever ``node`` is true.

    A necessary condition, checked after the key lookup: a rule selected by one
    rare key (a surname that is also a common word elsewhere) is dropped before
    its exact evaluation when another word it needs is absent. Wildcards,
    ``NOT`` and ``source:`` add no clause; an OR gives one clause, the union of
    its branches' rarest clauses (by ``rarity``).
    """
    return _Reducer(rarity).reduce(node)[1]


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
        reducer = _Reducer(rarity)
        # Per rule: the words it needs every one of, and the groups it needs one word of.
        self.clauses = []
        for number, query in enumerate(queries):
            keys, clauses = reducer.reduce(query.root)
            self.clauses.append(_split_clauses(clauses))
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
        clauses = self.clauses
        for n in found:
            needed, groups = clauses[n]
            if needed <= words:
                for group in groups:  # a loop, not all(genexpr): a third of this method
                    if words.isdisjoint(group):
                        break
                else:
                    kept.add(n)
        return kept
