"""A hostile feed and a healthy neighbour in one real pipeline (RELIABILITY.md 3(a)).

``FeedPair`` builds what a row of 3(a) needs to be checked the way the
daemon meets it: a config on disk with two feeds on the loopback server (the
hostile one under test and a healthy one whose item matches a rule), real
SQLite, the real Fetcher, parse workers, matcher and outbox, a console sink,
and a clock the test moves. Each ``poll()`` returns what both feeds did,
the log lines the poll wrote, and the bytes each feed's sockets read.

``assert_feed_error`` is the common expectation of every row: the hostile
feed gets a feed error with the row's reason (counter +1, next attempt by
the backoff, one single-line log entry naming the feed and the reason),
and the neighbour still stores its item, its hit and its alert.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import socket
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedserver import FeedServer, item, rss
from sandbox import ChildFigures, measure_from_here, run_isolated
from sqlalchemy import text

from casebook import BOOK, figure, measured
from flows import Clock
from monitor.config import load_config
from monitor.logs import TextFormatter
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.sources.fetch import Resolver, system_resolve
from monitor.store import Store
from monitor.wiring import build_sinks

# Short deadlines keep the suite fast; every bound a test checks is one of these.
FETCH = {"timeout": "3s", "connect_timeout": "1s", "read_timeout": "1s", "parse_timeout": "2s",
         "allow_private_networks": "true"}  # fmt: skip
INTERVAL_S = 60.0
HEALTHY_PATH = "/healthy.xml"
HEALTHY_MARK = "X-Feed: healthy"  # tells the neighbour's socket apart when counting bytes
WATCHLIST = "rules:\n  - {id: zanzibar, title: Zanzibar, query: Zanzibar}\n"


def serve_healthy(server: FeedServer) -> None:
    body = rss([item(1, title="Zanzibar harbour reopens", guid="urn:healthy:1")])
    server.routes[HEALTHY_PATH] = lambda r: r.send(
        200, body, {"Content-Type": "application/rss+xml", "X-Feed": "healthy"}
    )


@dataclass(frozen=True)
class FeedPoll:
    """One feed's part of a poll, read back from the pipeline and the database."""

    error: str | None  # "reason: detail" as the pipeline recorded it
    wall_s: float
    new: int
    hits: int
    errors: int  # consecutive errors after the poll
    status: str
    next_in_s: float  # next_poll_at - the poll's now
    bytes_read: int  # from this feed's sockets (headers included)

    @property
    def reason(self) -> str | None:
        return self.error.split(":")[0] if self.error else None


@dataclass(frozen=True)
class Poll:
    hostile: FeedPoll
    healthy: FeedPoll
    logs: list[str]  # every monitor.* record of the poll, formatted as the daemon writes it
    alerts: str  # what the console sink printed
    stored: dict[str, Any] = field(default_factory=dict)  # see FeedPair.stored()


