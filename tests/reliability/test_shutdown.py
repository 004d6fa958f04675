"""S19: SIGTERM during a long poll and an in-flight delivery (RELIABILITY 3(b), G14). Two
`monitor run` replicas on PostgreSQL with 60 s leases; replica A is stopped while its fetch
of a slow feed hangs and its send to a slow receiver is held."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer, item, rss
from sqlalchemy import create_engine, text

from casebook import case, figure, measured
from faultkit import TimedReceiver, eventually, feed_config, stored_hit_urls, tally
from receivers import Reply

pytestmark = pytest.mark.reliability

LEASE = 60.0


@pytest.fixture
def server() -> Iterator[FeedServer]:
    s = FeedServer().start()
    yield s
    s.stop()


def leases_of(url: str, pid: int) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sum(
                int(conn.execute(text(f"SELECT count(*) FROM {t} WHERE lease_owner LIKE :o"),
                                 {"o": f"%:{pid}:%"}).scalar_one())
                for t in ("sources", "deliveries")
            )  # fmt: skip
    finally:
        engine.dispose()


@case("S19", "fault", "SIGTERM during a long poll and a send: finished or released, no stale lease")
def test_sigterm_finishes_or_releases_and_the_other_replica_goes_on(
    pg_url: str, server: FeedServer, tmp_path: Path, daemons: Any
) -> None:
    """A's held send completes and is recorded, its hung fetch ends at the fetch deadline and
    is recorded as an error, A exits 0 with no lease left; B polls the slow feed next, within
    seconds, not after the 60 s lease; no delivery is sent twice."""
    hold_feed, hold_send = threading.Event(), threading.Event()
    slow_fetches: list[float] = []

    def slow(request: Any) -> None:
        slow_fetches.append(time.monotonic())
        hold_feed.wait(60)
        request.send(200, rss([item(1, title="Zanzibar slow dispatch")]))

    server.routes["/slow"] = slow
    server.routes["/quick"] = lambda r: r.send(200, rss([item(2, title="Zanzibar quick news")]))
    receiver = TimedReceiver().start()
    receiver.answer("/hook", Reply(hold=hold_send), Reply(200))
    env = {"DATABASE_URL": pg_url, "MONITOR_POLL_LEASE_SECONDS": str(LEASE),
           "MONITOR_DELIVERY_LEASE_SECONDS": str(LEASE)}  # fmt: skip
    try:
        config = feed_config(tmp_path, {"slow": server.url("/slow"), "quick": server.url("/quick")},
                             receiver.url(), fetch="timeout: 5s")  # fmt: skip
        a = daemons(config, tmp_path / "a.log", env)
        a.wait_for("daemon started")
        eventually(lambda: slow_fetches and receiver.requests, "A's fetch and send in flight")
        b = daemons(config, tmp_path / "b.log", env)
        b.wait_for("daemon started")
        a.proc.send_signal(15)
        stopped_at = time.monotonic()
        a.wait_for("daemon stopping")
        hold_send.set()  # the send in flight completes during the shutdown
        code = a.proc.wait(timeout=60)
        exited_at = time.monotonic()
        left = leases_of(pg_url, a.pid)
        before = len(slow_fetches)
        hold_feed.set()  # the feed answers again, for whoever polls it next
        eventually(lambda: len(slow_fetches) > before, "the slow feed polled again by B", LEASE)
        pickup = slow_fetches[before] - exited_at
        eventually(lambda: len(receiver.urls()) >= 2, "both items delivered")
        assert b.terminate() == 0
        with receiver.changed:
            received = [(r.webhook_id, r.json["article"]["url"]) for r in receiver.requests]
        stored = stored_hit_urls(pg_url)
    finally:
        hold_feed.set()
        hold_send.set()
        receiver.stop()
    loss = tally("S19", expected_hits={"https://news.example/a/1", "https://news.example/a/2"},
                 stored_hits=stored, expected_ids=set(),
                 received=received)  # fmt: skip
    measured(wall_s=round(exited_at - stopped_at, 2))
    figure("crash soak", "S19 SIGTERM to exit s (fetch deadline 5 s); leases left",
           f"{exited_at - stopped_at:.2f}; {left}")  # fmt: skip
    figure("crash soak", "S19 other replica picks the feed up after s (lease 60 s)",
           round(pickup, 2))  # fmt: skip
    assert code == 0 and left == 0
    assert a.count("daemon stopped") == 1 and "deadline_exceeded" in a.tail(200)
    assert pickup < LEASE / 2
    assert loss.duplicate_receptions == 0 and loss.deliveries_missing == 0
