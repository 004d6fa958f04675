"""RELIABILITY.md 3(c) 2, isolation: while 10 hostile feeds run, how late are 50 healthy ones?

The real daemon (APScheduler ticks every 0.5 s, the database deciding what is
due) polls 50 healthy feeds every few seconds beside 10 hostile ones taken
from the rows of 3(a): a slow-loris body, a silent server, a full backlog, a
gzip bomb, a 2 GB body, a billion-laughs DTD, a ReDoS author, deep nesting,
a redirect loop and an HTML page. The loopback server stamps every healthy
request; a poll's delay is how long after its scheduled time (the previous
poll plus the interval) it arrived. The first poll of each feed is reported
apart: 60 feeds fall due at once at start-up, and a tick claims only as many
as there are fetch workers.

Every feed has a host name of its own (``healthy-7.test``, ``f10-redos.test``;
a stub resolver maps them all to 127.0.0.1), as different sites would: on one
shared host name the per-host politeness limit (2 fetches at a time) lets a
hanging feed delay its siblings on that host, by design.

A second run puts more hanging parses than parse workers beside healthy feeds:
ten feeds that alternate a ReDoS body with a valid one. Quarantined at their
first hang, they no longer delay the healthy feeds.
"""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedserver import FeedServer, Request, item, rss
from hostile import capture_logs
from hostile_routes import (
    billion_laughs,
    deep_nesting,
    encoded,
    endless_zeros,
    feed_route,
    gzip_bomb,
    redirect,
    redos_author,
    silent,
    trickle,
)

from casebook import figure, total
from monitor.config import load_config
from monitor.daemon import TICK_SECONDS, Daemon
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.store import Store
from monitor.wiring import parse_workers

pytestmark = pytest.mark.reliability

HEALTHY, INTERVAL_S, POLLS = 50, 4.0, 5  # each healthy feed polled POLLS times
PARSE_TIMEOUT_S, MARGIN_S = 2.0, 2.0
FETCH = ("{timeout: 3s, connect_timeout: 1s, read_timeout: 1s, parse_timeout: 2s, "
         "allow_private_networks: true}")  # fmt: skip


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose one queue slot is taken: connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    yield listener.getsockname()[1]
    filler.close()
    listener.close()


class Stamps:
    """Arrival times of the healthy feeds' requests; wakes a waiter as they come."""

    def __init__(self, feeds: int = HEALTHY) -> None:
        self.feeds = feeds
        self.at: dict[int, list[float]] = defaultdict(list)
        self.changed = threading.Condition()

    def route(self, n: int) -> object:
        body = rss([item(n, title=f"Healthy {n}")])

        def serve(request: Request) -> None:
            with self.changed:
                self.at[n].append(time.monotonic())
                self.changed.notify_all()
            request.send(200, body, {"Content-Type": "application/rss+xml"})

        return serve

    def wait_for(self, polls: int, timeout: float) -> bool:
        def enough() -> bool:
            return all(len(self.at[n]) >= polls for n in range(self.feeds))

        with self.changed:
            return self.changed.wait_for(enough, timeout)


def hostile_routes(server: FeedServer, backlog_port: int) -> dict[str, str]:
    """Name -> URL of the 10 hostile feeds (rows H1, H2, H3, H7, H4, F1, F10, F11, H11, H16)."""
    routes = {
        "h1-slow-body": trickle(server),
        "h2-silent": silent(server),
        "h7-gzip-bomb": encoded(gzip_bomb(), "gzip"),
        "h4-huge": endless_zeros,
        "f1-laughs": feed_route(billion_laughs(one_line=True)),
        "f10-redos": feed_route(redos_author()),
        "f11-deep": feed_route(deep_nesting()),
        "h11-loop": redirect("/hostile/h11-loop"),
        "h16-html": lambda r: r.send(200, b"<html><title>Just a moment</title></html>",
                                     {"Content-Type": "text/html"}),
    }  # fmt: skip
    urls = {}
    for name, route in routes.items():
        server.routes[f"/hostile/{name}"] = route  # type: ignore[assignment]
        urls[name] = f"http://{name}.test:{server.port}/hostile/{name}"
    urls["h3-backlog"] = f"http://h3-backlog.test:{backlog_port}/feed"
    return urls


