"""Key costs from measured word frequencies (monitor.rarity), on wordfreq's real lists."""

from __future__ import annotations

import pytest
import wordfreq

from monitor.presearch import required_keys
from monitor.query import parse_query
from monitor.rarity import (
    FLOOR,
    DocumentFrequencies,
    Rarity,
    chance,
    document_frequencies,
    word_table,
)
from monitor.tokens import fold

RARITY = Rarity()


def word(text: str, rarity: Rarity = RARITY) -> float:
    return rarity.cost(frozenset({(False, fold(text))}))


def prefix(text: str, rarity: Rarity = RARITY) -> float:
    return rarity.cost(frozenset({(True, fold(text))}))


@pytest.mark.parametrize(
    ("common", "less_common", "rare"),
    [
        ("the", "government", "Matsegora"),
        ("и", "правительство", "Мацегора"),
        ("정부", "대사관", "마체고라"),
    ],
    ids=["en", "ru", "ko"],
)
def test_common_words_cost_more_than_rare_ones(common: str, less_common: str, rare: str) -> None:
    """In each language, a commoner word is expected in more articles."""
    assert word(common) > word(less_common) > word(rare) > 0


def test_long_common_news_words_cost_more_than_a_rare_surname() -> None:
    """'delegation' and 'committee' are long but common; a rare surname is rare."""
    for common in ("delegation", "committee", "shipments", "Vladivostok"):
        assert word(common) > 10 * word("Matsegora"), common


def test_a_word_missing_from_the_list_costs_the_floor() -> None:
    """A name wordfreq never saw is rare, not free: the large lists' cutoff."""
    assert word("Kovnestar") == pytest.approx(chance(FLOOR))


def test_among_unlisted_words_the_shorter_costs_more() -> None:
    """Words no list holds do not tie: an AND of two such names keys on the longer one."""
    assert word("Vagen") > word("Tarhwaya")
    found = required_keys(parse_query('"Vagen Tarhwaya"').root)
    assert found == {(False, "tarhwaya")}


def test_a_prefix_costs_at_least_its_commonest_word() -> None:
    """A wildcard selects every word it starts, so it costs at least the commonest of them."""
    for stem, words in [("sanction", ("sanctions", "sanctioned")), ("minist", ("minister",))]:
        assert all(prefix(stem) >= word(w) for w in words)
    assert prefix("minist") > word("ministry") + word("minister") - 0.01


def test_words_that_fold_together_are_summed() -> None:
    """Our keys are folded (accents gone, й -> и): the table adds up what folds together."""
    table = word_table("ru")
    assert table is not None
    lists = {w: wordfreq.word_frequency(w, "ru") for w in ("мой", "мои")}
    assert table.word(fold("мой"))[1] == pytest.approx(sum(lists.values()), rel=0.02)


def test_a_korean_word_costs_its_listed_stem() -> None:
    """wordfreq counts Korean morphemes: 북한이 (북한 + a particle) costs 북한, shared once."""
    assert word("북한이") == pytest.approx(word("북한"))
    forms = frozenset((False, fold(w)) for w in ("북한이", "북한은", "북한의"))
    assert RARITY.cost(forms) == pytest.approx(word("북한"))


def test_a_declared_language_adds_its_list() -> None:
    """A source in German makes a Latin word cost what German gives it, when that is more."""
    assert word("und", Rarity(["de"])) > 10 * word("und")
    assert word("the", Rarity(["de"])) == pytest.approx(word("the"))


def test_stored_article_frequencies_move_a_keys_cost() -> None:
    """A beat's own word, in most stored articles, costs more than wordfreq alone says; a
    word wordfreq calls common but the store never sees costs less."""
    stored = document_frequencies(
        ("Title", f"Pyongyang said on day {i}." if i % 2 else "Talks went on.") for i in range(2000)
    )
    assert stored.articles == 2000 and stored.word("pyongyang") == 1000
    rarity = Rarity(documents=stored)
    assert word("Pyongyang", rarity) > 0.4 > word("Pyongyang")
    assert word("government", rarity) < word("government") / 10
    assert prefix("pyong", rarity) > 0.4


def test_no_stored_articles_is_wordfreq_alone() -> None:
    """A fresh database (a sample of no articles) changes nothing."""
    empty = Rarity(documents=DocumentFrequencies(0, {}))
    assert word("delegation", empty) == word("delegation")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("delegation AND Kovnes", {"kovnes"}),
        ("(committee OR shipments) AND Kovnes", {"kovnes"}),
        ('Vladivostok NEAR/5 "Ivan Kovnes"', {"kovnes"}),
        ('"international delegation"', {"delegation"}),
    ],
)
def test_an_and_keys_on_the_rare_name_not_a_long_common_word(
    query: str, expected: set[str]
) -> None:
    """The index keys an AND (a NEAR, a phrase) on its rarest part, however short."""
    found = required_keys(parse_query(query).root)
    assert found is not None and {w for _, w in found} == expected


def test_with_word_forms_the_name_still_wins() -> None:
    """Forms make a name several keys (kovnes, kovneses...); together they stay rarer than
    one common word's forms."""
    found = required_keys(parse_query("delegation AND Kovnes", forms="inflected").root)
    assert found is not None and "kovnes" in {w for _, w in found}
    assert not {w for _, w in found} & {"delegation", "delegations"}


def test_released_tables_load_again() -> None:
    """release_tables (a daemon's, once its index is built) drops the word tables; the next
    price loads them again and says the same."""
    from monitor import rarity

    cost = Rarity().cost(frozenset({(False, "delegation")}))
    rarity.release_tables()
    assert not rarity._tables
    assert Rarity().cost(frozenset({(False, "delegation")})) == cost
    assert rarity._tables
