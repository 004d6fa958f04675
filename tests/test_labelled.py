"""The labelled corpus (tests/labelled/articles.yaml) and the sample watchlist's score on it."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from labelled_corpus import LANGUAGES, SAMPLE_CONFIG, LabelledArticle, evaluate, load_corpus

from monitor.config import Config, load_config

ID = re.compile(r"^(en|ko|ru)-[a-z]+-\d\d$")


@pytest.fixture(scope="module")
def corpus() -> list[LabelledArticle]:
    return load_corpus()


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(SAMPLE_CONFIG, env={})


def test_corpus_loads_with_unique_ids(corpus: list[LabelledArticle]) -> None:
    """Every article loads, and no two share an id."""
    ids = [item.id for item in corpus]
    assert [i for i, n in Counter(ids).items() if n > 1] == []


def test_ids_name_their_language(corpus: list[LabelledArticle]) -> None:
    """An id is <lang>-<topic>-<nn>, and its <lang> is the article's language."""
    wrong = [item.id for item in corpus if not ID.match(item.id) or item.id[:2] != item.language]
    assert wrong == []


def test_corpus_size_and_languages(corpus: list[LabelledArticle]) -> None:
    """At least 60 articles, with at least 10 in each language and no other language."""
    counts = Counter(item.language for item in corpus)
    assert len(corpus) >= 60
    assert set(counts) == set(LANGUAGES)
    assert min(counts.values()) >= 10, counts


def test_articles_are_short_news_copy(corpus: list[LabelledArticle]) -> None:
    """Each has a headline and a body of 60 to 200 words in several paragraphs."""
    wrong = [
        item.id
        for item in corpus
        if not item.article.title.strip()
        or not 60 <= len(item.article.body.split()) <= 200
        or "\n\n" not in item.article.body
    ]
    assert wrong == []


def test_labels_name_rules_of_the_sample_watchlist(
    corpus: list[LabelledArticle], config: Config
) -> None:
    """Every expected rule id is a rule of config/watchlists/korea.yaml."""
    rule_ids = {rule.id for rule in config.rules}
    unknown = sorted({(item.id, r) for item in corpus for r in item.expect if r not in rule_ids})
    assert unknown == []


def test_every_rule_has_three_positives(corpus: list[LabelledArticle], config: Config) -> None:
    """Each rule is expected on at least three articles, so its recall means something."""
    positives = Counter(r for item in corpus for r in item.expect)
    assert {rule.id: positives[rule.id] for rule in config.rules if positives[rule.id] < 3} == {}


# The target for the sample watchlist as configured (its own `forms:` settings). It
# fails until the watchlist is rewritten for word forms and the Korean and Russian
# names; the bench (bench/bench_labelled.py) prints the figures and every miss.
def test_sample_watchlist_meets_its_precision_and_recall_target(
    corpus: list[LabelledArticle], config: Config
) -> None:
    """TARGET: the sample watchlist reaches micro precision and recall of 0.9 on the corpus."""
    result = evaluate(config, config.queries, corpus)
    precision, recall = result.total.precision or 0.0, result.total.recall or 0.0
    misses = [f"false positive {r} {a}" for r, a in result.false_positives]
    misses += [f"false negative {r} {a}" for r, a in result.false_negatives]
    score = f"micro precision {precision:.3f}, recall {recall:.3f}; " + "; ".join(misses)
    assert precision >= 0.9 and recall >= 0.9, score
