"""Three `monitor run` replicas on one real PostgreSQL under faults (issue #6, RELIABILITY
S17/S18, G13/G14): 200 loopback feeds whose items keep arriving, one replica `kill -9`-ed
mid-run, one frozen (SIGSTOP) holding a lease past its expiry and then resumed.

The figures (RELIABILITY 3(c) 7, "replica race") are printed as a table (`pytest -s`),
written to ``replica-figures.json`` in the test's tmp dir, and asserted:

- no feed fetched twice within one due period (see ``fetch_gap_bound``);
- every expected hit stored exactly once;
- every expected delivery received, duplicates only with the same webhook-id;
- at least one fencing rejection, with no effect.

Select with ``pytest -m replicas``; skipped with a clear message without PostgreSQL.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedserver import FeedServer, GrowingFeeds, item, rss
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from casebook import case, figure
from conftest import run_monitor
from faultkit import quantile, tally
from flows import NEW_SECRET
from receivers import Receiver, running

pytestmark = pytest.mark.replicas

FEEDS = 200
INTERVAL = 3.0  # each feed's `interval`
LEASE = 4.0  # poll and delivery leases (MONITOR_*_LEASE_SECONDS), longer than the interval
ITEM_PERIOD = 8.0  # a feed gains an item this often
GROWTH = 30.0  # seconds of arriving items before the feeds freeze (at least)
CONDITION_TIMEOUT = 120.0  # generous: a loaded 2-core machine runs 3 replicas and PostgreSQL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(
    check: Callable[[], Any], what: str, timeout: float = CONDITION_TIMEOUT,
    explain: Callable[[], str] = str,
) -> Any:  # fmt: skip
    """Re-check ``check`` until it returns something truthy; fail after ``timeout`` seconds.
    The pause between checks waits on an Event, never a fixed sleep that assumes progress."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}\n{explain()}")
        pause.wait(0.25)


