"""What the fault scenarios of RELIABILITY.md 3(b) share: `monitor run` daemons as real
processes, conditions waited on (never a fixed sleep), the loss-and-duplicates tally of
3(c) 3, and the process figures of 3(c) 10 (RSS, open fds, children)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from casebook import figure
from casebook import total as add_total
from receivers import Receiver

CONDITION_TIMEOUT = 90.0  # generous: a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(
    check: Callable[[], Any], what: str, timeout: float = CONDITION_TIMEOUT,
    explain: Callable[[], str] = str, every: float = 0.1,
) -> Any:  # fmt: skip
    """Re-check ``check`` until it returns something truthy; fail after ``timeout`` seconds.
    The pause between checks waits on an Event: a poll interval, not a guess at progress."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}\n{explain()}")
        pause.wait(every)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


# --- the daemon as a process ---------------------------------------------------------------


class MonitorProcess:
    """One `monitor run` subprocess (network-guarded like every child, see conftest), its
    merged output kept in memory and in ``log``; ``port`` is its http.listen port, given to
    the config as ``${MONITOR_PORT}``."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None,
                 args: Iterable[str] = ("run",)):  # fmt: skip
        self.config, self.log_path = config, log
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONITOR_CONFIG")}
        full_env = {**base, "PYTHONUNBUFFERED": "1", "MONITOR_PORT": str(self.port), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", *args, "--config", str(config)],
            cwd=config.parent, env=full_env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a") as copy:
            for line in self.proc.stdout:
                copy.write(line)
                with self.changed:
                    self.lines.append(line)
                    self.changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, text: str) -> int:
        with self.changed:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = CONDITION_TIMEOUT, after: int = 0) -> str:
        """The first line (from line number ``after`` on) containing ``text``."""

        def found() -> str | None:
            return next((ln for ln in self.lines[after:] if text in ln), None)

        with self.changed:
            if not self.changed.wait_for(lambda: found() or self.proc.poll() is not None,
                                         timeout):  # fmt: skip
                pytest.fail(f"{text!r} not seen in {timeout}s:\n{self.tail()}")
            line = found()
        if line is None:
            pytest.fail(f"monitor exited {self.proc.returncode} before {text!r}:\n{self.tail()}")
        return line

    def tail(self, n: int = 40) -> str:
        with self.changed:
            return "".join(self.lines[-n:])

    def metrics(self) -> dict[str, float]:
        """/metrics parsed: sample name (labels summed) -> value."""
        body = httpx.get(f"{self.base}/metrics", timeout=30).text
        found: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                found[sample.name] += sample.value
        return found

    def healthz(self, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        response = httpx.get(f"{self.base}/healthz", timeout=timeout)
        return response.status_code, response.json()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def children(self) -> list[tuple[int, str]]:
        """(pid, state) of this process's children: state Z is a zombie."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.pid:
                found.append((int(entry), fields[0]))
        return found

    def kill(self) -> None:
        """SIGKILL (after SIGCONT, so a stopped one dies too); reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def stop_all(started: list[MonitorProcess]) -> None:
    """Kill these daemons and their parse workers, whatever state they are in."""
    for process in started:
        kids = [pid for pid, _ in process.children()] if process.proc.poll() is None else []
        process.kill()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- configs -------------------------------------------------------------------------------


def feed_config(
    root: Path, feeds: dict[str, str], hook: str | list[str], *,
    database: str = "sqlite:///m.db", interval: str = "1s", fetch: str = "", extra: str = "",
    listen: bool = True,
) -> Path:  # fmt: skip
    """A config of loopback feeds (name -> URL) and signed webhook sinks (``hook``, then
    ``hook1``, ``hook2`` ... for more URLs), the rule ``zanzibar`` (the growing feeds'
    matching items), /healthz on ``${MONITOR_PORT}``."""
    from flows import NEW_SECRET

    hooks = [hook] if isinstance(hook, str) else hook
    names = ["hook", *(f"hook{n}" for n in range(1, len(hooks)))]
    sinks = "".join(
        f"  - {{name: {name}, type: webhook, url: '{url}', secret: '{NEW_SECRET}',"
        " allow_private_networks: true, timeout: 5s}\n"
        for name, url in zip(names, hooks, strict=True)
    )

    (root / "watchlists").mkdir(exist_ok=True)
    (root / "watchlists" / "w.yaml").write_text(
        "rules:\n  - {id: zanzibar, title: Zanzibar dispatch, query: Zanzibar}\n"
    )
    lines = "".join(f"    - {{name: {n}, url: '{u}', interval: {interval}}}\n"
                    for n, u in feeds.items())  # fmt: skip
    config = root / "monitor.yaml"
    config.write_text(
        f"database: {database}\nwatchlists: [watchlists/*.yaml]\n"
        f"sources:\n  feeds:\n{lines}"
        f"sinks:\n{sinks}"
        f"defaults: {{interval: {interval}, notify: [{', '.join(names)}]}}\n"
        "fetch: {timeout: 10s, connect_timeout: 3s, read_timeout: 5s, parse_timeout: 10s,"
        f" allow_private_networks: true, min_interval: 1s{', ' + fetch if fetch else ''}}}\n"
        + ("http: {listen: '127.0.0.1:${MONITOR_PORT}'}\n" if listen else "")
        + extra
    )
    return config


# --- what was stored and received ----------------------------------------------------------


def stored_hit_urls(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [u for (u,) in conn.execute(text(
                "SELECT a.url FROM hits h JOIN articles a ON a.id = h.article_id"
                " WHERE h.rule_id = 'zanzibar'"))]  # fmt: skip
    finally:
        engine.dispose()


def delivery_ids(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {i for (i,) in conn.execute(text("SELECT id FROM deliveries"))}
    finally:
        engine.dispose()


def integrity_check(path: Path) -> str:
    """SQLite's own verdict on the file ('ok' or the first problem)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def partial_rows(url: str, matching: str = "Zanzibar%") -> int:
    """Rows a half-written poll would leave: a matching article without its hit, a hit
    without its delivery, an article whose item key is not remembered."""
    engine = create_engine(url)
    queries = [
        "SELECT count(*) FROM articles a WHERE a.title LIKE :matching"
        " AND NOT EXISTS (SELECT 1 FROM hits h WHERE h.article_id = a.id)",
        "SELECT count(*) FROM hits h"
        " WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.hit_id = h.id)",
        "SELECT count(*) FROM articles a WHERE NOT EXISTS (SELECT 1 FROM seen_items s"
        " WHERE s.source_id = a.source_id AND s.item_key = a.item_key)",
    ]
    try:
        with engine.connect() as conn:
            return sum(
                int(conn.execute(text(q), {"matching": matching}).scalar_one()) for q in queries
            )
    finally:
        engine.dispose()


