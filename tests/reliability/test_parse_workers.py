"""S20: parse workers that hang or are OOM-killed (RELIABILITY 3(b), G3). A real
`monitor run` daemon polls healthy growing feeds beside hostile ones whose author field
sends feedparser into catastrophic backtracking (F10: it hangs until the parse deadline);
while such a parse runs, the test SIGKILLs the busy worker now and then, as the kernel's
OOM killer would. (A memory cap the daemon's workers can start under, 512 MiB, is not
reached by any feed under the 10 MiB body cap: 150,000 entries peak below 256 MiB.)"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer, GrowingFeeds, item, rss

from casebook import case, figure, measured, repetitions
from faultkit import TimedReceiver, eventually, feed_config, feeds_of, settle, tally

pytestmark = pytest.mark.reliability

HANG = rss([item(1, author="a@" + "a." * 40_000 + "!")])
EMPTY = rss([])
WORKER_ERRORS = ("parse_timeout", "parse_memory_exceeded", "parse_worker_died")


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, 3, 2.0)
    server.stop()


@case("S20", "fault", "parse workers hung or over their memory cap: replaced, no zombies")
def test_hung_and_bloated_parses_replace_workers_and_spare_other_feeds(
    tmp_path: Path, feeds: GrowingFeeds, daemons: Any, request: pytest.FixtureRequest
) -> None:
    """Every hostile parse is a feed error of its own (parse_timeout, parse_memory_exceeded
    or parse_worker_died); the workers are replaced, their number stays bounded and none is
    left a zombie; the healthy feeds' items are all stored and delivered."""
    wanted = repetitions(request.config, fast=8, full=100)
    hostile = {}
    # A failing feed backs off (2 s, 4 s, 8 s, ... up to a day), so a feed hostile at every
    # poll gives about ten errors in ten minutes. These flap: the hanging body, then a valid
    # empty feed, which ends the error streak; the next poll hangs again.
    for n in range(4):
        path = f"/hostile/{n}.xml"
        served = itertools.count()
        feeds.server.routes[path] = lambda r, served=served: r.send(
            200, HANG if next(served) % 2 == 0 else EMPTY
        )  # fmt: skip
        hostile[f"hostile-{n}"] = feeds.server.url(path)
    receiver = TimedReceiver().start()
    try:
        config = feed_config(tmp_path, {**feeds_of(feeds), **hostile}, receiver.url(),
                             fetch="parse_timeout: 2s")  # fmt: skip
        daemon = daemons(config, tmp_path / "daemon.log")
        daemon.wait_for("daemon started")
        daemon.wait_for("poll source=feed-")
        workers_before = [pid for pid, state in daemon.children() if state != "Z"]
        killed: list[int] = []
        last_kill = [time.monotonic()]

        def hostile_errors() -> int:
            if time.monotonic() - last_kill[0] > 1.5 and len(killed) < wanted // 2:
                busy = [pid for pid, state in daemon.children() if state == "R" and age(pid) > 3]
                if busy:  # a started worker deep in a parse: what the OOM killer would pick
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(busy[0], signal.SIGKILL)
                        killed.append(busy[0])
                    last_kill[0] = time.monotonic()
            lines = [ln for ln in daemon.lines if "poll failed source=hostile-" in ln]
            return len(lines) >= wanted and len(lines)

        errors = eventually(hostile_errors, f"{wanted} hostile parses", 60 + 6 * wanted)
        # The check above may kill a worker in the very call that counts the last error: it
        # is reaped once the parse waiting on it wakes. A zombie left is one that stays.
        eventually(
            lambda: not any(state == "Z" for _, state in daemon.children()),
            "every killed worker reaped",
            10,
            explain=lambda: str(daemon.children()),
        )
        children = daemon.children()
        zombies = sum(state == "Z" for _, state in children)
        alive = sum(state != "Z" for _, state in children)
        reasons = {r for ln in daemon.lines if "source=hostile-" in ln
                   for r in WORKER_ERRORS if r in ln}  # fmt: skip
        expected, stored, received = settle(feeds, f"sqlite:///{tmp_path / 'm.db'}", receiver)
        assert daemon.terminate() == 0
    finally:
        receiver.stop()
    gaps = healthy_gaps(feeds)
    loss = tally("S20", expected_hits=expected, stored_hits=stored, expected_ids=set(),
                 received=received)  # fmt: skip
    measured(notes=f"{errors} hostile parses, {len(killed)} workers killed, {sorted(reasons)}")
    figure("resources", "S20 hostile parses (workers SIGKILLed); children before/after; zombies",
           f"{errors} ({len(killed)}); {len(workers_before)}/{alive}; {zombies}")  # fmt: skip
    figure("resources", "S20 healthy feeds: max gap between fetches s (interval 1 s)",
           round(max(gaps), 2))  # fmt: skip
    assert zombies == 0 and alive <= max(len(workers_before), 1) + 2  # pool + resource tracker
    assert reasons and reasons <= set(WORKER_ERRORS)
    assert loss.hits_lost == 0 and loss.deliveries_missing == 0


def age(pid: int) -> float:
    """Seconds since the process started (a worker younger than its start-up is importing,
    also in state R, and killing it would only test start-up)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime


def healthy_gaps(feeds: GrowingFeeds) -> list[float]:
    by_feed: dict[int, list[float]] = {}
    for fetch in feeds.fetches:
        by_feed.setdefault(fetch.feed, []).append(fetch.at)
    return [b - a for times in by_feed.values() for a, b in itertools.pairwise(times)] or [0.0]
