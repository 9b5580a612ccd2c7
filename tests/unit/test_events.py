"""The Event bodies the recorder writes: a series from the second occurrence on (issue 14,
point 8). The recorder's writes are tested against the real API server in
tests/integration/test_trigger_events.py."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.events import Series, event_body, series_fields

FIRST = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
LAST = datetime(2026, 12, 1, 9, 3, 0, 123456, tzinfo=UTC)
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
}


def series(count: int) -> Series:
    return Series(
        regarding=DEPLOYMENT,
        type_="Normal",
        reason="ImageTriggered",
        action="UpdateImage",
        note="x" * 2000,
        first=FIRST,
        last=LAST,
        last_seen_s=0.0,
        name="web.0123",
        count=count,
    )


def test_a_single_occurrence_is_an_event_without_a_series() -> None:
    body = event_body(series(1), instance="me")
    assert "series" not in body
    assert body["metadata"] == {"name": "web.0123", "namespace": "ns"}
    assert body["eventTime"] == "2026-12-01T09:00:00.000000Z"
    assert body["regarding"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "ns",
        "name": "web",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert len(body["note"]) == 1024  # the API server's limit


def test_repeats_are_a_series_counting_every_occurrence() -> None:
    assert event_body(series(4), instance="me")["series"] == {
        "count": 4,
        "lastObservedTime": "2026-12-01T09:03:00.123456Z",
    }
    assert series_fields(series(2))["count"] == 2
