"""The outbox's reads and writes beyond the poll transaction: listing, requeueing,
disabled sinks, digests, and the decisions made when a hit is stored.

When a hit is stored (``monitor.store.polls``), each of its deliveries is
``pending`` unless the alert would be noise, then it is stored ``suppressed``
with the reason in ``last_error`` (visible in ``monitor deliveries``, never
sent, redeliverable):

- ``story_already_alerted``: the rule already hit an earlier article of the
  same story (a near-duplicate copy): one alert per rule per story;
- ``realert_window``: the rule has ``realert: 6h`` and alerted less than 6 h ago.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.domain import Alert, Match
from monitor.store.tables import (
    REALERT_QUIET,
    ArticleRow,
    DeliveryRow,
    HitRow,
    SinkStateRow,
    SourceRow,
    StoryRow,
    StorySignatureRow,
)

SUPPRESSED = "suppressed"


class StoryClusterer(Protocol):
    """What the poll transaction asks about near-duplicates (``monitor.stories.StoryIndex``)."""

    def assign(self, text: str, data: bytes | None = None) -> tuple[int | None, bytes]: ...

    def stored(self, note: bytes) -> bytes: ...

    def remember(self, key: Hashable, story_id: int, data: bytes) -> None: ...

    def settle(self, story_ids: Mapping[int, int]) -> None: ...


@dataclass(frozen=True)
class DeliveryView:
    """One outbox row as `monitor deliveries` shows it."""

    id: str
    sink: str
    rule_id: str
    title: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


def with_held_back(s: Session, alerts: list[Alert]) -> list[Alert]:
    """Each alert with the number of hits of its rule that its ``realert`` window kept
    quiet since the rule's previous alert to that sink ("the rest counted in the next one")."""
    out = []
    for alert in alerts:
        count = _held_back(s, alert)
        out.append(replace(alert, held_back=count) if count else alert)
    return out


def quiet_count(rule_id: str, sink: str, before: datetime) -> Any:
    """How many deliveries of the rule to the sink a realert window kept quiet before."""
    return (
        select(func.count())
        .select_from(DeliveryRow)
        .join(HitRow, col(HitRow.id) == col(DeliveryRow.hit_id))
        .where(text(REALERT_QUIET))
        .where(col(DeliveryRow.sink) == sink, col(DeliveryRow.created_at) < before)
        .where(col(HitRow.rule_id) == rule_id)
    )


def _held_back(s: Session, alert: Alert) -> int:
    # Quiet rows first, through their partial index: most rules have no realert window,
    # and looking for the previous alert first read every delivery of the rule to the
    # sink, once per alert (12 alerts/s after 13,000 hits of one rule, in the S4 soak).
    quiet = quiet_count(alert.rule_id, alert.sink, alert.hit_at)
    if not s.exec(quiet).one():
        return 0
    previous = s.exec(
        select(func.max(DeliveryRow.created_at))
        .join(HitRow, col(HitRow.id) == col(DeliveryRow.hit_id))
        .where(HitRow.rule_id == alert.rule_id, col(DeliveryRow.sink) == alert.sink)
        .where(col(DeliveryRow.status) != SUPPRESSED, col(DeliveryRow.created_at) < alert.hit_at)
    ).one()
    if previous is not None:
        quiet = quiet.where(col(DeliveryRow.created_at) > previous)
    return int(s.exec(quiet).one())


def alert_query() -> Any:
    return (
        sa_select(DeliveryRow, HitRow, ArticleRow, SourceRow, StoryRow)
        .join(HitRow, col(HitRow.id) == col(DeliveryRow.hit_id))
        .join(ArticleRow, col(ArticleRow.id) == col(HitRow.article_id))
        .join(SourceRow, col(SourceRow.id) == col(ArticleRow.source_id))
        .outerjoin(StoryRow, col(StoryRow.id) == col(HitRow.story_id))
    )


def to_alert(
    delivery: DeliveryRow, hit: HitRow, article: ArticleRow, source: SourceRow,
    story: StoryRow | None,
) -> Alert:  # fmt: skip
    return Alert(
        delivery_id=delivery.id,
        sink=delivery.sink,
        rule_id=hit.rule_id,
        article_id=article.id or 0,
        title=article.title,
        body=article.body,
        url=article.url,
        source=source.name,
        published_at=article.published_at,
        fetched_at=article.fetched_at,
        matches=matches_from_json(hit.matches),
        snippet=hit.snippet,
        story_id=story.id if story else None,
        story_articles=story.article_count if story else 1,
        attempts=delivery.attempts,
        hit_at=hit.created_at,
        lease_token=delivery.lease_token if delivery.lease_owner else None,
    )


def matches_from_json(raw: str) -> tuple[Match, ...]:
    return tuple(Match(m["start"], m["end"], m["text"]) for m in json.loads(raw))