class Replica:
    """One `monitor run` subprocess; its merged output is kept (and written to a file)."""

    def __init__(self, name: str, config: Path, log: Path, env: dict[str, str]):
        self.name, self.log_path = name, log
        self.port = free_port()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "REPLICA_PORT": str(self.port), **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            cwd=config.parent, env=full_env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "w") as copy:
            for line in self.proc.stdout:
                copy.write(line)
                with self.changed:
                    self.lines.append(line)
                    self.changed.notify_all()

    def count(self, text: str) -> int:
        with self.changed:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = CONDITION_TIMEOUT) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: any(text in ln for ln in self.lines), timeout):
                tail = "".join(self.lines[-30:])
                pytest.fail(f"replica {self.name}: {text!r} not seen in {timeout}s:\n{tail}")

    @property
    def owner_pattern(self) -> str:
        return f"%:{self.proc.pid}:%"  # lease owners are host:pid:random

    def is_stopped(self) -> bool:
        """The kernel's view: state T (stopped by a signal)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"

    def metrics(self) -> dict[str, float]:
        """/metrics parsed with prometheus-client: sample name+labels -> value."""
        body = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        found: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                found[sample.name] += sample.value
        return found

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # harmless if running; a stopped one must run
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=30)


def write_config(root: Path, feeds: GrowingFeeds, hook: str) -> Path:
    (root / "watchlists").mkdir()
    (root / "watchlists" / "w.yaml").write_text(
        "rules:\n  - {id: zanzibar, title: Zanzibar dispatch, query: Zanzibar, notify: [hook]}\n"
    )
    lines = "".join(
        f"    - {{name: feed-{i:03d}, url: '{feeds.server.url(feeds.path(i))}', "
        f"interval: {INTERVAL:g}s}}\n"
        for i in range(feeds.count)
    )
    config = root / "monitor.yaml"
    config.write_text(
        "database: sqlite:///unused.db  # DATABASE_URL wins\n"
        "watchlists: [watchlists/*.yaml]\n"
        f"sources:\n  feeds:\n{lines}"
        f"sinks:\n  - {{name: hook, type: webhook, url: '{hook}', secret: '{NEW_SECRET}',"
        " allow_private_networks: true}\n"
        "defaults: {interval: 3s, notify: [hook]}\n"
        "fetch: {timeout: 5s, connect_timeout: 3s, read_timeout: 3s, parse_timeout: 5s,"
        " allow_private_networks: true, concurrency: 20, per_host: 20, min_interval: 1s}\n"
        "http: {listen: '127.0.0.1:${REPLICA_PORT}'}\n"
    )
    return config


class Database:
    """Read-only SQL on the replicas' database, for the test's conditions and figures."""

    def __init__(self, url: str):
        self.engine = create_engine(url)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def leases(self, replica: Replica) -> dict[str, int]:
        """Sources whose lease this replica holds (expired or not): name -> token."""
        rows = self.rows(
            "SELECT name, lease_token FROM sources WHERE lease_owner LIKE :owner",
            owner=replica.owner_pattern,
        )
        return {name: token for name, token in rows}

    def tokens(self, names: list[str]) -> dict[str, tuple[int, str | None]]:
        rows = self.rows(
            "SELECT name, lease_token, lease_owner FROM sources WHERE name = ANY(:names)",
            names=names,
        )
        return {name: (token, owner) for name, token, owner in rows}

    def taken_over(self, held: dict[str, int]) -> list[str]:
        """Which of these leases another claim has since replaced (the token moved on)."""
        now = self.tokens(list(held))
        return [name for name, token in held.items() if now[name][0] > token]

    def explain_leases(self, held: dict[str, int]) -> str:
        """For a failed wait: those sources' lease rows, and every session's state (a
        frozen replica idle in a transaction holds row locks that SKIP LOCKED skips)."""
        sources = self.rows(
            "SELECT name, lease_owner, lease_until, lease_token, next_poll_at, now()"
            " FROM sources WHERE name = ANY(:names) ORDER BY name LIMIT 10",
            names=list(held),
        )
        sessions = self.rows(
            "SELECT pid, state, wait_event_type, wait_event, now() - state_change,"
            " left(query, 80) FROM pg_stat_activity WHERE datname = current_database()"
        )
        return "\n".join(map(str, [*sources, "sessions:", *sessions]))

    def stored_hit_urls(self) -> list[str]:
        return [
            url
            for (url,) in self.rows(
                "SELECT a.url FROM hits h JOIN articles a ON a.id = h.article_id"
                " WHERE h.rule_id = 'zanzibar'"
            )
        ]


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, FEEDS, ITEM_PERIOD)
    server.stop()


def fetch_gap_bound() -> float:
    """The shortest allowed gap between two fetches of one feed.

    A replica sets next_poll_at = (poll start) + interval, so two polls of a feed by live
    replicas are an interval apart. A second fetch sooner than that happens only when a
    lease ran out before its poll was stored (killed or frozen holder), and then not before
    the lease expired, which is at least LEASE after the first fetch. Half the shorter of the
    two leaves room for the time between a poll's start and its request reaching the server
    on a loaded machine; a double claim or an ignored schedule gives gaps near zero.
    """
    return min(INTERVAL, LEASE) / 2


def fetch_figures(feeds: GrowingFeeds) -> dict[str, Any]:
    by_feed: dict[int, list[float]] = defaultdict(list)
    for fetch in feeds.fetches:
        by_feed[fetch.feed].append(fetch.at)
    gaps = [b - a for times in by_feed.values() for a, b in itertools.pairwise(times)]
    bound = fetch_gap_bound()
    # Max fetches of one feed inside any window as long as the bound: 1 when no gap is short.
    max_in_window = max(
        max(sum(1 for u in times if t <= u < t + bound) for t in times)
        for times in by_feed.values()
    )
    return {
        "fetches": len(feeds.fetches),
        "fetches_304": sum(f.status == 304 for f in feeds.fetches),
        "feeds_fetched": len(by_feed),
        "min_gap_s": round(min(gaps), 3),
        "gap_bound_s": bound,
        "gaps_under_bound": sum(g < bound for g in gaps),
        "gaps_under_interval": sum(g < INTERVAL for g in gaps),
        "max_fetches_per_feed_per_due_period": max_in_window,
    }


def delivery_figures(receiver: Receiver, expected_urls: set[str]) -> dict[str, Any]:
    ids_by_url: dict[str, set[str]] = defaultdict(set)
    received = Counter()
    for request in receiver.on("/hook"):
        ids_by_url[request.json["article"]["url"]].add(request.webhook_id)
        received[request.webhook_id] += 1
    duplicates = sum(n - 1 for n in received.values())
    other_id = sum(len(ids) - 1 for ids in ids_by_url.values())
    return {
        "deliveries_expected": len(expected_urls),
        "deliveries_received_distinct": len(set(ids_by_url) & expected_urls),
        "deliveries_missing": len(expected_urls - set(ids_by_url)),
        "deliveries_unexpected": len(set(ids_by_url) - expected_urls),
        "receptions": sum(received.values()),
        "duplicate_receptions": duplicates,
        "duplicates_with_another_id": other_id,
        "duplicates_same_id_share": 1.0
        if duplicates == 0
        else (duplicates - other_id) / duplicates,
        "unsigned_or_bad_signature": sum(
            not r.verified.get("new", False) for r in receiver.on("/hook")
        ),
    }


def print_table(figures: dict[str, Any]) -> None:
    width = max(map(len, figures))
    print("\nreplica fault test (3 replicas, PostgreSQL, kill -9 + SIGSTOP/SIGCONT)")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


@case("S17", "fault", "replicas race on the same feeds: <= 1 fetch per feed per due period")
@case("S18", "fault", "a replica frozen past its lease: taken over, its late write fenced off")
def test_three_replicas_survive_kill_and_freeze(
    pg_url: str, feeds: GrowingFeeds, tmp_path: Path
) -> None:
    """3 replicas, 200 growing feeds, one kill -9, one frozen past its lease: no feed fetched
    twice in a due period, every hit stored once, every delivery received (same-id
    duplicates only), and the frozen replica's late write fenced off with no effect."""
    started = time.monotonic()
    env = {
        "DATABASE_URL": pg_url,
        "MONITOR_POLL_LEASE_SECONDS": str(LEASE),
        "MONITOR_DELIVERY_LEASE_SECONDS": str(LEASE),
    }
    db = Database(pg_url)
    with running({"new": NEW_SECRET}) as receiver:
        config = write_config(tmp_path, feeds, receiver.url("/hook"))
        a = Replica("a", config, tmp_path / "a.log", env)
        b = Replica("b", config, tmp_path / "b.log", {**env, "MONITOR_PAUSE_AT": "after_fetch"})
        c = Replica("c", config, tmp_path / "c.log", env)
        connections = ConnectionSampler(db)
        try:
            figures = run_scenario(a, b, c, feeds, db, receiver)
        finally:
            connections.stop()
            for replica in (a, b, c):
                replica.kill()
            db.engine.dispose()
        figures["postgresql_connections_max"] = connections.max
        report_figures(figures, receiver)
    figures["wall_time_s"] = round(time.monotonic() - started, 1)
    del figures["_expected_urls"], figures["_stored"]
    print_table(figures)
    (tmp_path / "replica-figures.json").write_text(json.dumps(figures, indent=2))

    assert figures["feeds_fetched"] == FEEDS
    assert figures["gaps_under_bound"] == 0, figures
    assert figures["max_fetches_per_feed_per_due_period"] == 1
    assert figures["hits_lost"] == 0 and figures["hits_duplicated"] == 0, figures
    assert figures["hits_unexpected"] == 0
    assert figures["deliveries_missing"] == 0 and figures["deliveries_unexpected"] == 0
    assert figures["duplicates_with_another_id"] == 0  # every duplicate repeats its id
    assert figures["unsigned_or_bad_signature"] == 0
    assert figures["fencing_rejections_frozen"] >= 1
    assert figures["lease_lost_log_lines_frozen"] >= 1
    assert figures["lease_takeovers"] >= 2  # the frozen replica's and the killed one's
    assert figures["exit_codes_after_sigterm"] == [0, 0]


