"""RELIABILITY.md 3(a), config rows C1-C7: operator-written, still validated.

The real command line (``monitor check`` / ``monitor run``) in a subprocess
for the start-up rows, the loader in-process for the rest. Unit checks of
the same rows are in tests/test_config.py and tests/test_sinks_config.py.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from feedserver import FeedServer, item, rss
from hostile_rows import row
from sqlmodel import select

import conftest
from casebook import figure, measured
from conftest import run_monitor
from flows import Clock
from monitor.config import load_config
from monitor.domain import Article
from monitor.errors import ConfigError
from monitor.match import Matcher
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.store import Store
from monitor.store.tables import DeliveryRow

pytestmark = pytest.mark.reliability


def write_config(root: Path, main: str, watchlist: str = "rules: []\n") -> Path:
    (root / "watchlists").mkdir(exist_ok=True)
    (root / "watchlists" / "w.yaml").write_text(watchlist)
    (root / "monitor.yaml").write_text(main)
    return root / "monitor.yaml"


@row("C1")
@pytest.mark.parametrize("broken", ["monitor.yaml", "watchlists/w.yaml"])
def test_c1_invalid_yaml_stops_start_up_before_the_database(tmp_path: Path, broken: str) -> None:
    """C1: `monitor run` on broken YAML (the config or a watchlist) exits 2 naming the file,
    line and column, and never creates the database."""
    path = write_config(tmp_path, "database: sqlite:///m.db\n", "rules:\n  - {id: a, query: x}\n")
    (tmp_path / broken).write_text("sources:\n  feeds: [\n    {url: x\n")
    started = time.monotonic()
    result = run_monitor("run", "--once", "--config", str(path), cwd=tmp_path)
    measured(wall_s=round(time.monotonic() - started, 2))
    assert result.returncode == 2
    assert re.search(rf"{re.escape(broken)}: line \d+, column \d+: invalid YAML", result.stderr)
    assert not (tmp_path / "m.db").exists()


@row("C2")
def test_c2_every_schema_error_is_listed_at_once(tmp_path: Path) -> None:
    """C2: an unknown key, interval 0, a negative timeout, a duplicate rule id and a duplicate
    feed URL in one config are all reported by `monitor check`, which exits 2."""
    path = write_config(
        tmp_path,
        "database: sqlite:///m.db\ncolour: red\ndefaults: {interval: 0s}\n"
        "fetch: {timeout: -5s}\nsources:\n  feeds:\n    - {url: 'https://a.example/f'}\n"
        "    - {url: 'https://a.example/f', name: b}\n",
        "rules:\n  - {id: a, query: Korea}\n  - {id: a, query: Russia}\n",
    )
    result = run_monitor("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    for expected in ("monitor.yaml: colour: unknown key",
                     "monitor.yaml: defaults.interval: must be greater than zero",
                     "monitor.yaml: fetch.timeout: not a duration: '-5s'",
                     "watchlists/w.yaml: rules[1].id: duplicate rule id 'a'",
                     "monitor.yaml: sources.feeds[1].url: duplicate feed URL"):  # fmt: skip
        assert expected in result.stderr, (expected, result.stderr)
    assert "5 config error(s)" in result.stderr and not (tmp_path / "m.db").exists()


def alias_bomb(width: int = 9, levels: int = 8) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels
    leaves once expanded (9 x 8: 43 M)."""
    lines = [f"l0: &l0 [{','.join(['x'] * width)}]"]
    lines += [f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@row("C3")
def test_c3_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """C3: the 9-way x 8-level alias bomb (43 M leaves) is refused as aliases are not allowed,
    at once: walking it unguarded takes seconds and grows 9x per level."""
    bomb = alias_bomb()
    path = write_config(tmp_path, bomb)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    wall = time.monotonic() - started
    assert any("anchors and aliases are not allowed" in str(p) for p in info.value.problems)
    # 10 x the row's 100 ms, and far under the 2.9 s an unguarded walk takes: only an
    # expansion can cross it.
    assert wall < 1.0
    measured(wall_s=round(wall, 4), deadline_s=0.1, bytes_read=len(bomb))


@row("C4")
def test_c4_catastrophic_regex_is_rejected_and_prefixes_stay_linear(tmp_path: Path) -> None:
    """C4: `(a+)+$` is no query (the language has no regex): the config is rejected at its
    column. A prefix term on a 50 KB run of a's matches in one pass; other rules still hit."""
    path = write_config(tmp_path, "{}\n", "rules:\n  - {id: evil, query: '(a+)+$'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    (problem,) = [str(p) for p in info.value.problems]
    assert "rules[0].query: column" in problem
    rules = "rules:\n  - {id: prefix, query: 'aaa*'}\n  - {id: other, query: Zanzibar}\n"
    write_config(tmp_path, "{}\n", rules)
    config = load_config(path, env={})
    matcher = Matcher(config.rules, config.queries)
    body = "a" * 50_000 + "b Zanzibar"
    article = Article("s", "k", "Title", body, None, None, Clock()(), None)
    started = time.monotonic()
    hits = sorted(h.rule.id for h in matcher.match(article))
    wall = time.monotonic() - started
    assert hits == ["other", "prefix"]  # the 50,001-letter token starts with "aaa"
    measured(wall_s=round(wall, 4))


@row("C5")
def test_c5_metadata_webhook_is_refused_at_send_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C5: a webhook on meta.test, which resolves (stub) to 169.254.169.254, loads (a name is
    checked when it resolves) and is refused at send time: no connect, delivery failed."""
    from flows import make_flow
    from monitor.sinks import ssrf

    real = socket.getaddrinfo

    def stub(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host == "meta.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", stub)
    refused_before = len(conftest.forbidden_connects)
    sink = "  - {name: ops, type: webhook, url: 'http://meta.test/latest/meta-data/'}\n"
    flow = make_flow(tmp_path, sink, watchlist="rules:\n  - {id: r, query: Zanzibar}\n")
    try:
        flow.drop("a.txt", "Zanzibar harbour\nbody")
        flow.pipeline.poll_all(settle_seconds=0)
        report = flow.pipeline.deliver_due()
        with flow.store.reading() as s:
            (delivery,) = s.exec(select(DeliveryRow))
    finally:
        flow.close()
    assert report.delivered == 0
    assert delivery.status == "failed" and "refused" in (delivery.last_error or "")
    assert "169.254.169.254" in (delivery.last_error or "")
    assert len(conftest.forbidden_connects) == refused_before
    measured(delivery_error=delivery.last_error)


@row("C7")
def test_c7_ten_thousand_feeds_start_and_first_polls_are_spread(
    tmp_path: Path, server: FeedServer
) -> None:
    """C7: 10,000 feeds load and start (figure); the first tick claims no more feeds than there
    are fetch workers, so the rest wait their turn instead of all connecting at once."""
    server.routes["/f"] = lambda r: r.send(200, rss([item(1)]))
    feeds = "".join(f"    - {{name: f{n}, url: '{server.url('/f')}?n={n}', interval: 1h}}\n"
                    for n in range(10_000))  # fmt: skip
    path = write_config(
        tmp_path,
        f"database: sqlite:///{tmp_path / 'm.db'}\nsources:\n  feeds:\n{feeds}"
        "fetch: {allow_private_networks: true, concurrency: 20}\n",
    )
    started = time.monotonic()
    config = load_config(path, env={})
    loaded = time.monotonic() - started
    store = Store(config.database_url)
    pipeline = Pipeline(config, store, {"console": ConsoleSink()}, Clock())
    ready = time.monotonic() - started
    try:
        first = pipeline.poll_due(wait_for_feeds=True)
    finally:
        pipeline.close()
        store.close()
    assert len(first) <= config.fetch.concurrency
    assert sum(server.counts.values()) == len(first)
    figure("config", "C7 10,000 feeds: load / ready to poll, s", f"{loaded:.2f} / {ready:.2f}")
    figure("config", "C7 feeds claimed by the first tick", len(first))
    measured(wall_s=round(ready, 2), first_tick_claims=len(first))
