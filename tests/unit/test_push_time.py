"""A payload's push time is bounded by the time of receipt (webhook/intake.py, issue 14 point 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from webhook.intake import PUSH_TIME_MAX_AGE, bounded_push_time

RECEIVED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_time_within_the_window_is_kept() -> None:
    for age in (timedelta(0), timedelta(seconds=1), timedelta(days=6)):
        assert bounded_push_time(RECEIVED - age, RECEIVED) == RECEIVED - age


def test_a_future_time_counts_as_receipt() -> None:
    assert bounded_push_time(RECEIVED + timedelta(microseconds=1), RECEIVED) == RECEIVED
    assert bounded_push_time(datetime(2099, 1, 1, tzinfo=UTC), RECEIVED) == RECEIVED


def test_an_absurdly_old_time_or_none_counts_as_receipt() -> None:
    for pushed_at in (
        None,
        datetime(1, 1, 1, tzinfo=UTC),  # Go's zero time
        datetime(1970, 1, 1, tzinfo=UTC),
        RECEIVED - PUSH_TIME_MAX_AGE - timedelta(microseconds=1),
    ):
        assert bounded_push_time(pushed_at, RECEIVED) == RECEIVED


@given(st.datetimes(timezones=st.just(UTC)))
def test_the_time_recorded_is_never_after_receipt_nor_older_than_the_window(
    pushed_at: datetime,
) -> None:
    bounded = bounded_push_time(pushed_at, RECEIVED)
    assert RECEIVED - PUSH_TIME_MAX_AGE <= bounded <= RECEIVED
    assert bounded in (pushed_at, RECEIVED)
