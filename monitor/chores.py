"""Chores that run on one replica at a time: retention and source-silence alerts.

The replica holding the ``chores`` leader row runs them (``store.coordination``);
if it dies, another takes the row over when it expires. The hot path (polls
and deliveries) never waits for a leader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor import schedule
from monitor.config import Config
from monitor.domain import Article, Hit, PollOutcome, Rule, Severity
from monitor.store import Store
from monitor.store.coordination import prune_articles, source_activity, try_lead
from monitor.units import format_duration

log = logging.getLogger("monitor.chores")

SILENT_RULE_ID = "source-silent"
SILENCE_SOURCE = "monitor"  # the pseudo-source that silence alerts are stored under
LEADER_TTL = timedelta(minutes=2)
RETENTION_EVERY = timedelta(hours=1)


def silence_rule(config: Config) -> Rule:
    """The built-in rule behind silence alerts; it notifies the default sinks."""
    return Rule(
        id=SILENT_RULE_ID, title="Source went silent", query="", notify=config.notify,
        tags=("monitor",), severity=Severity.HIGH,
    )  # fmt: skip


@dataclass
class Chores:
    store: Store
    owner: str
    last_retention: datetime | None = None

    def run(self, config: Config, now: datetime, sinks_for: Callable[[Hit], Iterable[str]]) -> None:
        """Run what is due, if this replica leads; otherwise do nothing."""
        if not try_lead(self.store, "chores", self.owner, LEADER_TTL, now):
            return
        if self.last_retention is None or now - self.last_retention >= RETENTION_EVERY:
            pruned = prune_articles(self.store, now - config.retention_articles)
            self.last_retention = now
            log.info("retention pruned=%d older_than=%s", pruned,
                     format_duration(config.retention_articles))  # fmt: skip
        self.alert_silent_sources(config, now, sinks_for)

    def alert_silent_sources(
        self, config: Config, now: datetime, sinks_for: Callable[[Hit], Iterable[str]]
    ) -> int:
        """Store one alert per silence episode of each regular source; return how many."""
        rule = silence_rule(config)
        outcomes = []
        for name, (items, first, last) in source_activity(self.store).items():
            if name not in config.source_names or last is None:
                continue
            overdue = schedule.silent_for(now, items, first, last)
            if overdue is None or first is None:
                continue
            silent, gap = now - last, (last - first) / max(1, items - 1)
            article = Article(
                source=SILENCE_SOURCE,
                # One episode, one key: the same silence never alerts twice.
                item_key=f"silent:{name}:{last.isoformat()}",
                title=f"Source {name} has published nothing for {format_duration(silent)}",
                body=_silence_text(name, items, gap, last),
                url=None,
                published_at=None,
                fetched_at=now,
            )
            outcomes.append((article, (Hit(rule),)))
            log.warning("source silent source=%s silent_for=%s", name, format_duration(silent))
        if outcomes:
            self.store.save_poll(PollOutcome(SILENCE_SOURCE, tuple(outcomes)), now, sinks_for)
        return len(outcomes)


def _silence_text(name: str, items: int, gap: timedelta, last: datetime) -> str:
    return (
        f"{name} usually publishes every {format_duration(gap)} (from {items} items), "
        f"but its last new item arrived at {last:%Y-%m-%d %H:%M} UTC. "
        "It may be down, blocking us, or have moved."
    )
