"""The presearch index (monitor.presearch): keys per query, and hits identical to every rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_match import CASES, ENTITIES

from monitor.domain import Article, Entity, Rule
from monitor.errors import QueryError
from monitor.match import Matcher, match_article
from monitor.presearch import PresearchIndex, required_keys
from monitor.query import Not, Or, Query, Source, Term, parse_query

NOW = datetime(2024, 6, 19, tzinfo=UTC)


# Latin names only, so the keys are few enough to list (test_match's entities add Korean
# and Russian names, whose forms are keys too).
KEY_ENTITIES = {
    "matsegora": Entity(
        "matsegora",
        "Alexander Matsegora",
        ("Matsegora", "Aleksandr Matsegora", "Byung-hwan Matsegora"),
    ),
}


def keys(query: str) -> set[tuple[bool, str]] | None:
    found = required_keys(parse_query(query, KEY_ENTITIES).root)
    return None if found is None else set(found)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("putin", {(False, "putin")}),
        ("=US", {(False, "us")}),
        ("visit*", {(True, "visit")}),
        ("=Kim*", {(True, "kim")}),
        ('"north korea summit"', {(False, "summit")}),
        ("putin OR xi", {(False, "putin"), (False, "xi")}),
        ("korea AND matsegora", {(False, "matsegora")}),
        ("summit NOT matsegora", {(False, "summit")}),
        ("source:yonhap kim", {(False, "kim")}),
        ("title:kim", {(False, "kim")}),
        ("korea NEAR/3 lavrov", {(False, "lavrov")}),
        (
            "entity:matsegora",
            # Each name keys on its rarest word: "Alexander Matsegora" on the surname, not the
            # common first name.
            {(False, "matsegora")},
        ),
        ("(kim NOT putin) OR xi", {(False, "kim"), (False, "xi")}),
        ("person:kim", {(False, "kim")}),
    ],
)
def test_required_keys(query: str, expected: set[tuple[bool, str]]) -> None:
    """Each form reduces to the keys one of which any matching text contains."""
    assert keys(query) == expected


def test_not_only_parts_never_index() -> None:
    """A NOT or source: part gives no keys (an OR with one is unindexable); an AND uses the rest."""
    assert required_keys(Not(Term("x"))) is None  # a tree the parser itself would reject
    assert required_keys(Or((Term("x"), Source("yonhap")))) is None
    assert keys("putin AND NOT (kim OR xi)") == {(False, "putin")}


def test_candidates_exact_and_prefix() -> None:
    """Distinct words select rules by exact word and by wildcard prefix, nothing else."""
    queries = [parse_query(q) for q in ("putin", "visit*", "kim AND summit", "vladivostok")]
    index = PresearchIndex(queries)
    assert index.candidates({"putin", "visitors", "summit", "kim"}) == {0, 1, 2}
    assert index.candidates({"vis", "kim"}) == set()
    assert index.candidates(set()) == set()


@pytest.mark.parametrize(
    ("query", "words", "candidate"),
    [
        ("kim AND summit", {"summit"}, False),  # the key (summit) is there, kim is not
        ("kim AND summit", {"summit", "kim"}, True),
        ('"kim jong un" NEAR/S talks', {"jong", "un", "talks"}, False),
        ('"kim jong un" NEAR/S talks', {"kim", "jong", "un", "talks"}, True),
        ("kim AND (summit OR talks)", {"kim", "talks"}, True),
        ("kim AND (summit OR visit*)", {"kim"}, True),  # a wildcard adds no clause
        ("kim AND NOT summit", {"kim"}, True),
        ("=US AND sanctions", {"us", "sanctions"}, True),
        ("title:kim AND person:putin", {"kim"}, False),
    ],
)
def test_candidates_need_every_required_clause(
    query: str, words: set[str], candidate: bool
) -> None:
    """A rule whose key occurs is still dropped when another word it needs is absent."""
    index = PresearchIndex([parse_query(query)])
    assert index.candidates(words) == ({0} if candidate else set())


def article(title: str, body: str, source: str = "yonhap") -> Article:
    return Article(source, title, title, body, None, None, NOW)


@pytest.mark.parametrize(
    ("query", "title", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_contract_table_with_the_index_on(
    query: str, title: str, body: str, expected: list[str] | None
) -> None:
    """Every row of the contract-2 table gives the same spans through the indexed Matcher."""
    rule = Rule("r", "r", query, ())
    hits = Matcher([rule], {"r": parse_query(query, ENTITIES)}).match(
        Article("src", "k", title, body, None, None, NOW)
    )
    got = [m.text for m in hits[0].matches] if hits else None
    assert got == expected


WORDS = ["kim", "putin", "summit", "summits", "visit", "visited", "north", "korea", "us", "US",
         "matsegora", "aleksandr", "byung", "hwan", "park", "xi"]  # fmt: skip
LEAVES = [*WORDS, "=US", "=Kim", "visit*", "summ*", "=Vis*", '"north korea"', '"park byung"',
          "entity:matsegora", "kim*"]  # fmt: skip
NEAR_OPS = ["NEAR/0", "NEAR/2", "ONEAR/1", "NEAR/S", "NEAR/P"]


def queries_of(leaves: list[str]) -> st.SearchStrategy[str]:
    """Queries built from ``leaves`` with every operator and field the index reduces."""

    def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        operand = st.sampled_from(leaves)
        return st.one_of(
            st.tuples(children, children).map(lambda p: f"({p[0]} AND {p[1]})"),
            st.tuples(children, children).map(lambda p: f"({p[0]} OR {p[1]})"),
            st.tuples(children, children).map(lambda p: f"({p[0]} NOT {p[1]})"),
            st.tuples(operand, st.sampled_from(NEAR_OPS), operand).map(" ".join),
            children.map(lambda c: f"title:({c})"),
            children.map(lambda c: f"({c} source:yonhap)"),
        )

    return st.recursive(st.sampled_from(leaves), combine, max_leaves=6)


QUERIES = queries_of(LEAVES)
TEXT_WORDS = [*WORDS, "Kim", "Visitor", "SUMMIT", "Aleksandr", "Byung-hwan", "U.S.", "the"]
SEPARATORS = [" ", " ", ", ", ". ", "\n"]
TEXTS = st.lists(
    st.tuples(st.sampled_from(TEXT_WORDS), st.sampled_from(SEPARATORS)).map("".join), max_size=20
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(QUERIES, min_size=1, max_size=8), TEXTS, TEXTS, st.sampled_from(["yonhap", "x"]))
def test_index_agrees_with_evaluating_every_rule(
    queries: list[str], title: str, body: str, source: str
) -> None:
    """On generated rules and texts, the index gives exactly the hits and spans of every rule."""
    rules: list[tuple[Rule, Query]] = []
    for i, text in enumerate(queries):
        try:
            rules.append((Rule(f"r{i}", "t", text, ()), parse_query(text, ENTITIES)))
        except QueryError:
            continue
    assume(rules)
    item = article(title, body, source)
    matcher = Matcher([r for r, _ in rules], {r.id: q for r, q in rules})
    assert matcher.match(item) == match_article(rules, item)


# Word forms: ~words and inflected mode, Russian and Korean words and names, and texts that
# hold their forms, in articles whose declared language decides where forms apply.
FORM_WORDS = ["report", "reports", "visit", "weapon", "доклад", "Мацегора", "보고서", "북한"]
FORM_LEAVES = [*FORM_WORDS, *(f"~{w}" for w in FORM_WORDS), "=US", "visit*", "entity:kim",
               '~"north korea"', '"sanctions committee"', '~"제재 위원회"', "entity:matsegora",
               "entity:lavrov"]  # fmt: skip
FORM_TEXT_WORDS = [*FORM_WORDS, "reported", "visited", "weapons", "докладе", "Мацегоры",
                   "보고서를", "북한이", "제재위원회는", "제재", "위원회는", "North", "Korea",
                   "sanction", "committees", "Lavrova", "Ким", "Чен", "Ыном", "김정은이",
                   "the"]  # fmt: skip
FORM_TEXTS = st.lists(
    st.tuples(st.sampled_from(FORM_TEXT_WORDS), st.sampled_from(SEPARATORS)).map("".join),
    max_size=20,
).map("".join)


FORM_QUERIES = queries_of(FORM_LEAVES)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(FORM_QUERIES, st.sampled_from(["exact", "inflected"])), min_size=1,
             max_size=8),
    FORM_TEXTS,
    FORM_TEXTS,
    st.sampled_from([None, "en", "ru", "ko", "de"]),
)  # fmt: skip
def test_index_agrees_with_every_rule_with_word_forms(
    queries: list[tuple[str, str]], title: str, body: str, language: str | None
) -> None:
    """With word forms on, in any declared language, the index gives every rule's hits."""
    rules: list[Rule] = []
    parsed: dict[str, Query] = {}
    for i, (text, forms) in enumerate(queries):
        try:
            parsed[f"r{i}"] = parse_query(text, ENTITIES, forms=forms)  # type: ignore[arg-type]
        except QueryError:
            continue
        rules.append(Rule(f"r{i}", "t", text, ()))
    assume(rules)
    item = article(title, body, "wire")
    languages = {"wire": language} if language else {}
    indexed = Matcher(rules, parsed, languages=languages)
    every = Matcher(rules, parsed, languages=languages, use_index=False)
    assert indexed.match(item) == every.match(item)


