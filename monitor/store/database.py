"""Open the database: engine, SQLite pragmas, the one-process lock, migrations.

SQLite (the default) is one process on one host: WAL, ``busy_timeout``,
``synchronous=FULL``, foreign keys on, and ``BEGIN IMMEDIATE`` for write
transactions (a deferred transaction that reads and then writes can fail with
SQLITE_BUSY at once, ignoring busy_timeout: sqlite.org/lang_transaction.html).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from monitor.errors import StorageError

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed 64-bit number, the same in every replica: replicas started together on a fresh
# PostgreSQL would otherwise all run CREATE TABLE and all but one fail (duplicate pg_type).
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72  # "monitor"
BUSY_TIMEOUT_MS = 10_000


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
        return create_engine(url, pool_pre_ping=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the sqlite3 module so we can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "synchronous=FULL",
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
