"""realert: one alert per rule per window, and the hits kept quiet counted in the next one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.domain import Article, Hit, PollOutcome, Rule
from monitor.sinks.chat import discord_text, slack_text
from monitor.sinks.console import render
from monitor.store import Store

T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
RULE = Rule(id="nk", title="NK", query="x", notify=("ops",), realert=timedelta(hours=6))


def store_hit(store: Store, n: int, at: datetime) -> None:
    """A distinct story (its own words) hitting RULE at ``at``."""
    body = " ".join(f"w{n}x{i}" for i in range(40))
    article = Article("wire", f"k{n}", f"story {n}", body, None, None, at)
    store.save_poll(PollOutcome("wire", ((article, (Hit(RULE),)),)), at, lambda h: h.rule.notify)


def test_hits_held_back_are_counted_in_the_next_alert(tmp_path: Path) -> None:
    """Hits inside the window are not sent; the first alert after it says how many were held."""
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.sync_sources([("wire", "feed", "x")], T0)
    for n, hours in enumerate((0, 1, 2, 3)):
        store_hit(store, n, T0 + timedelta(hours=hours))
    first, *rest = store.due_alerts(T0 + timedelta(hours=3))
    assert rest == [] and first.held_back == 0
    store.record_attempt(first, T0, status="delivered")
    store_hit(store, 9, T0 + timedelta(hours=7))
    (alert,) = store.due_alerts(T0 + timedelta(hours=7))
    assert alert.title == "story 9" and alert.held_back == 3
    assert "3 more held back (realert)" in slack_text(alert, RULE)
    assert "3 more held back (realert)" in discord_text(alert, RULE)
    assert "3 more held back" in render(alert, RULE).plain
    store.close()
