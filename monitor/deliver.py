"""The outbox worker: send due deliveries, record every attempt, schedule retries.

Deliveries were written with their hit (``monitor.store``), so a crash before
or during sending loses nothing: the row stays ``pending`` and is sent again
with the same id (at-least-once).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.domain import Alert, Rule
from monitor.errors import DeliveryError
from monitor.sinks import Sink
from monitor.store import Store

log = logging.getLogger("monitor.deliver")

# Standard Webhooks' suggested schedule, about three days in all.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
)
JITTER = 0.1


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def next_attempt(now: datetime, attempts: int, rng: random.Random | None = None) -> datetime | None:
    """When to try again after ``attempts`` failed sends; None once the schedule is used up."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[attempts - 1].total_seconds()
    return now + timedelta(seconds=delay * (1 + (rng or random).uniform(0, JITTER)))


def deliver_due(
    store: Store, sinks: Mapping[str, Sink], rules: Mapping[str, Rule], now: datetime
) -> DeliveryReport:
    """Send every due delivery once; one failing sink never stops the others."""
    report = DeliveryReport()
    for alert in store.due_alerts(now):
        sink = sinks.get(alert.sink)
        if sink is None:
            # The sink was removed from the config: keep the row, it may come back.
            continue
        rule = rules.get(alert.rule_id) or _removed_rule(alert)
        started = time.monotonic()
        try:
            sink.send(alert, rule)
        except DeliveryError as e:
            _record_failure(store, alert, now, e, report, time.monotonic() - started)
            continue
        store.record_attempt(
            alert, now, status="delivered", duration_ms=(time.monotonic() - started) * 1000
        )
        report.delivered += 1
    return report


def _record_failure(
    store: Store, alert: Alert, now: datetime, error: DeliveryError, report: DeliveryReport,
    elapsed: float,
) -> None:  # fmt: skip
    retry_at = next_attempt(now, alert.attempts + 1) if error.retryable else None
    status = "pending" if retry_at else "failed"
    log.warning(
        "delivery failed sink=%s delivery=%s rule=%s attempt=%d status=%s error=%r",
        alert.sink, alert.delivery_id, alert.rule_id, alert.attempts + 1, status, str(error),
    )  # fmt: skip
    store.record_attempt(
        alert, now, status=status, next_attempt_at=retry_at, error=str(error),
        duration_ms=elapsed * 1000,
    )  # fmt: skip
    if retry_at:
        report.retrying += 1
    else:
        report.failed += 1


def _removed_rule(alert: Alert) -> Rule:
    """A hit whose rule left the config still gets delivered, under its id."""
    return Rule(id=alert.rule_id, title=alert.rule_id, query="", notify=(alert.sink,))