class TimedReceiver(Receiver):
    """A receiver that also notes when each request arrived (time.monotonic())."""

    def __init__(self, secrets: dict[str, str | bytes] | None = None):
        super().__init__(secrets)
        self.arrivals: list[tuple[float, str, str]] = []  # (at, path, webhook-id)

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        at = time.monotonic()
        lowered = {k.lower(): v for k, v in headers.items()}
        with self.changed:
            self.arrivals.append((at, path, lowered.get("webhook-id", "")))
        super().record(path, headers, body)

    def start(self) -> TimedReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def urls(self, path: str = "/hook") -> set[str]:
        with self.changed:
            return {r.json["article"]["url"] for r in self.on(path)}


# --- the loss and duplicates tally (RELIABILITY 3(c) 3) ----------------------------------


@dataclass
class Loss:
    """One scenario's counts over all its repetitions."""

    runs: int = 0
    crashes: int = 0
    hits_expected: int = 0
    hits_stored: int = 0
    hits_lost: int = 0
    hits_duplicated: int = 0
    deliveries_expected: int = 0
    deliveries_received: int = 0
    deliveries_missing: int = 0
    duplicate_receptions: int = 0
    duplicates_other_id: int = 0
    max_duplicates_per_crash: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


LOSS: dict[str, Loss] = {}


