"""Word tokens (contract 2: letters and digits, everything else separates) and TokenizedText."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domain import Article
from monitor.tokens import _LINE_BREAK, TokenizedText, _Sentencizer, fold, tokenize


def folded(text: str) -> list[str]:
    return [t.folded for t in tokenize(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Park Byung-hwan", ["park", "byung", "hwan"]),
        ("Park Byung Hwan", ["park", "byung", "hwan"]),
        ("Putin's visit", ["putin", "s", "visit"]),
        ("the U.S. envoy", ["the", "u", "s", "envoy"]),
        ("snake_case", ["snake", "case"]),
        ("2024-06-19, 10:30", ["2024", "06", "19", "10", "30"]),
        ("São Paulo", ["sao", "paulo"]),
        (unicodedata.normalize("NFD", "São Paulo"), ["sao", "paulo"]),
        ("STRASSE Straße", ["strasse", "strasse"]),
        ("Ｐｕｔｉｎ", ["putin"]),
        ("北朝鮮 2024年", ["北朝鮮", "2024年"]),
        ("\u0301abc", ["abc"]),
        ("...  --  '", []),
    ],
)
def test_tokenize_folded(text: str, expected: list[str]) -> None:
    """Tokens are maximal letter/digit runs, folded for case and accents."""
    assert folded(text) == expected


def test_tokenize_keeps_indic_vowel_signs() -> None:
    """Marks stay inside a word, and vowel signs (combining class 0) survive folding."""
    tokens = tokenize("क्षेत्र में")
    assert len(tokens) == 2
    assert tokens[0].folded != tokenize("क्षत्र")[0].folded


def test_tokenize_spans_are_offsets_into_the_original() -> None:
    """start/end index the original string, combining marks included."""
    text = "Sa\u0303o Paulo's"
    tokens = tokenize(text)
    assert [(t.start, t.end) for t in tokens] == [(0, 4), (5, 10), (11, 12)]
    assert text[tokens[0].start : tokens[0].end] == "Sa\u0303o"


def test_tokenize_cased_keeps_case_drops_accents() -> None:
    """``cased`` is accent-free with case kept; ``folded`` is its casefold."""
    token = tokenize("Éric")[0]
    assert (token.cased, token.folded) == ("Eric", "eric")


def test_fold_matches_token_folding() -> None:
    """fold() gives what a token of the same word holds."""
    assert fold("São") == tokenize("São")[0].folded == "sao"


@given(st.text())
def test_tokens_are_ordered_nonempty_and_stable(text: str) -> None:
    """Tokens are in order, non-empty, and re-tokenise to themselves."""
    tokens = tokenize(text)
    ends = [0] + [t.end for t in tokens]
    for token, previous_end in zip(tokens, ends, strict=False):
        assert previous_end <= token.start < token.end
        assert token.folded and token.folded == token.cased.casefold()
        again = tokenize(text[token.start : token.end])
        assert [t.folded for t in again] == [token.folded]


def article(title: str, body: str) -> Article:
    now = datetime(2024, 6, 19, tzinfo=UTC)
    return Article("src", "k", title, body, None, None, now)


def test_from_article_text_and_title_count() -> None:
    """The text is Article.text and the title's tokens come first."""
    item = article("Kim meets Putin", "Talks in Pyongyang.")
    text = TokenizedText.from_article(item)
    assert text.text == item.text
    assert text.title_count == 3
    assert text.folded == ["kim", "meets", "putin", "talks", "in", "pyongyang"]


def test_from_parts_without_body_is_the_title() -> None:
    """With no body the text is the title alone, as Article.text has it."""
    text = TokenizedText.from_parts("Kim meets Putin", "")
    assert text.text == "Kim meets Putin" and text.title_count == 3


def test_from_text_has_no_title() -> None:
    """Plain text is all body."""
    text = TokenizedText.from_text("Kim. Putin.")
    assert text.title_count == 0 and text.sentences == [1, 2]


def test_positions_index_sorted() -> None:
    """The folded-token index lists every position in order."""
    text = TokenizedText.from_parts("Kim", "kim and KIM")
    assert text.positions["kim"] == [0, 1, 3]


