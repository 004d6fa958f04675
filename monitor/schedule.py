"""When to poll next: pure decisions that take ``now`` and a random source.

Bottom layer: the pipeline asks, the database remembers the answer
(``sources.next_poll_at``); nothing here does I/O.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

MAX_BACKOFF = timedelta(hours=24)
JITTER = 0.2  # ±20 %, so sources that failed together do not retry together
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.I)


def next_poll_after_success(now: datetime, interval: timedelta) -> datetime:
    return now + interval


def backoff(errors: int, interval: timedelta, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff after ``errors`` consecutive errors, with jitter, capped at 24 h."""
    uniform = rng.uniform if rng else random.uniform
    exponent = min(max(0, errors - 1), 40)  # 2**40 intervals is past any cap; no float overflow
    base = min(interval.total_seconds() * 2**exponent, MAX_BACKOFF.total_seconds())
    delay = base * (1 + uniform(-JITTER, JITTER))
    return timedelta(seconds=min(delay, MAX_BACKOFF.total_seconds()))


def next_poll_after_error(
    now: datetime, errors: int, interval: timedelta, rng: random.Random | None = None
) -> datetime:
    return now + backoff(errors, interval, rng)


def status_for(errors: int) -> str:
    """A source is never disabled; after 3 consecutive errors it is reported as failing."""
    return "failing" if errors >= 3 else "ok"


# A source counts as publishing regularly once it has this many items spread over
# at least this long; a folder seeded once, or a feed that never published, is not.
SILENCE_MIN_ITEMS = 5
SILENCE_MIN_SPAN = timedelta(days=1)
SILENCE_FACTOR = 4  # overdue at four average gaps, so a quiet weekend does not alert
SILENCE_FLOOR = timedelta(hours=6)


def silent_for(
    now: datetime, items: int, first_item_at: datetime | None, last_item_at: datetime | None
) -> timedelta | None:
    """How long a regular source is past its expected period, or None if it is not silent."""
    if items < SILENCE_MIN_ITEMS or first_item_at is None or last_item_at is None:
        return None
    span = last_item_at - first_item_at
    if span < SILENCE_MIN_SPAN:
        return None
    expected = max(span / (items - 1) * SILENCE_FACTOR, SILENCE_FLOOR)
    overdue = now - last_item_at - expected
    return overdue if overdue > timedelta(0) else None


# --- feeds: server hints and publishing frequency (G5) -------------------------------

ADAPTIVE_WINDOW = timedelta(days=7)


def clamp(value: timedelta, lo: timedelta, hi: timedelta) -> timedelta:
    return max(lo, min(value, hi))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None for garbage or nothing."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value[:12]), int(MAX_BACKOFF.total_seconds())))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(timedelta(0), when - now), MAX_BACKOFF)


def cache_lifetime(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """How long the response says it stays fresh: Cache-Control max-age, else Expires."""
    control = headers.get("cache-control", "")
    match = _MAX_AGE.search(control)
    if match:
        return timedelta(seconds=min(int(match.group(1)[:12]), 10**9))
    if "no-cache" in control or "no-store" in control:
        return None
    expires = parse_retry_after(headers.get("expires"), now)
    return expires if expires is not None and not headers.get("expires", "").isdigit() else None


def rss_ttl(value: str | None) -> timedelta | None:
    """RSS 2.0 ``<ttl>``: minutes the feed may be cached."""
    if value and value.strip().isdigit():
        return timedelta(minutes=min(int(value.strip()[:9]), 10**6))
    return None


def adaptive_interval(
    published: Iterable[datetime], now: datetime, lo: timedelta, hi: timedelta
) -> timedelta:
    """Poll as often as the feed publishes (Miniflux's entry-frequency idea), within [lo, hi]:
    a feed with N entries in the last week is polled every week / N."""
    recent = sum(1 for when in published if now - ADAPTIVE_WINDOW <= when <= now)
    if recent == 0:
        return hi
    return clamp(ADAPTIVE_WINDOW / recent, lo, hi)


def feed_delay(
    interval: timedelta, hints: Iterable[timedelta | None], lo: timedelta, hi: timedelta
) -> timedelta:
    """The wait after a good poll: the interval, or longer if the server asks (within [lo, hi])."""
    asked = [clamp(h, lo, hi) for h in hints if h is not None]
    return max([interval, *asked])


def delay_after_error(
    errors: int,
    interval: timedelta,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
    *,
    gone: bool = False,
) -> timedelta:
    """Backoff with jitter, but never sooner than the server's Retry-After; 24 h at most.

    A feed that answered 410 Gone (``gone``) is never disabled (G5) but is polled slowly
    from its first 410: about once a day, jittered downwards so gone feeds do not bunch.
    """
    delay = backoff(errors, interval, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if gone:
        uniform = rng.uniform if rng else random.uniform
        delay = max(delay, MAX_BACKOFF * (1 - uniform(0, JITTER)))
    return min(delay, MAX_BACKOFF)


def feed_status(errors: int, status_code: int | None = None) -> str:
    """``gone`` for a 410 (flagged for the operator, still polled slowly), else as status_for."""
    return "gone" if status_code == 410 else status_for(errors)
