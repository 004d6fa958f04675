"""Storage faults on SQLite (RELIABILITY S5, S16): a lock held by another process past
``busy_timeout``, and a full disk. A real `monitor run` daemon polls growing loopback feeds
and delivers to a loopback receiver throughout; afterwards every matching item is stored
once and delivered, and the file passes ``PRAGMA integrity_check``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedserver import FeedServer, GrowingFeeds
from sqlalchemy import text

from casebook import case, figure, measured, repetitions
from faultkit import (
    TimedReceiver,
    eventually,
    feed_config,
    feeds_of,
    integrity_check,
    partial_rows,
    settle,
    tally,
)
from monitor.store import Store

pytestmark = pytest.mark.reliability

FEEDS, PERIOD = 5, 2.0  # five feeds, each gaining an item every 2 s


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, FEEDS, PERIOD)
    server.stop()


@pytest.fixture
def receiver() -> Iterator[TimedReceiver]:
    r = TimedReceiver().start()
    yield r
    r.stop()


def can_write(path: Path) -> bool:
    """True once a write transaction can start on ``path`` (no other writer holds it)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@case("S5", "fault", "SQLite held by an external BEGIN EXCLUSIVE: writes wait and retry")
def test_an_external_exclusive_lock_delays_writes_and_loses_nothing(
    tmp_path: Path, feeds: GrowingFeeds, receiver: TimedReceiver, daemons, request
) -> None:
    """While the `sqlite3` shell holds BEGIN EXCLUSIVE past busy_timeout (10 s), the daemon
    stays up, reports storage_degraded (locked), retries its writes instead of crashing;
    after the release it resumes within a few seconds and loses no hit."""
    hold = 30.0 if repetitions(request.config, fast=1, full=2) > 1 else 12.0
    db = tmp_path / "m.db"
    config = feed_config(tmp_path, feeds_of(feeds), receiver.url())
    daemon = daemons(config, tmp_path / "daemon.log")
    daemon.wait_for("daemon started")
    eventually(lambda: len(receiver.requests) >= FEEDS, "the first hits delivered")
    shell = subprocess.Popen(["sqlite3", str(db)], stdin=subprocess.PIPE, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert shell.stdin is not None and shell.stdout is not None
    try:
        # The shell's own busy timeout is 0: a BEGIN colliding with one of the daemon's
        # writes failed at once, and the daemon then ran unhindered. So it waits for the
        # lock, exits on an error (.bail), and says when it holds the lock.
        shell.stdin.write(".bail on\n.timeout 20000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "locked", "the shell could not take the lock"
        assert not can_write(db)
        mark, locked_at = len(daemon.lines), time.monotonic()
        # The daemon reports the lock once a write has waited out busy_timeout, which
        # depends on when its next write began: hold the lock until it says so.
        degraded = eventually(
            lambda: (h := daemon.healthz()[1])["storage"] != "ok" and h,
            "healthz reports the held lock", timeout=hold + 60, every=0.5,
        )  # fmt: skip
        rest = hold - (time.monotonic() - locked_at)
        threading.Event().wait(max(rest, 0))  # the fault itself: held at least `hold`
        hold = time.monotonic() - locked_at
        assert daemon.proc.poll() is None
        shell.stdin.write("COMMIT;\n.quit\n")
        shell.stdin.flush()
        shell.wait(timeout=30)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    released_at = time.monotonic()
    daemon.wait_for("poll source=", after=len(daemon.lines))
    recovery = time.monotonic() - released_at
    expected, stored, received = settle(feeds, f"sqlite:///{db}", receiver)
    log = daemon.tail(100000)
    retried = daemon.count("database write retried") + daemon.count("reason=locked")
    assert daemon.proc.poll() is None and daemon.terminate() == 0
    loss = tally("S5", expected_hits=expected, stored_hits=stored,
                 expected_ids=set(), received=received)  # fmt: skip
    measured(wall_s=round(hold, 1), notes=f"lock held {hold:.0f}s, recovery {recovery:.2f}s")
    figure("safety", "S5 lock held s; recovery after release s", f"{hold:.0f}; {recovery:.2f}")
    figure("safety", "S5 write retries / backed-off ticks logged", retried)
    assert degraded["storage"] == "storage_degraded" and degraded["storage_reason"] == "locked"
    assert retried >= 1 and "Traceback" not in log[log.find("daemon started") :]
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0 and loss.duplicates_other_id == 0
    assert integrity_check(db) == "ok" and partial_rows(f"sqlite:///{db}") == 0
    failed_ticks = sum("tick failed tick=" in line for line in daemon.lines[mark:])
    assert failed_ticks <= hold  # backed off: no tight loop of failing ticks


@case("S5", "fault", "SQLite held by an external BEGIN EXCLUSIVE: writes wait and retry")
def test_read_then_write_transactions_never_fail_busy(tmp_path: Path) -> None:
    """Four threads each running 50 read-then-write transactions on one file all succeed:
    BEGIN IMMEDIATE takes the write lock first, so no busy-snapshot error skips busy_timeout."""
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.sync_sources([("s", "feed", "http://127.0.0.1/")], datetime.now(UTC))
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(50):
            try:
                with store.writing() as s:
                    n = s.execute(text("SELECT items_seen FROM sources")).scalar_one()
                    s.execute(text("UPDATE sources SET items_seen = :n"), {"n": n + 1})
            except BaseException as e:  # recorded for the assert, never swallowed
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.reading() as s:
        total = s.execute(text("SELECT items_seen FROM sources")).scalar_one()
    store.close()
    figure("safety", "S5 read-then-write race: busy errors (of 200)", len(errors))
    assert errors == [] and total == 200


# --- S16: a full disk --------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (root only; skipped with the reason where mount is not permitted)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 16 MiB tmpfs ({mounted.stderr.strip()}): needs root")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """A ballast file taking every free byte of ``disk``.

    In 1 MiB steps, then smaller ones: one fallocate of "all that is free" fails when the
    daemon writes in between, and tmpfs then gives back all of it (an empty ballast,
    the disk never full: seen in the full suite run).
    """
    ballast = disk / "ballast"
    with open(ballast, "wb") as f:
        size, step = 0, 1 << 20
        while step >= 4096:
            try:
                os.posix_fallocate(f.fileno(), size, step)
                size += step
            except OSError:
                step //= 2
    return ballast


@case("S16", "fault", "disk full under SQLite: storage_degraded, nothing partial, nothing lost")
def test_a_full_disk_degrades_then_recovers_without_loss(
    small_disk: Path, tmp_path: Path, feeds: GrowingFeeds, receiver: TimedReceiver, daemons
) -> None:
    """With the database on a 16 MiB tmpfs filled by a ballast file, the daemon stays up and
    /healthz says storage_degraded (disk_full); no partial rows; once the ballast goes, the
    items the feeds still list are stored and delivered, integrity_check is ok, 0 lost."""
    db = small_disk / "m.db"
    config = feed_config(tmp_path, feeds_of(feeds), receiver.url(), database=f"sqlite:///{db}")
    daemon = daemons(config, tmp_path / "daemon.log")
    daemon.wait_for("daemon started")
    eventually(lambda: len(receiver.requests) >= FEEDS, "the first hits delivered")
    ballast = fill(small_disk)
    full_at = time.monotonic()

    def degraded() -> dict | None:
        status, body = daemon.healthz()
        return body if status == 503 and body["storage"] == "storage_degraded" else None

    # The WAL may still have room for a while: about 26 s here.
    body = eventually(degraded, "/healthz reports storage_degraded", 120)
    before = len(daemon.lines)
    errors = eventually(lambda: daemon.metrics()["monitor_database_errors_total"] >= 10 and
                        daemon.metrics()["monitor_database_errors_total"],
                        "the daemon keeps trying (and failing) while the disk is full")  # fmt: skip
    assert daemon.proc.poll() is None
    assert integrity_check(db) == "ok" and partial_rows(f"sqlite:///{db}") == 0
    ballast.unlink()
    freed_at = time.monotonic()
    eventually(lambda: daemon.healthz()[1]["storage"] == "ok", "storage ok again", 60)
    recovery = time.monotonic() - freed_at
    expected, stored, received = settle(feeds, f"sqlite:///{db}", receiver)
    assert daemon.terminate() == 0
    loss = tally("S16", expected_hits=expected, stored_hits=stored,
                 expected_ids=set(), received=received)  # fmt: skip
    figure("safety", "S16 disk full s; recovery after freeing s",
           f"{freed_at - full_at:.1f}; {recovery:.2f}")  # fmt: skip
    measured(notes=f"reason {body['storage_reason']}, {len(daemon.lines) - before} log lines,"
             f" {errors:.0f} write errors while full")  # fmt: skip
    assert body["storage_reason"] == "disk_full"
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0 and loss.duplicates_other_id == 0
    assert integrity_check(db) == "ok" and partial_rows(f"sqlite:///{db}") == 0
