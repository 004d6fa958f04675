"""Feeds through the whole pipeline: loopback server, real SQLite, real matcher (G5, G6).

Conditional GET, Retry-After, backoff and recovery, 404/410, not-a-feed, isolation of a
slow feed, duplicate and changing GUIDs, tombstones, and `run --once` with dead feeds.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedserver import FeedServer, Request, item, rss
from hostile_rows import row as case_row
from sqlalchemy import text

from casebook import figure
from conftest import run_monitor
from flows import Clock
from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.store import Store

WATCHLIST = """
rules:
  - id: pyongyang
    title: Pyongyang
    query: Pyongyang
"""


@pytest.fixture
def make(tmp_path: Path, server: FeedServer) -> Iterator:
    made: list[tuple[Pipeline, Store]] = []

    def build(
        *paths: str, deadline: str = "1.5s", read: str = "1s"
    ) -> tuple[Pipeline, Store, Clock]:
        (tmp_path / "watchlists").mkdir(exist_ok=True)
        (tmp_path / "watchlists" / "w.yaml").write_text(WATCHLIST)
        names = [p.strip("/").replace("/", "-") for p in paths]
        feeds = "".join(
            f"    - {{name: {name}, url: '{server.url(p)}', interval: 1m}}\n"
            for name, p in zip(names, paths, strict=True)
        )
        (tmp_path / "monitor.yaml").write_text(
            "database: sqlite:///data/m.db\nwatchlists: [watchlists/*.yaml]\n"
            f"sources:\n  feeds:\n{feeds}"
            f"fetch: {{timeout: {deadline}, read_timeout: {read}, parse_timeout: 2s, "
            "allow_private_networks: true}\n"
        )
        config = load_config(tmp_path / "monitor.yaml", env={})
        store = Store(config.database_url)
        clock = Clock(datetime.now(UTC))
        pipeline = Pipeline(config, store, {"console": ConsoleSink(file=io.StringIO())}, clock)
        made.append((pipeline, store))
        return pipeline, store, clock

    yield build
    for pipeline, store in made:
        pipeline.close()
        store.close()


def row(store: Store, name: str):
    return next(r for r in store.sources() if r.name == name)


@case_row("H18")
def test_conditional_get_second_poll_is_304_and_parses_nothing(server: FeedServer, make) -> None:
    """The ETag comes back as If-None-Match; the 304 stores nothing and never reaches the parser."""
    body = rss([item(1, title="Summit in Pyongyang"), item(2)])

    def etag(request: Request) -> None:
        if request.headers.get("if-none-match") == '"v1"':
            request.send(304, b"", {"ETag": '"v1"'})
        else:
            request.send(
                200, body, {"ETag": '"v1"', "Last-Modified": "Mon, 02 Mar 2026 10:00:00 GMT"}
            )

    server.routes["/etag"] = etag
    pipeline, store, clock = make("/etag")
    (first,) = pipeline.poll_all()
    assert (first.new_articles, first.hits, first.error) == (2, 1, None)
    parses = []
    parser = pipeline.reader().parser
    real_parse = parser.parse
    parser.parse = lambda *a: parses.append(a) or real_parse(*a)  # type: ignore[method-assign]
    clock.now += timedelta(minutes=2)
    (second,) = pipeline.poll_due(wait_for_feeds=True)
    assert (second.new_articles, second.error, parses) == (0, None, [])
    assert server.seen[-1].headers["if-modified-since"] == "Mon, 02 Mar 2026 10:00:00 GMT"
    assert row(store, "etag").etag == '"v1"'


@case_row("H19")
def test_h19_retry_after_pushes_next_poll(server: FeedServer, make) -> None:
    """H19: 429 with Retry-After 3600 schedules the next poll at least an hour away."""
    server.routes["/busy"] = lambda r: r.send(429, b"", {"Retry-After": "3600"})
    pipeline, store, clock = make("/busy")
    (summary,) = pipeline.poll_all()
    assert summary.error and summary.error.startswith("http_429")
    assert row(store, "busy").next_poll_at >= clock.now + timedelta(seconds=3600)


@case_row("H20")
def test_h20_backoff_then_failing_then_recovery(server: FeedServer, make) -> None:
    """H20: 500s back off with growing delays, mark the feed failing at 3, and a 200 resets it."""
    state = {"ok": False}
    server.routes["/flaky"] = lambda r: (
        r.send(200, rss([item(1)])) if state["ok"] else r.send(503, b"down")
    )
    pipeline, store, clock = make("/flaky")
    delays = []
    for _ in range(4):
        pipeline.poll_all()
        r = row(store, "flaky")
        delays.append(r.next_poll_at - clock.now)
        clock.now = r.next_poll_at
    assert r.status == "failing" and r.consecutive_errors == 4
    assert delays[3] > delays[0] * 4  # 2^3 = 8 times the first delay, ±20 % jitter
    state["ok"] = True
    (summary,) = pipeline.poll_all()
    r = row(store, "flaky")
    assert (summary.new_articles, r.status, r.consecutive_errors) == (1, "ok", 0)


@case_row("H21")
@pytest.mark.parametrize(("status", "expected"), [(404, "ok"), (410, "gone")])
def test_h21_404_is_an_error_and_410_is_flagged_gone(
    server: FeedServer, make, status: int, expected: str
) -> None:
    """H21: 404 and 410 are feed errors; 410 is flagged `gone` and backs off slowly (daily)."""
    server.routes["/x"] = lambda r: r.send(status, b"")
    pipeline, store, clock = make("/x")
    (summary,) = pipeline.poll_all()
    assert summary.error and summary.error.startswith(f"http_{status}")
    assert row(store, "x").status == expected
    wait = row(store, "x").next_poll_at.replace(tzinfo=UTC) - clock.now
    if status == 410:  # gone: still polled, but slowly (about daily)
        assert timedelta(hours=19) <= wait <= timedelta(hours=24)
    else:  # an ordinary error: the 1 m interval, ±20 % jitter
        assert timedelta(seconds=47) <= wait <= timedelta(seconds=73)


def assert_non_feed_is_an_error(server: FeedServer, make, body: bytes, reason: str) -> None:
    server.routes["/page"] = lambda r: r.send(200, body, {"Content-Type": "text/html"})
    pipeline, store, _ = make("/page")
    (summary,) = pipeline.poll_all()
    assert summary.error and summary.error.startswith(reason)
    assert row(store, "page").consecutive_errors == 1


@case_row("H16")
def test_h16_html_page_is_an_error_not_no_news(server: FeedServer, make) -> None:
    """H16: an HTML challenge page is a not_a_feed feed error, never "0 new items"."""
    page = b"<html><title>Checking your browser</title><body>wait</body></html>"
    assert_non_feed_is_an_error(server, make, page, "not_a_feed")


@case_row("H17")
@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_h17_empty_body_is_an_error_not_no_news(server: FeedServer, make, body: bytes) -> None:
    """H17: an empty (or blank) body is an empty_body feed error, never "0 new items"."""
    assert_non_feed_is_an_error(server, make, body, "empty_body")


def test_a_slow_feed_does_not_delay_a_healthy_one(server: FeedServer, make) -> None:
    """Isolation: while one feed hangs until its deadline, another is fetched and stored."""
    released = server.stopping
    server.routes["/hang"] = lambda r: released.wait(10) and None
    server.routes["/good"] = lambda r: r.send(200, rss([item(1, title="Pyongyang talks")]))
    # A generous deadline for the hanging feed, so the check does not race the healthy one.
    pipeline, store, _ = make("/hang", "/good", deadline="6s", read="5s")
    pipeline.poll_due()
    pipeline._in_flight["good"].result(timeout=10)
    assert not pipeline._in_flight["hang"].done()
    assert row(store, "good").items_seen == 1
    summaries = pipeline.poll_due(wait_for_feeds=True)
    hang = next(s for s in summaries if s.source == "hang")
    assert hang.error and hang.error.split(":")[0] in ("read_timeout", "deadline_exceeded")


@case_row("F14")
def test_f14_duplicate_guids_then_next_poll_adds_nothing(server: FeedServer, make) -> None:
    """F14: two items sharing a GUID are both stored; the next poll creates 0 rows and 0 alerts."""
    body = rss([item(1, title="Pyongyang one"), item(1, title="Pyongyang two", link="https://b/")])
    server.routes["/dup"] = lambda r: r.send(200, body)
    pipeline, _, _ = make("/dup")
    assert pipeline.poll_all()[0].new_articles == 2
    again = pipeline.poll_all()[0]
    assert (again.new_articles, again.hits) == (0, 0)


@case_row("F15")
def test_f15_guid_changing_every_poll_alerts_once(server: FeedServer, make) -> None:
    """F15: a feed that mints new GUIDs for unchanged items gives 0 alerts over 20 more polls."""
    polls = {"n": 0}

    def fresh_guids(request: Request) -> None:
        polls["n"] += 1
        request.send(200, rss([item(1, guid=f"urn:{polls['n']}", title="Pyongyang news")]))

    server.routes["/mint"] = fresh_guids
    pipeline, _, _ = make("/mint")
    assert pipeline.poll_all()[0].hits == 1
    alerts = sum(pipeline.poll_all()[0].hits for _ in range(20))
    figure("hostile inputs", "F15 alerts from an unchanged feed over 20 polls", alerts)
    assert alerts == 0


@case_row("F20")
def test_f20_item_removed_by_retention_never_alerts_again(server: FeedServer, make) -> None:
    """F20: after its article rows are pruned, a re-emitted old item is stopped by its tombstone."""
    server.routes["/old"] = lambda r: r.send(200, rss([item(1, title="Pyongyang")]))
    pipeline, store, _ = make("/old")
    assert pipeline.poll_all()[0].hits == 1
    with store.writing() as s:
        for table in ("delivery_attempts", "deliveries", "hits", "story_signatures", "articles"):
            s.execute(text(f"DELETE FROM {table}"))
    assert pipeline.poll_all()[0].new_articles == 0


def test_run_once_with_unreachable_feeds_still_alerts_on_seeds(workdir: Path) -> None:
    """`run --once` with dead feeds records feed errors and still prints the seed alerts, exit 0."""
    import os
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    config = workdir / "config" / "monitor.yaml"
    config.write_text(
        config.read_text()
        .replace("allow_private_networks: false", "allow_private_networks: true")
        .replace("  feeds: []\n", f"  feeds: [{{name: dead, url: 'http://127.0.0.1:{port}/'}}]\n")
    )
    old = time.time() - 3600
    for path in (workdir / "seeds").iterdir():
        os.utime(path, (old, old))
    result = run_monitor("run", "--once", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "(official-matsegora)" in result.stdout
    sources = run_monitor("sources", "--json", cwd=workdir)
    dead = next(line for line in sources.stdout.splitlines() if '"dead"' in line)
    assert "connection_refused" in dead and '"status": "ok"' in dead


@case_row("F4")
def test_f4_external_dtd_is_never_fetched(server: FeedServer, make) -> None:
    """F4: a feed naming an external DTD on our server causes 0 requests for it."""
    doctype = f'<!DOCTYPE rss SYSTEM "{server.url("/evil.dtd")}">'
    server.routes["/ext"] = lambda r: r.send(200, rss([item(1, title="&ext;")], extra=doctype))
    server.routes["/evil.dtd"] = lambda r: r.send(200, b'<!ENTITY ext "LEAKED">')
    pipeline, _, _ = make("/ext")
    pipeline.poll_all()
    assert server.counts["/evil.dtd"] == 0
