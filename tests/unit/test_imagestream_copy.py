"""`copy_for_status_write` shares nested objects with the original: writing must never touch it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from imagestream.imagestreams import (
    TagCondition,
    TagEvent,
    copy_for_status_write,
    record,
    refresh_summary,
    set_import_failure,
)


def event(n: int, created: str) -> TagEvent:
    return TagEvent(
        created=created,
        docker_image_reference=f"registry.example/ns/app@sha256:{n:064x}",
        image=f"sha256:{n:064x}",
        generation=1,
    )


def stream() -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "app", "namespace": "ns", "resourceVersion": "7", "generation": 1},
        "spec": {"tags": [{"name": "stable", "from": {"kind": "ImageStreamTag", "name": "v1"}}]},
        "status": {},
    }
    record(obj, "v1", event(1, "2026-01-01T00:00:10.000000Z"))
    record(obj, "v2", event(2, "2026-01-01T00:00:10.000000Z"))
    set_import_failure(
        obj,
        "v2",
        TagCondition(reason="Unauthorized", message="no", generation=1, last_transition_time="t"),
    )
    return obj


def test_every_kind_of_write_leaves_the_original_untouched() -> None:
    original = stream()
    frozen = copy.deepcopy(original)
    writes: list[Callable[[dict[str, Any]], object]] = [
        lambda s: record(s, "v1", event(3, "2026-01-01T00:00:20.000000Z")),  # new head
        lambda s: record(s, "v1", event(4, "2026-01-01T00:00:05.000000Z")),  # late: inserted
        lambda s: record(s, "v1", event(1, "2026-01-01T00:00:30.000000Z")),  # same image
        lambda s: record(s, "v9", event(5, "2026-01-01T00:00:30.000000Z")),  # new tag
        lambda s: set_import_failure(
            s,
            "v1",
            TagCondition(reason="NotFound", message="x", generation=2, last_transition_time="u"),
        ),
        refresh_summary,
        lambda s: s["status"].update({"observedGeneration": 2}),
    ]
    for write in writes:
        copied = copy_for_status_write(original)
        write(copied)
        assert original == frozen
    # And the copy does carry the writes.
    copied = copy_for_status_write(original)
    record(copied, "v1", event(3, "2026-01-01T00:00:20.000000Z"))
    assert copied["status"]["tags"][0]["items"][0]["image"] == f"sha256:{3:064x}"
    assert {t["tag"] for t in copied["status"]["tags"]} >= {"v1", "stable"}


def test_the_cache_keeps_all_of_a_stream_but_managed_fields_and_kubectls_applied_copy() -> None:
    from imagestream.imagestreams import trim_for_cache

    stream = {
        "metadata": {
            "name": "app",
            "namespace": "ns",
            "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"ImageStream"}',
                "openshift.io/display-name": "App",
            },
            "labels": {"app": "web"},
        },
        "spec": {"tags": [{"name": "v1"}]},
        "status": {"tags": [{"tag": "v1", "items": [{"image": "sha256:1"}]}]},
    }
    original = copy.deepcopy(stream)
    kept = trim_for_cache(stream)
    assert stream == original  # the object as received is untouched
    assert kept["metadata"] == {
        "name": "app",
        "namespace": "ns",
        "resourceVersion": "7",
        "annotations": {"openshift.io/display-name": "App"},
        "labels": {"app": "web"},
    }
    assert kept["spec"] == stream["spec"] and kept["status"] == stream["status"]
