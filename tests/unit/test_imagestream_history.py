"""Tag history and tracking rules (behaviours 1-3, 9, 13).

See docs/openshift-behaviours.md#behaviour-1 to #behaviour-3,
docs/openshift-behaviours.md#behaviour-9 and docs/openshift-behaviours.md#behaviour-13.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from imagestream.imagestreams import (
    TagCondition,
    TagEvent,
    add_tag_event,
    followers,
    head,
    record,
    set_import_failure,
    status_tag,
    tag_event_problem,
)


def _stream(
    *spec_tags: dict[str, Any], status_tags: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "ns", "generation": 3},
        "spec": {"tags": list(spec_tags)},
        "status": {"tags": status_tags or []},
    }


def _event(
    ref: str, image: str, *, created: str = "2026-01-01T00:00:02Z", generation: int = 1
) -> TagEvent:
    return TagEvent(created=created, docker_image_reference=ref, image=image, generation=generation)


FAILED = {
    "type": "ImportSuccess",
    "status": "False",
    "reason": "NotFound",
    "message": "x",
    "generation": 1,
}


def _with_head(event: TagEvent, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return _stream(
        status_tags=[{"tag": "v1", "items": [event.to_json()], "conditions": conditions or []}]
    )


def test_behaviour_1_first_event_starts_the_history() -> None:
    stream = _stream()
    assert add_tag_event(stream, "v1", _event("r@sha256:a", "sha256:a"))
    assert head(stream, "v1") == _event("r@sha256:a", "sha256:a")


def test_behaviour_1_a_different_image_is_prepended() -> None:
    old = _event("r@sha256:a", "sha256:a", created="2026-01-01T00:00:01Z")
    stream = _with_head(old)
    new = _event("r@sha256:b", "sha256:b")
    assert add_tag_event(stream, "v1", new)
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert [i["image"] for i in items] == ["sha256:b", "sha256:a"]


def test_behaviour_2_identical_event_writes_nothing() -> None:
    event = _event("r@sha256:a", "sha256:a")
    stream = _with_head(event, [FAILED])
    assert not add_tag_event(stream, "v1", event)
    assert status_tag(stream, "v1")["conditions"] == [FAILED]  # type: ignore[index]


def test_behaviour_2_a_new_head_clears_the_tags_conditions() -> None:
    stream = _with_head(_event("r@sha256:a", "sha256:a", created="2026-01-01T00:00:01Z"), [FAILED])
    assert add_tag_event(stream, "v1", _event("r@sha256:b", "sha256:b"))
    assert status_tag(stream, "v1")["conditions"] == []  # type: ignore[index]


def test_same_reference_and_image_new_generation_updates_the_head_in_place() -> None:
    stream = _with_head(_event("r@sha256:a", "sha256:a", generation=1))
    assert add_tag_event(stream, "v1", _event("r@sha256:a", "sha256:a", generation=2))
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert len(items) == 1 and items[0]["generation"] == 2


def test_behaviour_13_the_push_path_treats_same_digest_as_a_duplicate_whatever_the_generation() -> (
    None
):
    stream = _with_head(_event("r@sha256:a", "sha256:a", generation=1))
    assert not add_tag_event(
        stream, "v1", _event("r@sha256:a", "sha256:a", generation=5), same_image_is_duplicate=True
    )


def test_same_image_new_reference_updates_the_head_and_keeps_created() -> None:
    old = _event("old@sha256:a", "sha256:a", created="2026-01-01T00:00:01Z")
    stream = _with_head(old)
    assert add_tag_event(stream, "v1", _event("new@sha256:a", "sha256:a", generation=2))
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert len(items) == 1
    assert items[0] == {
        "created": old.created,
        "dockerImageReference": "new@sha256:a",
        "image": "sha256:a",
        "generation": 2,
    }


def test_a_late_event_never_moves_the_head_back() -> None:
    stream = _stream()
    newer = _event("r@sha256:b", "sha256:b", created="2026-01-01T00:00:05Z")
    older = _event("r@sha256:a", "sha256:a", created="2026-01-01T00:00:01Z")
    add_tag_event(stream, "v1", newer)
    assert add_tag_event(stream, "v1", older)
    assert head(stream, "v1") == newer
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert [i["image"] for i in items] == ["sha256:b", "sha256:a"]
    # Delivered again: already in the history, nothing to write.
    assert not add_tag_event(stream, "v1", older)


def test_history_is_capped() -> None:
    stream = _stream()
    for second in range(10):
        add_tag_event(
            stream,
            "v1",
            _event(
                f"r@sha256:{second}", f"sha256:{second}", created=f"2026-01-01T00:00:{second:02d}Z"
            ),
            history_limit=3,
        )
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert [i["image"] for i in items] == ["sha256:9", "sha256:8", "sha256:7"]


def test_behaviour_9_same_stream_followers_get_the_new_head() -> None:
    stream = _stream(
        {"name": "v1"},
        {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "v1"}},
        {"name": "also", "from": {"kind": "ImageStreamTag", "name": "app:v1", "namespace": "ns"}},
        {"name": "other-stream", "from": {"kind": "ImageStreamTag", "name": "other:v1"}},
        {
            "name": "other-ns",
            "from": {"kind": "ImageStreamTag", "name": "v1", "namespace": "elsewhere"},
        },
        {"name": "docker", "from": {"kind": "DockerImage", "name": "v1"}},
    )
    assert sorted(followers(stream, "v1")) == ["also", "stable"]
    event = _event("r@sha256:a", "sha256:a")
    assert sorted(record(stream, "v1", event)) == ["also", "stable", "v1"]
    assert head(stream, "stable") == head(stream, "also") == event
    assert head(stream, "other-stream") is None


def test_chains_move_direct_followers_only() -> None:
    stream = _stream(
        {"name": "t2", "from": {"kind": "ImageStreamTag", "name": "t1"}},
        {"name": "t3", "from": {"kind": "ImageStreamTag", "name": "t2"}},
    )
    assert sorted(record(stream, "t1", _event("r@sha256:a", "sha256:a"))) == ["t1", "t2"]
    assert head(stream, "t3") is None


def test_an_identical_import_failure_is_not_rewritten() -> None:
    stream = _stream()
    failure = TagCondition(
        reason="NotFound",
        message="no such tag",
        generation=3,
        last_transition_time="2026-01-01T00:00:00Z",
    )
    assert set_import_failure(stream, "v1", failure)
    assert not set_import_failure(stream, "v1", failure)
    (condition,) = status_tag(stream, "v1")["conditions"]  # type: ignore[index]
    assert condition["status"] == "False" and condition["reason"] == "NotFound"


events = st.builds(
    _event,
    ref=st.sampled_from(["r@sha256:a", "r@sha256:b", "s@sha256:a"]),
    image=st.sampled_from(["sha256:a", "sha256:b"]),
    created=st.sampled_from([f"2026-01-01T00:00:{s:02d}Z" for s in range(5)]),
)


@given(st.lists(events, max_size=20))
def test_recording_twice_changes_nothing_the_second_time(sequence: list[TagEvent]) -> None:
    stream = _stream()
    for event in sequence:
        add_tag_event(stream, "v1", event)
        assert not add_tag_event(stream, "v1", event)


@given(
    st.permutations(
        [
            _event(f"r@sha256:{i}", f"sha256:{i}", created=f"2026-01-01T00:00:{i:02d}Z")
            for i in range(6)
        ]
    )
)
def test_any_delivery_order_ends_on_the_newest_with_every_event_once(order: list[TagEvent]) -> None:
    stream = _stream()
    for event in order:
        add_tag_event(stream, "v1", event)
    items = status_tag(stream, "v1")["items"]  # type: ignore[index]
    assert [i["image"] for i in items] == [f"sha256:{i}" for i in reversed(range(6))]


def test_an_event_the_schema_refuses_is_found_before_the_write() -> None:
    """tag_event_problem mirrors the CRD: what it passes, the API server's schema takes."""
    good = TagEvent(
        created="2026-12-01T09:00:00.123456Z",
        docker_image_reference="r.io/a/b@sha256:" + "a" * 64,
        image="sha256:" + "a" * 64,
        generation=1,
    )
    assert tag_event_problem("v1", good) is None
    assert tag_event_problem("v1", None) is None  # an import failure: only the tag matters
    for tag in ("", "vé1", "-v1", "v" * 129):
        assert tag_event_problem(tag, good) is not None, tag
    for event in (
        replace(good, docker_image_reference=""),
        replace(good, created="1-01-01T00:00:00.000000Z"),  # year 1, formatted by strftime
        replace(good, created="yesterday"),
    ):
        assert tag_event_problem("v1", event) is not None, event