class OutboxQueries:
    """Mixed into ``Store``; uses its ``reading``/``writing`` transactions."""

    def reading(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def writing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def load_alerts(self, query: Any) -> list[Alert]:
        """The deliveries an ``alert_query()`` selects, ready to render."""
        with self.reading() as s:
            return with_held_back(s, [to_alert(*row) for row in s.execute(query)])

    def due_alerts(self, now: datetime, limit: int = 100) -> list[Alert]:
        """Pending deliveries whose time has come, oldest first."""
        return self.load_alerts(
            alert_query()
            .where(col(DeliveryRow.status) == "pending")
            .where(col(DeliveryRow.next_attempt_at) <= now)
            .order_by(col(DeliveryRow.next_attempt_at), col(DeliveryRow.created_at))
            .limit(limit)
        )

    def alerts_by_id(self, ids: list[str]) -> list[Alert]:
        """The given deliveries, in due order."""
        return self.load_alerts(
            alert_query()
            .where(col(DeliveryRow.id).in_(ids))
            .order_by(col(DeliveryRow.next_attempt_at), col(DeliveryRow.created_at))
        )

    def pending_alerts(self, sink: str, limit: int = 1000) -> list[Alert]:
        """Every pending delivery of one sink, due or not (a digest takes them all)."""
        return self.load_alerts(
            alert_query()
            .where(col(DeliveryRow.status) == "pending")
            .where(col(DeliveryRow.sink) == sink)
            .order_by(col(DeliveryRow.created_at))
            .limit(limit)
        )

    def deliveries(self, *, failed_only: bool = False, limit: int = 500) -> list[DeliveryView]:
        with self.reading() as s:
            query = (
                sa_select(DeliveryRow, HitRow, ArticleRow)
                .join(HitRow, col(HitRow.id) == col(DeliveryRow.hit_id))
                .join(ArticleRow, col(ArticleRow.id) == col(HitRow.article_id))
                .order_by(col(DeliveryRow.created_at).desc(), col(DeliveryRow.id))
                .limit(limit)
            )
            if failed_only:
                query = query.where(col(DeliveryRow.status) == "failed")
            return [
                DeliveryView(
                    id=d.id,
                    sink=d.sink,
                    rule_id=h.rule_id,
                    title=a.title,
                    status=d.status,
                    attempts=d.attempts,
                    last_status=d.last_status,
                    last_error=d.last_error,
                    next_attempt_at=d.next_attempt_at,
                    created_at=d.created_at,
                    delivered_at=d.delivered_at,
                )
                for d, h, a in s.execute(query)
            ]

    def requeue(self, ids: list[str] | None, now: datetime) -> list[str]:
        """Make deliveries pending again, due now, with their schedule restarted; ``None``
        requeues every failed one. Their ids do not change. Returns the ids requeued."""
        with self.writing() as s:
            query = select(DeliveryRow)
            query = (
                query.where(col(DeliveryRow.id).in_(ids))
                if ids is not None
                else query.where(col(DeliveryRow.status) == "failed")
            )
            rows = list(s.exec(query))
            for row in rows:
                row.status, row.attempts, row.next_attempt_at = "pending", 0, now
                s.add(row)
            return [row.id for row in rows]

    def defer_sink(self, sink: str, until: datetime) -> None:
        """The receiver asked us to wait (429 Retry-After): no pending delivery of this sink
        is tried before ``until``."""
        with self.writing() as s:
            s.execute(
                update(DeliveryRow)
                .where(col(DeliveryRow.sink) == sink)
                .where(col(DeliveryRow.status) == "pending")
                .where(col(DeliveryRow.next_attempt_at) < until)
                .values(next_attempt_at=until)
            )

    def sink_states(self) -> dict[str, SinkStateRow]:
        with self.reading() as s:
            return {row.name: row for row in s.exec(select(SinkStateRow))}

    def set_sink_state(
        self, name: str, status: str, fingerprint: str | None, reason: str | None, now: datetime
    ) -> None:
        with self.writing() as s:
            row = s.get(SinkStateRow, name) or SinkStateRow(name=name, changed_at=now)
            row.status, row.fingerprint, row.reason, row.changed_at = (
                status,
                fingerprint,
                reason,
                now,
            )
            s.add(row)

    def fail_pending(self, sink: str, reason: str, now: datetime) -> int:
        """Mark every pending delivery of a disabled sink failed, with the reason."""
        with self.writing() as s:
            result = s.execute(
                update(DeliveryRow)
                .where(col(DeliveryRow.sink) == sink)
                .where(col(DeliveryRow.status) == "pending")
                .values(
                    status="failed", last_error=reason, last_attempt_at=now, next_attempt_at=None
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def story_signatures(self, newest: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        """(article id, story id, signature), oldest first; only the ``newest`` if given."""
        with self.reading() as s:
            query = select(
                StorySignatureRow.article_id,
                StorySignatureRow.story_id,
                StorySignatureRow.signature,
            ).order_by(col(StorySignatureRow.article_id).desc())
            if newest is not None:
                query = query.limit(newest)
            yield from reversed(s.exec(query).all())
