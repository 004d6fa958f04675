"""The command line (contract 3), run as a real subprocess on the sample config and seeds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import ROOT, run_monitor

EXPECTED = json.loads((ROOT / "tests" / "expected_seed_hits.json").read_text())


def age_seeds(workdir: Path) -> None:
    """Seeds copied by the fixture are fresh; age them past the folder's quiet period."""
    old = time.time() - 3600
    for path in (workdir / "seeds").iterdir():
        os.utime(path, (old, old))


def test_run_once_prints_alerts_then_nothing_new(workdir: Path) -> None:
    """`run --once` on the default config alerts on the seeds; a second run prints nothing new."""
    age_seeds(workdir)
    first = run_monitor("run", "--once", cwd=workdir)
    assert first.returncode == 0, first.stderr
    rules = {rule for hits in EXPECTED.values() for rule in hits}
    titles = {"official-matsegora": "Matsegora"}
    for rule in rules:
        assert f"({rule})" in first.stdout, (rule, first.stdout)
    assert all(word in first.stdout for word in titles.values())
    assert (workdir / "data" / "monitor.db").exists()
    second = run_monitor("run", "--once", cwd=workdir)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == ""


def test_test_rule_all_json_pins_seed_hits(workdir: Path) -> None:
    """`test-rule --all --json seeds/` lists exactly the expected hits, one JSON line per file."""
    result = run_monitor("test-rule", "--all", "--json", "seeds/", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    got = {Path(line["path"]).name: sorted(h["rule"] for h in line["hits"]) for line in lines}
    assert got == EXPECTED
    for line in lines:
        text = None
        for hit in line["hits"]:
            assert hit["matches"], hit
            for m in hit["matches"]:
                assert set(m) == {"start", "end", "text"} and m["end"] > m["start"]
                text = m["text"]
        assert text is None or isinstance(text, str)
    assert not (workdir / "data").exists()  # test-rule stores nothing


def test_test_rule_query_reports_rule_id_query(workdir: Path) -> None:
    """--query uses rule id 'query' and reports match spans into title + body."""
    result = run_monitor("test-rule", "--json", "--query", "Matsegora", "seeds/", cwd=workdir)
    assert result.returncode == 0, result.stderr
    hits = [h for line in map(json.loads, result.stdout.splitlines()) for h in line["hits"]]
    assert hits and {h["rule"] for h in hits} == {"query"}
    assert all(m["text"].lower() == "matsegora" for h in hits for m in h["matches"])


def test_test_rule_bad_query_exits_2_with_column(workdir: Path) -> None:
    """A query that does not parse is a usage error naming the column."""
    result = run_monitor("test-rule", "--query", "(Korea OR Japan", "seeds/", cwd=workdir)
    assert result.returncode == 2
    assert "column 16" in result.stderr


def test_check_ok(workdir: Path) -> None:
    """`check` on the sample config exits 0 and summarises it."""
    result = run_monitor("check", "--config", "config/monitor.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


BROKEN = """
rules:
  - {id: good, query: Korea}
  - {id: bad-query, query: '(North Korea OR Russia'}
  - {id: good, query: Japan}
  - {id: to-pager, query: China, notify: [pager]}
  - {id: odd, query: Korea, colour: blue}
"""


def test_broken_watchlist_check_and_run_report_every_error(workdir: Path) -> None:
    """A broken watchlist: check and run both list every error with file and place, exit 2."""
    (workdir / "config" / "watchlists" / "broken.yaml").write_text(BROKEN)
    monitor_yaml = workdir / "config" / "monitor.yaml"
    monitor_yaml.write_text(monitor_yaml.read_text().replace("interval: 15m", "interval: soon"))
    for command in (["check"], ["run", "--once"]):
        result = run_monitor(*command, cwd=workdir)
        assert result.returncode == 2, (command, result.stderr)
        for fragment in (
            "watchlists/broken.yaml: rules[1].query: column 23: expected ')'",
            "watchlists/broken.yaml: rules[2].id: duplicate rule id 'good'",
            "watchlists/broken.yaml: rules[3].notify[0]: unknown sink 'pager'",
            "watchlists/broken.yaml: rules[4].colour: unknown key",
            "monitor.yaml: defaults.interval: not a duration: 'soon'",
        ):
            assert fragment in result.stderr, (command, fragment, result.stderr)
    assert not (workdir / "data").exists()  # run refused before touching the database


def test_hits_table_and_json(workdir: Path) -> None:
    """`hits` shows stored hits as a table, and as JSON Lines with --json."""
    age_seeds(workdir)
    run_monitor("run", "--once", cwd=workdir)
    table = run_monitor("hits", cwd=workdir)
    assert table.returncode == 0 and "official-matsegora" in table.stdout
    lines = [json.loads(x) for x in run_monitor("hits", "--json", cwd=workdir).stdout.splitlines()]
    assert len(lines) == sum(len(v) for v in EXPECTED.values())
    assert {"rule", "article", "matches", "time"} <= set(lines[0])
    only = run_monitor("hits", "--json", "--rule", "official-matsegora", cwd=workdir)
    assert {json.loads(x)["rule"] for x in only.stdout.splitlines()} == {"official-matsegora"}
    assert run_monitor("hits", "--since", "soon", cwd=workdir).returncode == 2


def test_sources_lists_state(workdir: Path) -> None:
    """`sources` shows each source with its status and items seen."""
    age_seeds(workdir)
    run_monitor("run", "--once", cwd=workdir)
    (line,) = [
        json.loads(x) for x in run_monitor("sources", "--json", cwd=workdir).stdout.splitlines()
    ]
    assert line["name"] == "seeds" and line["status"] == "ok"
    assert line["items_seen"] >= len(EXPECTED)


def test_check_names_a_source_language_without_word_forms(workdir: Path) -> None:
    """check says which configured source language has no word forms, and still exits 0."""
    monitor_yaml = workdir / "config" / "monitor.yaml"
    text = monitor_yaml.read_text()
    assert "      # language: en             # its articles' language; default" in text
    monitor_yaml.write_text(text.replace("      # language: en ", "      language: de "))
    result = run_monitor("check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "source seeds: language 'de' has no word forms here" in result.stderr


def test_test_rule_query_with_word_forms(workdir: Path) -> None:
    """--forms inflected parses --query with word forms: "reported" answers report."""
    seed = workdir / "seeds" / "panel.txt"
    seed.write_text("Panel findings\n\nThe committee reported new violations.\n")
    args = ("test-rule", "--json", "--query", "report", str(seed))
    exact = run_monitor(*args, cwd=workdir)
    inflected = run_monitor(*args, "--forms", "inflected", cwd=workdir)
    assert exact.returncode == inflected.returncode == 0, (exact.stderr, inflected.stderr)
    assert json.loads(exact.stdout)["hits"] == []
    (hit,) = json.loads(inflected.stdout)["hits"]
    assert [m["text"] for m in hit["matches"]] == ["reported"]


def test_test_rule_prints_titles_as_written(workdir: Path) -> None:
    """A headline with rich markup in it ([/bold], [text](url)) prints as it is, no crash."""
    seed = workdir / "seeds" / "markup.txt"
    seed.write_text("[/bold] Matsegora [bank](https://evil.example) [red]x\n\nMatsegora spoke.\n")
    result = run_monitor("test-rule", "--query", "Matsegora", str(seed), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "[/bold] Matsegora [bank](https://evil.example) [red]x" in result.stdout
