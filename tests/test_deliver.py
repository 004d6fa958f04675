"""The outbox worker against real loopback receivers: Standard Webhooks signatures, the retry
policy of G8 on a fake clock, Retry-After, 410, 3xx, slow and dropped receivers."""

from __future__ import annotations

import base64
import itertools
import random
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlmodel import select

from casebook import case, figure, repetitions
from faultkit import tally
from flows import NEW_SECRET, OLD_SECRET, SUMMIT, Flow, make_flow, webhook_sink
from monitor.deliver import RETRY_SCHEDULE, decide, next_attempt
from monitor.errors import DeliveryError
from monitor.sinks.http import parse_retry_after
from monitor.store.leases import renew
from monitor.store.tables import DeliveryAttemptRow, DeliveryRow
from receivers import Receiver, Reply, running

SECRETS: dict[str, str | bytes] = {"new": NEW_SECRET, "old": OLD_SECRET.encode()}


@pytest.fixture
def receiver():
    with running(SECRETS) as r:
        yield r


def flow_to(tmp_path: Path, receiver: Receiver, path: str = "/hook", extra: str = "") -> Flow:
    return make_flow(tmp_path, webhook_sink(receiver.url(path), extra=extra))


def rows(flow: Flow) -> list[DeliveryRow]:
    with flow.store.reading() as s:
        return list(s.exec(select(DeliveryRow)))


def attempt_offsets(flow: Flow, first: datetime) -> list[float]:
    with flow.store.reading() as s:
        attempts = list(s.exec(select(DeliveryAttemptRow).order_by(DeliveryAttemptRow.id)))
    return [(a.attempted_at - first).total_seconds() for a in attempts]


def off_schedule(offsets: list[float]) -> int:
    """Attempts whose gap to the previous one is outside [delay, delay + 10 % jitter]."""
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    return sum(
        not (d.total_seconds() - 1e-6 <= g <= d.total_seconds() * 1.1 + 1e-6)
        for g, d in zip(gaps, RETRY_SCHEDULE, strict=False)
    )


DEAD: dict[str, list[int]] = {}  # scenario -> [expected dead, actually dead]


def count_dead(scenario: str, expected: int, flow: Flow) -> None:
    """Dead-letter accuracy (RELIABILITY 3(c) 6): deliveries that should be dead vs are."""
    tally = DEAD.setdefault(scenario, [0, 0])
    tally[0] += expected
    tally[1] += sum(r.status == "failed" for r in rows(flow))
    figure("dead letters", f"{scenario} expected dead / actual dead", f"{tally[0]}/{tally[1]}")


