"""Pure scheduling decisions: backoff bounds, failing status, source silence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

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
