"""The labelled corpus (tests/labelled/articles.yaml): load it and score watch rules on it.

Shared by bench/bench_labelled.py, which prints the scores per rule and language,
and tests/test_labelled.py, which checks the corpus and holds the sample watchlist
to its precision and recall target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

from monitor.backtest import precision, recall
from monitor.config import Config
from monitor.domain import Article
from monitor.match import Matcher
from monitor.query import Query
from monitor.sources.formats import plain_paragraphs

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "labelled" / "articles.yaml"
# Written afterwards by someone who never saw the rules, and never used to tune them: what
# the rules score here is what they would score on stories nobody tuned them for.
HELDOUT = ROOT / "tests" / "labelled" / "heldout.yaml"
SAMPLE_CONFIG = ROOT / "config" / "monitor.yaml"
LANGUAGES = ("en", "ko", "ru")
SOURCE = "labelled"
# Matching never reads the fetch time; a fixed one keeps the articles equal run to run.
FETCHED_AT = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class LabelledArticle:
    """One article of the corpus and the rules an analyst wants to fire on it."""

    id: str
    language: str
    article: Article
    expect: frozenset[str]
    note: str = ""


def load_corpus(path: Path = CORPUS) -> list[LabelledArticle]:
    """The corpus as articles of source ``labelled``, in file order."""
    items = yaml.safe_load(path.read_text(encoding="utf-8"))["articles"]
    return [
        LabelledArticle(
            id=item["id"],
            language=item["language"],
            # Read as the folder reads a .txt file: blank lines part paragraphs, a single
            # line break is a wrap (wire copy is hand-wrapped).
            article=Article(
                source=SOURCE,
                item_key=item["id"],
                title=item["title"],
                body=plain_paragraphs(item["body"]).strip(),
                url=None,
                published_at=None,
                fetched_at=FETCHED_AT,
            ),
            expect=frozenset(item["expect"]),
            note=item.get("note", ""),
        )
        for item in items
    ]


@dataclass
class Tally:
    """Hits counted against labels: precision and recall are None when undefined."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, fired: bool, expected: bool) -> None:
        self.true_positives += fired and expected
        self.false_positives += fired and not expected
        self.false_negatives += expected and not fired

    @property
    def precision(self) -> float | None:
        return precision(self.true_positives, self.false_positives)

    @property
    def recall(self) -> float | None:
        return recall(self.true_positives, self.false_negatives)


@dataclass
class Evaluation:
    """Scores of a set of rules on the corpus; ``misses`` are (rule, article id) pairs."""

    by_rule: dict[str, Tally]
    by_language: dict[str, Tally] = field(default_factory=dict)
    total: Tally = field(default_factory=Tally)
    false_positives: list[tuple[str, str]] = field(default_factory=list)
    false_negatives: list[tuple[str, str]] = field(default_factory=list)


def evaluate(
    config: Config, queries: Mapping[str, Query], corpus: Iterable[LabelledArticle]
) -> Evaluation:
    """Match every article against every rule of ``config`` with ``queries``.

    A rule's ``sources:`` filter is cleared: the corpus is one source of its own,
    and a filter would hide a hit the rule's query makes.
    """
    rules = [replace(rule, sources=()) for rule in config.rules]
    matcher = Matcher(rules, queries, nlp_model=config.nlp_model)
    result = Evaluation(by_rule={rule.id: Tally() for rule in rules})
    for item in corpus:
        fired = {hit.rule.id for hit in matcher.match(item.article)}
        language = result.by_language.setdefault(item.language, Tally())
        for rule_id, tally in result.by_rule.items():
            is_fired, is_expected = rule_id in fired, rule_id in item.expect
            for counted in (tally, language, result.total):
                counted.add(is_fired, is_expected)
            if is_fired and not is_expected:
                result.false_positives.append((rule_id, item.id))
            elif is_expected and not is_fired:
                result.false_negatives.append((rule_id, item.id))
    return result
