"""Precision and recall of the sample watchlist on the labelled corpus (make bench).

Every rule of config/watchlists/korea.yaml is run on tests/labelled/articles.yaml
(English, Korean and Russian news copy, each article labelled with the rules an
analyst wants to fire; the rules were tuned on it) and on tests/labelled/heldout.yaml
(written later by someone who never saw the rules, and never used to tune them), its
query parsed afresh in each mode:

- ``exact``: bare words match only as written;
- ``inflected``: every bare word and phrase also matches its inflected forms
  (``monitor.forms``: report, reports, reported; a Korean noun with its particles;
  Russian case endings), where they apply to the article's language.

Printed: per rule the true and false positives, the misses, precision and recall
of both modes side by side; the micro totals over all rules and per language; then,
for the inflected mode, which article each false positive and miss was, so that
rule writers can see what to change. A measurement, not a gate: it always exits 0.

Usage: python bench/bench_labelled.py
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from labelled_corpus import (
    CORPUS,
    HELDOUT,
    LANGUAGES,
    SAMPLE_CONFIG,
    Evaluation,
    Tally,
    evaluate,
    load_corpus,
)

from monitor.config import Config, load_config
from monitor.domain import FormsMode
from monitor.query import Query, parse_query

MODES: tuple[FormsMode, ...] = ("exact", "inflected")
RULE_WIDTH = 24  # the longest sample rule id, official-park-byung-hwan
WIDTH = 80


def queries_in_mode(config: Config, mode: FormsMode) -> dict[str, Query]:
    """Every rule's query parsed again with word forms as ``mode`` says, whatever the
    rule's own ``forms:`` setting."""
    return {rule.id: parse_query(rule.query, config.entities, forms=mode) for rule in config.rules}


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cells(tally: Tally) -> str:
    return (
        f"{tally.true_positives:>4}{tally.false_positives:>4}{tally.false_negatives:>4}"
        f"{ratio(tally.precision):>7}{ratio(tally.recall):>7}"
    )


def print_table(results: dict[FormsMode, Evaluation]) -> None:
    modes = list(results)
    heading = f"  {'TP':>4}{'FP':>4}{'FN':>4}{'prec':>7}{'rec':>7}"
    print((f"{'':<{RULE_WIDTH}}" + "".join(f"  {mode:^26}" for mode in modes)).rstrip())
    print(f"{'rule':<{RULE_WIDTH}}" + heading * len(modes))
    first = results[modes[0]]
    rows: list[tuple[str, list[Tally]]] = [
        (rule_id, [results[m].by_rule[rule_id] for m in modes]) for rule_id in first.by_rule
    ]
    rows.append(("micro, all rules", [results[m].total for m in modes]))
    rows += [
        (f"  articles in {language}", [results[m].by_language[language] for m in modes])
        for language in LANGUAGES
        if language in first.by_language
    ]
    for i, (label, tallies) in enumerate(rows):
        if i == len(first.by_rule):
            print("-" * (RULE_WIDTH + 28 * len(modes)))
        print(f"{label:<{RULE_WIDTH}}" + "".join(f"  {cells(t)}" for t in tallies))


def print_misses(mode: str, evaluation: Evaluation) -> None:
    for kind, pairs in (
        ("false positives", evaluation.false_positives),
        ("false negatives", evaluation.false_negatives),
    ):
        print(f"\n{mode}: {kind}" + ("" if pairs else ": none"))
        for rule_id in evaluation.by_rule:
            ids = [article for rule, article in pairs if rule == rule_id]
            if ids:
                lines = textwrap.wrap(
                    ", ".join(ids),
                    WIDTH,
                    initial_indent=f"  {rule_id:<{RULE_WIDTH}} ",
                    subsequent_indent=" " * (RULE_WIDTH + 3),
                    break_on_hyphens=False,
                )
                print("\n".join(lines))


def main() -> int:
    config = load_config(SAMPLE_CONFIG, env={})
    for name, path in (("tuning set", CORPUS), ("held-out set", HELDOUT)):
        corpus = load_corpus(path)
        languages = ", ".join(
            f"{sum(item.language == lang for item in corpus)} {lang}" for lang in LANGUAGES
        )
        print(f"{name} {path.name}: {len(corpus)} articles ({languages}), "
              f"{len(config.rules)} rules")  # fmt: skip
        results = {mode: evaluate(config, queries_in_mode(config, mode), corpus) for mode in MODES}
        print_table(results)
        print_misses(MODES[-1], results[MODES[-1]])
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
