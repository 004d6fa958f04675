"""Read-only queries behind the dashboard (issue #8), in SQLAlchemy Core.

Every page is one or a few indexed reads, whatever the size of the archive:
the hit list pages by keyset ``(created_at, id) < cursor`` rather than
OFFSET (an OFFSET of n reads and drops n rows; a keyset seeks the index),
a hit's story is found through ``ix_articles_story_id`` (migration 0006),
and the chart counts per day from the ``(rule_id, created_at)`` index.
Nothing here writes, so ``monitor serve`` can point it at a live database.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, func, select, tuple_
from sqlalchemy.exc import SQLAlchemyError

from monitor.domain import Match
from monitor.errors import StorageError
from monitor.store.tables import (
    ArticleRow,
    DeliveryAttemptRow,
    DeliveryRow,
    HitRow,
    SourceRow,
)

HITS = HitRow.__table__  # type: ignore[attr-defined]
ARTICLES = ArticleRow.__table__  # type: ignore[attr-defined]
SOURCES = SourceRow.__table__  # type: ignore[attr-defined]
DELIVERIES = DeliveryRow.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttemptRow.__table__  # type: ignore[attr-defined]
FAILING_STATUSES = ("failed", "dead")


@dataclass(frozen=True)
class HitFilter:
    """What the hit list shows. ``rules`` None: every rule; empty: none (a tag nobody has)."""

    rules: frozenset[str] | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class HitLine:
    """One row of the hit list: the hit, its article's text (to mark matches) and outlet."""

    id: int
    rule_id: str
    created_at: datetime
    title: str
    body: str
    url: str | None
    source: str
    matches: tuple[Match, ...]
    article_count: int

    @property
    def text(self) -> str:
        # Contract 2: match offsets index this text (as domain.Article.text builds it).
        return f"{self.title}\n\n{self.body}" if self.body else self.title


@dataclass(frozen=True)
class StoryArticle:
    id: int
    title: str
    url: str | None
    source: str
    fetched_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


@dataclass(frozen=True)
class Delivery:
    id: str
    hit_id: int
    sink: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class HitDetail:
    hit: HitLine
    story_id: int | None
    story: tuple[StoryArticle, ...]
    deliveries: tuple[Delivery, ...]


def _matches(raw: str) -> tuple[Match, ...]:
    return tuple(Match(m["start"], m["end"], m["text"]) for m in json.loads(raw))


def _hit_query() -> Select:
    return (
        select(
            HITS.c.id,
            HITS.c.rule_id,
            HITS.c.created_at,
            HITS.c.matches,
            ARTICLES.c.title,
            ARTICLES.c.body,
            ARTICLES.c.url,
            SOURCES.c.name,
            HITS.c.story_id,
        )
        .join(ARTICLES, ARTICLES.c.id == HITS.c.article_id)
        .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
    )


def _line(row: tuple, article_count: int = 1) -> HitLine:
    hit_id, rule_id, created_at, matches, title, body, url, source = row[:8]
    return HitLine(hit_id, rule_id, created_at, title, body, url, source, _matches(matches),
                   article_count)  # fmt: skip


