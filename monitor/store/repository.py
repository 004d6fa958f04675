"""Every read and write the flow makes, each in its own short transaction.

A poll's articles, hits and deliveries are written in ONE transaction with
the source's new state (G7): a crash leaves either all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func
from sqlalchemy import select as sa_select  # sqlmodel's select takes at most four entities
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from monitor.crash import crash_point
from monitor.domain import Alert, Article, Hit, Match, PollOutcome
from monitor.errors import LeaseLost
from monitor.store.database import ProcessLock, create_db_engine, migrate, sqlite_path
from monitor.store.driversql import driver, select_in
from monitor.store.outbox import OutboxQueries, StoryClusterer, matches_from_json
from monitor.store.polls import claim_items, insert_articles
from monitor.store.tables import (
    ArticleRow,
    DeliveryAttemptRow,
    DeliveryRow,
    HitRow,
    SourceRow,
)


@dataclass(frozen=True)
class StoredHit:
    """A hit as `monitor hits` shows it."""

    rule_id: str
    article_id: int
    title: str
    source: str
    url: str | None
    matches: tuple[Match, ...]
    snippet: str
    created_at: datetime


@dataclass(frozen=True)
class OutboxStats:
    """The outbox and source figures that /metrics reports."""

    by_status: dict[tuple[str, str], int]
    pending: int
    oldest_pending_age: float  # seconds; 0 when nothing waits
    sources_by_status: dict[str, int]


class Store(OutboxQueries):
    """The database behind the flow. ``lock=True`` takes the one-daemon SQLite lock."""

    def __init__(self, url: str, *, lock: bool = False):
        self.url = url
        path = sqlite_path(url)
        self._lock = ProcessLock(path) if (lock and path is not None) else None
        if self._lock:
            self._lock.acquire()
        self.engine: Engine = create_db_engine(url)
        self._writer = self.engine.execution_options(immediate=True)
        self._light_writer = self.engine.execution_options(immediate=True, durable=False)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self._lock:
            self._lock.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writing(self, durable: bool = True) -> Iterator[Session]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed on success.

        ``durable=False``: on SQLite the commit does not wait for fsync (the write
        survives the process being killed, not a power cut): for writes that
        carry no hit, such as a 304 poll's new schedule.
        """
        writer = self._writer if durable else self._light_writer
        with Session(writer, expire_on_commit=False) as session, session.begin():
            yield session

    # --- sources ------------------------------------------------------------------

    def sync_sources(self, sources: Iterable[tuple[str, str, str]], now: datetime) -> None:
        """Make sure every configured (name, kind, locator) has a row; new ones are due now."""
        sources = list(sources)
        with self.writing() as s:
            rows = {r.name: r for r in s.exec(select(SourceRow))}
            new = [
                {"name": name, "kind": kind, "locator": locator, "next_poll_at": now}
                for name, kind, locator in sources if name not in rows
            ]  # fmt: skip
            if new:
                # Replicas started together on one database insert the same names at once:
                # the loser of that race must not die on the unique key (issue #6).
                pg = s.get_bind().dialect.name == "postgresql"
                insert = (postgresql.insert if pg else sqlite.insert)(SourceRow).values(new)
                s.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
            for name, kind, locator in sources:
                row = rows.get(name)
                if row is not None and (row.kind, row.locator) != (kind, locator):
                    row.kind, row.locator = kind, locator
                    row.next_poll_at = now  # a changed URL or path is polled at once
                    s.add(row)

    def due_sources(self, now: datetime, names: Iterable[str]) -> list[SourceRow]:
        """Configured sources whose next poll time has come, the most overdue first."""
        with self.reading() as s:
            query = (
                select(SourceRow)
                .where(col(SourceRow.name).in_(list(names)))
                .where((col(SourceRow.next_poll_at) <= now) | col(SourceRow.next_poll_at).is_(None))
                .order_by(col(SourceRow.next_poll_at))
            )
            return list(s.exec(query))

    def sources(self) -> list[SourceRow]:
        with self.reading() as s:
            return list(s.exec(select(SourceRow).order_by(col(SourceRow.name))))

    def known_keys(self, source: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` this source has stored before (one query per poll)."""
        keys = list(set(keys))
        if not keys:  # a 304 poll: no connection to check out, no query
            return set()
        with self.engine.connect() as connection:
            return {key for (key,) in select_in(connection, _KNOWN_KEYS, (source,), keys)}

    # --- the poll transaction -------------------------------------------------------

    def save_poll(
        self,
        outcome: PollOutcome,
        now: datetime,
        sinks_for: Callable[[Hit], Iterable[str]],
        stories: StoryClusterer | None = None,
        *,
        lease: tuple[str, int] | None = None,
    ) -> list[int]:
        """Store a poll's new articles, their hits and deliveries, and the source's state.

        With ``lease`` (owner, token) the write is fenced: if another replica has
        claimed the source since, ``LeaseLost`` is raised and nothing is written.
        Items already seen (another poll got there first) are skipped. Returns the
        ids of the articles stored.
        """
        stored: list[int] = []
        writer = self._writer if outcome.articles else self._light_writer
        # Core, not a Session: a 304 poll is one UPDATE and the commit.
        with writer.begin() as connection:
            if outcome.articles:
                row = connection.execute(_SOURCE_FOR_POLL, {"name": outcome.source}).one()
                if lease is not None and (row.lease_owner, row.lease_token) != lease:
                    raise LeaseLost("source", outcome.source, lease[1])  # fencing (G13)
                stored = _store_articles(connection, row.id, outcome, now, sinks_for, stories)
            _update_source(connection, outcome, now, len(stored), lease)
            crash_point("before_commit")
        return stored

    # --- deliveries ---------------------------------------------------------------

    def record_attempt(
        self,
        alert: Alert,
        now: datetime,
        *,
        status: str,
        next_attempt_at: datetime | None = None,
        status_code: int | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Record one send: ``status`` is delivered, pending (retry later) or failed.

        With ``owner``, an alert claimed under a lease is fenced: ``LeaseLost`` if
        another replica has claimed the delivery since, and nothing is recorded.
        """
        with self.writing() as s:
            row = s.get(DeliveryRow, alert.delivery_id, with_for_update=True)
            if row is None:
                return
            if owner is not None and alert.lease_token is not None:
                _check_lease(row, (owner, alert.lease_token), "delivery", row.id)
                row.lease_owner, row.lease_until = None, None
            row.status = status
            row.attempts += 1
            row.last_attempt_at = now
            row.last_status = status_code
            row.last_error = error
            row.next_attempt_at = next_attempt_at
            if status == "delivered":
                row.delivered_at = now
            s.add(row)
            s.add(
                DeliveryAttemptRow(
                    delivery_id=row.id,
                    attempted_at=now,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """(sink, status) -> number of deliveries."""
        with self.reading() as s:
            query = select(DeliveryRow.sink, DeliveryRow.status, func.count()).group_by(
                col(DeliveryRow.sink), col(DeliveryRow.status)
            )
            return {(sink, status): n for sink, status, n in s.exec(query)}

    def outbox_stats(self, now: datetime) -> OutboxStats:
        by_status = self.delivery_counts()
        with self.reading() as s:
            oldest = s.exec(
                select(func.min(DeliveryRow.created_at)).where(col(DeliveryRow.status) == "pending")
            ).one()
            sources = s.exec(
                select(SourceRow.status, func.count()).group_by(col(SourceRow.status))
            ).all()
        return OutboxStats(
            by_status=by_status,
            pending=sum(n for (_, status), n in by_status.items() if status == "pending"),
            oldest_pending_age=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            sources_by_status={status: n for status, n in sources},
        )

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # --- hits -------------------------------------------------------------------

    def hits(self, since: datetime | None = None, rule: str | None = None) -> list[StoredHit]:
        with self.reading() as s:
            query = (
                select(HitRow, ArticleRow, SourceRow)
                .join(ArticleRow, col(ArticleRow.id) == col(HitRow.article_id))
                .join(SourceRow, col(SourceRow.id) == col(ArticleRow.source_id))
                .order_by(col(HitRow.created_at), col(HitRow.id))
            )
            if since is not None:
                query = query.where(col(HitRow.created_at) >= since)
            if rule is not None:
                query = query.where(HitRow.rule_id == rule)
            return [
                StoredHit(
                    rule_id=hit.rule_id,
                    article_id=article.id or 0,
                    title=article.title,
                    source=source.name,
                    url=article.url,
                    matches=matches_from_json(hit.matches),
                    snippet=hit.snippet,
                    created_at=hit.created_at,
                )
                for hit, article, source in s.exec(query)
            ]

    # --- backtesting (issue #5) -------------------------------------------------------

    def count_articles(self, since: datetime) -> int:
        """How many stored articles were fetched at or after ``since``."""
        with self.reading() as s:
            query = sa_select(func.count()).where(col(ArticleRow.fetched_at) >= since)
            return int(s.execute(query).scalar_one())

    def iter_articles(
        self, since: datetime, batch_size: int = 500
    ) -> Iterator[tuple[int, Article]]:
        """(id, article) of every article fetched at or after ``since``, by id, streamed.

        Keyset pagination: each page is one short read transaction of at most
        ``batch_size`` rows after the last id seen, so a backtest over a large
        archive holds one page in memory and never blocks the daemon's writes.
        """
        after = 0
        while True:
            with self.reading() as s:
                query = (
                    sa_select(ArticleRow, col(SourceRow.name))
                    .join(SourceRow, col(SourceRow.id) == col(ArticleRow.source_id))
                    .where(col(ArticleRow.fetched_at) >= since, col(ArticleRow.id) > after)
                    .order_by(col(ArticleRow.id))
                    .limit(batch_size)
                )
                page = [(row.id or 0, _article(row, source)) for row, source in s.execute(query)]
            yield from page
            if len(page) < batch_size:
                return
            after = page[-1][0]

    def recent_texts(self, limit: int) -> list[tuple[str, str]]:
        """Title and body of the ``limit`` newest stored articles (by id), for the word
        frequencies the presearch index keys on (``monitor.rarity``). One read."""
        with self.reading() as s:
            query = (
                sa_select(col(ArticleRow.title), col(ArticleRow.body))
                .order_by(col(ArticleRow.id).desc())
                .limit(limit)
            )
            return [(title, body) for title, body in s.execute(query)]


def _check_lease(
    row: SourceRow | DeliveryRow, lease: tuple[str, int], kind: str, key: object
) -> None:
    """Fencing: the row (read FOR UPDATE) must still carry our owner and token."""
    owner, token = lease
    if row.lease_owner != owner or row.lease_token != token:
        raise LeaseLost(kind, key, token)


# Driver SQL (monitor.store.driversql): as a Core statement with an expanding IN, this
# read of 100 keys cost 1.3 ms of CPU a poll (bench/bench_feeds.py, issue #3).
_KNOWN_KEYS = (
    "SELECT seen_items.item_key FROM seen_items JOIN sources ON sources.id = seen_items.source_id"
    " WHERE sources.name = ? AND seen_items.item_key"
)

# The source row of a poll with articles, locked for its transaction (a no-op on SQLite,
# which has BEGIN IMMEDIATE): its id, and its lease checked before anything is inserted.
_SOURCE_FOR_POLL = (
    sa_select(col(SourceRow.id), col(SourceRow.lease_owner), col(SourceRow.lease_token))
    .where(col(SourceRow.name) == bindparam("name"))
    .with_for_update()
)


def _store_articles(
    connection: Connection, source_id: int, outcome: PollOutcome, now: datetime,
    sinks_for: Callable[[Hit], Iterable[str]], stories: StoryClusterer | None,
) -> list[int]:  # fmt: skip
    """The new ones of the poll's articles, with their hits and deliveries; tombstones
    for every key, the alternative keys too (F15: feeds whose GUIDs change)."""
    keys = [article.item_key for article, _ in outcome.articles]
    claimed = claim_items(connection, source_id, keys, now)
    new = [(a, hits) for a, hits in outcome.articles if a.item_key in claimed]
    stored = (
        insert_articles(connection, source_id, new, now, sinks_for, stories, outcome.signatures)
        if new
        else []
    )
    claim_items(connection, source_id, [k for a, _ in new for k in a.alt_keys], now)
    return stored


# Every poll's one UPDATE of its source, fenced by its lease when it has one; the lease is
# freed at once, the poll being done. Driver SQL (monitor.store.driversql): as a Core
# statement it was most of a 304 poll's transaction.
_SOURCE_AFTER_POLL = """UPDATE sources SET
    last_poll_at = ?, next_poll_at = ?, status = ?, consecutive_errors = ?,
    lease_owner = NULL, lease_until = NULL,
    last_success_at = CASE WHEN ? THEN ? ELSE last_success_at END,
    etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified),
    last_error = CASE WHEN ? THEN last_error ELSE ? END,
    last_error_at = CASE WHEN ? THEN last_error_at ELSE ? END,
    items_seen = items_seen + ?,
    last_new_item_at = CASE WHEN ? THEN ? ELSE last_new_item_at END
    WHERE name = ?"""
_FENCED = " AND lease_owner = ? AND lease_token = ?"


def _update_source(
    connection: Connection, outcome: PollOutcome, now: datetime, new_items: int,
    lease: tuple[str, int] | None,
) -> None:  # fmt: skip
    """Record the poll's outcome on its source; ``LeaseLost`` if ``lease`` no longer holds."""
    d = driver(connection)
    ok, at = outcome.error is None, d.time(now)
    params: tuple[Any, ...] = (
        at, d.time(outcome.next_poll_at or now), outcome.status, outcome.consecutive_errors,
        ok, at,
        (outcome.etag or None) if ok else None, (outcome.last_modified or None) if ok else None,
        ok, outcome.error, ok, at, new_items, new_items > 0, at, outcome.source,
    )  # fmt: skip
    sql = _SOURCE_AFTER_POLL + (_FENCED if lease is not None else "")
    result = connection.exec_driver_sql(d.sql(sql), params + (lease or ()))
    if result.rowcount == 0:
        if lease is not None:
            raise LeaseLost("source", outcome.source, lease[1])  # fencing (G13)
        raise LookupError(f"no source named {outcome.source!r}")


def _article(row: ArticleRow, source: str) -> Article:
    return Article(
        source=source,
        item_key="",  # not stored on the row; a backtest does not need it
        title=row.title,
        body=row.body,
        url=row.url,
        published_at=row.published_at,
        fetched_at=row.fetched_at,
        path=row.path,
    )
