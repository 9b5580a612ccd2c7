"""Per-sender rate limits: the token bucket and the `rateLimit` receiver key."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.config import ConfigError, parse_config
from webhook.limits import RateLimit, SenderLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_holds_and_retry_after_is_whole_seconds() -> None:
    clock = Clock()
    limits = SenderLimits({"flood": RateLimit(requests_per_second=2, burst=3)}, clock=clock)
    assert [limits.retry_after("flood") for _ in range(3)] == [None, None, None]
    assert limits.retry_after("flood") == 1  # half a second to the next token, said as 1
    clock.now += 0.5
    assert limits.retry_after("flood") is None
    assert limits.retry_after("flood") == 1
    clock.now += 10  # refills up to the burst, not beyond
    assert [limits.retry_after("flood") for _ in range(4)] == [None, None, None, 1]


def test_senders_are_limited_apart_and_unlisted_ones_not_at_all() -> None:
    clock = Clock()
    limits = SenderLimits({"flood": RateLimit(requests_per_second=1, burst=1)}, clock=clock)
    assert limits.retry_after("flood") is None
    assert limits.retry_after("flood") == 1
    assert all(limits.retry_after("quiet") is None for _ in range(1000))


def receiver(rate_limit: object) -> dict[str, object]:
    return {
        "name": "r",
        "type": "distribution",
        "auth": {"type": "none"},
        "rateLimit": rate_limit,
    }


def test_rate_limit_is_parsed_with_burst_defaulting_to_the_rate() -> None:
    (parsed,) = parse_config(
        {"receivers": [receiver({"requestsPerSecond": 2.5})]}, source="t", base_dir=Path()
    )
    assert parsed.rate_limit == RateLimit(requests_per_second=2.5, burst=3)


@pytest.mark.parametrize(
    "value",
    [
        {"requestsPerSecond": 0},
        {"requestsPerSecond": True},
        {"requestsPerSecond": 5, "burst": 0},
        {"requestsPerSecond": 5, "bursts": 5},
        "fast",
    ],
)
def test_bad_rate_limits_stop_the_process_at_start(value: object) -> None:
    with pytest.raises(ConfigError, match="rateLimit"):
        parse_config({"receivers": [receiver(value)]}, source="t", base_dir=Path())
