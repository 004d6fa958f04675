"""The outbox worker: send due deliveries, record every attempt, schedule retries (G7, G8).

Deliveries were written with their hit (``monitor.store``), so a crash before
or during sending loses nothing: the row stays ``pending`` and is sent again
with the same id (at-least-once; the id is the ``webhook-id``).

Each sink has its own worker thread: a tick hands every idle sink its due
deliveries and returns, so a slow or failing receiver only ever delays its
own queue. Within a sink, sends are sequential, at most one per
``min_interval`` (Slack allows about one message per second per webhook),
and the first retryable failure ends that sink's batch for this tick.

What happens after a failure is a pure decision (``decide``) of ``now``, the
attempts so far, the error and a random source for jitter, so a fake clock
can drive the whole three-day schedule in a test.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from monitor import metrics
from monitor.crash import crash_point
from monitor.domain import Alert, Rule
from monitor.errors import DeliveryError, LeaseLost
from monitor.sinks import Sink
from monitor.store import Store
from monitor.store.database import retry_transient, transient_reason
from monitor.store.leases import claim_alerts, release_deliveries

log = logging.getLogger("monitor.deliver")

# After the first, immediate attempt: Standard Webhooks' suggested schedule, about 3 days.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
)
JITTER = 0.1  # up to +10 %, so deliveries that failed together do not retry together
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class SinkPolicy:
    """How one sink is driven: its retry schedule, rate limit, and whether it is a digest."""

    schedule: tuple[timedelta, ...] = RETRY_SCHEDULE
    min_interval: float = 0.0
    digest: bool = False


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    def add(self, other: DeliveryReport) -> None:
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.failed += other.failed


@dataclass(frozen=True)
class Decision:
    """What to do with a delivery whose send just failed."""

    status: str  # pending (retry at next_attempt_at) | failed
    next_attempt_at: datetime | None
    reason: str
    disable_sink: bool = False


def next_attempt(
    now: datetime, attempts: int, rng: random.Random | None = None, *,
    schedule: Sequence[timedelta] = RETRY_SCHEDULE, retry_after: float | None = None,
) -> datetime | None:  # fmt: skip
    """When to try again after ``attempts`` failed sends; None once the schedule is used up.

    A receiver's Retry-After is a floor, clamped to a day (G8).
    """
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1].total_seconds() * (1 + (rng or random).uniform(0, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + timedelta(seconds=delay)


def decide(
    now: datetime, attempts: int, error: DeliveryError, rng: random.Random | None = None,
    schedule: Sequence[timedelta] = RETRY_SCHEDULE,
) -> Decision:  # fmt: skip
    """The decision after the ``attempts``-th failed send (1 = the first)."""
    if error.gone:
        return Decision("failed", None, f"sink_gone: {error}", disable_sink=True)
    if not error.retryable:
        return Decision("failed", None, str(error))
    retry_at = next_attempt(now, attempts, rng, schedule=schedule, retry_after=error.retry_after)
    if retry_at is None:
        return Decision("failed", None, f"retries_exhausted after {attempts} attempts: {error}")
    return Decision("pending", retry_at, str(error))


@dataclass
class Deliverer:
    """Drives every sink's queue; one worker thread per busy sink."""

    store: Store
    sinks: Mapping[str, Sink]
    rules: Mapping[str, Rule]
    policies: Mapping[str, SinkPolicy] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    owner: str | None = None  # this replica's lease owner name; None: no leases (tests)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.sinks)), thread_name_prefix="sink"
        )
        self._busy: dict[str, Future[DeliveryReport]] = {}
        self._lock = threading.Lock()
        self._unsent: set[tuple[str, int]] = set()  # claimed, never sent: leases to give back

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def policy(self, sink: str) -> SinkPolicy:
        return self.policies.get(sink, SinkPolicy())

    def deliver_due(self, now: datetime, *, wait: bool = True) -> DeliveryReport:
        """Hand each idle sink its due deliveries; ``wait`` for them (``run --once``, tests).

        A sink removed from the config keeps its rows (it may come back); a sink still
        sending its last batch is skipped, so its deliveries are not claimed meanwhile.
        """
        disabled = self._disabled_sinks(now)
        with self._lock:
            idle = [
                name for name in self.sinks
                if name not in disabled and not self.policy(name).digest
                and (name not in self._busy or self._busy[name].done())
            ]  # fmt: skip
        batches: dict[str, list[Alert]] = defaultdict(list)
        for alert in self._due(now, idle):
            batches[alert.sink].append(alert)
        started: list[Future[DeliveryReport]] = []
        with self._lock:
            for name, alerts in batches.items():
                running = self._busy.get(name)
                if running is not None and not running.done():
                    continue  # that sink is still sending its last batch
                future = self._pool.submit(self._send_batch, name, alerts, now)
                self._busy[name] = future
                started.append(future)
        report = DeliveryReport()
        if wait:
            for future in started:
                report.add(future.result())
        return report

    def _due(self, now: datetime, sinks: list[str]) -> list[Alert]:
        self._give_back()
        if not sinks:
            return []
        if self.owner is not None:  # replicas: claim them, so no other replica sends them
            return claim_alerts(self.store, self.owner, now, sinks)
        return [a for a in self.store.due_alerts(now) if a.sink in sinks]

    def _record(self, alert: Alert, now: datetime, **outcome: Any) -> bool:
        """Record a send under our lease; False (logged, counted) if the lease was lost.

        The send happened: a database that is briefly away (locked, restarting) is waited
        for, or the delivery would be sent again, a duplicate."""
        try:
            retry_transient(
                lambda: self.store.record_attempt(alert, now, owner=self.owner, **outcome),
                what=f"delivery={alert.delivery_id}",
            )  # fmt: skip
        except LeaseLost as e:
            metrics.fencing_rejections.labels(kind="delivery").inc()
            log.warning("lease lost delivery=%s sink=%s detail=%r (another replica has it)",
                        alert.delivery_id, alert.sink, str(e))  # fmt: skip
            return False
        metrics.delivery_attempts.labels(sink=alert.sink, result=outcome["status"]).inc()
        return True

    def send_digest(self, name: str, now: datetime) -> DeliveryReport:
        """Send every pending delivery of a digest sink as one message."""
        report = DeliveryReport()
        sink = self.sinks.get(name)
        if sink is None or name in self._disabled_sinks(now):
            return report
        if self.owner is not None:  # one replica sends the digest: the one that claims it
            alerts = claim_alerts(self.store, self.owner, now, [name], limit=1000, due_only=False)
        else:
            alerts = self.store.pending_alerts(name)
        if not alerts:
            return report
        pairs = [(a, self._rule(a)) for a in alerts]
        send_digest = getattr(sink, "send_digest", None)
        try:
            if send_digest is not None:
                send_digest(pairs)
            else:
                for alert, rule in pairs:
                    sink.send(alert, rule)
        except DeliveryError as e:
            log.warning("digest failed sink=%s alerts=%d error=%r", name, len(alerts), str(e))
            for alert in alerts:  # still pending: they go in the next digest
                self._record(alert, now, status="pending", next_attempt_at=now,
                             status_code=e.status_code, error=str(e))  # fmt: skip
            if e.gone:
                self._disable(name, sink, f"sink_gone: {e}", now)
            report.retrying += len(alerts)
            return report
        crash_point("after_send_before_record")
        for alert in alerts:
            self._record(alert, now, status="delivered")
        report.delivered += len(alerts)
        log.info("digest sent sink=%s alerts=%d", name, len(alerts))
        return report

    # --- one sink's batch -----------------------------------------------------------

    def _send_batch(self, name: str, alerts: list[Alert], now: datetime) -> DeliveryReport:
        pending = list(alerts)
        try:
            return self._send_each(name, pending, now)
        finally:
            # Those the batch never reached (it stops at the first retryable failure) must not
            # stay leased: the renew job would keep them so, and unsent, while we run.
            with self._lock:
                self._unsent.update(
                    (a.delivery_id, a.lease_token) for a in pending if a.lease_token is not None
                )
            self._give_back()

    def _give_back(self) -> None:
        if not self._unsent or self.owner is None:
            return
        with self._lock:
            claims, self._unsent = self._unsent, set()
        try:
            release_deliveries(self.store, self.owner, claims)
        except SQLAlchemyError as e:
            if transient_reason(e) is None:
                raise
            with self._lock:
                self._unsent |= claims  # the database is away: give them back next time

    def _send_each(self, name: str, pending: list[Alert], now: datetime) -> DeliveryReport:
        """Send ``pending`` in order, taking each off the list once it is sent and recorded."""
        sink, policy, report = self.sinks[name], self.policy(name), DeliveryReport()
        last_send = 0.0
        for alert in list(pending):
            gap = policy.min_interval - (time.monotonic() - last_send)
            if last_send and gap > 0:
                time.sleep(gap)  # the receiver's rate limit, not a wait for a condition
            last_send = time.monotonic()
            try:
                sink.send(alert, self._rule(alert))
            except DeliveryError as e:
                elapsed = (time.monotonic() - last_send) * 1000
                go_on = self._record_failure(name, alert, e, now, policy, report, elapsed)
                pending.remove(alert)
                if not go_on:
                    break
                continue
            crash_point("after_send_before_record")
            elapsed = (time.monotonic() - last_send) * 1000
            if self._record(alert, now, status="delivered", duration_ms=elapsed):
                report.delivered += 1
            pending.remove(alert)
        return report

    def _record_failure(
        self, name: str, alert: Alert, error: DeliveryError, now: datetime, policy: SinkPolicy,
        report: DeliveryReport, elapsed_ms: float,
    ) -> bool:  # fmt: skip
        """Record a failed send; True if the sink's batch may go on."""
        decision = decide(now, alert.attempts + 1, error, self.rng, policy.schedule)
        log.warning(
            "delivery failed sink=%s delivery=%s rule=%s attempt=%d status=%s error=%r",
            name, alert.delivery_id, alert.rule_id, alert.attempts + 1, decision.status,
            decision.reason,
        )  # fmt: skip
        self._record(
            alert, now, status=decision.status, next_attempt_at=decision.next_attempt_at,
            status_code=error.status_code, error=decision.reason, duration_ms=elapsed_ms,
        )  # fmt: skip
        if decision.status == "pending":
            report.retrying += 1
        else:
            report.failed += 1
        if decision.disable_sink:
            report.failed += self._disable(name, self.sinks[name], decision.reason, now)
            return False
        if error.retry_after is not None and decision.next_attempt_at is not None:
            # The receiver throttles the whole destination, not just this one delivery.
            self.store.defer_sink(name, decision.next_attempt_at)
        return not error.retryable

    # --- disabled sinks -------------------------------------------------------------

    def _disable(self, name: str, sink: Sink, reason: str, now: datetime) -> int:
        fingerprint = getattr(sink, "fingerprint", None)
        self.store.set_sink_state(name, "disabled", fingerprint, reason, now)
        failed = self.store.fail_pending(name, reason, now)
        log.error("sink disabled sink=%s reason=%r pending_failed=%d", name, reason, failed)
        return failed

    def _disabled_sinks(self, now: datetime) -> set[str]:
        """Sinks disabled for a gone URL. A changed URL in the config enables the sink again;
        hits stored for a still-disabled sink fail at once with the reason."""
        disabled = set()
        for name, state in self.store.sink_states().items():
            sink = self.sinks.get(name)
            if state.status != "disabled" or sink is None:
                continue
            if getattr(sink, "fingerprint", None) != state.fingerprint:
                self.store.set_sink_state(name, "active", None, None, now)
                log.info("sink enabled again sink=%s (its URL changed)", name)
                continue
            disabled.add(name)
            self.store.fail_pending(name, state.reason or "sink_gone", now)
        return disabled

    def _rule(self, alert: Alert) -> Rule:
        """A hit whose rule left the config still gets delivered, under its id."""
        rule = self.rules.get(alert.rule_id)
        return rule or Rule(id=alert.rule_id, title=alert.rule_id, query="", notify=(alert.sink,))


def deliver_due(
    store: Store, sinks: Mapping[str, Sink], rules: Mapping[str, Rule], now: datetime
) -> DeliveryReport:
    """Send every due delivery once and wait for it (a one-shot Deliverer)."""
    deliverer = Deliverer(store, sinks, rules)
    try:
        return deliverer.deliver_due(now, wait=True)
    finally:
        deliverer.close()
