"""Trying rules before they go live: over the stored archive, and on labelled examples.

``backtest`` streams stored articles (a page at a time, ``Store.iter_articles``)
through a ``Matcher`` and tallies hits per rule with a few example titles; it
stores nothing. ``score_examples`` runs each rule on its own labelled
examples (``examples: {match: [...], no_match: [...]}`` in a watchlist) and
gives precision and recall; a rule whose examples disagree with it fails
``monitor check``. Analysts asked for both (Miniflux #1458, Huginn #2570).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from monitor.domain import Article, Example, Hit, Rule, utcnow
from monitor.errors import SourceError
from monitor.match import Matcher
from monitor.query import Query
from monitor.sources.folder import read_file
from monitor.store import Store

EXAMPLE_TITLES = 3
EXAMPLE_MAX_BYTES = 5 << 20


@dataclass
class RuleTally:
    """One rule's hits in a backtest, and the first few titles it hit."""

    rule_id: str
    hits: int = 0
    titles: list[str] = field(default_factory=list)


OnArticle = Callable[[int, Article, list[Hit]], None]


def backtest(
    store: Store, matcher: Matcher, since: datetime, on_article: OnArticle | None = None
) -> dict[str, RuleTally]:
    """Match every article stored since ``since``; ``on_article`` sees each as it goes."""
    tallies = {rule.id: RuleTally(rule.id) for rule, _ in matcher.active}
    for article_id, article in store.iter_articles(since):
        hits = matcher.match(article)
        for hit in hits:
            tally = tallies[hit.rule.id]
            tally.hits += 1
            if len(tally.titles) < EXAMPLE_TITLES:
                tally.titles.append(article.title)
        if on_article is not None:
            on_article(article_id, article, hits)
    return tallies


def precision(true_positives: int, false_positives: int) -> float | None:
    """The share of hits that were wanted; None with no hits."""
    found = true_positives + false_positives
    return true_positives / found if found else None


def recall(true_positives: int, false_negatives: int) -> float | None:
    """The share of wanted hits that came; None with none wanted."""
    wanted = true_positives + false_negatives
    return true_positives / wanted if wanted else None


@dataclass(frozen=True)
class ExampleScore:
    """How a rule did on its own labelled examples; ``wrong`` names each disagreement."""

    rule_id: str
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    wrong: tuple[str, ...]
    skipped: str | None = None  # why the rule could not be run (e.g. it needs a model)

    @property
    def precision(self) -> float | None:
        return precision(self.true_positives, self.false_positives)

    @property
    def recall(self) -> float | None:
        return recall(self.true_positives, self.false_negatives)

    @property
    def passed(self) -> bool:
        return not self.wrong


def example_articles(example: Example, source: str) -> list[Article]:
    """An example as articles: a text's first line is its title; a file is read as a folder's."""
    now = utcnow()
    if example.path is not None:
        try:
            return read_file(
                Path(example.path), source=source, fetched_at=now, max_bytes=EXAMPLE_MAX_BYTES
            )
        except SourceError as e:
            raise SourceError(source, e.reason, f"{example.place}: {example.path}") from e
    title, _, body = (example.text or "").strip().partition("\n")
    return [Article(source, example.place, title.strip(), body.strip(), None, None, now)]


def score_examples(
    rules: Iterable[Rule], queries: dict[str, Query], base: Matcher
) -> list[ExampleScore]:
    """Each rule with examples run on them; ``base`` supplies the model and disabled rules."""
    scores = []
    for rule in rules:
        if not rule.examples:
            continue
        if rule.id in base.disabled:
            scores.append(ExampleScore(rule.id, 0, 0, 0, 0, (), skipped=base.disabled[rule.id]))
            continue
        matcher = Matcher([replace(rule, enabled=True)], queries, recognizer=base.recognizer,
                          languages=base.languages)  # fmt: skip
        scores.append(_score(rule, matcher))
    return scores


def _score(rule: Rule, matcher: Matcher) -> ExampleScore:
    # A rule with a sources filter sees its examples as coming from its first source.
    source = rule.sources[0] if rule.sources else "examples"
    counts = {(True, True): 0, (False, True): 0, (True, False): 0, (False, False): 0}
    wrong = []
    for example in rule.examples:
        for article in example_articles(example, source):
            matched = bool(matcher.match(article))
            counts[(matched, example.expected)] += 1
            if matched != example.expected:
                what = "does not match" if example.expected else "matches"
                wrong.append(f"{example.place}: {what} {article.title[:60]!r}")
    return ExampleScore(
        rule.id,
        true_positives=counts[(True, True)],
        false_positives=counts[(True, False)],
        false_negatives=counts[(False, True)],
        true_negatives=counts[(False, False)],
        wrong=tuple(wrong),
    )