def loopback_names(host: str, port: int) -> list[str]:
    """The stub resolver: every ``*.test`` site is served on loopback."""
    if not host.endswith(".test"):
        raise OSError(f"no such test host {host!r}")
    return ["127.0.0.1"]


def daemon_for(tmp_path: Path, feeds: list[str], fetch: str) -> tuple[Daemon, Store]:
    """The real daemon (not started) on ``feeds`` (lines of YAML) with ``fetch`` settings,
    its hits going to a console that discards them; and its store."""
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text("rules:\n  - {id: h, query: Healthy}\n")
    (tmp_path / "monitor.yaml").write_text(
        f"database: sqlite:///{tmp_path / 'm.db'}\nsources:\n  feeds:\n{''.join(feeds)}"
        f"fetch: {fetch}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={})
    store = Store(config.database_url)
    pipeline = Pipeline(config, store, {"console": ConsoleSink(file=_Discard())},
                        lambda: datetime.now(UTC), resolve=loopback_names)  # fmt: skip
    return Daemon(pipeline), store


def test_isolation_healthy_feeds_keep_their_schedule(
    tmp_path: Path, server: FeedServer, full_backlog: int
) -> None:
    """3(c) 2: 50 healthy feeds polled every 4 s by the real daemon beside 10 hostile ones are
    all polled again and again; the p95 and max delay against their schedule are the figure.
    No hostile feed stops the daemon, and every healthy poll stores its item."""
    stamps = Stamps()
    feeds = []
    for n in range(HEALTHY):
        server.routes[f"/healthy/{n}"] = stamps.route(n)  # type: ignore[assignment]
        url = f"http://healthy-{n}.test:{server.port}/healthy/{n}"
        feeds.append(f"    - {{name: healthy-{n}, url: '{url}', interval: {INTERVAL_S:g}s}}\n")
    hostile = hostile_routes(server, full_backlog)
    feeds += [f"    - {{name: {name}, url: '{url}', interval: {INTERVAL_S:g}s}}\n"
              for name, url in hostile.items()]  # fmt: skip
    daemon, store = daemon_for(tmp_path, feeds, FETCH)
    runner = threading.Thread(target=daemon.run, name="daemon")
    started = time.monotonic()
    with capture_logs() as logs:
        runner.start()
        try:
            done = stamps.wait_for(POLLS, timeout=POLLS * INTERVAL_S * 6)
            alive = runner.is_alive()
        finally:
            daemon.stop()
            runner.join(60)
    assert not runner.is_alive(), "the daemon did not stop"
    # A poll's exception that is not the feed's own error reaches the tick, which logs it.
    escaped = sum("tick failed" in line for line in logs)
    figure("hostile inputs", "daemon crashes (isolation run)", 0 if alive else 1)
    figure("hostile inputs", "exceptions past the per-feed boundary (isolation run)", escaped)
    total("daemon crashes", 0 if alive else 1)
    total("exceptions past the per-feed boundary", escaped)
    assert alive and escaped == 0
    rows = {r.name: r for r in store.sources()}
    store.close()
    assert done, {n: len(stamps.at[n]) for n in range(HEALTHY)}

    first = [stamps.at[n][0] - started for n in range(HEALTHY)]
    later = [b - a - INTERVAL_S for n in range(HEALTHY)
             for a, b in zip(stamps.at[n], stamps.at[n][1:POLLS], strict=False)]  # fmt: skip
    p95 = statistics.quantiles(later, n=20)[-1]
    figure("isolation", "healthy feeds / hostile feeds / interval", f"{HEALTHY} / 10 / "
           f"{INTERVAL_S:g} s")  # fmt: skip
    figure("isolation", "healthy polls measured (after the first)", len(later))
    figure("isolation", "delay against schedule p95 / max, s", f"{p95:.2f} / {max(later):.2f}")
    figure("isolation", "first poll after start-up p95 / max, s",
           f"{statistics.quantiles(first, n=20)[-1]:.2f} / {max(first):.2f}")  # fmt: skip
    figure("isolation", "daemon tick / parse deadline, s", f"{TICK_SECONDS} / {PARSE_TIMEOUT_S:g}")
    cores = os.cpu_count() or 2
    figure("isolation", "cores / parse workers", f"{cores} / {parse_workers(cores, HEALTHY + 10)}")
    hostile_errors = {name: (rows[name].last_error or "").split(":")[0] for name in hostile}
    figure("isolation", "hostile feeds' errors", hostile_errors)
    assert all(rows[f"healthy-{n}"].consecutive_errors == 0 for n in range(HEALTHY))
    assert all(rows[f"healthy-{n}"].items_seen == 1 for n in range(HEALTHY))
    # F11's nesting may parse inside the deadline; every other hostile feed is an error.
    assert all(rows[name].consecutive_errors >= 1 for name in hostile if name != "f11-deep")
    # What the design bounds: a healthy poll waits at most for a parse worker that a hostile
    # parse holds until its deadline, plus a tick (generous margin: never a speed test).
    assert max(later) <= PARSE_TIMEOUT_S + TICK_SECONDS + MARGIN_S


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


FLAPPING, FEW_HEALTHY, FLAP_INTERVAL_S, LONG_PARSE_S, WARM_UP_S = 10, 10, 2.0, 4.0, 20.0


def test_more_hostile_parses_than_workers_delay_no_healthy_feed(
    tmp_path: Path, server: FeedServer
) -> None:
    """G3: ten feeds whose every other body hangs feedparser until the deadline (F10's ReDoS
    author; the valid feed in between ends each error streak, so they are polled every few
    seconds) outnumber the parse workers (four on two cores). Each is quarantined at its
    first hang, so after the first offences (the warm-up) no healthy poll waits for a hang:
    every delay is under half the parse deadline, where one behind a hang would be up to a
    whole one (without the quarantine: max 7.0 s against 0.5 s with it, on two cores)."""
    stamps = Stamps(FEW_HEALTHY)
    feeds = []
    for n in range(FEW_HEALTHY):
        server.routes[f"/healthy/{n}"] = stamps.route(n)  # type: ignore[assignment]
        url = f"http://healthy-{n}.test:{server.port}/healthy/{n}"
        feeds.append(f"    - {{name: healthy-{n}, url: '{url}', interval: {FLAP_INTERVAL_S:g}s}}\n")
    hang, empty = redos_author(), rss([])
    hangs = defaultdict(int)
    for n in range(FLAPPING):

        def flap(request: Request, n: int = n) -> None:
            hangs[n] += 1
            request.send(
                200, hang if hangs[n] % 2 else empty, {"Content-Type": "application/rss+xml"}
            )

        server.routes[f"/flapping/{n}"] = flap  # type: ignore[assignment]
        url = f"http://flapping-{n}.test:{server.port}/flapping/{n}"
        feeds.append(
            f"    - {{name: flapping-{n}, url: '{url}', interval: {FLAP_INTERVAL_S:g}s}}\n"
        )
    fetch = FETCH.replace("parse_timeout: 2s", f"parse_timeout: {LONG_PARSE_S:g}s")
    assert fetch != FETCH
    daemon, store = daemon_for(tmp_path, feeds, fetch)
    runner = threading.Thread(target=daemon.run, name="daemon")
    started = time.monotonic()
    polls = int((WARM_UP_S + 20.0) / FLAP_INTERVAL_S)
    with capture_logs() as logs:
        runner.start()
        try:
            done = stamps.wait_for(polls, timeout=polls * FLAP_INTERVAL_S * 6)
        finally:
            daemon.stop()
            runner.join(60)
    store.close()
    assert not runner.is_alive(), "the daemon did not stop"
    assert done, {n: len(stamps.at[n]) for n in range(FEW_HEALTHY)}
    later = [b - a - FLAP_INTERVAL_S for n in range(FEW_HEALTHY)
             for a, b in itertools.pairwise(stamps.at[n]) if a - started > WARM_UP_S]  # fmt: skip
    timeouts = sum("source=flapping-" in line and "parse_timeout" in line for line in logs)
    quarantined = sum("parse quarantined source=flapping-" in line for line in logs)
    workers = parse_workers(os.cpu_count() or 2, FLAPPING + FEW_HEALTHY)
    figure("isolation", f"{FLAPPING} flapping ReDoS feeds / {workers} parse workers:"
           " hangs; quarantined", f"{timeouts}; {quarantined}")  # fmt: skip
    figure("isolation", "with them, healthy delay after warm-up p95 / max, s",
           f"{statistics.quantiles(later, n=20)[-1]:.2f} / {max(later):.2f}")  # fmt: skip
    assert timeouts >= 2 * FLAPPING and quarantined == FLAPPING
    assert max(later) < LONG_PARSE_S / 2
