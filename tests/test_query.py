"""The query parser (contract 2): a case per row of the grammar, every error with its column."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domain import FORMS_MODES, Entity
from monitor.errors import QueryError
from monitor.query import (
    And,
    EntityRef,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Source,
    Term,
    Title,
    parse_query,
)

ENTITIES = {
    "matsegora": Entity(
        "matsegora", "Alexander Matsegora", ("Matsegora", "Aleksandr Matsegora", "MATSEGORA")
    ),
    "dashes": Entity("dashes", "--", ()),
}
MATSEGORA = EntityRef(
    "matsegora",
    (
        Phrase((Term("alexander"), Term("matsegora"))),
        Phrase((Term("matsegora"),)),
        Phrase((Term("aleksandr"), Term("matsegora"))),
    ),
)


def t(word: str, prefix: bool = False, case_sensitive: bool = False) -> Term:
    return Term(word, prefix, case_sensitive)


def p(*words: str, case_sensitive: bool = False) -> Phrase:
    return Phrase(tuple(Term(w, case_sensitive=case_sensitive) for w in words))


def near(left: Node, right: Node, kind: str = "n", distance: int | None = None) -> Near:
    return Near(left, right, kind, distance)  # type: ignore[arg-type]


VALID = [
    # word, accents and case folded
    ("putin", t("putin")),
    ("Putin", t("putin")),
    ("São", t("sao")),
    # inner punctuation makes a phrase of tokens
    ("Byung-hwan", p("byung", "hwan")),
    ("U.S.", p("u", "s")),
    ("Putin's", p("putin", "s")),
    ("10:30", p("10", "30")),
    # wildcard
    ("visit*", t("visit", prefix=True)),
    ("Séou*", t("seou", prefix=True)),
    # phrases
    ('"North Korea"', p("north", "korea")),
    ('"Park Byung-hwan"', p("park", "byung", "hwan")),
    ('"putin"', t("putin")),
    ('"visit*"', t("visit")),
    # case-sensitive
    ("=US", t("US", case_sensitive=True)),
    ('="New York"', p("New", "York", case_sensitive=True)),
    ("=Kim*", t("Kim", prefix=True, case_sensitive=True)),
    ("=São", t("Sao", case_sensitive=True)),
    # implicit and explicit AND, OR, lowercase words
    ("kim putin", And((t("kim"), t("putin")))),
    ("kim AND putin", And((t("kim"), t("putin")))),
    ("kim OR putin", Or((t("kim"), t("putin")))),
    ("kim and putin", And((t("kim"), t("and"), t("putin")))),
    ("kim or NEARBY near/3", And((t("kim"), t("or"), t("nearby"), p("near", "3")))),
    ("kim AND (putin AND xi)", And((t("kim"), t("putin"), t("xi")))),
    # precedence NOT > NEAR > AND > OR
    ("a OR b AND c", Or((t("a"), And((t("b"), t("c")))))),
    ("a OR b c", Or((t("a"), And((t("b"), t("c")))))),
    ("(a OR b) c", And((Or((t("a"), t("b"))), t("c")))),
    ("a NOT b", And((t("a"), Not(t("b"))))),
    ("a AND NOT b", And((t("a"), Not(t("b"))))),
    ("NOT b a", And((Not(t("b")), t("a")))),
    ("a NOT (b OR c)", And((t("a"), Not(Or((t("b"), t("c"))))))),
    ("a NEAR/2 b AND c", And((near(t("a"), t("b"), distance=2), t("c")))),
    ("a b NEAR/2 c", And((t("a"), near(t("b"), t("c"), distance=2)))),
    ("a OR b NEAR/2 c", Or((t("a"), near(t("b"), t("c"), distance=2)))),
    # NEAR forms
    ("a NEAR/0 b", near(t("a"), t("b"), distance=0)),
    ("a ONEAR/3 b", Near(t("a"), t("b"), "n", 3, ordered=True)),
    ("a NEAR/S b", near(t("a"), t("b"), "S")),
    ("a NEAR/P b", near(t("a"), t("b"), "P")),
    (
        '(a OR b) NEAR/2 (c OR (d OR "e f"))',
        near(Or((t("a"), t("b"))), Or((t("c"), t("d"), p("e", "f"))), distance=2),
    ),
    ("entity:matsegora NEAR/3 (embassy)", near(MATSEGORA, t("embassy"), distance=3)),
    # fields
    ("title:putin", Title(t("putin"))),
    ('title:"North Korea"', Title(p("north", "korea"))),
    ("title:(a OR b)", Title(Or((t("a"), t("b"))))),
    ("title:=US", Title(t("US", case_sensitive=True))),
    ("title:entity:matsegora", Title(MATSEGORA)),
    ("TITLE:putin", Title(t("putin"))),
    ("putin source:yonhap-nk", And((t("putin"), Source("yonhap-nk")))),
    ('putin source:"My Feed"', And((t("putin"), Source("My Feed")))),
    ("entity:matsegora", MATSEGORA),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[v[0] for v in VALID])
def test_parse_valid(text: str, expected: Node) -> None:
    """Each form of the language parses to its tree."""
    query = parse_query(text, ENTITIES)
    assert query.root == expected
    assert query.text == text


ERRORS = [
    ("", 1, "empty query"),
    ("   ", 1, "empty query"),
    ("(a", 3, "expected ')'"),
    ("(a OR (b c)", 12, "expected ')'"),
    ("a)", 2, "unexpected ')'"),
    ("()", 2, "found ')'"),
    ("a AND", 6, "found the end of the query"),
    ("a OR OR b", 6, "found 'OR'"),
    ("AND a", 1, "found 'AND'"),
    ('"north korea', 1, "unterminated phrase"),
    ('a "b', 3, "unterminated phrase"),
    ('""', 1, "empty phrase"),
    ('" - "', 1, "empty phrase"),
    ("&", 1, "'&' has no letters or digits"),
    ("ab*", 1, "at least 3 letters before '*'"),
    ("*", 1, "no letters or digits"),
    ("a*b", 2, "'*' is only allowed at the end of a word"),
    ("visit**", 6, "'*' is only allowed at the end of a word"),
    ("U.S*", 1, "'*' must end a single word"),
    ("=", 2, "expected a word or phrase after '='"),
    ("= a", 2, "expected a word or phrase after '='"),
    ("=(a)", 2, "expected a word or phrase after '='"),
    ("putin foo:x", 7, "unknown field 'foo'"),
    ("title: putin", 7, "expected a word, phrase, group or entity after 'title:'"),
    ("title:NOT a", 7, "after 'title:'"),
    ("a title:source:x", 9, "title: cannot contain source:"),
    ("a source:", 10, "expected a source name after 'source:'"),
    ('a source:""', 10, "empty source name"),
    ("entity:", 8, "expected an entity id after 'entity:'"),
    ("entity:nobody", 8, "entity 'nobody' is not defined"),
    ("entity:dashes", 8, "entity 'dashes' has no name with letters or digits"),
    ("a NEAR b", 3, "NEAR needs /n, /S or /P"),
    ("a NEAR/x b", 3, "NEAR needs /n, /S or /P"),
    ("a NEAR/s b", 3, "NEAR needs /n, /S or /P"),
    ("a ONEAR/S b", 3, "ONEAR needs /n"),
    ("a NEAR/100001 b", 3, "at most 100000"),
    ("a NEAR/" + "9" * 5000 + " b", 3, "at most 100000"),
    ("NOT a NEAR/2 b", 1, "NEAR operands must be"),
    ("a NEAR/2 NOT b", 10, "NEAR operands must be"),
    ("(a AND b) NEAR/2 c", 1, "NEAR operands must be"),
    ("a NEAR/2 (b OR (c d))", 16, "NEAR operands must be"),
    ("title:a NEAR/2 b", 1, "NEAR operands must be"),
    ("b NEAR/S source:x", 10, "NEAR operands must be"),
    ("a NEAR/2 b NEAR/2 c", 12, "a NEAR cannot be an operand of another NEAR"),
    ("(a NEAR/2 b) NEAR/2 c", 14, "a NEAR cannot be an operand of another NEAR"),
    ("NOT x", 1, "no positive term"),
    ("a OR NOT b", 6, "no positive term"),
    ("source:x", 1, "no positive term"),
    ("NOT a AND NOT b", 1, "no positive term"),
    ("NOT a source:x", 1, "no positive term"),
    ("title:(NOT a)", 7, "no positive term"),
    ("NOT NOT a", 1, "no positive term"),
    ("(" * 101 + "a" + ")" * 101, 101, "nests deeper than 100 levels"),
    ("NOT " * 101 + "a", 401, "nests deeper than 100 levels"),
    ("a " * 5001, 10001, "longer than 10000 characters"),
    # ~ takes a word or a phrase, and no wildcard
    ("~", 2, "expected a word or phrase after '~'"),
    ("~ report", 2, "expected a word or phrase after '~'"),
    ("~(a OR b)", 2, "expected a word or phrase after '~'"),
    ("~=report", 2, "expected a word or phrase after '~'"),
    ("=~report", 2, "expected a word or phrase after '='"),
    ("~visit*", 2, "'~' and '*' do not combine"),
    ("~entity:matsegora", 2, "expected a word or phrase after '~'"),
]


@pytest.mark.parametrize(("text", "column", "message"), ERRORS, ids=[e[0][:30] for e in ERRORS])
def test_parse_error(text: str, column: int, message: str) -> None:
    """Every invalid query raises QueryError naming the column."""
    with pytest.raises(QueryError) as raised:
        parse_query(text, ENTITIES)
    assert raised.value.column == column
    assert message in raised.value.message


def forms_of(node: Node) -> set[str] | None:
    """The forms a parsed term carries, None when it is exact."""
    assert isinstance(node, Term)
    return None if node.forms is None else set(node.forms.words)


def test_tilde_word_carries_its_forms() -> None:
    """~report is one term whose forms are report, reports, reported, reporting."""
    assert forms_of(parse_query("~report").root) == {"report", "reports", "reported", "reporting"}
    assert forms_of(parse_query("report").root) is None


def test_tilde_inside_a_word_is_a_separator() -> None:
    """Only where a lexeme starts is ~ an operator: in a word it separates tokens as before."""
    assert parse_query("a~b").root == p("a", "b")


def test_tilde_phrase_gives_every_word_its_forms() -> None:
    """~"sanctions committee" is a phrase whose words each match their forms."""
    root = parse_query('~"sanctions committee"').root
    assert isinstance(root, Phrase)
    assert [sorted(forms_of(w) or ()) for w in root.words] == [
        ["sanction", "sanctioned", "sanctioning", "sanctions"],
        ["committee", "committees"],
    ]


def test_inflected_mode_turns_bare_words_into_forms_only() -> None:
    """forms="inflected": bare words and phrases inflect; =word, word* and entities do not."""
    root = parse_query('report "arms sales" =US visit* entity:matsegora', ENTITIES,
                       forms="inflected").root  # fmt: skip
    assert isinstance(root, And)
    report, sales, us, visit, entity = root.children
    assert forms_of(report) == {"report", "reports", "reported", "reporting"}
    assert isinstance(sales, Phrase) and all(w.forms for w in sales.words)
    assert forms_of(us) is None and forms_of(visit) is None
    assert entity == MATSEGORA
    assert parse_query("report", forms="exact").root == t("report")


def test_word_without_other_forms_stays_a_plain_term() -> None:
    """A word with no other forms (a short unknown word) parses to the same exact term."""
    assert parse_query("~xq").root == t("xq")


def test_korean_phrase_also_matches_its_words_written_together() -> None:
    """~"제재 위원회" is the phrase or the compound 제재위원회, each with its particles."""
    root = parse_query('~"제재 위원회"').root
    assert isinstance(root, Or)
    phrase, together = root.children
    assert isinstance(phrase, Phrase) and isinstance(together, Term)
    assert together.forms is not None and together.word in together.forms.words


def test_deep_but_allowed_nesting_parses() -> None:
    """A hundred levels of parentheses is within the limit and parses."""
    assert parse_query("(" * 100 + "a" + ")" * 100).root == t("a")


def test_nodes_carry_columns_for_messages() -> None:
    """Nodes remember where they start, without it affecting equality."""
    root = parse_query("kim  OR  (putin xi)").root
    assert isinstance(root, Or)
    assert [child.column for child in root.children] == [1, 10]


@pytest.mark.parametrize(
    ("text", "sentences", "paragraphs"),
    [
        ("a b", False, False),
        ("a NEAR/3 b", False, False),
        ("a NEAR/S b", True, False),
        ("x (a NEAR/P b)", False, True),
        ("title:(a NEAR/S b) OR c NEAR/P d", True, True),
    ],
)
def test_query_says_what_nlp_it_needs(text: str, sentences: bool, paragraphs: bool) -> None:
    """needs_sentences / needs_paragraphs reflect NEAR/S and NEAR/P anywhere in the tree."""
    query = parse_query(text)
    assert (query.needs_sentences, query.needs_paragraphs) == (sentences, paragraphs)


# The word-form lexicons load on first use: load them before any Hypothesis deadline counts.
parse_query('~report ~доклад ~보고 "Ким Чен Ын"')


def _outcome(text: str) -> None:
    for forms in FORMS_MODES:
        try:
            parse_query(text, ENTITIES, forms=forms)
        except QueryError as e:
            assert 1 <= e.column <= len(text) + 1


@settings(max_examples=500)
@given(st.text())
def test_parser_never_crashes_on_any_text(text: str) -> None:
    """For any text, parse_query returns a Query or raises QueryError: nothing else."""
    _outcome(text)


PIECES = [
    "a", "kim", "~", "~report", '~"north korea"', "visit*", "ab*", "AND", "OR", "NOT", "(", ")",
    '"', '"north korea"', "=", "=US",
    "NEAR/2", "ONEAR/1", "NEAR/S", "NEAR/P", "NEAR", "title:", "source:", "source:x",
    "entity:matsegora", "entity:", "foo:", "*", "-", "é", " ",
]  # fmt: skip


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(PIECES), max_size=20), st.lists(st.booleans(), max_size=20))
def test_parser_never_crashes_on_query_like_text(pieces: list[str], spaces: list[bool]) -> None:
    """Query-shaped garbage also yields a Query or a QueryError with a column in range."""
    glue = [" " if s else "" for s in spaces] + [" "] * len(pieces)
    _outcome("".join(piece + sep for piece, sep in zip(pieces, glue, strict=False)))
