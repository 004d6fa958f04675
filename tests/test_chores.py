"""Chores on the leader replica: silence alerts and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.chores import SILENCE_SOURCE, SILENT_RULE_ID, Chores
from monitor.config import load_config
from monitor.domain import Article, PollOutcome
from monitor.store import Store
from monitor.store.coordination import try_lead

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def setup(database_url: str, tmp_path: Path):
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text("rules: []\n")
    (tmp_path / "monitor.yaml").write_text(
        "sources:\n  feeds:\n    - {name: wire, url: 'https://wire.example.org/rss'}\n"
        "    - {name: quiet, url: 'https://quiet.example.org/rss'}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={"DATABASE_URL": database_url})
    store = Store(database_url)
    store.sync_sources([("wire", "feed", "x"), ("quiet", "feed", "y"),
                        (SILENCE_SOURCE, "internal", "")], NOW)  # fmt: skip
    yield config, store
    store.close()


def publish(store: Store, source: str, day: int) -> None:
    """One new item from ``source`` on ``day`` (days before NOW)."""
    when = NOW - day * DAY
    article = Article(source, f"{source}-{day}", f"item {day}", "", None, None, when)
    store.save_poll(PollOutcome(source, ((article, ()),)), when, lambda h: ())


def test_regular_source_gone_quiet_alerts_once(setup) -> None:
    """A daily source silent for five days raises one source-silent alert, once per episode."""
    config, store = setup
    for day in range(14, 4, -1):  # one item a day, from 14 to 5 days ago
        publish(store, "wire", day)
    publish(store, "quiet", 3)  # a source with one item is not "regular"
    chores = Chores(store, "me")
    assert chores.alert_silent_sources(config, NOW, lambda h: h.rule.notify) == 1
    (hit,) = store.hits()
    assert hit.rule_id == SILENT_RULE_ID and hit.source == SILENCE_SOURCE
    assert "wire" in hit.title and "5d" in hit.title
    (alert,) = store.due_alerts(NOW)
    assert alert.sink == "console"
    chores.alert_silent_sources(config, NOW + DAY, lambda h: h.rule.notify)
    assert len(store.hits()) == 1  # the same silence never alerts twice
    publish(store, "wire", 0)  # it publishes again: no alert now
    assert chores.alert_silent_sources(config, NOW, lambda h: h.rule.notify) == 0


def test_chores_run_only_on_the_leader(setup) -> None:
    """While another replica leads the chores, this one prunes and alerts nothing."""
    config, store = setup
    for day in range(14, 4, -1):
        publish(store, "wire", day)
    assert try_lead(store, "chores", "other", timedelta(minutes=5), NOW)
    Chores(store, "me").run(config, NOW, lambda h: h.rule.notify)
    assert store.hits() == []
    Chores(store, "other").run(config, NOW, lambda h: h.rule.notify)
    assert [h.rule_id for h in store.hits()] == [SILENT_RULE_ID]
