"""How replicas share work beyond leases: leader rows for chores, heartbeats, retention.

Leader rows follow Oban's peers: a chore (retention, silence checks) runs on
the replica holding its row until ``expires_at``; a holder that dies simply
stops renewing and another takes over. Times come from the database's clock
on PostgreSQL (replicas' clocks may differ) and from the caller's on SQLite,
which is one process anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from monitor.store.repository import Store
from monitor.store.tables import (
    ArticleRow,
    HitRow,
    LeaderRow,
    ReplicaRow,
    SeenItemRow,
    SourceRow,
    StorySignatureRow,
)


def database_now(session: Session, fallback: datetime) -> datetime:
    """``now()`` of a PostgreSQL server, else ``fallback``."""
    if session.get_bind().dialect.name == "postgresql":
        return session.exec(select(func.now())).one()
    return fallback


def try_lead(store: Store, chore: str, owner: str, ttl: timedelta, now: datetime) -> bool:
    """Become or stay the holder of ``chore`` for ``ttl``; False while another holds it."""
    try:
        with store.writing() as s:
            db_now = database_now(s, now)
            row = s.get(LeaderRow, chore, with_for_update=True)
            if row is None:
                s.add(LeaderRow(name=chore, holder=owner, expires_at=db_now + ttl))
            elif row.holder == owner or row.expires_at < db_now:
                row.holder, row.expires_at = owner, db_now + ttl
                s.add(row)
            else:
                return False
    except IntegrityError:
        return False  # another replica inserted the row first: it leads
    return True


def resign(store: Store, owner: str) -> None:
    """Give up every chore this replica leads (graceful shutdown)."""
    with store.writing() as s:
        s.exec(delete(LeaderRow).where(col(LeaderRow.holder) == owner))


def heartbeat(
    store: Store, owner: str, host: str, pid: int, config_hash: str, now: datetime
) -> None:
    with store.writing() as s:
        db_now = database_now(s, now)
        row = s.get(ReplicaRow, owner)
        if row is None:
            row = ReplicaRow(id=owner, host=host, pid=pid, config_hash=config_hash,
                             started_at=db_now, seen_at=db_now)  # fmt: skip
        row.config_hash, row.seen_at = config_hash, db_now
        s.add(row)


def live_replicas(store: Store, now: datetime, within: timedelta) -> list[ReplicaRow]:
    """Replicas that sent a heartbeat within ``within``."""
    with store.reading() as s:
        since = database_now(s, now) - within
        query = select(ReplicaRow).where(col(ReplicaRow.seen_at) >= since)
        return list(s.exec(query.order_by(col(ReplicaRow.id))))


def prune_articles(store: Store, before: datetime) -> int:
    """Delete articles older than ``before`` that no hit refers to; return how many.

    Hits, deliveries and item keys (the tombstones in ``seen_items``) are kept,
    so a pruned item that a feed re-emits never alerts again.
    """
    with store.writing() as s:
        has_hit = exists().where(col(HitRow.article_id) == col(ArticleRow.id))
        doomed = select(ArticleRow.id).where(col(ArticleRow.fetched_at) < before).where(~has_hit)
        # Their near-duplicate signatures go too; the story rows and counts stay.
        s.exec(delete(StorySignatureRow).where(col(StorySignatureRow.article_id).in_(doomed)))
        result = s.exec(delete(ArticleRow).where(col(ArticleRow.id).in_(doomed)))
        pruned = int(result.rowcount or 0)
    if store.engine.dialect.name == "sqlite":
        # Copy the deletions into the file now. PASSIVE: TRUNCATE (and FULL, RESTART) block
        # every writer while they wait for readers, up to busy_timeout; the -wal file is
        # kept small by journal_size_limit instead (database.py).
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    return pruned


def source_activity(store: Store) -> dict[str, tuple[int, datetime | None, datetime | None]]:
    """Per source: items ever seen, when the first arrived, when the last new one arrived."""
    with store.reading() as s:
        query = (
            select(
                SourceRow.name,
                func.count(col(SeenItemRow.id)),
                func.min(SeenItemRow.first_seen_at),
                SourceRow.last_new_item_at,
            )
            .join(SeenItemRow, col(SeenItemRow.source_id) == col(SourceRow.id), isouter=True)
            .group_by(col(SourceRow.id))
        )
        return {name: (n, first, last) for name, n, first, last in s.exec(query)}