class ConnectionSampler:
    """The replicas' PostgreSQL connections, sampled twice a second (3(c) 10: the max)."""

    def __init__(self, db: Database):
        self.db, self.max = db, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                [(n,)] = self.db.rows("SELECT count(*) FROM pg_stat_activity"
                                      " WHERE datname = current_database()"
                                      " AND pid <> pg_backend_pid()")  # fmt: skip
            except Exception:  # a sample lost to a busy server is not a figure
                continue
            self.max = max(self.max, int(n))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def report_figures(figures: dict[str, Any], receiver: Receiver) -> None:
    """The replica figures in the reliability report (RELIABILITY 3(c) 3, 4, 7, 10)."""
    for name in ("max_fetches_per_feed_per_due_period", "min_gap_s", "gap_bound_s",
                 "hits_expected", "hits_stored", "hits_duplicated", "duplicate_receptions",
                 "duplicates_with_another_id", "fencing_rejections_frozen",
                 "lease_lost_log_lines_frozen", "lease_takeovers"):  # fmt: skip
        figure("replicas", f"S17/S18 {name}", figures.get(name))
    figure("replicas", "S17 alerts per item (max distinct ids per item)",
           1 + figures.get("duplicates_with_another_id", 0))  # fmt: skip
    takeover = figures.get("takeover_after_kill_s", [])
    figure("crash soak", "lease takeover after kill -9 p50/max s (lease + tick)",
           f"{quantile(takeover, 0.5):.2f}/{max(takeover, default=float('nan')):.2f}"
           f" ({LEASE + 0.5:g}) over {len(takeover)} leases")  # fmt: skip
    figure("resources", "PostgreSQL connections max (3 replicas)",
           figures.get("postgresql_connections_max"))  # fmt: skip
    with receiver.changed:
        received = [(r.webhook_id, r.json["article"]["url"]) for r in receiver.on("/hook")]
    expected = figures.get("_expected_urls", set())
    tally("S17/S18", expected_hits=expected, stored_hits=figures.get("_stored", []),
          expected_ids=set(), received=received, crashes=1)  # fmt: skip


