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
