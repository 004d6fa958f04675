"""The database tables (SQLModel). Every durable fact lives here.

Alembic migrations in ``migrations/versions`` create and change these tables;
a change here needs a new migration (tests/test_store.py compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


def utc(value: datetime) -> datetime:
    """An aware datetime in UTC, as every backend is given it; a naive one is refused."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; use domain.utcnow()")
    return value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """An aware datetime as SQLite stores it: SQLAlchemy's DATETIME text in UTC,
    'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return utc(value).isoformat(" ", "microseconds")[:26]  # no "+00:00"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite itself stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Any:
        """On SQLite, straight to SQLAlchemy's DATETIME text ('YYYY-MM-DD HH:MM:SS.ffffff')
        in one step: the decorator's and the dialect's processors in a row were a tenth of
        a feed poll's transaction (bench/bench_feeds.py, issue #3)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            return None if value is None else sqlite_time(value)

        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _at(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _text(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(Text, nullable=nullable))


class SourceRow(SQLModel, table=True):
    """One configured source and its polling state (the database decides what is due)."""

    __tablename__ = "sources"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    kind: str  # feed | folder
    locator: str  # URL or folder path
    status: str = "new"  # new | ok | failing | gone
    etag: str | None = None
    last_modified: str | None = None
    interval_seconds: float | None = None
    next_poll_at: datetime | None = _at(index=True)
    last_poll_at: datetime | None = _at()
    last_success_at: datetime | None = _at()
    last_new_item_at: datetime | None = _at()
    last_error: str | None = _text()
    last_error_at: datetime | None = _at()
    consecutive_errors: int = 0
    items_seen: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = _at()
    lease_token: int = 0


class SeenItemRow(SQLModel, table=True):
    """Every item key ever stored for a source. Kept after its article is pruned
    (a tombstone), so an old item re-emitted by a feed never alerts again."""

    __tablename__ = "seen_items"
    __table_args__ = (UniqueConstraint("source_id", "item_key"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id")
    item_key: str
    first_seen_at: datetime = _at(nullable=False)


class StoryRow(SQLModel, table=True):
    """A cluster of near-duplicate articles (wire copies); one alert per rule per story."""

    __tablename__ = "stories"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _at(nullable=False)
    article_count: int = 1


class ArticleRow(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (UniqueConstraint("source_id", "item_key"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id")
    item_key: str
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    url: str | None = _text()
    path: str | None = _text()
    published_at: datetime | None = _at()
    fetched_at: datetime = _at(nullable=False, index=True)
    content_hash: str
    # Indexed for the dashboard's story view (issue #8): every outlet that carried a story.
    story_id: int | None = Field(default=None, foreign_key="stories.id", index=True)


class HitRow(SQLModel, table=True):
    """A rule that matched an article; ``matches`` is JSON [{start, end, text}]."""

    __tablename__ = "hits"
    __table_args__ = (
        UniqueConstraint("rule_id", "article_id"),
        Index("ix_hits_rule_created", "rule_id", "created_at"),
        Index("ix_hits_story_rule", "story_id", "rule_id"),  # one alert per rule per story
        Index("ix_hits_article_id", "article_id"),  # retention's "no hit refers to it"
    )
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str
    article_id: int = Field(foreign_key="articles.id")
    story_id: int | None = Field(default=None, foreign_key="stories.id")
    matches: str = Field(sa_column=Column(Text, nullable=False))
    snippet: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _at(nullable=False, index=True)


# A delivery a realert window kept quiet carries this reason. The partial index's
# predicate is written the same (a literal, not a bound parameter) in the queries that
# use it, so that the planners can match the two.
REALERT_WINDOW = "realert_window"
REALERT_QUIET = f"last_error = '{REALERT_WINDOW}'"


class DeliveryRow(SQLModel, table=True):
    """The outbox: one row per (hit, sink), written with the hit, sent later."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("hit_id", "sink"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # The few deliveries a realert window kept quiet: every alert counts those of its
        # rule and sink ("held back"), which must not read the sink's whole history.
        Index(
            "ix_deliveries_realert_quiet",
            "sink",
            "created_at",
            sqlite_where=text(REALERT_QUIET),
            postgresql_where=text(REALERT_QUIET),
        ),
    )
    id: str = Field(primary_key=True)  # deterministic UUIDv5: the webhook-id
    hit_id: int = Field(foreign_key="hits.id")
    sink: str
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _at()
    last_attempt_at: datetime | None = _at()
    last_status: int | None = None
    last_error: str | None = _text()
    created_at: datetime = _at(nullable=False)
    delivered_at: datetime | None = _at()
    lease_owner: str | None = None
    lease_until: datetime | None = _at()
    lease_token: int = 0


class DeliveryAttemptRow(SQLModel, table=True):
    """The history of every send, for `monitor deliveries` and retry audits."""

    __tablename__ = "delivery_attempts"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="deliveries.id", index=True)
    attempted_at: datetime = _at(nullable=False)
    status_code: int | None = None
    error: str | None = _text()
    duration_ms: float | None = None


class LeaderRow(SQLModel, table=True):
    """One row per chore: the replica that may run it until ``expires_at`` (Oban's peers)."""

    __tablename__ = "leaders"
    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _at(nullable=False)


class ReplicaRow(SQLModel, table=True):
    """Each running replica's heartbeat and config hash, so a config mismatch is visible."""

    __tablename__ = "replicas"
    id: str = Field(primary_key=True)  # host:pid:random, this process's lease owner name
    host: str
    pid: int
    config_hash: str
    started_at: datetime = _at(nullable=False)
    seen_at: datetime = _at(nullable=False, index=True)


class SinkStateRow(SQLModel, table=True):
    """A sink the outbox worker disabled because its destination is gone (410, Discord 404).

    ``fingerprint`` identifies the URL that was gone: when the config points the
    sink somewhere else, the sink is active again.
    """

    __tablename__ = "sink_state"
    name: str = Field(primary_key=True)
    status: str = "active"  # active | disabled
    reason: str | None = _text()
    fingerprint: str | None = None
    changed_at: datetime = _at(nullable=False)


class StorySignatureRow(SQLModel, table=True):
    """An article's MinHash signature, so the near-duplicate index survives restarts."""

    __tablename__ = "story_signatures"
    article_id: int = Field(primary_key=True, foreign_key="articles.id")
    story_id: int = Field(foreign_key="stories.id", index=True)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