def test_webhook_payload_and_signatures_verify_with_standardwebhooks(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Contract 4's payload arrives once, and both rotation secrets verify it."""
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    report = flow.pipeline.deliver_due()
    flow.close()
    assert report.delivered == 1
    [got] = receiver.requests
    assert got.verified == {"new": True, "old": True}
    body = got.json
    assert set(body) == {"type", "id", "rule", "article", "matches", "snippet", "story"}
    assert body["type"] == "hit" and body["id"] == got.webhook_id
    assert body["rule"] == {"id": "summit", "title": "North Korea–Russia summit",
                            "severity": "high", "tags": ["korea"]}  # fmt: skip
    assert set(body["article"]) == {"id", "title", "url", "source", "published_at", "fetched_at"}
    assert body["article"]["source"] == "outlet0"
    assert body["story"]["articles"] == 1
    assert {m["text"] for m in body["matches"]} >= {"Pyongyang", "Putin"}
    assert "Pyongyang" in body["snippet"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-timestamp"].isdigit()


def test_a_wrong_secret_does_not_verify(tmp_path: Path) -> None:
    """The receiver's check is real: a secret the sink does not hold fails verification."""
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with running({"other": other}) as receiver:
        flow = flow_to(tmp_path, receiver)
        flow.drop("summit.md", SUMMIT)
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
        flow.close()
    assert receiver.requests[0].verified == {"other": False}


@case("S8", "fault", "receiver 500s for 12 h (fake clock), then 200: retried on schedule")
def test_500_for_twelve_hours_then_200_is_delivered_on_schedule(
    tmp_path: Path, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """S8: while the receiver answers 500 (12 h of fake time) every attempt comes on the
    schedule (0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h ... + up to 10 % jitter); the first try
    after it recovers delivers, under the one id; every attempt is stored."""
    runs, worst, attempts_seen = repetitions(request.config, fast=10, full=10), 0, []
    for rep in range(runs):
        receiver.requests.clear()
        (tmp_path / f"run{rep}").mkdir()
        flow = flow_to(tmp_path / f"run{rep}", receiver)
        flow.drop("summit.md", SUMMIT)
        flow.pipeline.poll_all(settle_seconds=0)
        first = flow.clock.now
        while True:
            healthy = flow.clock.now >= first + timedelta(hours=12)
            receiver.answer("/hook", Reply(200 if healthy else 500))
            flow.pipeline.deliver_due()
            [row] = rows(flow)
            if row.status != "pending":
                break
            assert row.next_attempt_at is not None
            flow.clock.now = row.next_attempt_at
        offsets = attempt_offsets(flow, first)
        flow.close()
        assert row.status == "delivered"
        assert offsets[-1] >= 12 * 3600 and offsets[-2] < 12 * 3600  # the first try after
        assert off_schedule(offsets) == 0, offsets
        assert len({r.webhook_id for r in receiver.requests}) == 1
        assert len(receiver.requests) == len(offsets)  # each attempt recorded, none extra
        worst = max(worst, off_schedule(offsets))
        attempts_seen.append(len(offsets))
    figure("retry", "S8 runs; attempts until delivered (min-max)",
           f"{runs}; {min(attempts_seen)}-{max(attempts_seen)}")  # fmt: skip
    figure(
        "retry",
        "S8 last run's attempt offsets s (schedule floor)",
        " ".join(f"{o:.0f}({e:.0f})" for o, e in zip(offsets, schedule_floor(), strict=False)),
    )
    figure("retry", "S8 attempts off schedule ± jitter", worst)


def schedule_floor() -> list[float]:
    floor = [0.0]
    for delay in RETRY_SCHEDULE:
        floor.append(floor[-1] + delay.total_seconds())
    return floor


@case("S14", "fault", "receiver down past the whole schedule: dead, then replayed, same id")
def test_500_follows_the_three_day_schedule_then_fails_and_redelivers_same_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    """S8/S14: 500s are retried on the schedule (fake clock), then `failed`; redeliver sends
    the same webhook-id."""
    receiver.answer("/hook", Reply(500))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    first = flow.clock.now
    while True:
        flow.pipeline.deliver_due()
        [row] = rows(flow)
        if row.status != "pending":
            break
        assert row.next_attempt_at is not None
        flow.clock.now = row.next_attempt_at
    assert row.status == "failed" and "retries_exhausted" in (row.last_error or "")
    with flow.store.reading() as s:
        attempts = list(s.exec(select(DeliveryAttemptRow).order_by(DeliveryAttemptRow.id)))
    offsets = [(a.attempted_at - first).total_seconds() for a in attempts]
    expected = [0.0]
    for delay in RETRY_SCHEDULE:
        expected.append(expected[-1] + delay.total_seconds())
    assert len(offsets) == len(expected) == 10
    for got, want, gap in zip(offsets[1:], expected[1:], RETRY_SCHEDULE, strict=True):
        assert want - 1e-6 <= got <= want + sum(d.total_seconds() for d in RETRY_SCHEDULE) * 0.1
        assert gap.total_seconds() > 0
    assert offsets[-1] >= 2.5 * 86400  # about three days in all
    assert {r.status_code for r in attempts} == {500}
    assert off_schedule(offsets) == 0
    count_dead("S14", 1, flow)
    figure("retry", "S14 attempts before dead; last offset h", f"{len(offsets)}; "
           f"{offsets[-1] / 3600:.1f}")  # fmt: skip
    ids = {r.webhook_id for r in receiver.requests}
    receiver.answer("/hook", Reply(200))
    assert flow.store.requeue(None, flow.clock.now) == [row.id]
    flow.pipeline.deliver_due()
    flow.close()
    assert rows(flow)[0].status == "delivered"
    assert {r.webhook_id for r in receiver.requests} == ids == {row.id}
    figure("dead letters", "S14 replays delivered with the original id", "1/1 (100 %)")


@case("S10", "fault", "429 Retry-After (webhook, Slack) and Discord retry_after: honoured")
def test_429_retry_after_defers_the_sink(tmp_path: Path, receiver: Receiver) -> None:
    """S10: a 429 with Retry-After: 120 means no attempt before 120 s."""
    receiver.answer("/hook", Reply(429, {"Retry-After": "120"}), Reply(200))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.drop("treaty.md", "# Treaty enters into force\n\nThe treaty took effect.\n")
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    assert len(receiver.requests) == 1  # the batch stopped at the throttle
    for row in rows(flow):
        assert row.next_attempt_at is not None
        assert row.next_attempt_at >= flow.clock.now + timedelta(seconds=120)
    flow.clock.advance(seconds=119)
    flow.pipeline.deliver_due()
    assert len(receiver.requests) == 1
    flow.clock.advance(seconds=30)
    flow.pipeline.deliver_due()
    flow.close()
    assert [r.status for r in rows(flow)] == ["delivered", "delivered"]
    early = attempt_offsets(flow, flow.clock.now - timedelta(seconds=149))[1:]
    figure("retry", "S10 Retry-After 120 s (webhook): violations",
           sum(o < 120 for o in early))  # fmt: skip


def test_deliveries_a_batch_never_reached_are_given_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A 500 ends the sink's batch; the deliveries it never reached lose their lease at once,
    so the renew job cannot keep them leased (and unsent) for as long as the daemon runs."""
    receiver.answer("/hook", Reply(500), Reply(200))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.drop("treaty.md", "# Treaty enters into force\n\nThe treaty took effect.\n")
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    assert len(receiver.requests) == 1
    assert [(r.lease_owner, r.lease_until) for r in rows(flow)] == [(None, None)] * 2
    renew(flow.store, flow.pipeline.owner, flow.clock.now)  # renews nothing of theirs
    flow.clock.advance(seconds=10)  # past the first retry (5 s + 10 %)
    flow.pipeline.deliver_due()
    flow.close()
    assert [r.status for r in rows(flow)] == ["delivered", "delivered"]


@case("S11", "fault", "410 Gone / Discord 404: sink disabled, pending dead, no more requests")
def test_410_disables_the_sink_and_fails_its_pending(tmp_path: Path, receiver: Receiver) -> None:
    """S11: after a 410 the sink is disabled, pending deliveries fail with the reason, and the
    receiver gets no further request."""
    receiver.answer("/hook", Reply(410))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.drop("treaty.md", "# Treaty enters into force\n\nThe treaty took effect.\n")
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    flow.drop("treaty2.md", "# Second treaty story\n\nAnother treaty was signed in Hanoi today.\n")
    flow.pipeline.poll_all(settle_seconds=0)
    flow.clock.advance(days=1)
    flow.pipeline.deliver_due()
    flow.close()
    assert len(receiver.requests) == 1
    assert all(r.status == "failed" and "sink_gone" in (r.last_error or "") for r in rows(flow))
    assert flow.store.sink_states()["ops"].status == "disabled"
    figure("retry", "S11 webhook: requests after the 410", len(receiver.requests) - 1)
    count_dead("S11", 3, flow)


REDIRECTS_FOLLOWED: list[int] = []


@case("S13", "fault", "301/302/307/308 from the receiver: a failure, retried, never followed")
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_failure_and_never_followed(
    tmp_path: Path, receiver: Receiver, status: int
) -> None:
    """S13: a 3xx is retried per schedule; the redirect target gets no request."""
    receiver.answer("/hook", Reply(status, {"Location": receiver.url("/elsewhere")}))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    [row] = rows(flow)
    assert row.status == "pending" and row.last_status == status
    assert row.next_attempt_at is not None
    flow.clock.now = row.next_attempt_at  # the retry: still not followed
    flow.pipeline.deliver_due()
    flow.close()
    assert len(receiver.on("/hook")) == 2
    REDIRECTS_FOLLOWED.append(len(receiver.on("/elsewhere")))
    figure("retry", "S13 redirects followed (of 3xx statuses tried)",
           f"{sum(REDIRECTS_FOLLOWED)} ({len(REDIRECTS_FOLLOWED)})")  # fmt: skip
    assert receiver.on("/elsewhere") == []


@case("S12", "fault", "400/422 (bad payload): no retry, dead at once with status and body")
def test_400_fails_at_once_with_the_body_excerpt(tmp_path: Path, receiver: Receiver) -> None:
    """S12: a 4xx other than 408/410/425/429 fails at once; the reason shows status and body."""
    receiver.answer("/hook", Reply(422, body=b"bad payload\nline two"))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    flow.close()
    [row] = rows(flow)
    assert row.status == "failed" and row.attempts == 1
    count_dead("S12", 1, flow)
    assert "HTTP 422" in (row.last_error or "") and "bad payload\\nline two" in (
        row.last_error or ""
    )


def test_dropped_connection_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    """A receiver that closes the connection without answering: retried later, same id."""
    receiver.answer("/hook", Reply(drop=True), Reply(200))
    flow = flow_to(tmp_path, receiver)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    [row] = rows(flow)
    assert row.status == "pending" and "connection error" in (row.last_error or "")
    assert row.next_attempt_at is not None
    flow.clock.now = row.next_attempt_at
    flow.pipeline.deliver_due()
    flow.close()
    assert rows(flow)[0].status == "delivered"
    assert len({r.webhook_id for r in receiver.requests}) == 1 and len(receiver.requests) == 2


@case("S9", "fault", "receiver slower than the timeout but processing: retried, same id")
def test_slow_receiver_times_out_and_never_delays_another_sink(tmp_path: Path) -> None:
    """S9: a receiver slower than the timeout is a retryable failure; meanwhile a healthy
    sink's delivery completes while the slow one is still held; the retry carries the same
    id, so the receiver that did process the first request sees one duplicate it can drop."""
    release = threading.Event()
    with running(SECRETS) as slow, running(SECRETS) as fast:
        slow.answer("/hook", Reply(hold=release))
        sinks = webhook_sink(slow.url(), "slow", ", timeout: 1s") + webhook_sink(fast.url(), "fast")
        flow = make_flow(tmp_path, sinks, notify="[slow, fast]")
        flow.drop("summit.md", SUMMIT)
        flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due(wait=False)
        assert fast.wait_for(1, timeout=10)
        assert slow.wait_for(1, timeout=10)
        assert not release.is_set()  # the fast sink was served while the slow one hung
        flow.pipeline.close()  # waits for the slow sink's timeout to be recorded
        release.set()
        flow.store.close()
    by_sink = {r.sink: r for r in rows(flow)}
    assert by_sink["fast"].status == "delivered"
    assert by_sink["slow"].status == "pending" and "timeout" in (by_sink["slow"].last_error or "")
    retry_at = by_sink["slow"].next_attempt_at
    assert retry_at is not None
    with running(SECRETS) as slow_again:  # the same receiver, answering in time now
        sinks = webhook_sink(slow_again.url(), "slow", ", timeout: 1s")
        sinks += webhook_sink(fast.url(), "fast")
        (tmp_path / "monitor.yaml").write_text(
            (tmp_path / "monitor.yaml").read_text().replace(slow.url(), slow_again.url())
        )
        again = make_flow(tmp_path, sinks, notify="[slow, fast]")
        again.clock.now = retry_at
        again.pipeline.deliver_due()
        again.close()
        ids = [r.webhook_id for r in slow.requests + slow_again.requests]
    assert {r.sink: r.status for r in rows(again)} == {"slow": "delivered", "fast": "delivered"}
    assert len(ids) == 2 and len(set(ids)) == 1  # processed twice, under one webhook-id
    tally("S9", expected_hits={"summit"}, stored_hits=["summit"],
          expected_ids={by_sink["slow"].id, by_sink["fast"].id},
          received=[(i, "slow") for i in ids] + [(by_sink["fast"].id, "fast")])  # fmt: skip


def test_private_address_is_refused_at_connect_without_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C5 at connect time: a name a stub resolver maps to 169.254.169.254 is refused before any
    connect, and the delivery fails with the reason."""
    real = socket.getaddrinfo

    def stub(host: str, *args: object, **kwargs: object) -> list:
        if host == "meta.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", stub)
    sinks = (
        f"  - {{name: ops, type: webhook, url: 'http://meta.test/hook', secret: '{NEW_SECRET}'}}\n"
    )
    flow = make_flow(tmp_path, sinks)
    flow.drop("summit.md", SUMMIT)
    flow.pipeline.poll_all(settle_seconds=0)
    flow.pipeline.deliver_due()
    flow.close()
    [row] = rows(flow)
    assert row.status == "failed" and "private address" in (row.last_error or "")
    assert "169.254.169.254" in (row.last_error or "")


# --- pure decisions ---------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "status", "disable"),
    [
        (DeliveryError("s", "HTTP 500", status_code=500), "pending", False),
        (DeliveryError("s", "timeout"), "pending", False),
        (DeliveryError("s", "HTTP 400", retryable=False, status_code=400), "failed", False),
        (DeliveryError("s", "gone", retryable=False, status_code=410, gone=True), "failed", True),
    ],
)
def test_decide_table(error: DeliveryError, status: str, disable: bool) -> None:
    """Retryable errors are rescheduled, other 4xx fail, gone fails and disables the sink."""
    decision = decide(NOW, 1, error, random.Random(1))
    assert (decision.status, decision.disable_sink) == (status, disable)


def test_next_attempt_jitter_bounds_and_retry_after_floor() -> None:
    """Each delay is the schedule's plus at most 10 % jitter; Retry-After is a floor clamped to a
    day; past the schedule there is no next attempt."""
    rng = random.Random(7)
    for n, delay in enumerate(RETRY_SCHEDULE, start=1):
        when = next_attempt(NOW, n, rng)
        assert when is not None
        assert delay <= when - NOW <= delay * 1.1
    assert next_attempt(NOW, len(RETRY_SCHEDULE) + 1, rng) is None
    assert next_attempt(NOW, 1, rng, retry_after=600) == NOW + timedelta(seconds=600)
    assert next_attempt(NOW, 1, rng, retry_after=10**9) == NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (format_datetime(datetime(2026, 11, 28, 10, 0, tzinfo=UTC), usegmt=True), 3600.0),
        ("99999999", 86400.0),
        ("banana", None),
        (format_datetime(datetime(2026, 11, 28, 8, 0, tzinfo=UTC), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    """Retry-After as seconds or an HTTP-date, clamped to [0, 24 h]; garbage is ignored."""
    assert parse_retry_after(value, now=NOW.timestamp()) == seconds
