"""Storage: one contract suite on a real SQLite file and a real PostgreSQL database,
plus the SQLite-only settings (pragmas, BEGIN IMMEDIATE, the process lock)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME
from sqlmodel import select

from monitor.domain import Article, Hit, Match, PollOutcome, Rule
from monitor.errors import StorageError
from monitor.store import Store
from monitor.store.tables import (
    ArticleRow,
    DeliveryRow,
    HitRow,
    SourceRow,
    SQLModel,
    StoryRow,
    UTCDateTime,
)

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
        assert pragma("journal_size_limit") == 64 << 20  # the -wal file shrinks back


def test_a_hit_is_found_by_its_article_without_a_scan(store: Store) -> None:
    """Retention asks whether any hit refers to an article, and deleting one makes the
    database check the same: both need hits indexed by article_id first (2,000 of 17,500
    articles took 13.9 s to prune without it, holding the write lock; 0.44 s with it)."""
    from sqlalchemy import inspect

    indexes = inspect(store.engine).get_indexes("hits")
    assert any(ix["column_names"][0] == "article_id" for ix in indexes)
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT 1 FROM hits WHERE article_id = 1"
            ).fetchall()  # fmt: skip
        assert "USING COVERING INDEX ix_hits_article_id" in str(plan)


def test_held_back_counts_start_from_the_few_quiet_deliveries(store: Store) -> None:
    """Every alert loaded for sending counts its rule's quiet deliveries; that count must
    come from the partial index of quiet rows, not a read of the sink's whole history."""
    from monitor.store.outbox import quiet_count

    compiled = quiet_count("korea", "hook", NOW).compile(dialect=store.engine.dialect)
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":  # as run: with bound parameters
            params = tuple(compiled.params[name] for name in compiled.positiontup or ())
            explain = "EXPLAIN QUERY PLAN "
        else:  # an empty table: forbid the sequential scan to see that the index is usable
            conn.exec_driver_sql("SET enable_seqscan = off")
            params, explain = compiled.params, "EXPLAIN "  # type: ignore[assignment]
        plan = str(conn.exec_driver_sql(explain + str(compiled), params).fetchall())
    assert "ix_deliveries_realert_quiet" in plan and "SCAN deliveries" not in plan


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


def test_only_writes_without_articles_skip_the_fsync(sqlite_store: Store) -> None:
    """A poll with articles commits with synchronous=FULL; a 304's state write with NORMAL."""
    for durable, expected in ((True, 2), (False, 1)):
        with sqlite_store.writing(durable=durable) as session:
            level = session.connection().exec_driver_sql("PRAGMA synchronous").scalar()
        assert level == expected


def test_304_poll_updates_state_and_keeps_validators(store: Store) -> None:
    """An article-less outcome moves the schedule and frees the lease; an error keeps the ETag."""
    ok = PollOutcome("seeds", etag='"v1"', next_poll_at=NOW + timedelta(minutes=5))
    store.save_poll(ok, NOW, lambda h: ())
    failed = PollOutcome("seeds", error="http_500", status="failing", consecutive_errors=3,
                         next_poll_at=NOW + timedelta(hours=1))  # fmt: skip
    store.save_poll(failed, NOW + timedelta(minutes=5), lambda h: ())
    (source,) = store.sources()
    assert source.etag == '"v1"' and source.last_success_at == NOW
    assert source.last_error == "http_500" and source.consecutive_errors == 3
    assert source.status == "failing" and source.next_poll_at == NOW + timedelta(hours=1)
    assert source.lease_owner is None and source.items_seen == 0


def test_a_poll_larger_than_one_statement_stores_every_row(store: Store) -> None:
    """A poll of 1,000 items (a feed's maximum: more bound values than one statement takes)
    stores every article under its own id, in order, with its times, hits and tombstones."""
    published = NOW - timedelta(days=2, microseconds=7)
    items = tuple(
        (
            replace(article(f"k{n}", f"story {n}"), published_at=published, alt_keys=(f"alt{n}",)),
            (Hit(RULE, (Match(0, 5, "story"),)),) if n % 3 == 0 else (),
        )
        for n in range(1000)
    )
    ids = store.save_poll(PollOutcome("seeds", items), NOW, lambda h: h.rule.notify)
    assert len(set(ids)) == 1000
    with store.reading() as s:
        rows = {row.id: row for row in s.exec(select(ArticleRow))}
        hit_articles = sorted(h.article_id for h in s.exec(select(HitRow)))
    assert [rows[id_].title for id_ in ids] == [f"story {n}" for n in range(1000)]
    assert {(r.published_at, r.fetched_at) for r in rows.values()} == {(published, NOW)}
    assert hit_articles == sorted(ids[n] for n in range(0, 1000, 3))
    assert len(store.due_alerts(NOW, limit=1000)) == 334
    keys = [f"k{n}" for n in range(1000)] + [f"alt{n}" for n in range(1000)]
    assert store.known_keys("seeds", keys) == set(keys)


