"""When to poll next: pure decisions that take ``now`` and a random source.

Bottom layer: the pipeline asks, the database remembers the answer
(``sources.next_poll_at``); nothing here does I/O.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_BACKOFF = timedelta(hours=24)
JITTER = 0.2  # ±20 %, so sources that failed together do not retry together


def next_poll_after_success(now: datetime, interval: timedelta) -> datetime:
    return now + interval


def backoff(errors: int, interval: timedelta, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff after ``errors`` consecutive errors, with jitter, capped at 24 h."""
    uniform = rng.uniform if rng else random.uniform
    base = min(interval.total_seconds() * 2 ** max(0, errors - 1), MAX_BACKOFF.total_seconds())
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
