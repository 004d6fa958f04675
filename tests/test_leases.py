"""Leases and fencing on SQLite and PostgreSQL (G13)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from faultkit import eventually
from monitor.domain import Article, Hit, PollOutcome, Rule
from monitor.errors import LeaseLost
from monitor.store import Store, database
from monitor.store.leases import claim_sources, release, renew

NOW = datetime.now(UTC)
NAMES = [f"feed-{i:03d}" for i in range(50)]
RULE = Rule(id="r", title="r", query="x", notify=("console",))


@pytest.fixture
def store(database_url: str, tmp_path: Path):
    s = Store(database_url)
    s.sync_sources([(name, "feed", f"http://127.0.0.1/{name}") for name in NAMES], NOW)
    yield s
    s.close()


def outcome(name: str) -> PollOutcome:
    article = Article(name, "item-1", "Korea", "", None, None, NOW)
    return PollOutcome(name, ((article, (Hit(RULE),)),), next_poll_at=NOW + timedelta(minutes=5))


def test_a_claimed_source_is_not_claimed_again(store: Store) -> None:
    """Due sources go to the first claimer; a second replica gets none of them."""
    first = claim_sources(store, "a", NOW, NAMES, limit=100)
    assert sorted(c.key for c in first) == NAMES
    assert claim_sources(store, "b", NOW, NAMES, limit=100) == []


def test_expired_lease_is_taken_over_and_stale_write_fenced(store: Store) -> None:
    """A frozen replica's lease expires; B takes over; A's late write is rejected, B's lands."""
    (a,) = claim_sources(store, "a", NOW, NAMES[:1], lease=-timedelta(seconds=1))
    (b,) = claim_sources(store, "b", NOW, NAMES[:1])
    assert b.taken_over_from == "a" and b.token > a.token
    with pytest.raises(LeaseLost):
        store.save_poll(outcome(NAMES[0]), NOW, lambda h: h.rule.notify, lease=("a", a.token))
    assert store.hits() == []  # the stale write changed nothing
    store.save_poll(outcome(NAMES[0]), NOW, lambda h: h.rule.notify, lease=("b", b.token))
    assert len(store.hits()) == 1
    assert claim_sources(store, "c", NOW, NAMES[:1]) == []  # not due again for 5 minutes


def test_a_stale_304_write_is_fenced_too(store: Store) -> None:
    """A poll with no articles (a 304, an error) under a lost lease changes nothing: the
    source keeps the new owner's lease and its schedule."""
    (a,) = claim_sources(store, "a", NOW, NAMES[:1], lease=-timedelta(seconds=1))
    (b,) = claim_sources(store, "b", NOW, NAMES[:1])
    late = PollOutcome(NAMES[0], etag='"stale"', next_poll_at=NOW + timedelta(days=1))
    with pytest.raises(LeaseLost):
        store.save_poll(late, NOW, lambda h: (), lease=("a", a.token))
    source = next(s for s in store.sources() if s.name == NAMES[0])
    assert (source.lease_owner, source.lease_token, source.etag) == ("b", b.token, None)
    assert source.last_poll_at is None
    store.save_poll(replace(late, etag='"v2"'), NOW, lambda h: (), lease=("b", b.token))
    source = next(s for s in store.sources() if s.name == NAMES[0])
    assert (source.lease_owner, source.etag, source.last_poll_at) == (None, '"v2"', NOW)


def test_release_frees_leases_at_once(store: Store) -> None:
    """After a graceful release another replica claims without waiting for expiry."""
    claim_sources(store, "a", NOW, NAMES)
    release(store, "a")
    assert len(claim_sources(store, "b", NOW, NAMES, limit=100)) == len(NAMES)


def test_renew_keeps_a_short_lease_alive(store: Store) -> None:
    """Renewal extends our unexpired leases, so a long poll is not taken over."""
    claim_sources(store, "a", NOW, NAMES[:3], lease=timedelta(seconds=30))
    claim_sources(store, "b", NOW, NAMES[3:4], lease=timedelta(seconds=30))
    renew(store, "a", NOW, poll_lease=timedelta(hours=1))
    until = {row.name: row.lease_until for row in store.sources() if row.lease_until}
    assert min(until[n] for n in NAMES[:3]) > max(NOW, until[NAMES[3]]) + timedelta(minutes=30)


def test_concurrent_claimers_never_share_a_source(store: Store) -> None:
    """Four replicas claiming at once split the due sources with no overlap (SKIP LOCKED)."""
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def replica(name: str) -> None:
        barrier.wait()
        mine: list[str] = []
        while batch := claim_sources(store, name, NOW, NAMES, limit=5):
            mine += [c.key for c in batch]
        got[name] = mine

    threads = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [key for keys in got.values() for key in keys]
    assert sorted(claimed) == NAMES  # every source once, none twice


def test_reclaim_own_takes_back_a_lease_left_by_a_failed_write(store: Store) -> None:
    """A poll whose write failed leaves our own lease behind (renewed by the renew job);
    the next poll tick, which never asks for a source in flight, claims it again with a new
    token, so the source is not stranded; another replica still may not."""
    (first,) = claim_sources(store, "a", NOW, NAMES[:1])
    renew(store, "a", NOW)
    assert claim_sources(store, "a", NOW, NAMES[:1]) == []  # the default: leased is leased
    assert claim_sources(store, "b", NOW, NAMES[:1], reclaim_own=True) == []
    (again,) = claim_sources(store, "a", NOW, NAMES[:1], reclaim_own=True)
    assert again.token > first.token and again.taken_over_from is None


def test_a_replica_frozen_inside_a_transaction_does_not_keep_its_rows(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a replica stopped mid-transaction (SIGSTOP) holds its row locks, which
    FOR UPDATE SKIP LOCKED would skip for good; the server ends its session after
    PG_IDLE_IN_TRANSACTION_S, and the expired lease is taken over."""
    monkeypatch.setattr(database, "PG_IDLE_IN_TRANSACTION_S", 1)
    frozen, other = Store(pg_url), Store(pg_url)
    try:
        frozen.sync_sources([(NAMES[0], "feed", "http://127.0.0.1/x")], NOW)
        claim_sources(frozen, "a", NOW, NAMES[:1], lease=-timedelta(seconds=1))
        stuck = frozen.engine.connect()
        stuck.execute(text("SELECT 1 FROM sources FOR UPDATE"))  # then never a statement again
        assert claim_sources(other, "b", NOW, NAMES[:1]) == []  # skipped: the row is locked
        claims = eventually(lambda: claim_sources(other, "b", NOW, NAMES[:1]),
                            "the frozen session's row freed", timeout=30, every=0.2)  # fmt: skip
        assert claims[0].taken_over_from == "a"
        stuck.invalidate()
    finally:
        frozen.close()
        other.close()
