"""Open the database: engine, SQLite pragmas, the one-process lock, migrations.

SQLite (the default) is one process on one host: WAL, ``busy_timeout``,
``synchronous=FULL``, foreign keys on, and ``BEGIN IMMEDIATE`` for write
transactions (a deferred transaction that reads and then writes can fail with
SQLITE_BUSY at once, ignoring busy_timeout: sqlite.org/lang_transaction.html).

Some database errors pass by themselves (RELIABILITY S5-S7, S16): a lock held
by another process past ``busy_timeout``, a full disk, a PostgreSQL server that
restarts or cannot be reached. ``transient_reason`` names them; every engine
records the last one in its ``StorageHealth`` (cleared by the next commit), which
``/healthz`` and ``/metrics`` show; ``retry_transient`` runs a transaction again
after a short backoff instead of losing its work.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from monitor import metrics
from monitor.errors import StorageError

log = logging.getLogger("monitor.store")
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed 64-bit number, the same in every replica: replicas started together on a fresh
# PostgreSQL would otherwise all run CREATE TABLE and all but one fail (duplicate pg_type).
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72  # "monitor"
BUSY_TIMEOUT_MS = 10_000
# A PostgreSQL that accepts TCP but never answers (a partition, a hung proxy) must not hang a
# tick forever: libpq waits without limit unless told (RELIABILITY S7).
PG_CONNECT_TIMEOUT_S = 10
# A replica frozen (SIGSTOP, a stalled VM) inside a transaction keeps its row locks, and
# FOR UPDATE SKIP LOCKED then skips those rows for good: its leases are never taken over
# and other replicas' writes to the same rows wait on it. PostgreSQL ends such a session
# after this long; our transactions never idle between statements for anywhere near it.
PG_IDLE_IN_TRANSACTION_S = 10


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other backends and :memory:."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def create_db_engine(url: str) -> Engine:
    """An engine with our SQLite settings.

    Write sessions bind to ``engine.execution_options(immediate=True)``, and to
    ``durable=False`` as well for writes that may be lost to a power cut.
    """
    path = sqlite_path(url)
    if path is None:
        postgres = make_url(url).get_backend_name() == "postgresql"
        args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if postgres else {}
        engine = create_engine(url, pool_pre_ping=True, connect_args=args)
        _watch_health(engine)
        if postgres:

            @event.listens_for(engine, "connect")
            def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute(
                        "SET SESSION idle_in_transaction_session_timeout = "
                        f"{PG_IDLE_IN_TRANSACTION_S * 1000}"
                    )
                dbapi_connection.commit()

        return engine
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _watch_health(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the sqlite3 module so we can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "synchronous=FULL",
            # After a checkpoint resets the -wal file, cut it back to this (64 MiB):
            # otherwise it stays as large as its largest burst, for good.
            f"journal_size_limit={64 << 20}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("immediate", False):
            # A write that holds no hit (a 304, an error, a lease) need not wait for fsync:
            # in WAL mode NORMAL still survives a crash of the process, and loses at most
            # the newest such writes to a power cut (SQLite's docs on synchronous).
            durable = options.get("durable", True)
            conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


# --- transient failures -----------------------------------------------------------------


def transient_reason(error: BaseException) -> str | None:
    """``locked``, ``disk_full``, ``io_error`` or ``unavailable`` for a database error that
    may pass by itself; None for any other error (a bug, a constraint: never retried)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "unavailable"
    text = str(getattr(error, "orig", None) or error).lower()
    if "database is locked" in text or "database table is locked" in text:
        return "locked"
    if "database or disk is full" in text or "no space left" in text:
        return "disk_full"
    if "disk i/o error" in text:
        return "io_error"
    if isinstance(error, OperationalError) and not isinstance(
        getattr(error, "orig", None), sqlite3.OperationalError
    ):
        return "unavailable"  # PostgreSQL: refused, reset, admin shutdown, timeout
    return None


@dataclass
class StorageHealth:
    """The last transient failure of one engine's database, until commits succeed again.

    A nearly full disk lets small writes (a lease) through while a poll's fails, so one
    good commit does not end a spell: only a commit ``hold`` seconds after the last
    failure does (the daemon commits every tick), or the state would flap every second.
    """

    reason: str | None = None
    since: float | None = None  # time.monotonic() of the first failure of this spell
    last_failure: float = 0.0
    errors: int = 0
    hold: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failed(self, reason: str) -> None:
        with self._lock:
            self.last_failure = time.monotonic()
            if self.reason is None:
                self.since = self.last_failure
                log.warning("database degraded reason=%s", reason)
            self.reason = reason
            self.errors += 1
        metrics.database_errors.labels(reason=reason).inc()
        metrics.storage_degraded.set(1)

    def recovered(self) -> None:
        if self.reason is None or time.monotonic() - self.last_failure < self.hold:
            return
        with self._lock:
            reason, since = self.reason, self.since
            self.reason = self.since = None
        metrics.storage_degraded.set(0)
        took = time.monotonic() - since if since is not None else 0.0
        log.info("database recovered reason=%s after=%.1fs", reason, took)

    @property
    def state(self) -> str:
        """``ok``, ``db_unavailable`` (cannot reach it) or ``storage_degraded`` (cannot write)."""
        reason = self.reason
        if reason is None:
            return "ok"
        return "db_unavailable" if reason == "unavailable" else "storage_degraded"


_health: weakref.WeakKeyDictionary[Engine, StorageHealth] = weakref.WeakKeyDictionary()


def health_of(engine: Engine) -> StorageHealth:
    """The StorageHealth that ``create_db_engine`` attached to ``engine``."""
    return _health.setdefault(engine, StorageHealth())


def _watch_health(engine: Engine) -> None:
    health = health_of(engine)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception or context.original_exception
        reason = "unavailable" if context.is_disconnect else transient_reason(error)
        if reason is not None:
            health.failed(reason)

    @event.listens_for(engine, "commit")
    def _on_commit(_conn: Any) -> None:
        # Fired before the DBAPI commit: if that fails, handle_error runs next and wins.
        health.recovered()


def retry_transient(
    action: Callable[[], T], *, what: str, attempts: int = 4, first_delay: float = 0.25,
    max_delay: float = 4.0,
) -> T:  # fmt: skip
    """Run ``action`` (one whole transaction); after a transient error run it again, up to
    ``attempts`` times with doubling pauses. Any other error, or the last one, is raised."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except SQLAlchemyError as e:
            reason = transient_reason(e)
            if reason is None or attempt == attempts:
                raise
            log.warning("database write retried what=%s reason=%s attempt=%d in=%.2fs",
                        what, reason, attempt, delay)  # fmt: skip
            time.sleep(delay)  # a backoff between attempts, not a wait for a condition
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (run on every start)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas migrate one after the other; the lock ends with this transaction.
            # (Ownership of sources never rests on advisory locks, RELIABILITY 4.2; this one
            # only orders a startup step.)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})  # fmt: skip
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
        connection.commit()


class ProcessLock:
    """An exclusive OS lock beside the SQLite file: one daemon per database."""

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StorageError(
                f"another monitor is already running on {self.path.with_suffix('')} "
                f"({holder}); SQLite allows one daemon per database file — "
                "use PostgreSQL (DATABASE_URL=postgresql+psycopg://...) for several replicas"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
