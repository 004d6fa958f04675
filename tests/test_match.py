"""Evaluating queries on articles (contract 2): one case per row, exact spans, rule handling."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domain import Article, Entity, Match, Rule
from monitor.errors import QueryError
from monitor.match import Matcher, evaluate, match_article
from monitor.query import Query, parse_query
from monitor.tokens import TokenizedText

ENTITIES = {
    "matsegora": Entity(
        "matsegora",
        "Alexander Matsegora",
        ("Matsegora", "Aleksandr Matsegora", "Park Byung-hwan", "Мацегора", "마체고라"),
    ),
    "lavrov": Entity("lavrov", "Sergei Lavrov", ("Lavro*", "Сергей Лавров")),
    "kim": Entity("kim", "김정은", ("Ким Чен Ын",)),
}
NFD_SAO_PAULO = unicodedata.normalize("NFD", "São Paulo")


def spans(query: str, title: str, body: str = "", source: str = "src") -> list[str] | None:
    """The matched texts, checking each Match's text is its span of the article text."""
    text = TokenizedText.from_parts(title, body)
    found = evaluate(parse_query(query, ENTITIES), text, source)
    if found is None:
        return None
    for match in found:
        assert text.text[match.start : match.end] == match.text
    assert list(found) == sorted(set(found), key=lambda m: (m.start, m.end))
    return [match.text for match in found]