class WebQueries:
    """The dashboard's reads over one engine; database errors become StorageError."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def recent_hits(
        self, where: HitFilter, limit: int, before: tuple[datetime, int] | None = None
    ) -> list[HitLine]:
        """Newest first; ``before`` is the last (created_at, id) of the previous page."""
        if where.rules is not None and not where.rules:
            return []
        query = _hit_query().order_by(HITS.c.created_at.desc(), HITS.c.id.desc()).limit(limit)
        if where.rules is not None:
            query = query.where(HITS.c.rule_id.in_(sorted(where.rules)))
        if where.source:
            query = query.where(SOURCES.c.name == where.source)
        if where.since:
            query = query.where(HITS.c.created_at >= where.since)
        if where.until:
            query = query.where(HITS.c.created_at < where.until)
        if before is not None:
            query = query.where(tuple_(HITS.c.created_at, HITS.c.id) < tuple_(*before))
        with self._connect() as conn:
            return [_line(tuple(row)) for row in conn.execute(query)]

    def hit(self, hit_id: int) -> HitDetail | None:
        """A hit with its article, its story's articles and its deliveries with attempts."""
        with self._connect() as conn:
            row = conn.execute(_hit_query().where(HITS.c.id == hit_id)).first()
            if row is None:
                return None
            story_id = row[8]
            story: tuple[StoryArticle, ...] = ()
            if story_id is not None:
                story = tuple(
                    StoryArticle(*r)
                    for r in conn.execute(
                        select(
                            ARTICLES.c.id,
                            ARTICLES.c.title,
                            ARTICLES.c.url,
                            SOURCES.c.name,
                            ARTICLES.c.fetched_at,
                            ARTICLES.c.published_at,
                        )
                        .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
                        .where(ARTICLES.c.story_id == story_id)
                        .order_by(ARTICLES.c.fetched_at, ARTICLES.c.id)
                    )
                )
            deliveries = self._deliveries(conn, DELIVERIES.c.hit_id == hit_id, with_history=True)
        return HitDetail(_line(tuple(row), max(1, len(story))), story_id, story, deliveries)

    def rule_counts(
        self, since: datetime, rules: Collection[str] | None = None
    ) -> dict[str, dict[str, int]]:
        """rule id -> {"YYYY-MM-DD": hits that day (UTC)} for hits at or after ``since``."""
        day = _day(HITS.c.created_at, self.engine.dialect.name)
        query = (
            select(HITS.c.rule_id, day, func.count())
            .where(HITS.c.created_at >= since)
            .group_by(HITS.c.rule_id, day)
        )
        if rules is not None:
            query = query.where(HITS.c.rule_id.in_(sorted(rules)))
        counts: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            for rule_id, when, n in conn.execute(query):
                counts.setdefault(rule_id, {})[str(when)[:10]] = n
        return counts

    def sources(self) -> list[dict]:
        """Every source's health, failing ones first."""
        query = select(SOURCES).order_by((SOURCES.c.status == "ok").asc(), SOURCES.c.name)
        with self._connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def failing_deliveries(self, limit: int = 100) -> tuple[Delivery, ...]:
        """Failed deliveries and pending ones that have been retried, newest attempt first."""
        failing = DELIVERIES.c.status.in_(FAILING_STATUSES) | (
            (DELIVERIES.c.status == "pending") & (DELIVERIES.c.attempts > 0)
        )
        with self._connect() as conn:
            return self._deliveries(conn, failing, limit=limit)

    def _deliveries(
        self,
        conn: Connection,
        where: ColumnElement[bool],
        *,
        with_history: bool = False,
        limit: int | None = None,
    ) -> tuple[Delivery, ...]:
        cols = (DELIVERIES.c.id, DELIVERIES.c.hit_id, DELIVERIES.c.sink, DELIVERIES.c.status,
                DELIVERIES.c.attempts, DELIVERIES.c.last_status, DELIVERIES.c.last_error,
                DELIVERIES.c.next_attempt_at, DELIVERIES.c.last_attempt_at)  # fmt: skip
        query = (
            select(*cols)
            .where(where)
            .order_by(DELIVERIES.c.last_attempt_at.desc(), DELIVERIES.c.sink)
        )
        rows = [Delivery(*r) for r in conn.execute(query.limit(limit))]
        if not with_history or not rows:
            return tuple(rows)
        history: dict[str, list[Attempt]] = {}
        attempts = (
            select(
                ATTEMPTS.c.delivery_id,
                ATTEMPTS.c.attempted_at,
                ATTEMPTS.c.status_code,
                ATTEMPTS.c.error,
                ATTEMPTS.c.duration_ms,
            )
            .where(ATTEMPTS.c.delivery_id.in_([d.id for d in rows]))
            .order_by(ATTEMPTS.c.attempted_at)
        )
        for delivery_id, *rest in conn.execute(attempts):
            history.setdefault(delivery_id, []).append(Attempt(*rest))
        return tuple(replace(d, history=tuple(history.get(d.id, ()))) for d in rows)

    def _connect(self) -> AbstractContextManager[Connection]:
        return _reading(self.engine)


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A read connection whose database errors surface as StorageError (one boundary)."""
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as e:
        raise StorageError(f"database unavailable: {str(e).splitlines()[0]}") from e


def _day(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The UTC day of a timestamp. SQLite stores UTC as naive ISO text, so the day is its
    first ten characters; PostgreSQL stores timestamptz, so ask for the UTC date."""
    if dialect == "sqlite":
        return func.substr(column, 1, 10)
    return func.date(func.timezone("UTC", column))