def test_wildcard_answers_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Words learnt for wildcards stay bounded: past KNOWN_WORDS the index starts afresh."""
    import monitor.presearch as presearch

    monkeypatch.setattr(presearch, "KNOWN_WORDS", 3)
    index = PresearchIndex([parse_query(q) for q in ("visit*", "summit")])
    assert index.candidates({"visited", "x"}) == {0}
    assert index.by_word["visited"] == (0,)
    assert index.candidates({"a", "b", "visitors"}) == {0}  # over the bound: forgotten, relearnt
    assert "visited" not in index.by_word and len(index._known) <= 3
    assert index.candidates({"summit", "visit"}) == {0, 1}


def test_matcher_without_index_gives_the_same_hits_and_keeps_gc_on() -> None:
    """use_index=False evaluates every rule with the same hits; building leaves gc enabled."""
    import gc

    rules = [Rule(f"r{i}", "t", q, ()) for i, q in enumerate(["kim", "visit* NOT xi", "xi"])]
    queries = {r.id: parse_query(r.query) for r in rules}
    item = article("Kim visited", "Talks")
    indexed = Matcher(rules, queries)
    assert gc.isenabled()
    assert indexed.match(item) == Matcher(rules, queries, use_index=False).match(item)
    assert [h.rule.id for h in indexed.match(item)] == ["r0", "r1"]