CASES = [
    # word: a whole token, any case
    ("word", "putin", "Putin visits", "", ["Putin"]),
    ("word is a token not a substring", "sea", "Korean seaside", "", None),
    ("word any case", "PUTIN", "putin", "", ["putin"]),
    ("apostrophe separates", "putin", "Putin's visit", "", ["Putin"]),
    ("dots separate", "U.S.", "The U.S. envoy", "", ["U.S"]),
    # names are hyphen- and space-insensitive
    ("hyphen in text", '"Park Byung Hwan"', "T", "Park Byung-hwan said", ["Park Byung-hwan"]),
    ("hyphen in query", '"Park Byung-hwan"', "T", "Park Byung Hwan said", ["Park Byung Hwan"]),
    ("bare hyphenated word", "Byung-hwan", "Park Byung Hwan", "", ["Byung Hwan"]),
    ("phrase order", '"north korea"', "Korea North", "", None),
    ("phrase over a line break", '"north korea"', "T", "North\nKorea", ["North\nKorea"]),
    ("phrase not from title into body", '"north korea"', "North", "Korea", None),
    # accents
    ("accent in text", '"Sao Paulo"', "São Paulo summit", "", ["São Paulo"]),
    ("accent in query", '"São Paulo"', "Sao Paulo summit", "", ["Sao Paulo"]),
    ("NFD text", '"Sao Paulo"', NFD_SAO_PAULO, "", [NFD_SAO_PAULO]),
    ("NFD text, NFC query", "são", NFD_SAO_PAULO, "", [NFD_SAO_PAULO[:4]]),
    # case-sensitive
    ("=US matches US", "=US", "US and us", "", ["US"]),
    ("=US ignores us", "=US", "talk to us", "", None),
    ("US is case-insensitive", "US", "talk to us", "", ["us"]),
    ("=phrase", '="New York"', "new york, New York", "", ["New York"]),
    ("=word ignores accents", "=Sao", "São", "", ["São"]),
    # wildcards
    (
        "wildcard",
        "visit*",
        "He visited",
        "and visits the visitor",
        ["visited", "visits", "visitor"],
    ),
    ("wildcard includes the word", "visit*", "visit", "", ["visit"]),
    ("wildcard three letters", "vis*", "visa", "", ["visa"]),
    ("wildcard is a prefix", "isit*", "visit", "", None),
    ("wildcard case-sensitive", "=Kim*", "Kimchi kimono", "", ["Kimchi"]),
    # boolean, implicit AND, precedence
    ("implicit AND", "putin kim", "Putin met Kim", "", ["Putin", "Kim"]),
    ("implicit AND false", "putin kim", "Putin met Xi", "", None),
    ("OR one", "putin OR kim", "Kim only", "", ["Kim"]),
    ("OR all true branches", "putin OR kim", "Kim and Putin", "", ["Kim", "Putin"]),
    ("NOT absent", "putin NOT kim", "Putin alone", "", ["Putin"]),
    ("NOT present", "putin NOT kim", "Putin and Kim", "", None),
    ("lowercase and is a word", "putin and kim", "Putin, Kim", "", None),
    ("OR below AND: left", "kim OR putin AND summit", "Kim", "", ["Kim"]),
    ("OR below AND: right", "kim OR putin AND summit", "Putin", "", None),
    ("OR below AND: both", "kim OR putin AND summit", "Putin summit", "", ["Putin", "summit"]),
    ("NOT above OR", "summit NOT kim OR putin", "summit Kim Putin", "", ["Putin"]),
    (
        "NEAR above AND",
        "kim NEAR/0 putin AND summit",
        "Kim Putin",
        "summit",
        ["Kim", "Putin", "summit"],
    ),
    # NEAR/n: at most n tokens between, either order, not overlapping
    ("NEAR/2 at 2", "kim NEAR/2 putin", "Kim a b Putin", "", ["Kim", "Putin"]),
    ("NEAR/2 at 3", "kim NEAR/2 putin", "Kim a b c Putin", "", None),
    ("NEAR either order", "kim NEAR/2 putin", "Putin a b Kim", "", ["Putin", "Kim"]),
    ("NEAR/0 adjacent", "kim NEAR/0 putin", "Kim - Putin", "", ["Kim", "Putin"]),
    ("NEAR/0 one between", "kim NEAR/0 putin", "Kim x Putin", "", None),
    (
        "NEAR counts from phrase end",
        '"north korea" NEAR/1 russia',
        "North Korea and Russia",
        "",
        ["North Korea", "Russia"],
    ),
    ("NEAR no overlap", '"north korea" NEAR/3 korea', "North Korea", "", None),
    ("NEAR needs two occurrences", "meth NEAR/3 meth", "Meth seized", "", None),
    ("NEAR two occurrences", "meth NEAR/3 meth", "Meth and meth", "", ["Meth", "meth"]),
    (
        "NEAR other occurrence",
        '"north korea" NEAR/3 korea',
        "North Korea, South Korea",
        "",
        ["North Korea", "Korea"],
    ),
    ("NEAR same word twice", "kim NEAR/1 kim", "Kim met Kim", "", ["Kim", "Kim"]),
    (
        "NEAR only participants",
        "kim NEAR/1 putin",
        "Kim met Putin",
        "much later Kim again",
        ["Kim", "Putin"],
    ),
    ("NEAR crosses title", "kim NEAR/0 putin", "Kim", "Putin", ["Kim", "Putin"]),
    (
        "NEAR OR-groups",
        "(kim OR xi) NEAR/1 (putin OR lavrov)",
        "Xi and Lavrov",
        "",
        ["Xi", "Lavrov"],
    ),
    ("NEAR wildcard", "sanction* NEAR/2 UN", "UN imposes sanctions", "", ["UN", "sanctions"]),
    # ONEAR/n: left before right
    ("ONEAR in order", "kim ONEAR/2 putin", "Kim met Putin", "", ["Kim", "Putin"]),
    ("ONEAR reversed", "kim ONEAR/2 putin", "Putin met Kim", "", None),
    # NEAR/S and NEAR/P
    (
        "NEAR/S inside",
        "kim NEAR/S putin",
        "T",
        "Kim met many aides and then Putin.",
        ["Kim", "Putin"],
    ),
    ("NEAR/S across", "kim NEAR/S putin", "T", "Kim met aides. Putin arrived.", None),
    ("NEAR/S no overlap", '"north korea" NEAR/S korea', "T", "North Korea.", None),
    (
        "NEAR/S other occurrence",
        '"north korea" NEAR/S korea',
        "T",
        "North Korea, South Korea.",
        ["North Korea", "Korea"],
    ),
    ("NEAR/S title apart", "kim NEAR/S putin", "Kim", "Putin arrived.", None),
    ("NEAR/S title alone", "kim NEAR/S putin", "Kim. Putin", "", ["Kim", "Putin"]),
    ("NEAR/S not across lines", "kim NEAR/S putin", "T", "Kim met\nPutin", None),
    (
        "NEAR/P across sentences",
        "kim NEAR/P putin",
        "T",
        "Kim met aides. Putin arrived.",
        ["Kim", "Putin"],
    ),
    ("NEAR/P across lines", "kim NEAR/P xi", "T", "Kim met aides.\nLater Xi came.", None),
    ("NEAR/P title apart", "kim NEAR/P putin", "Kim", "Putin", None),
    # title:
    ("title: in title", "title:putin", "Putin visits", "", ["Putin"]),
    ("title: only in body", "title:putin", "Summit", "Putin came", None),
    ("title: phrase", 'title:"north korea"', "North Korea talks", "", ["North Korea"]),
    ("title: NOT inside", "title:(putin NOT kim)", "Putin", "Kim", ["Putin"]),
    ("title: spans title only", "title:kim", "Kim", "Kim", ["Kim"]),
    ("title: with body term", "title:kim putin", "Kim", "Putin", ["Kim", "Putin"]),
    # source:
    ("source: same", "putin source:src", "Putin", "", ["Putin"]),
    ("source: any case", "putin source:SRC", "Putin", "", ["Putin"]),
    ("source: other", "putin source:other", "Putin", "", None),
    ("source: OR", "putin (source:a OR source:src)", "Putin", "", ["Putin"]),
    # entity:
    ("entity: name", "entity:matsegora", "Alexander Matsegora said", "", ["Alexander Matsegora"]),
    ("entity: alias", "entity:matsegora", "Ambassador Matsegora", "", ["Matsegora"]),
    (
        "entity: longest name",
        "entity:matsegora",
        "Aleksandr Matsegora",
        "",
        ["Aleksandr Matsegora"],
    ),
    ("entity: hyphen-insensitive", "entity:matsegora", "Park Byung Hwan", "", ["Park Byung Hwan"]),
    ("entity: absent", "entity:matsegora", "Lavrov", "", None),
    (
        "entity: romanised order",
        "entity:matsegora",
        "T",
        "Byung-hwan Park said",
        ["Byung-hwan Park"],
    ),
    (
        "entity: romanised joined",
        "entity:matsegora",
        "T",
        "Park Byunghwan said",
        ["Park Byunghwan"],
    ),
    ("entity: McCune-Reischauer", "entity:matsegora", "T", "Pak Pyong-hwan", ["Pak Pyong-hwan"]),
    (
        "entity: Revised Romanization",
        "entity:matsegora",
        "T",
        "Park Byeong-hwan",
        ["Park Byeong-hwan"],
    ),
    ("entity: Russian case", "entity:matsegora", "T", "встреча с Мацегорой", ["Мацегорой"]),
    ("entity: Russian genitive", "entity:matsegora", "T", "слова Мацегоры", ["Мацегоры"]),
    ("entity: Korean particle", "entity:matsegora", "T", "마체고라는 말했다", ["마체고라는"]),
    ("entity: Korean subject", "entity:matsegora", "T", "마체고라가 밝혔다", ["마체고라가"]),
    ("entity: Korean wrong particle", "entity:matsegora", "T", "마체고라이가", None),
    ("entity: Korean name with particle", "entity:kim", "김정은이 방문", "", ["김정은이"]),
    ("entity: Russian name, last word", "entity:kim", "T", "с Ким Чен Ыном", ["Ким Чен Ыном"]),
    ("entity: alias wildcard", "entity:lavrov", "T", "Lavrov's aide", ["Lavrov"]),
    ("entity: alias wildcard form", "entity:lavrov", "T", "Mrs Lavrova", ["Lavrova"]),
    ("entity: Russian full name", "entity:lavrov", "T", "Сергея Лаврова", ["Сергея Лаврова"]),
    # ~word: the word's inflected forms in the article's language
    ("~word", "~report", "T", "The panel reported", ["reported"]),
    ("~word plural", "~weapon", "Weapons shipped", "", ["Weapons"]),
    ("~word lemmatised", "~talks", "T", "They talked", ["talked"]),
    ("~word irregular", "~freeze", "T", "funds frozen in 2017", ["frozen"]),
    ("~word not derived", "~report", "T", "The reporter said", None),
    ("~word exact form too", "~report", "T", "a report", ["report"]),
    ("~phrase", '~"sanctions committee"', "T", "sanction committees met", ["sanction committees"]),
    ("~ in NEAR", "~export NEAR/3 ~weapon", "T", "exporting weapons", ["exporting", "weapons"]),
    ("~ in title:", "title:~visit", "Putin visited", "", ["visited"]),
    ("~word Russian", "~доклад", "T", "в докладе комитета", ["докладе"]),
    ("~word Korean particle", "~보고서", "T", "보고서를 발표했다", ["보고서를"]),
    ("~word Korean verb", "~수출", "T", "무기를 수출했다", ["수출했다"]),
    ("~phrase Korean", '~"제재 위원회"', "T", "제재 위원회는 밝혔다", ["제재 위원회는"]),
    ("~phrase Korean together", '~"제재 위원회"', "T", "제재위원회는 밝혔다", ["제재위원회는"]),
    (
        "entity: NEAR",
        "entity:matsegora NEAR/2 embassy",
        "Matsegora at the embassy",
        "",
        ["Matsegora", "embassy"],
    ),
]


