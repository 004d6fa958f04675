"""Backtesting over stored articles and labelled examples (monitor.backtest, test-rule --since)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from conftest import run_monitor
from monitor.backtest import backtest, score_examples
from monitor.config import load_config
from monitor.domain import Article, Example, PollOutcome, Rule
from monitor.match import Matcher
from monitor.query import parse_query
from monitor.store import Store

NOW = datetime.now(UTC)
ARCHIVE = 10_000


def archived(number: int) -> Article:
    """Mostly weather; every 1,000th article names the ambassador."""
    who = "Ambassador Matsegora spoke" if number % 1000 == 0 else "Rain is expected"
    return Article("seeds", f"k{number}", f"Item {number}", f"{who} on day {number}.", None,
                   None, NOW - timedelta(days=1))  # fmt: skip


def fill(store: Store, count: int) -> None:
    store.sync_sources([("seeds", "folder", "/nowhere")], NOW)
    outcome = PollOutcome("seeds", tuple((archived(i), ()) for i in range(count)))
    store.save_poll(outcome, NOW, lambda hit: ())


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database holding 10,000 stored articles (built once for the module)."""
    path = tmp_path_factory.mktemp("archive") / "monitor.db"
    store = Store(f"sqlite:///{path}")
    fill(store, ARCHIVE)
    store.close()
    return path


def test_iter_articles_pages_by_keyset(archive: Path) -> None:
    """Articles come in pages of at most batch_size rows, one query per page, lazily."""
    store = Store(f"sqlite:///{archive}")
    selects: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda *a: selects.append(a[2]) if "FROM articles" in a[2] else None)  # fmt: skip
    pages = store.iter_articles(NOW - timedelta(days=30), batch_size=1000)
    first = next(pages)
    assert len(selects) == 1  # one page read, not the archive
    ids = [first[0]] + [article_id for article_id, _ in pages]
    store.close()
    assert len(ids) == ARCHIVE and ids == sorted(set(ids))
    assert len(selects) == ARCHIVE // 1000 + 1  # the last, empty page ends it
    assert all("LIMIT" in sql for sql in selects)


def test_backtest_tallies_hits_and_titles(archive: Path) -> None:
    """A backtest counts each rule's hits over the archive and keeps a few titles."""
    store = Store(f"sqlite:///{archive}")
    rule = Rule("envoy", "envoy", "matsegora", ())
    seen: list[int] = []
    try:
        tallies = backtest(store, Matcher([rule], {"envoy": parse_query("matsegora")}),
                           NOW - timedelta(days=30), lambda i, a, h: seen.append(i))  # fmt: skip
        assert store.count_articles(NOW - timedelta(days=30)) == ARCHIVE
        assert store.count_articles(NOW) == 0
    finally:
        store.close()
    assert tallies["envoy"].hits == ARCHIVE // 1000
    assert tallies["envoy"].titles == ["Item 0", "Item 1000", "Item 2000"]
    assert len(seen) == ARCHIVE


def test_test_rule_since_over_archive_shows_progress(workdir: Path, archive: Path) -> None:
    """`test-rule --since 30d --query` over 10,000 stored articles: progress, then hits per rule."""
    env = {"DATABASE_URL": f"sqlite:///{archive}"}
    result = run_monitor("test-rule", "--since", "30d", "--query", "matsegora", cwd=workdir,
                         env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{ARCHIVE}/{ARCHIVE}" in result.stderr
    assert "query" in result.stdout and "10" in result.stdout and "Item 1000" in result.stdout


def test_test_rule_since_json_lines(workdir: Path, tmp_path: Path) -> None:
    """With --json, a backtest prints one JSON line per stored article with its hits."""
    store = Store(f"sqlite:///{tmp_path / 'small.db'}")
    fill(store, 3)
    store.close()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'small.db'}"}
    result = run_monitor("test-rule", "--since", "7d", "--all", "--json", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    import json

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["title"] for line in lines] == ["Item 0", "Item 1", "Item 2"]
    assert [h["rule"] for h in lines[0]["hits"]] == ["official-matsegora"]
    assert lines[1]["hits"] == []


def test_test_rule_needs_paths_or_since(workdir: Path) -> None:
    """Without PATH and without --since, test-rule is a usage error (exit 2)."""
    result = run_monitor("test-rule", "--all", cwd=workdir)
    assert result.returncode == 2
    assert "PATH" in result.stderr


# --- labelled examples ---------------------------------------------------------------


def test_examples_score_precision_and_recall() -> None:
    """A rule's own examples give true/false positives and negatives, precision and recall."""
    examples = (
        Example(True, text="Envoy\nMatsegora spoke", place="m[0]"),
        Example(True, text="Envoy\nThe ambassador spoke", place="m[1]"),
        Example(False, text="Matsegora street\nA street", place="n[0]"),
        Example(False, text="Weather\nRain", place="n[1]"),
    )
    rule = Rule("envoy", "envoy", "matsegora", (), examples=examples)
    queries = {"envoy": parse_query("matsegora")}
    [score] = score_examples([rule], queries, Matcher([rule], queries))
    assert (score.true_positives, score.false_negatives) == (1, 1)
    assert (score.false_positives, score.true_negatives) == (1, 1)
    assert score.precision == 0.5 and score.recall == 0.5 and not score.passed
    assert score.wrong == ("m[1]: does not match 'Envoy'", "n[0]: matches 'Matsegora street'")


def test_sample_watchlist_examples_pass(workdir: Path) -> None:
    """`monitor check` on the sample config prints each rule's precision and recall, exit 0."""
    result = run_monitor("check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "official-matsegora" in result.stdout and "1.00" in result.stdout


def test_check_fails_on_a_rule_whose_examples_fail(workdir: Path) -> None:
    """A rule that misses its own match example makes `monitor check` exit 2 and name it."""
    watchlist = workdir / "config" / "watchlists" / "extra.yaml"
    watchlist.write_text(
        "rules:\n  - id: weather\n    query: rain\n"
        '    examples: {match: ["Storm warning\\nHeavy snow"], no_match: [weather.txt]}\n'
    )
    (watchlist.parent / "weather.txt").write_text("Forecast\nSunny, no rain at all\n")
    result = run_monitor("check", cwd=workdir)
    assert result.returncode == 2
    assert "FAIL" in result.stdout
    assert "rules[0].examples.match[0]: does not match 'Storm warning'" in result.stderr
    assert "rules[0].examples.no_match[0]: matches 'Forecast'" in result.stderr


def test_examples_validated_with_file_and_place(tmp_path: Path) -> None:
    """A missing example file or a malformed examples key is a config error with its place."""
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text(
        "rules:\n  - id: a\n    query: x\n    examples: {match: [gone.txt], maybe: [y]}\n"
        "  - id: b\n    query: x\n    examples: {no_match: ['']}\n"
    )
    (tmp_path / "monitor.yaml").write_text("sources: {}\n")
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "monitor.yaml", env={})
    found = [str(p) for p in info.value.problems]
    missing = "watchlists/w.yaml: rules[0].examples.match[0]: example file 'gone.txt' not found"
    assert any(p.startswith(missing) for p in found), found
    assert any("rules[0].examples.maybe: unknown key" in p for p in found), found
    assert "watchlists/w.yaml: rules[1].examples.no_match[0]: empty example" in found
