"""Leases: how replicas share due sources and due deliveries without doing one twice.

Every replica runs the same loop. A due row is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` (a replica never waits on another's
claim) and stamped with a lease: owner, expiry from the database's clock, and
a token that grows with every claim. Results are written only while the token
still matches (fencing, RELIABILITY.md 4.2): a replica that was frozen past
its lease finds the token moved on, and its late write changes nothing.
Leases are renewed while working and released on shutdown. SQLite ignores
the row locks, which is fine: it is one process behind a file lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select as sa_select  # sqlmodel's select takes at most four columns
from sqlalchemy import update
from sqlmodel import col

from monitor.domain import Alert
from monitor.store.coordination import database_now
from monitor.store.repository import Store
from monitor.store.tables import DeliveryRow, SourceRow

# Defaults from RELIABILITY 4.2; the variables exist so fault tests can use short leases.
POLL_LEASE = timedelta(seconds=float(os.environ.get("MONITOR_POLL_LEASE_SECONDS", 90)))
DELIVERY_LEASE = timedelta(seconds=float(os.environ.get("MONITOR_DELIVERY_LEASE_SECONDS", 60)))


@dataclass(frozen=True)
class Claim:
    """A claimed row: its key, the token to fence writes with, and who held it before.

    For a source, also the state its poll needs (errors so far, HTTP validators).
    """

    key: Any  # source name or delivery id
    token: int
    taken_over_from: str | None  # a previous owner whose lease had expired
    errors: int = 0
    etag: str | None = None
    last_modified: str | None = None


def claim_sources(
    store: Store, owner: str, now: datetime, names: Iterable[str], *,
    lease: timedelta = POLL_LEASE, limit: int = 50, due_only: bool = True,
    reclaim_own: bool = False,
) -> list[Claim]:  # fmt: skip
    """Claim up to ``limit`` configured sources that are due (or all, for ``run --once``)
    and not leased by anyone.

    ``reclaim_own``: ``names`` holds no source this replica is polling, so a lease of ours
    on one of them is left from a poll whose write failed (database away, disk full); take
    it again now, with a new token, rather than renew it forever and never poll that source.
    """
    query: Any = sa_select(
        col(SourceRow.id), col(SourceRow.name).label("key"), col(SourceRow.lease_owner),
        col(SourceRow.lease_token), col(SourceRow.consecutive_errors), col(SourceRow.etag),
        col(SourceRow.last_modified),
    ).where(col(SourceRow.name).in_(list(names)))  # fmt: skip
    if due_only:
        query = query.where(
            (col(SourceRow.next_poll_at) <= now) | col(SourceRow.next_poll_at).is_(None)
        )
    return _claim(store, SourceRow, query.order_by(col(SourceRow.next_poll_at)), owner, now,
                  lease, limit, reclaim_own=reclaim_own)  # fmt: skip


def claim_deliveries(
    store: Store, owner: str, now: datetime, sinks: Iterable[str], *,
    lease: timedelta = DELIVERY_LEASE, limit: int = 100, due_only: bool = True,
) -> list[Claim]:  # fmt: skip
    """Claim up to ``limit`` pending deliveries of ``sinks`` whose next attempt is due
    (every pending one with ``due_only=False``: a digest takes them all)."""
    query: Any = (
        sa_select(
            col(DeliveryRow.id),
            col(DeliveryRow.id).label("key"),
            col(DeliveryRow.lease_owner),
            col(DeliveryRow.lease_token),
        )
        .where(col(DeliveryRow.status) == "pending")
        .where(col(DeliveryRow.sink).in_(list(sinks)))
        .order_by(col(DeliveryRow.next_attempt_at), col(DeliveryRow.created_at))
    )
    if due_only:
        query = query.where(col(DeliveryRow.next_attempt_at) <= now)
    return _claim(store, DeliveryRow, query, owner, now, lease, limit)


def claim_alerts(
    store: Store, owner: str, now: datetime, sinks: Iterable[str], *,
    lease: timedelta = DELIVERY_LEASE, limit: int = 100, due_only: bool = True,
) -> list[Alert]:  # fmt: skip
    """Claimed deliveries, ready to render; each Alert carries its lease token."""
    claims = claim_deliveries(store, owner, now, sinks, lease=lease, limit=limit, due_only=due_only)
    return store.alerts_by_id([c.key for c in claims]) if claims else []


_CHUNK = 500  # ids per UPDATE ... IN (...): under SQLite's bound-parameter limit


def _claim(
    store: Store, table: Any, query: Any, owner: str, now: datetime, lease: timedelta,
    limit: int, *, reclaim_own: bool = False,
) -> list[Claim]:  # fmt: skip
    """Lease the rows ``query`` selects (id, key, lease_owner, lease_token, then any of
    consecutive_errors, etag, last_modified): one SELECT and one UPDATE per 500 rows.
    Loaded and flushed as ORM objects they cost 100 µs a row, and ``run --once`` over
    2,000 feeds claims them all before the first poll (bench/bench_feeds.py, issue #3)."""
    with store.writing() as s:
        db_now = database_now(s, now)
        free = (col(table.lease_until).is_(None)) | (col(table.lease_until) < db_now)
        if reclaim_own:
            free = free | (col(table.lease_owner) == owner)
        rows = s.exec(query.where(free).limit(limit).with_for_update(skip_locked=True)).all()
        ids = [row.id for row in rows]
        for i in range(0, len(ids), _CHUNK):
            s.exec(
                update(table)
                .where(col(table.id).in_(ids[i : i + _CHUNK]))
                .values(
                    lease_owner=owner,
                    lease_until=db_now + lease,
                    lease_token=col(table.lease_token) + 1,
                )
            )
    return [
        Claim(
            row.key,
            row.lease_token + 1,
            row.lease_owner if row.lease_owner not in (None, owner) else None,
            errors=getattr(row, "consecutive_errors", 0),
            etag=getattr(row, "etag", None),
            last_modified=getattr(row, "last_modified", None),
        )
        for row in rows
    ]


def renew(store: Store, owner: str, now: datetime, *, poll_lease: timedelta = POLL_LEASE,
          delivery_lease: timedelta = DELIVERY_LEASE) -> None:  # fmt: skip
    """Extend every unexpired lease this replica holds (call at about lease / 3)."""
    with store.writing() as s:
        db_now = database_now(s, now)
        for table, lease in ((SourceRow, poll_lease), (DeliveryRow, delivery_lease)):
            s.exec(
                update(table)
                .where(col(table.lease_owner) == owner)
                .where(col(table.lease_until) >= db_now)
                .values(lease_until=db_now + lease)
            )


def release_deliveries(store: Store, owner: str, claims: Iterable[tuple[str, int]]) -> None:
    """Give back these delivery leases (id, token) if still ours: claimed for a batch that
    ended before sending them (a retryable failure stops a sink's batch), so that the renew
    job does not keep them leased, and unsent, for as long as this replica runs."""
    with store.writing() as s:
        for delivery, token in claims:
            s.exec(
                update(DeliveryRow)
                .where(col(DeliveryRow.id) == delivery)
                .where(col(DeliveryRow.lease_owner) == owner)
                .where(col(DeliveryRow.lease_token) == token)
                .values(lease_owner=None, lease_until=None)
            )


def release(store: Store, owner: str) -> None:
    """Give back every lease this replica holds (SIGTERM), so others need not wait it out."""
    with store.writing() as s:
        for table in (SourceRow, DeliveryRow):
            s.exec(
                update(table)
                .where(col(table.lease_owner) == owner)
                .values(lease_owner=None, lease_until=None)
            )


def release_dead_leases(store: Store) -> None:
    """SQLite: the caller holds the one-process file lock, so every lease in the file was
    left by a process that died (kill -9); free them rather than wait them out."""
    if store.engine.dialect.name == "sqlite":
        with store.writing() as s:
            for table in (SourceRow, DeliveryRow):
                s.exec(update(table).values(lease_owner=None, lease_until=None))