class FeedPair:
    """``hostile_url`` beside the healthy neighbour, in one pipeline on real SQLite."""

    def __init__(
        self, root: Path, server: FeedServer, hostile_url: str, *,
        fetch: dict[str, str] | None = None, resolve: Resolver = system_resolve,
        interval: str = "1m", watchlist: str = WATCHLIST, hostile_allow_private: bool = True,
        sinks: str = "", database_url: str | None = None,
    ):  # fmt: skip
        """``sinks``: YAML entries for sinks beside the console (every rule notifies all)."""
        serve_healthy(server)
        (root / "watchlists").mkdir(parents=True, exist_ok=True)
        (root / "watchlists" / "w.yaml").write_text(watchlist)
        settings = ", ".join(f"{k}: {v}" for k, v in {**FETCH, **(fetch or {})}.items())
        database = database_url or f"sqlite:///{root / 'm.db'}"
        names = ["console", *re.findall(r"name: ([\w-]+)", sinks)]
        (root / "monitor.yaml").write_text(
            f"database: {database}\nwatchlists: [watchlists/*.yaml]\n"
            f"sinks:\n  - {{name: console, type: console}}\n{sinks}"
            f"defaults: {{notify: [{', '.join(names)}]}}\n"
            "sources:\n  feeds:\n"
            f"    - {{name: hostile, url: '{hostile_url}', interval: {interval}, "
            f"allow_private: {str(hostile_allow_private).lower()}}}\n"
            f"    - {{name: healthy, url: '{server.url(HEALTHY_PATH)}', interval: {interval}, "
            "allow_private: true}\n"
            f"fetch: {{{settings}}}\n"
        )
        self.config = load_config(root / "monitor.yaml", env={})
        self.store = Store(self.config.database_url)
        self.clock = Clock(datetime.now(UTC))
        self.console = io.StringIO()
        built = {**build_sinks(self.config), "console": ConsoleSink(file=self.console)}
        self.pipeline = Pipeline(self.config, self.store, built, self.clock, resolve=resolve)
        self._walls: dict[str, float] = {}
        real_poll = self.pipeline.poll_feed

        def timed(claim: Any) -> Any:
            started = time.monotonic()
            try:
                return real_poll(claim)
            finally:
                self._walls[claim.key] = time.monotonic() - started

        self.pipeline.poll_feed = timed  # type: ignore[method-assign]

    def poll(self, *, due_only: bool = False, deliver: bool = True) -> Poll:
        """Poll both feeds (or only the due ones), deliver, and read back what happened."""
        now = self.clock()
        self._walls.clear()
        alerts_before = len(self.console.getvalue())
        with capture_logs() as logs, count_socket_reads() as reads:
            if due_only:
                summaries = self.pipeline.poll_due(wait_for_feeds=True)
            else:
                summaries = self.pipeline.poll_all(settle_seconds=0)
            if deliver:
                self.pipeline.deliver_due()
        by_name = {s.source: s for s in summaries}
        rows = {r.name: r for r in self.store.sources()}
        polls = {}
        for name in ("hostile", "healthy"):
            summary, row = by_name.get(name), rows[name]
            nxt = row.next_poll_at.replace(tzinfo=UTC) if row.next_poll_at else now
            polls[name] = FeedPoll(
                error=summary.error if summary else None,
                wall_s=round(self._walls.get(name, 0.0), 3),
                new=summary.new_articles if summary else 0,
                hits=summary.hits if summary else 0,
                errors=row.consecutive_errors,
                status=row.status,
                next_in_s=(nxt - now).total_seconds(),
                bytes_read=reads.healthy if name == "healthy" else reads.other,
            )
        alerts = self.console.getvalue()[alerts_before:]
        return Poll(polls["hostile"], polls["healthy"], logs, alerts, self.stored())

    def stored(self) -> dict[str, Any]:
        """What the database holds: articles per source, the longest fields, every text joined."""
        with self.store.reading() as s:
            rows = s.execute(text(
                "SELECT sources.name, articles.title, articles.body, articles.url "
                "FROM articles JOIN sources ON sources.id = articles.source_id"
            )).all()  # fmt: skip
        counts: dict[str, int] = defaultdict(int)
        for name, *_ in rows:
            counts[name] += 1
        return {
            "articles": dict(counts),
            "max_title": max((len(r[1]) for r in rows), default=0),
            "max_body": max((len(r[2]) for r in rows), default=0),
            "titles": [r[1][:200] for r in rows if r[0] == "hostile"],
            "text": "\n".join(f"{r[1]}\n{r[2]}\n{r[3]}" for r in rows),
        }

    def advance_to_next_poll(self, name: str = "hostile") -> None:
        """Move the clock to ``name``'s next poll time (the database's schedule)."""
        row = next(r for r in self.store.sources() if r.name == name)
        assert row.next_poll_at is not None
        self.clock.now = row.next_poll_at.replace(tzinfo=UTC)

    def close(self) -> None:
        self.pipeline.close()
        self.store.close()


def poll_once(root: Path, server: FeedServer, hostile_url: str, **options: Any) -> Poll:
    """Build the pair, poll it once, close it: the unit a sandboxed case runs."""
    pair = FeedPair(root, server, hostile_url, **options)
    try:
        measure_from_here()
        return pair.poll()
    finally:
        pair.close()


def poll_isolated(
    root: Path, server: FeedServer, hostile_url: str, *, address_space_mib: int = 2048,
    **options: Any,
) -> tuple[Poll, ChildFigures]:  # fmt: skip
    """``poll_once`` in a forked child under RLIMIT_AS (tests/reliability/sandbox.py)."""
    serve_healthy(server)  # here: the server's routes live in this process, not the child's
    return run_isolated(
        lambda: poll_once(root, server, hostile_url, **options),
        address_space_mib=address_space_mib,
    )


@functools.cache
def baseline_figures() -> ChildFigures:
    """A sandboxed poll whose hostile feed is a plain 404: what any poll costs (once per run)."""
    server = FeedServer().start()
    try:
        server.routes["/404"] = lambda r: r.send(404, b"")
        with tempfile.TemporaryDirectory() as root:
            _, figures = poll_isolated(Path(root), server, server.url("/404"))
    finally:
        server.stop()
    figure("hostile inputs", "plain poll (baseline): RSS growth / parse worker peak RSS, MiB",
           f"{figures.rss_growth_mib} / {figures.workers_peak_rss_mib}")  # fmt: skip
    return figures


