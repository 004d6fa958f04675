"""Leader rows, heartbeats and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.domain import Article, Hit, PollOutcome, Rule
from monitor.store import Store
from monitor.store.coordination import (
    heartbeat,
    live_replicas,
    prune_articles,
    resign,
    try_lead,
)

NOW = datetime.now(UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def store(database_url: str, tmp_path: Path):
    s = Store(database_url)
    s.sync_sources([("wire", "folder", str(tmp_path))], NOW)
    yield s
    s.close()


def test_one_leader_at_a_time(store: Store) -> None:
    """While A's leadership is valid B is refused; A renews; after A resigns B leads."""
    assert try_lead(store, "retention", "a", MINUTE, NOW)
    assert not try_lead(store, "retention", "b", MINUTE, NOW)
    assert try_lead(store, "retention", "a", MINUTE, NOW)
    resign(store, "a")
    assert try_lead(store, "retention", "b", MINUTE, NOW)


def test_expired_leadership_is_taken_over(store: Store) -> None:
    """A leader that stops renewing loses the chore once its row expires."""
    assert try_lead(store, "retention", "a", -MINUTE, NOW)  # expired at once: a died
    assert try_lead(store, "retention", "b", MINUTE, NOW)
    assert not try_lead(store, "retention", "a", MINUTE, NOW)


def test_heartbeats_show_config_mismatch(store: Store) -> None:
    """Each replica reports its config hash; a differing hash is visible."""
    heartbeat(store, "host:1:x", "host", 1, "aaaa", NOW)
    heartbeat(store, "host:2:y", "host", 2, "bbbb", NOW)
    heartbeat(store, "host:1:x", "host", 1, "aaaa", NOW)
    replicas = live_replicas(store, NOW, MINUTE)
    assert {r.id: r.config_hash for r in replicas} == {"host:1:x": "aaaa", "host:2:y": "bbbb"}


def test_retention_prunes_only_old_articles_without_hits(store: Store) -> None:
    """Old unmatched articles go; matched or recent ones stay; item keys stay as tombstones."""
    old = NOW - timedelta(days=100)
    rule = Rule(id="r", title="r", query="x", notify=())

    def article(key: str, fetched_at: datetime = old) -> Article:
        return Article("wire", key, f"title {key}", "body", None, None, fetched_at)

    outcome = PollOutcome("wire", ((article("old-miss"), ()), (article("old-hit"), (Hit(rule),))))
    store.save_poll(outcome, old, lambda h: ())
    store.save_poll(PollOutcome("wire", ((article("new-miss", NOW), ()),)), NOW, lambda h: ())
    assert prune_articles(store, NOW - timedelta(days=90)) == 1
    assert prune_articles(store, NOW - timedelta(days=90)) == 0
    assert [h.title for h in store.hits()] == ["title old-hit"]
    keys = store.known_keys("wire", ["old-miss", "old-hit", "new-miss"])
    assert keys == {"old-miss", "old-hit", "new-miss"}  # a re-emitted old item never alerts
