"""S4: a random `kill -9` soak (RELIABILITY 3(b), 3(c) 4). A real `monitor run` daemon on
SQLite polls 20 growing loopback feeds and delivers to 3 receivers; it is killed at random
moments K times and restarted each time. After every kill the file passes
``PRAGMA integrity_check`` and holds no partial poll; at the end every matching item is
stored once, every delivery id was received, and every duplicate repeats its id."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, GrowingFeeds

from casebook import case, figure, measured, repetitions
from faultkit import (
    TimedReceiver,
    delivery_ids,
    eventually,
    feed_config,
    feeds_of,
    integrity_check,
    partial_rows,
    quantile,
    settle,
    tally,
)

pytestmark = pytest.mark.reliability

FEEDS, PERIOD = 20, 3.0


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, FEEDS, PERIOD)
    server.stop()


@pytest.fixture
def receivers() -> Iterator[list[TimedReceiver]]:
    started = [TimedReceiver().start() for _ in range(3)]
    yield started
    for r in started:
        r.stop()


@case("S4", "fault", "random kill -9 soak: integrity ok after each kill, nothing lost")
def test_random_kill_soak(
    tmp_path: Path, feeds: GrowingFeeds, receivers: list[TimedReceiver], daemons,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """K random SIGKILLs of a busy daemon (20 feeds, 3 sinks): integrity_check ok and no
    partial rows after each; afterwards 0 lost hits, 0 missing deliveries, duplicates only
    with the same webhook-id; a restarted daemon resumes work left leased by the dead one."""
    kills = repetitions(request.config, fast=5, full=200)
    rng = random.Random(4)
    db = tmp_path / "m.db"
    config = feed_config(tmp_path, feeds_of(feeds), [r.url() for r in receivers],
                         listen=False)  # fmt: skip
    integrity_failures, partial, resumed = 0, 0, []
    pause = threading.Event()
    started = time.monotonic()
    for k in range(kills):
        daemon = daemons(config, tmp_path / "daemon.log")
        daemon.wait_for("daemon started")
        up = time.monotonic()
        if k:  # the time until the restarted daemon stores a poll again
            daemon.wait_for("poll source=", after=len(daemon.lines) - 1)
            resumed.append(time.monotonic() - up)
        pause.wait(rng.uniform(0.0, 2.0))  # a random moment of its work: the fault
        daemon.kill()
        if integrity_check(db) != "ok":
            integrity_failures += 1
        partial += partial_rows(f"sqlite:///{db}")
    daemon = daemons(config, tmp_path / "daemon.log")
    daemon.wait_for("daemon started")
    url = f"sqlite:///{db}"
    expected, stored, _ = settle(feeds, url, receivers[0])
    ids = delivery_ids(url)
    for r in receivers[1:]:
        eventually(lambda r=r: expected <= r.urls(), "every hit delivered to every sink")
    assert daemon.terminate() == 0
    received = []
    for n, r in enumerate(receivers):  # an id per (hit, sink): key receptions by both
        with r.changed:
            received += [(q.webhook_id, f"{q.json['article']['url']}#{n}") for q in r.requests]
    loss = tally("S4", expected_hits=expected, stored_hits=stored, expected_ids=ids,
                 received=received, crashes=kills)  # fmt: skip
    soak = time.monotonic() - started
    measured(wall_s=round(soak, 1))
    figure("crash soak", "S4 kills K (over s)", f"{kills} ({soak:.0f})")
    figure("crash soak", "S4 integrity_check failures", integrity_failures)
    figure("crash soak", "S4 partial transactions (rows of a half-stored poll)", partial)
    figure("crash soak", "S4 sends cut off by a kill (receivers saw a short body)",
           sum(r.truncated for r in receivers))  # fmt: skip
    figure("crash soak", "S4 restart to first stored poll p50/max s",
           f"{quantile(resumed, 0.5):.2f}/{max(resumed, default=float('nan')):.2f}")  # fmt: skip
    assert integrity_failures == 0 and partial == 0
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0
    assert loss.deliveries_missing == 0 and loss.duplicates_other_id == 0
    assert len(ids) == 3 * len(expected)
