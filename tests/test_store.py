"""Storage: one contract suite on a real SQLite file and a real PostgreSQL database,
plus the SQLite-only settings (pragmas, BEGIN IMMEDIATE, the process lock)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import select

from monitor.domain import Article, Hit, Match, PollOutcome, Rule
from monitor.errors import StorageError
from monitor.store import Store
from monitor.store.tables import SourceRow, SQLModel

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
RULE = Rule(id="r1", title="Rule one", query="korea", notify=("console",))


def article(key: str, title: str = "North Korea news") -> Article:
    return Article(source="seeds", item_key=key, title=title, body="Pyongyang said.", url=None,
                   published_at=None, fetched_at=NOW)  # fmt: skip


@pytest.fixture
def store(database_url: str, tmp_path: Path):
    """A migrated store on each backend, with one source."""
    s = Store(database_url, lock=True)
    s.sync_sources([("seeds", "folder", str(tmp_path))], NOW)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'm.db'}", lock=True)
    s.sync_sources([("seeds", "folder", str(tmp_path))], NOW)
    yield s
    s.close()


def test_migrations_match_the_models(store: Store) -> None:
    """The Alembic head creates exactly the tables the models describe."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_sqlite_pragmas(sqlite_store: Store) -> None:
    """WAL, busy_timeout, foreign keys and synchronous=FULL are on for every connection."""
    with sqlite_store.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") >= 5000
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 2


def test_second_process_lock_is_refused(sqlite_store: Store, tmp_path: Path) -> None:
    """A second daemon on the same SQLite file refuses to start with a clear message."""
    with pytest.raises(StorageError, match="already running"):
        Store(f"sqlite:///{tmp_path / 'm.db'}", lock=True)


def test_save_poll_writes_article_hits_and_deliveries(store: Store) -> None:
    """One transaction stores the article, its hit, the delivery, and the source state."""
    hit = Hit(RULE, (Match(0, 11, "North Korea"),))
    outcome = PollOutcome(
        "seeds", ((article("k1"), (hit,)),), next_poll_at=NOW + timedelta(seconds=1)
    )
    assert len(store.save_poll(outcome, NOW, lambda h: h.rule.notify)) == 1
    (stored,) = store.hits()
    assert stored.rule_id == "r1" and stored.matches == (Match(0, 11, "North Korea"),)
    assert stored.snippet == "North Korea news"
    (alert,) = store.due_alerts(NOW)
    assert alert.sink == "console" and alert.title == "North Korea news"
    (source,) = store.sources()
    assert source.items_seen == 1 and source.last_success_at == NOW


def test_known_item_is_never_stored_twice(store: Store) -> None:
    """An item key seen before is skipped, so no second hit or delivery."""
    hit = Hit(RULE, (Match(0, 5, "North"),))
    outcome = PollOutcome("seeds", ((article("k1"), (hit,)),))
    store.save_poll(outcome, NOW, lambda h: h.rule.notify)
    assert store.save_poll(outcome, NOW, lambda h: h.rule.notify) == []
    assert store.known_keys("seeds", ["k1", "k2"]) == {"k1"}
    assert len(store.hits()) == 1


def test_delivery_ids_are_deterministic(database_url: str, tmp_path: Path) -> None:
    """The same hit gets the same delivery id (the webhook-id) in SQLite and in this backend."""
    ids = []
    for url in (f"sqlite:///{tmp_path / 'other.db'}", database_url):
        s = Store(url)
        s.sync_sources([("seeds", "folder", "x")], NOW)
        s.save_poll(
            PollOutcome("seeds", ((article("k1"), (Hit(RULE),)),)), NOW, lambda h: ["console"]
        )
        ids.append(s.due_alerts(NOW)[0].delivery_id)
        s.close()
    assert ids[0] == ids[1]


def test_write_transactions_begin_immediate(sqlite_store: Store, tmp_path: Path) -> None:
    """A write transaction holds SQLite's write lock from its first read (BEGIN IMMEDIATE)."""
    with sqlite_store.writing() as session:
        session.exec(select(SourceRow)).all()  # only a read so far
        other = sqlite3.connect(tmp_path / "m.db", timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    with sqlite_store.reading() as session:  # a reader does not take the write lock
        session.exec(select(SourceRow)).all()
        other = sqlite3.connect(tmp_path / "m.db", timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
