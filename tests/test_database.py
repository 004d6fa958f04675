"""Transient database failures (RELIABILITY S5-S7, S16): named, recorded per engine, retried."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from monitor.store import Store
from monitor.store.database import health_of, retry_transient, transient_reason


def sqlite_error(message: str) -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (sqlite_error("database is locked"), "locked"),
        (sqlite_error("database or disk is full"), "disk_full"),
        (sqlite_error("disk I/O error"), "io_error"),
        (sqlite_error("no such table: sources"), None),  # a bug, never retried
        (OperationalError("SELECT 1", {}, Exception("connection refused")), "unavailable"),
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), None),
        (ValueError("database is locked"), "locked"),
    ],
)
def test_transient_reason_table(error: Exception, reason: str | None) -> None:
    """Locks, full disks, I/O errors and unreachable servers are transient; bugs are not."""
    assert transient_reason(error) == reason


def test_a_lock_held_elsewhere_degrades_then_a_commit_recovers(tmp_path: Path) -> None:
    """A write that times out on another process's EXCLUSIVE lock marks the engine
    `storage_degraded` (locked); a later successful commit clears it."""
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    health = health_of(store.engine)
    health.hold = 0.0  # the daemon's 5 s hysteresis is tested by the disk-full scenario
    holder = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")  # not 10 s: the test waits on it
            conn.commit()
            with pytest.raises(OperationalError), conn.begin():
                conn.execute(text("UPDATE sources SET status = 'ok'"))
        assert (health.state, health.reason) == ("storage_degraded", "locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with store.writing() as s:
        s.execute(text("UPDATE sources SET status = 'ok'"))
    assert health.state == "ok" and health.reason is None
    store.close()


def test_retry_transient_runs_again_until_the_lock_is_gone(tmp_path: Path) -> None:
    """A transaction that meets a lock is run again after a pause; a bug is raised at once."""
    attempts: list[int] = []
    released = threading.Event()

    def action() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite_error("database is locked")
        released.set()
        return "stored"

    assert retry_transient(action, what="test", first_delay=0.01) == "stored"
    assert len(attempts) == 3 and released.is_set()

    def buggy() -> None:
        attempts.append(1)
        raise sqlite_error("no such table: x")

    attempts.clear()
    with pytest.raises(OperationalError):
        retry_transient(buggy, what="test", first_delay=0.01)
    assert len(attempts) == 1