@pytest.mark.parametrize(
    ("query", "title", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_evaluate(query: str, title: str, body: str, expected: list[str] | None) -> None:
    """Each form of the language matches what the contract says, reporting those spans."""
    assert spans(query, title, body) == expected


def test_spans_are_exact_offsets_into_article_text() -> None:
    """Spans are character offsets into title + "\\n\\n" + body."""
    text = TokenizedText.from_parts("Kim", "Kim Jong Un met Kim")
    assert evaluate(parse_query("kim"), text, "src") == (
        Match(0, 3, "Kim"),
        Match(5, 8, "Kim"),
        Match(21, 24, "Kim"),
    )


def test_phrase_span_runs_from_first_to_last_token() -> None:
    """A phrase occurrence is one span, punctuation between its tokens included."""
    text = TokenizedText.from_parts("T", "Said Park Byung-hwan.")
    assert evaluate(parse_query('"park byung hwan"'), text, "src") == (
        Match(8, 23, "Park Byung-hwan"),
    )


def test_spans_deduplicated_and_sorted() -> None:
    """A token matched by several terms is reported once, in text order."""
    text = TokenizedText.from_text("Putin met Kim")
    assert evaluate(parse_query("kim putin (kim OR putin)"), text, "src") == (
        Match(0, 5, "Putin"),
        Match(10, 13, "Kim"),
    )


def test_evaluate_on_plain_text() -> None:
    """Plain text (no title) works, and title: finds nothing there."""
    text = TokenizedText.from_text("Kim. Putin")
    assert evaluate(parse_query("kim NEAR/S putin"), text, "src") is None
    assert evaluate(parse_query("title:kim"), text, "src") is None
    assert evaluate(parse_query("kim NEAR/0 putin"), text, "src") is not None


def test_wildcard_minimum_is_enforced() -> None:
    """Two letters before '*' is a query error, not a match of everything."""
    with pytest.raises(QueryError):
        parse_query("vi*")


def test_not_near_is_a_query_error() -> None:
    """NOT binds tighter than NEAR, so `NOT a NEAR/2 b` has a NOT operand: an error."""
    with pytest.raises(QueryError) as raised:
        parse_query("NOT a NEAR/2 b")
    assert raised.value.column == 1


NOW = datetime(2024, 6, 19, tzinfo=UTC)


def article(title: str, body: str, source: str = "yonhap") -> Article:
    return Article(source, title, title, body, None, None, NOW)


def rule(
    rule_id: str, query: str, *, enabled: bool = True, sources: tuple[str, ...] = ()
) -> tuple[Rule, Query]:
    parsed = parse_query(query, ENTITIES)
    return Rule(rule_id, rule_id, query, (), sources=sources, enabled=enabled), parsed


def test_match_article_hits_by_rule_id_with_spans() -> None:
    """Every matching rule gives a Hit with its spans, ordered by rule id."""
    rules = [rule("b", "putin"), rule("a", "kim NEAR/S putin"), rule("c", "lavrov")]
    hits = match_article(rules, article("Kim meets Putin", "Talks began."))
    assert [(h.rule.id, [m.text for m in h.matches]) for h in hits] == [
        ("a", ["Kim", "Putin"]),
        ("b", ["Putin"]),
    ]


def test_match_article_skips_disabled_rules() -> None:
    """A rule with enabled: false never hits."""
    hits = match_article([rule("a", "putin", enabled=False)], article("Putin", ""))
    assert hits == []


def test_match_article_honours_rule_sources() -> None:
    """A rule's sources filter admits only articles from those sources."""
    rules = [
        rule("only-other", "putin", sources=("other",)),
        rule("mine", "putin", sources=("yonhap",)),
    ]
    hits = match_article(rules, article("Putin", ""))
    assert [h.rule.id for h in hits] == ["mine"]


def test_matcher_pairs_rules_with_their_queries() -> None:
    """Matcher takes the config's rules and rule-id -> query map and matches articles."""
    first, query = rule("r1", "entity:matsegora")
    matcher = Matcher([first], {"r1": query})
    assert [h.rule.id for h in matcher.match(article("Matsegora speaks", ""))] == ["r1"]


POOL = [
    "putin", "kim NEAR/2 putin", "kim ONEAR/1 putin", "title:kim", "summit* NOT lavrov",
    '"north korea" NEAR/S russia', "putin source:yonhap", "entity:matsegora OR xi",
    "kim NEAR/P (putin OR xi)", "=US", "(kim OR xi) putin",
]  # fmt: skip
RULES = [rule(f"r{i}", q) for i, q in enumerate(POOL)]
TEXTS = ["Kim met Putin", "North Korea and Russia. Summit", "US and us", "Xi\nPutin", "Matsegora"]


@settings(max_examples=50, deadline=None)
@given(
    st.permutations(RULES),
    st.sampled_from(TEXTS),
    st.lists(st.sampled_from(TEXTS), max_size=3),
)
def test_match_article_is_independent_of_rule_order(
    rules: list[tuple[Rule, Query]], title: str, body: list[str]
) -> None:
    """Shuffling the rules never changes the hits."""
    item = article(title, "\n".join(body))
    assert match_article(rules, item) == match_article(RULES, item)


WORDS = st.lists(st.sampled_from(["a", "b", "c", "x"]), max_size=14)


def brute_near(words: list[str], left: list[str], right: list[str], n: int, ordered: bool) -> set:
    """The token spans taking part in a NEAR pair, by trying every pair."""

    def occurrences(phrase: list[str]) -> list[tuple[int, int]]:
        size = len(phrase)
        return [(i, i + size - 1) for i in range(len(words)) if words[i : i + size] == phrase]

    used = set()
    for a in occurrences(left):
        for b in occurrences(right):
            after = b[0] > a[1] and b[0] - a[1] - 1 <= n
            before = a[0] > b[1] and a[0] - b[1] - 1 <= n
            if after or (before and not ordered):
                used |= {a, b}
    return used


@settings(max_examples=300)
@given(
    WORDS,
    st.sampled_from([["a"], ["a", "b"], ["b", "a", "c"]]),
    st.sampled_from([["b"], ["a"], ["c", "x"]]),
    st.integers(0, 4),
    st.booleans(),
)
def test_near_agrees_with_trying_every_pair(
    words: list[str], left: list[str], right: list[str], n: int, ordered: bool
) -> None:
    """The bisecting NEAR/n finds exactly the occurrences a quadratic search finds."""
    text = TokenizedText.from_text(" ".join(words))
    operator = f"{'O' if ordered else ''}NEAR/{n}"
    query = parse_query(f'"{" ".join(left)}" {operator} "{" ".join(right)}"')
    expected = brute_near(words, left, right, n, ordered)
    found = evaluate(query, text, "src")
    tokens = text.tokens
    wanted = sorted({(tokens[f].start, tokens[last].end) for f, last in expected})
    assert [(m.start, m.end) for m in found or ()] == wanted


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "x", ".", "\n"]), max_size=14),
    st.sampled_from([["a"], ["a", "b"]]),
    st.sampled_from([["b"], ["a"], ["b", "c"]]),
    st.sampled_from(["S", "P"]),
)
def test_near_unit_agrees_with_trying_every_pair(
    words: list[str], left: list[str], right: list[str], kind: str
) -> None:
    """NEAR/S and NEAR/P find exactly the non-overlapping pairs inside one unit."""
    text = TokenizedText.from_text(" ".join(words))
    units = text.sentences if kind == "S" else text.paragraphs
    tokens = [w for w in words if w not in (".", "\n")]

    def occurrences(phrase: list[str]) -> list[tuple[int, int]]:
        size = len(phrase)
        found = [(i, i + size - 1) for i in range(len(tokens)) if tokens[i : i + size] == phrase]
        return [(f, last) for f, last in found if units[f] == units[last]]

    used = set()
    for a in occurrences(left):
        for b in occurrences(right):
            if units[a[0]] == units[b[0]] and (b[0] > a[1] or a[0] > b[1]):
                used |= {a, b}
    query = parse_query(f'"{" ".join(left)}" NEAR/{kind} "{" ".join(right)}"')
    found = evaluate(query, text, "src")
    wanted = sorted({(text.tokens[f].start, text.tokens[last].end) for f, last in used})
    assert [(m.start, m.end) for m in found or ()] == wanted


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*POOL, "kim OR NOT putin", "x NOT NOT y"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(TEXTS), max_size=3),
)
def test_a_true_query_always_reports_a_span(queries: list[str], body: list[str]) -> None:
    """Whenever a valid query is true, it has at least one span to show."""
    try:
        query = parse_query(" OR ".join(f"({q})" for q in queries), ENTITIES)
    except QueryError:
        return
    found = evaluate(query, TokenizedText.from_parts("Kim", "\n".join(body)), "yonhap")
    assert found is None or len(found) > 0


def test_forms_apply_in_the_articles_language_only() -> None:
    """~report finds "reported" in an English story, not in one its source declares German."""
    rule = Rule("r", "r", "~report", ())
    matcher = Matcher([rule], {"r": parse_query("~report")}, languages={"de-wire": "de"})
    text = ("Bericht", "Der Ausschuss reported nichts")
    assert matcher.match(Article("wire", "k", *text, None, None, NOW))
    assert not matcher.match(Article("de-wire", "k", *text, None, None, NOW))
    exact = Matcher([rule], {"r": parse_query("reported")}, languages={"de-wire": "de"})
    assert exact.match(Article("de-wire", "k", *text, None, None, NOW))


def test_inflected_mode_keeps_case_sensitive_and_wildcard_words_exact() -> None:
    """In forms: inflected, =word and word* match as written while bare words inflect."""
    query = parse_query("=UN AND sanction* AND report", forms="inflected")
    found = evaluate(query, TokenizedText.from_parts("T", "The UN sanctions panel reported"), "s")
    assert found is not None and [m.text for m in found] == ["UN", "sanctions", "reported"]
    lower = TokenizedText.from_parts("T", "the un sanctions panel reported")
    assert evaluate(query, lower, "s") is None  # =UN stays case-sensitive