def test_paragraphs_split_at_every_line_break() -> None:
    """The title is paragraph 0; every line break starts a new paragraph."""
    text = TokenizedText.from_parts("T t", "a b\nc\r\nd e\n\nf")
    numbers = text.paragraphs
    assert numbers[:2] == [0, 0]
    groups = [numbers[2:4], numbers[4:5], numbers[5:7], numbers[7:]]
    assert all(len(set(g)) == 1 for g in groups)
    assert len({g[0] for g in groups} | {0}) == 5


def test_sentences_title_is_its_own_and_spacy_splits_body() -> None:
    """The title is sentence 0; the body is split by the sentencizer (not at "U.S.")."""
    text = TokenizedText.from_parts("Kim. Putin", "The U.S. envoy came. Talks began!")
    numbers = text.sentences
    assert numbers[:2] == [0, 0]
    body = numbers[2:]
    assert body[:5] == [body[0]] * 5  # "The U S envoy came" is one sentence
    assert body[5:] == [body[5]] * 2 and body[5] != body[0]


def test_sentences_never_cross_paragraphs() -> None:
    """A line break ends the sentence even without punctuation."""
    numbers = TokenizedText.from_parts("T", "Kim met\nPutin today").sentences
    assert numbers[1] == numbers[2] != numbers[3] == numbers[4]


def test_sentences_and_paragraphs_are_lazy() -> None:
    """Nothing is split until a query asks."""
    text = TokenizedText.from_parts("T", "Kim met. Putin")
    assert "sentences" not in vars(text) and "paragraphs" not in vars(text)
    assert text.sentences
    assert "sentences" in vars(text)


def test_mark_offsets_are_remembered_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk is tokenised once; the memory of chunks is emptied when it is full."""
    sentencizer = _Sentencizer()
    monkeypatch.setattr(_Sentencizer, "CHUNKS", 2)
    assert sentencizer.mark_offsets("said.") == (4,)
    assert sentencizer.mark_offsets("U.S.") == ()
    docs = sentencizer._docs
    assert sentencizer.mark_offsets("said.") == (4,) and sentencizer._docs == docs
    sentencizer.mark_offsets("week!")
    assert len(sentencizer._offsets) == 1


def test_sentencizer_is_rebuilt_once_its_strings_grow() -> None:
    """The spaCy pipeline is replaced once it has learnt ``max_new_strings`` new strings,
    however they came (whole texts or chunks), bounding its StringStore."""
    sentencizer = _Sentencizer(max_new_strings=5)
    assert sentencizer.starts("One. Two.") == [0, 5]
    first = sentencizer._nlp
    sentencizer.starts("One.")  # nothing new: the same pipeline
    assert sentencizer._nlp is first
    sentencizer.mark_offsets("alpha.beta.gamma.")
    sentencizer.starts("Delta epsilon zeta eta theta.")
    assert sentencizer.starts("Four. Five.") == [0, 6]
    assert sentencizer._nlp is not first
    assert len(sentencizer._nlp.vocab.strings) - sentencizer._base_strings < 5 + 8


@given(st.text(st.characters(max_codepoint=127), max_size=60), st.integers(0, 60))
def test_ascii_fast_path_agrees_with_the_regex_scan(text: str, title_end: int) -> None:
    """ASCII text tokenised by translate + split gives the regex scan's tokens and title."""
    fast = TokenizedText(text, title_end)
    tokens = tokenize(text)
    assert fast.starts == [t.start for t in tokens]
    assert fast.ends == [t.end for t in tokens]
    assert fast.cased == [t.cased for t in tokens]
    assert fast.folded == [t.folded for t in tokens]
    assert fast.title_count == sum(1 for t in tokens if t.end <= title_end)


@given(st.lists(st.sampled_from(["kim", "Kim", "putin", "s"]), max_size=12), st.text(max_size=3))
def test_lazy_positions_list_every_occurrence(words: list[str], word: str) -> None:
    """Positions built on lookup equal a full scan, and an absent word has none."""
    text = TokenizedText.from_text(" ".join(words))
    for key in [*text.folded, word]:
        assert text.positions[key] == [i for i, w in enumerate(text.folded) if w == key]
    assert text.positions.keys() == set(text.folded)