def tally(
    scenario: str, *, expected_hits: set[str], stored_hits: list[str],
    expected_ids: set[str], received: list[tuple[str, str]], crashes: int = 0,
) -> Loss:  # fmt: skip
    """Add one run: hits by article URL; ``received`` is (webhook-id, article URL) per
    reception; without ``expected_ids``, one delivery per expected hit is expected.
    Returns this run's counts and writes the scenario's figures so far."""
    one = Loss(runs=1, crashes=crashes)
    one.hits_expected, one.hits_stored = len(expected_hits), len(set(stored_hits))
    one.hits_lost = len(expected_hits - set(stored_hits))
    one.hits_duplicated = len(stored_hits) - len(set(stored_hits))
    ids = Counter(i for i, _ in received)
    ids_by_url: dict[str, set[str]] = defaultdict(set)
    for i, url in received:
        ids_by_url[url].add(i)
    if expected_ids:
        one.deliveries_expected = len(expected_ids)
        one.deliveries_received = len(expected_ids & set(ids))
        one.deliveries_missing = len(expected_ids - set(ids))
    else:  # one sink: one delivery per expected hit, counted by its article
        one.deliveries_expected = len(expected_hits)
        one.deliveries_received = len(expected_hits & set(ids_by_url))
        one.deliveries_missing = len(expected_hits - set(ids_by_url))
    one.duplicate_receptions = sum(n - 1 for n in ids.values())
    one.duplicates_other_id = sum(len(s) - 1 for s in ids_by_url.values())
    # One crash per run in S1-S3 (exact); a soak's many crashes share its duplicates (mean).
    one.max_duplicates_per_crash = (
        -(-one.duplicate_receptions // crashes) if crashes else one.duplicate_receptions
    )
    for name, value in (("lost hits", one.hits_lost),
                        ("missing deliveries", one.deliveries_missing),
                        ("duplicate receptions", one.duplicate_receptions),
                        ("duplicates with another id", one.duplicates_other_id)):  # fmt: skip
        add_total(name, value)
    total = LOSS.setdefault(scenario, Loss())
    for name in ("runs", "crashes", "hits_expected", "hits_stored", "hits_lost",
                 "hits_duplicated", "deliveries_expected", "deliveries_received",
                 "deliveries_missing", "duplicate_receptions", "duplicates_other_id"):  # fmt: skip
        setattr(total, name, getattr(total, name) + getattr(one, name))
    total.max_duplicates_per_crash = max(
        total.max_duplicates_per_crash, one.max_duplicates_per_crash
    )
    write_loss(scenario)
    return one


def write_loss(scenario: str) -> None:
    t = LOSS[scenario]
    dup = t.duplicate_receptions
    share = 100.0 if dup == 0 else 100.0 * (dup - t.duplicates_other_id) / dup
    figure("loss", f"{scenario} runs (crashes)", f"{t.runs} ({t.crashes})")
    figure(
        "loss",
        f"{scenario} hits expected/stored, lost, duplicated",
        f"{t.hits_expected}/{t.hits_stored}, lost {t.hits_lost}, dup {t.hits_duplicated}",
    )
    figure(
        "loss",
        f"{scenario} deliveries expected/distinct received, missing",
        f"{t.deliveries_expected}/{t.deliveries_received}, missing {t.deliveries_missing}",
    )
    figure("loss", f"{scenario} duplicate receptions (same webhook-id %)", f"{dup} ({share:.0f} %)")
    figure("loss", f"{scenario} duplicates per crash, max (a soak: mean, rounded up)",
           t.max_duplicates_per_crash)  # fmt: skip


# --- growing feeds: the workload most scenarios run under ---------------------------------


def feeds_of(feeds: Any) -> dict[str, str]:
    """name -> URL of a feedserver.GrowingFeeds."""
    return {f"feed-{i:03d}": feeds.server.url(feeds.path(i)) for i in range(feeds.count)}


def settle(
    feeds: Any, url: str, receiver: TimedReceiver, timeout: float = CONDITION_TIMEOUT
) -> tuple[set[str], list[str], list[tuple[str, str]]]:
    """Freeze the feeds, wait until each feed's last items were served, every matching item
    is stored and every stored hit delivered; return (expected, stored, received)."""
    final = feeds.freeze()
    expected = {feeds.link(i, n) for i, total in final.items() for n in range(total)
                if feeds.is_match(n)}  # fmt: skip

    def served() -> bool:
        with feeds.changed:
            got = {f.feed: f.items for f in feeds.fetches if f.status == 200}
        return all(got.get(i) == total for i, total in final.items())

    eventually(served, "every feed's final items served", timeout)

    def missing() -> str:
        return f"missing {sorted(expected - set(stored_hit_urls(url)))[:5]}"

    eventually(lambda: expected <= set(stored_hit_urls(url)), "every matching item stored",
               timeout, explain=missing)  # fmt: skip
    eventually(lambda: expected <= receiver.urls(), "every hit delivered", timeout)
    with receiver.changed:
        received = [(r.webhook_id, r.json["article"]["url"]) for r in receiver.on("/hook")]
    return expected, stored_hit_urls(url), received