def run_scenario(
    a: Replica, b: Replica, c: Replica, feeds: GrowingFeeds, db: Database, receiver: Receiver
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # B stops itself after its first fetch, holding that lease (and the others it claimed).
    b.wait_for("MONITOR_PAUSE_AT=after_fetch: stopping")
    eventually(b.is_stopped, "replica b stopped (SIGSTOP)")
    frozen = eventually(lambda: db.leases(b), "the frozen replica's leases in the sources table")
    figures["leases_held_by_frozen"] = len(frozen)
    a.wait_for("daemon started")
    c.wait_for("daemon started")
    taken = eventually(lambda: db.taken_over(frozen), "a frozen lease taken over", 60,
                       explain=lambda: db.explain_leases(frozen))  # fmt: skip
    figures["frozen_leases_taken_over_before_resume"] = len(taken)
    b.proc.send_signal(signal.SIGCONT)
    b.wait_for("lease lost source=")

    # Kill C while it holds leases mid-poll; A and B must take them over after expiry.
    eventually(lambda: c.count("poll source=") >= 20, "replica c has stored polls")
    held = eventually(lambda: db.leases(c), "replica c holding a lease")
    c.proc.kill()
    killed_at = time.monotonic()
    c.proc.wait(timeout=30)
    figures["leases_held_by_killed"] = len(held)
    taken_at: dict[str, float] = {}

    def all_taken() -> bool:
        for name in db.taken_over(held):
            taken_at.setdefault(name, time.monotonic() - killed_at)
        return len(taken_at) == len(held)

    eventually(all_taken, "the killed replica's leases taken",
               explain=lambda: db.explain_leases(held))  # fmt: skip
    figures["takeover_after_kill_s"] = sorted(round(t, 2) for t in taken_at.values())

    # Let items arrive a while longer, then freeze the feeds and let everything settle.
    remaining = feeds.started + GROWTH - time.monotonic()
    if remaining > 0:
        with feeds.changed:  # items keep arriving meanwhile: wait on fetches, not a sleep
            feeds.changed.wait_for(lambda: time.monotonic() >= feeds.started + GROWTH, remaining)
    final = feeds.freeze()
    expected = {feeds.link(i, n) for i, total in final.items() for n in range(total)
                if feeds.is_match(n)}  # fmt: skip

    def unserved() -> list[int]:
        with feeds.changed:
            served = {f.feed: f.items for f in feeds.fetches if f.status == 200}
        return [i for i, total in final.items() if served.get(i) != total]

    def explain_unserved() -> str:
        names = [f"feed-{i:03d}" for i in unserved()[:10]]
        rows = db.rows(
            "SELECT name, status, consecutive_errors, last_error, next_poll_at,"
            " lease_owner, lease_until FROM sources WHERE name = ANY(:n)",
            n=names,
        )
        return "\n".join(map(str, rows))

    eventually(lambda: not unserved(), "every feed's final items served",
               explain=explain_unserved)  # fmt: skip
    eventually(lambda: len(set(db.stored_hit_urls())) >= len(expected), "every hit stored")
    with receiver.changed:
        receiver.changed.wait_for(
            lambda: expected <= {r.json["article"]["url"] for r in receiver.on("/hook")},
            CONDITION_TIMEOUT,
        )
    figures["fencing_rejections_frozen"] = b.metrics()["monitor_fencing_rejections_total"]
    figures["lease_takeovers"] = sum(r.metrics()["monitor_lease_takeovers_total"] for r in (a, b))
    figures["exit_codes_after_sigterm"] = [a.terminate(), b.terminate()]
    figures["lease_lost_log_lines_frozen"] = b.count("lease lost source=")
    figures["takeover_log_lines"] = a.count("lease taken over") + b.count("lease taken over")

    stored = db.stored_hit_urls()
    figures["_expected_urls"], figures["_stored"] = expected, stored
    figures |= {
        "items_served": sum(final.values()),
        "hits_expected": len(expected),
        "hits_stored": len(stored),
        "hits_lost": len(expected - set(stored)),
        "hits_duplicated": len(stored) - len(set(stored)),
        "hits_unexpected": len(set(stored) - expected),
    }
    figures |= fetch_figures(feeds)
    figures |= delivery_figures(receiver, expected)
    return figures


def test_run_once_on_postgresql(workdir: Path, pg_url: str) -> None:
    """`monitor run --once` with DATABASE_URL stores the sample seeds' hits in PostgreSQL;
    `monitor hits --json` reads them back."""
    old = time.time() - 3600
    for path in (workdir / "seeds").iterdir():
        os.utime(path, (old, old))  # past the folder source's quiet period
    env = {"DATABASE_URL": pg_url}
    first = run_monitor("run", "--once", cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr
    assert not (workdir / "data" / "monitor.db").exists()  # nothing went to SQLite
    listed = run_monitor("hits", "--json", cwd=workdir, env=env)
    assert listed.returncode == 0, listed.stderr
    expected = json.loads((Path(__file__).parent / "expected_seed_hits.json").read_text())
    found = Counter(json.loads(line)["rule"] for line in listed.stdout.splitlines())
    assert found == Counter(rule for rules in expected.values() for rule in rules)


STARTUP = """
import os
from datetime import UTC, datetime
from monitor.store import Store
store = Store(os.environ["DATABASE_URL"])
store.sync_sources([(f"feed-{i}", "feed", f"http://127.0.0.1/{i}") for i in range(200)],
                   datetime.now(UTC))
store.close()
"""


def test_replicas_starting_together_on_a_fresh_database(pg_url: str) -> None:
    """Three processes opening a fresh PostgreSQL at once all migrate and register the same
    sources (no CREATE TABLE race, no duplicate source names); 200 rows result."""
    env = {**os.environ, "DATABASE_URL": pg_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTUP], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sources")).scalar() == 200
    engine.dispose()


def test_a_feed_still_being_polled_is_not_claimed_again(tmp_path: Path) -> None:
    """A replica whose own lease expired mid-poll (frozen) does not re-claim that feed: the
    running poll keeps its token and stores its items (a re-claim would fence it off and
    strand the new lease, renewed forever with no poll behind it)."""
    from flows import Clock
    from monitor.config import load_config
    from monitor.pipeline import Pipeline
    from monitor.sinks.console import ConsoleSink
    from monitor.store import Store
    from monitor.store.leases import POLL_LEASE

    hold = threading.Event()
    server = FeedServer().start()

    def slow(request: Any) -> None:
        hold.wait(30)  # the scripted slow feed, released by the test
        request.send(200, rss([item(1, title="Zanzibar news")]))

    server.routes["/slow"] = slow
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text("rules:\n  - {id: z, query: Zanzibar}\n")
    (tmp_path / "monitor.yaml").write_text(
        "database: sqlite:///m.db\nsources:\n  feeds:\n"
        f"    - {{name: slow, url: '{server.url('/slow')}', interval: 1m}}\n"
        "fetch: {timeout: 30s, allow_private_networks: true}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={})
    store = Store(config.database_url)
    clock = Clock()
    pipeline = Pipeline(config, store, {"console": ConsoleSink(file=io.StringIO())}, clock)
    try:
        pipeline.poll_due()
        assert server_saw(server, "/slow")
        token = slow_row(store).lease_token
        clock.advance(seconds=POLL_LEASE.total_seconds() * 2)  # our own lease ran out
        pipeline.poll_due()
        assert slow_row(store).lease_token == token  # not claimed again
        hold.set()
        summaries = pipeline.poll_due(wait_for_feeds=True)
        assert [s.new_articles for s in summaries if s.source == "slow"] == [1]
        assert slow_row(store).lease_owner is None  # stored and released, not stranded
    finally:
        hold.set()
        pipeline.close()
        store.close()
        server.stop()


def slow_row(store: Any) -> Any:
    return next(row for row in store.sources() if row.name == "slow")


def server_saw(server: FeedServer, path: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while server.counts[path] == 0 and time.monotonic() < deadline:
        pause.wait(0.05)
    return server.counts[path] > 0