PIECES = ["Kim", "met", "Putin", ".", "!", "?", "...", '"', "U.S.", "Mr.", "(", ")", " ", "  ",
          "said.", "Kim.", "a.m.", "etc.", "e.g.", "3.5", "Jan.", "U.K.", ".)", '."', "?!", "!!",
          "example.com.", "'s", "-", "\t", "\xa0", "。", "।", "？", "Kim。Putin", "x.y",
          "..Kim"]  # fmt: skip
BREAKS = ["\n", "\r\n", "\n\n", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029", "\n "]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES + BREAKS), max_size=30),
    st.sampled_from(["", "T. t"]),
    st.sampled_from([" ", ""]),
)
def test_sentence_units_split_as_spacy_splits_the_whole_text(
    pieces: list[str], title: str, glue: str
) -> None:
    """Sentence ids from mark tokens per chunk group tokens exactly as spaCy's whole-text split."""
    body = glue.join(pieces)
    text = TokenizedText.from_parts(title, body) if title else TokenizedText.from_text(body)
    whole, lazy = text.sentences, text.sentence_units
    pairs = [(i, j) for i in range(len(text)) for j in range(i, len(text))]
    assert [whole[i] == whole[j] for i, j in pairs] == [lazy[i] == lazy[j] for i, j in pairs]


TEXT_PIECES = ["Kim", "kim", "KIM", "Putin", "summit", "summits", "São", "Paulo", "U.S.", "-", ",",
               " ", "  ", "\n", "\r\n", "\u2028", "'s", "北朝鮮", "2024"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TEXT_PIECES), max_size=25), st.integers(0, 30))
def test_spans_and_units_per_token_agree_with_the_whole_lists(pieces: list[str], cut: int) -> None:
    """start_of, end_of, span_of and paragraph_of give what the eager per-token lists give."""
    raw = " ".join(pieces)
    text = TokenizedText(raw, min(cut, len(raw)), min(cut, len(raw)))
    reference = TokenizedText(raw, min(cut, len(raw)), min(cut, len(raw)))
    starts, ends, paragraphs = reference.starts, reference.ends, reference.paragraphs
    for i in reversed(range(len(text))):  # any order
        assert (text.start_of(i), text.end_of(i)) == (starts[i], ends[i])
        assert text.paragraph_of(i) == paragraphs[i]
        assert text.span_of((i, len(text) - 1)) == (starts[i], ends[-1])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(TEXT_PIECES), max_size=25),
    st.lists(st.sampled_from(["kim", "summit", "sao", "x", "2024", "北朝鮮"]), max_size=4),
)
def test_prefetched_positions_equal_lazy_scans(pieces: list[str], words: list[str]) -> None:
    """Prefetching many words at once finds exactly the positions one scan per word finds."""
    text = TokenizedText.from_text(" ".join(pieces))
    text.positions.prefetch(words)
    fresh = TokenizedText.from_text(" ".join(pieces))
    for word in [*words, *text.folded]:
        assert text.positions[word] == fresh.positions[word]


@given(st.lists(st.sampled_from(TEXT_PIECES), max_size=25), st.sampled_from(["sum", "kim", "pau"]))
def test_words_starting_a_prefix(pieces: list[str], prefix: str) -> None:
    """The words a wildcard expands to are the distinct tokens starting with its stem."""
    text = TokenizedText.from_text(" ".join(pieces))
    expected = {w for w in text.folded if w.startswith(prefix)}
    for _ in range(5):  # the scans, then the sorted words, on non-ASCII text
        assert set(text.words_starting(prefix)) == expected
        text._starting.clear()


@given(st.lists(st.sampled_from(["a", " ", "\n", "\r", "\v", "\x1c", "\u2028", "b"]), max_size=20))
def test_line_breaks_fast_path_agrees_with_the_pattern(pieces: list[str]) -> None:
    """Only-"\\n" text is searched with str.find; the result is the character-class scan's."""
    text = TokenizedText.from_parts("T", "".join(pieces))
    assert text.line_breaks == [m.start() for m in _LINE_BREAK.finditer(text.text, text.body_start)]