def test_recent_texts_are_the_newest_articles_title_and_body(store: Store) -> None:
    """The word-frequency sample reads the newest stored articles first, at most ``limit``."""
    items = tuple((article(f"k{n}", f"story {n}"), ()) for n in range(5))
    store.save_poll(PollOutcome("seeds", items), NOW, lambda h: ())
    assert store.recent_texts(2) == [("story 4", "Pyongyang said."), ("story 3", "Pyongyang said.")]
    assert len(store.recent_texts(100)) == 5


class Stories:
    """A scripted near-duplicate index: articles titled "copy" join the first one's story."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.remembered: list[tuple[str, int]] = []
        self.settled: dict[int, int] = {}

    def assign(self, text: str, data: bytes | None = None) -> tuple[int | None, bytes]:
        return (self.first if text.startswith("copy") else None), b"sig"

    def stored(self, note: bytes) -> bytes:
        return note

    def remember(self, key: object, story_id: int, data: bytes) -> None:
        if self.first is None:
            self.first = story_id
        self.remembered.append((str(key), story_id))

    def settle(self, story_ids: dict[int, int]) -> None:
        self.settled.update(story_ids)


def test_a_poll_in_bulk_gives_each_article_its_story_and_hits(store: Store) -> None:
    """Copies inside one poll join the first one's new story; each hit and delivery points at
    its own article; the copy's alert is suppressed as a second alert of the story."""
    titles = ["lead story", "copy one", "other story", "copy two"]
    items = [
        (article(f"k{n}", t), (Hit(RULE, (Match(0, 4, t[:4]),)),)) for n, t in enumerate(titles)
    ]
    stories = Stories()
    ids = store.save_poll(PollOutcome("seeds", tuple(items)), NOW, lambda h: ["a", "b"], stories)
    assert len(ids) == 4 and stories.first is not None and stories.first < 0
    real = stories.settled[stories.first]
    hits = {h.title: h for h in store.hits()}
    assert [
        hits[t].article_id for t in ("lead story", "copy one", "other story", "copy two")
    ] == ids
    with store.reading() as s:
        story_of = {h.article_id: h.story_id for h in s.exec(select(HitRow))}
        sizes = {row.id: row.article_count for row in s.exec(select(StoryRow))}
        statuses = sorted(
            (d.sink, d.status, d.last_error or "") for d in s.exec(select(DeliveryRow))
        )
    assert story_of[ids[0]] == story_of[ids[1]] == story_of[ids[3]] == real != story_of[ids[2]]
    assert sizes[real] == 3 and sizes[story_of[ids[2]]] == 1
    pending = [s for s in statuses if s[1] == "pending"]
    assert len(pending) == 4  # lead story and other story, two sinks each
    assert statuses.count(("a", "suppressed", "story_already_alerted")) == 2


def test_a_pruned_story_in_the_index_starts_anew(store: Store) -> None:
    """A copy of a story retention removed joins a new story instead of a missing row."""
    stories = Stories()
    stories.first = 999_999  # the index still knows a story the table no longer has
    (article_id,) = store.save_poll(
        PollOutcome("seeds", ((article("k1", "copy late"), ()),)), NOW, lambda h: (), stories
    )
    new_id = stories.settled[999_999]
    with store.reading() as s:
        row = s.get(ArticleRow, article_id)
        assert row is not None and row.story_id == new_id
        assert s.get(StoryRow, new_id) is not None


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))])))
def test_sqlite_datetime_text_is_sqlalchemy_s(value: datetime) -> None:
    """Our one-step SQLite binding writes exactly the text SQLAlchemy's DATETIME writes, so
    stored times and compared times stay in one format."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = DATETIME().bind_processor(dialect)
    assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None))