def record_poll(
    poll: Poll, figures: ChildFigures | None = None, rss: float | None = None, **bounds: float
) -> None:
    """Attach the hostile feed's wall time and bytes read to the running case and, when
    sandboxed, the RSS its row bounds (``rss``; the poll's growth by default), the parse
    workers' peak and the child's fds, which must not grow."""
    values: dict[str, object] = {"wall_s": poll.hostile.wall_s}
    values["bytes_read"] = poll.hostile.bytes_read
    if figures is not None:
        values.update(peak_rss_mib=figures.rss_growth_mib if rss is None else round(rss, 1),
                      rss_growth_mib=figures.rss_growth_mib, peak_rss_abs_mib=figures.peak_rss_mib,
                      py_heap_peak_mib=figures.py_heap_peak_mib,
                      workers_peak_rss_mib=figures.workers_peak_rss_mib,
                      fds=f"{figures.fds_before} -> {figures.fds_after}",
                      forbidden_connects=figures.forbidden_connects)  # fmt: skip
        assert figures.fds_after <= figures.fds_before, "the case left file descriptors open"
        assert figures.forbidden_connects == 0
    measured(**values, **bounds, healthy_wall_s=poll.healthy.wall_s)


def record_sentinel_check(leaks: int) -> None:
    """3(c) 8: one more sentinel-file check, and how many places its content leaked to."""
    safety = BOOK.figures.get("safety", {})
    figure("safety", "sentinel-file checks", safety.get("sentinel-file checks", 0) + 1)
    total = safety.get("sentinel-file content leaks", 0) + leaks
    figure("safety", "sentinel-file content leaks", total)


def assert_feed_error(poll: Poll, reason: str | tuple[str, ...]) -> None:
    """The common expectation of 3(a): a feed error with ``reason`` for the hostile feed,
    one single-line log entry naming it, and the healthy neighbour unharmed."""
    reasons = (reason,) if isinstance(reason, str) else reason
    hostile = poll.hostile
    assert hostile.reason in reasons, f"expected {reasons}, got {hostile.error!r}"
    assert (hostile.new, hostile.hits) == (0, 0)
    assert hostile.errors == 1 and hostile.status == "ok"  # failing only from the third
    # G5 backoff after one error: the interval ±20 % jitter.
    assert INTERVAL_S * 0.8 - 1 <= hostile.next_in_s <= INTERVAL_S * 1.2 + 1, hostile.next_in_s
    lines = [line for line in poll.logs if "poll failed source=hostile " in line]
    assert len(lines) == 1, poll.logs
    assert "\n" not in lines[0] and f"reason={hostile.error!r}" in lines[0], lines[0]
    assert_neighbour_unharmed(poll)


def assert_neighbour_unharmed(poll: Poll) -> None:
    """The healthy feed stored its item, its hit, and its alert reached the console."""
    healthy = poll.healthy
    assert healthy.error is None, healthy.error
    assert (healthy.new, healthy.hits, healthy.errors) == (1, 1, 0)
    assert "Zanzibar harbour reopens" in poll.alerts


# --- what a poll wrote and read ---------------------------------------------------------


@contextmanager
def capture_logs() -> Iterator[list[str]]:
    """Every record of the ``monitor`` loggers at INFO and above, formatted as the daemon does."""
    lines: list[str] = []
    formatter = TextFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    logger = logging.getLogger("monitor")
    handler, old_level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@dataclass
class SocketReads:
    """Bytes the fetch thread read from sockets: the healthy neighbour's, and all others."""

    by_socket: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    healthy_sockets: set[int] = field(default_factory=set)

    @property
    def healthy(self) -> int:
        return sum(n for s, n in self.by_socket.items() if s in self.healthy_sockets)

    @property
    def other(self) -> int:
        return sum(n for s, n in self.by_socket.items() if s not in self.healthy_sockets)

    def add(self, sock: socket.socket, data: bytes | memoryview) -> None:
        if sock.family == socket.AF_UNIX:
            return  # the event loop's self-pipe, not a feed
        key = id(sock)
        if self.by_socket[key] == 0 and HEALTHY_MARK.encode() in bytes(data[:4096]):
            self.healthy_sockets.add(key)
        self.by_socket[key] += len(data)


@contextmanager
def count_socket_reads() -> Iterator[SocketReads]:
    """Count what the fetcher's event-loop thread ("fetch") reads from its sockets."""
    reads = SocketReads()
    real_recv, real_recv_into = socket.socket.recv, socket.socket.recv_into

    def recv(self: socket.socket, size: int, *args: Any) -> bytes:
        data = real_recv(self, size, *args)
        if threading.current_thread().name == "fetch":
            reads.add(self, data)
        return data

    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, *args: Any) -> int:
        n = real_recv_into(self, buffer, nbytes, *args)
        if threading.current_thread().name == "fetch":
            reads.add(self, memoryview(buffer)[:n])
        return n

    socket.socket.recv = recv  # type: ignore[method-assign]
    socket.socket.recv_into = recv_into  # type: ignore[method-assign]
    try:
        yield reads
    finally:  # back to the methods socket.socket inherits from _socket.socket
        del socket.socket.recv, socket.socket.recv_into
