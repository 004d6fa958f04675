"""Pure scheduling decisions: backoff bounds, failing status, source silence, and for feeds
(G5) server hints and the adaptive interval."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor import schedule

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@given(errors=st.integers(min_value=1, max_value=200), seed=st.integers())
def test_backoff_stays_within_bounds(errors: int, seed: int) -> None:
    """Backoff is never more than 24 h and never less than 80 % of the interval."""
    delay = schedule.backoff(errors, timedelta(minutes=15), random.Random(seed))
    assert timedelta(minutes=12) <= delay <= schedule.MAX_BACKOFF


def test_failing_after_three_errors() -> None:
    """A source is reported failing from its third consecutive error, never disabled."""
    assert [schedule.status_for(n) for n in (0, 1, 2, 3, 50)] == ["ok", "ok", "ok", "failing",
                                                                  "failing"]  # fmt: skip


def test_regular_source_gone_quiet_is_silent() -> None:
    """Ten items over ten days (one a day) and then five quiet days: silent by a day."""
    first, last = NOW - 14 * DAY, NOW - 5 * DAY
    assert schedule.silent_for(NOW, 10, first, last) == DAY


def test_recently_active_source_is_not_silent() -> None:
    """The same source three days after its last item is within four gaps."""
    assert schedule.silent_for(NOW, 10, NOW - 12 * DAY, NOW - 3 * DAY) is None


def test_burst_or_sparse_sources_never_count_as_silent() -> None:
    """A folder seeded once (all items at once) or a source with few items is not 'regular'."""
    assert schedule.silent_for(NOW, 100, NOW - 30 * DAY, NOW - 30 * DAY) is None
    assert schedule.silent_for(NOW, 3, NOW - 30 * DAY, NOW - 20 * DAY) is None


# --- feeds --------------------------------------------------------------------------

FEED_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN, MAX = timedelta(minutes=5), timedelta(hours=12)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", timedelta(hours=1)),
        ("99999999", timedelta(hours=24)),
        ("Sun, 01 Mar 2026 13:00:00 GMT", timedelta(hours=1)),
        ("Sun, 01 Mar 2026 11:00:00 GMT", timedelta(0)),
        ("banana", None),
        ("", None),
        (None, None),
    ],
)
def test_h19_retry_after_forms(value: str | None, expected: timedelta | None) -> None:
    """H19: seconds and HTTP-dates are read and clamped to 24 h; garbage means no hint."""
    assert schedule.parse_retry_after(value, FEED_NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cache-control": "public, max-age=600"}, timedelta(minutes=10)),
        ({"cache-control": 'max-age="120"'}, timedelta(minutes=2)),
        ({"expires": "Sun, 01 Mar 2026 14:00:00 GMT"}, timedelta(hours=2)),
        ({"cache-control": "no-cache", "expires": "Sun, 01 Mar 2026 14:00:00 GMT"}, None),
        ({"expires": "0"}, None),
        ({}, None),
    ],
)
def test_cache_lifetime(headers: dict[str, str], expected: timedelta | None) -> None:
    """Cache-Control max-age wins over Expires; no-cache and bogus Expires give no hint."""
    assert schedule.cache_lifetime(headers, FEED_NOW) == expected


def test_rss_ttl_is_minutes() -> None:
    """RSS <ttl> is minutes; anything else is ignored."""
    assert schedule.rss_ttl("60") == timedelta(hours=1)
    assert schedule.rss_ttl("soon") is None


def test_feed_delay_honours_hints_within_bounds() -> None:
    """A hint lengthens the wait, but never past max_interval; a short hint changes nothing."""
    interval = timedelta(minutes=15)
    assert schedule.feed_delay(interval, [timedelta(hours=2)], MIN, MAX) == timedelta(hours=2)
    assert schedule.feed_delay(interval, [timedelta(days=7)], MIN, MAX) == MAX
    assert schedule.feed_delay(interval, [timedelta(seconds=5), None], MIN, MAX) == interval


@pytest.mark.parametrize(
    ("per_week", "expected"),
    [(0, timedelta(hours=1)), (7, timedelta(hours=1)), (168, timedelta(hours=1)),
     (336, timedelta(minutes=30)), (100_000, MIN)],
)  # fmt: skip
def test_adaptive_interval_follows_publishing_rate(per_week: int, expected: timedelta) -> None:
    """A feed with N entries last week is polled every week/N, within [min, max]."""
    step = timedelta(days=7) / max(per_week, 1)
    times = [FEED_NOW - step * i for i in range(per_week)]
    assert schedule.adaptive_interval(times, FEED_NOW, MIN, timedelta(hours=1)) == expected


def test_backoff_doubles_and_stops_at_24_hours() -> None:
    """H20: consecutive errors double the wait (±20 %) up to 24 h; never disabled."""
    rng = random.Random(1)
    delays = [schedule.delay_after_error(n, timedelta(minutes=15), None, rng) for n in range(1, 12)]
    assert delays[1] > delays[0] * 1.3 and delays[-1] == timedelta(hours=24)
    assert schedule.feed_status(50) == "failing" and schedule.feed_status(2) == "ok"


def test_retry_after_is_a_floor_for_the_backoff() -> None:
    """H19: the next attempt is never sooner than Retry-After, and never past 24 h."""
    wait = schedule.delay_after_error(1, timedelta(minutes=1), timedelta(hours=3))
    assert wait == timedelta(hours=3)


def test_410_is_gone() -> None:
    """H21: a 410 marks the feed `gone` for the operator."""
    assert schedule.feed_status(1, 410) == "gone"


@given(errors=st.integers(min_value=1, max_value=100), seed=st.integers())
def test_h21_gone_feed_is_polled_about_daily_from_the_first_410(errors: int, seed: int) -> None:
    """H21: after a 410 the next poll is 19.2-24 h away (slow backoff), whatever the count."""
    wait = schedule.delay_after_error(errors, timedelta(minutes=1), rng=random.Random(seed),
                                      gone=True)  # fmt: skip
    assert timedelta(hours=24) * 0.8 <= wait <= timedelta(hours=24)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=10**6))
def test_backoff_stays_in_bounds(errors: int, interval_seconds: int) -> None:
    """Whatever the error count and interval, the backoff is positive and at most 24 h."""
    wait = schedule.delay_after_error(errors, timedelta(seconds=interval_seconds))
    assert timedelta(0) < wait <= timedelta(hours=24)
