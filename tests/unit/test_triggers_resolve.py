"""Tag -> pull spec (docs/openshift-behaviours.md#behaviour-14), mirroring OpenShift's
`TestResolveLatestTaggedImage` table plus the edges of our dict-shaped input."""

from __future__ import annotations

from typing import Any

import pytest

from controller.triggers.resolve import resolve_latest_tagged_image

REPOSITORY = "image-registry.openshift-image-registry.svc:5000/ns/app"
SOURCE = "quay.io/x/app@sha256:aaaa"
DIGEST = "sha256:aaaa"


def image_stream(
    *,
    tag: str = "latest",
    items: list[dict[str, Any]] | None = None,
    policy: str | None = None,
    repository: str = "",
) -> dict[str, Any]:
    spec_tags = [] if policy is None else [{"name": tag, "referencePolicy": {"type": policy}}]
    status_tags = [] if items is None else [{"tag": tag, "items": items}]
    return {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"tags": spec_tags},
        "status": {"dockerImageRepository": repository, "tags": status_tags},
    }


HEAD = {"dockerImageReference": SOURCE, "image": DIGEST, "generation": 1}


@pytest.mark.parametrize(
    ("stream", "tag", "expected"),
    [
        pytest.param(image_stream(), "latest", None, id="missing tag: not found"),
        pytest.param(image_stream(items=[HEAD]), "", SOURCE, id="empty tag means latest"),
        pytest.param(image_stream(items=[HEAD]), "latest", SOURCE, id="no spec tag: source ref"),
        pytest.param(
            image_stream(items=[HEAD], policy="Source", repository=REPOSITORY),
            "latest",
            SOURCE,
            id="Source policy: source ref",
        ),
        pytest.param(
            image_stream(items=[HEAD], policy="Local"),
            "latest",
            SOURCE,
            id="Local without registry: source ref",
        ),
        pytest.param(
            image_stream(items=[{**HEAD, "image": ""}], policy="Local", repository=REPOSITORY),
            "latest",
            SOURCE,
            id="Local without image id: source ref",
        ),
        pytest.param(
            image_stream(items=[HEAD], policy="Local", repository=REPOSITORY),
            "latest",
            f"{REPOSITORY}@{DIGEST}",
            id="Local with registry and image id: repo@digest",
        ),
    ],
)
def test_behaviour_14_resolve_latest_tagged_image(
    stream: dict[str, Any], tag: str, expected: str | None
) -> None:
    assert resolve_latest_tagged_image(stream, tag) == expected


def test_behaviour_14_only_the_head_of_the_history_counts() -> None:
    older = {"dockerImageReference": "quay.io/x/app@sha256:0000", "image": "sha256:0000"}
    stream = image_stream(items=[HEAD, older])
    assert resolve_latest_tagged_image(stream, "latest") == SOURCE


def test_behaviour_14_a_tag_with_an_empty_history_is_unresolved() -> None:
    assert resolve_latest_tagged_image(image_stream(items=[]), "latest") is None


def test_behaviour_14_pending_import_conditions_are_ignored() -> None:
    stream = image_stream(items=[HEAD])
    stream["status"]["tags"][0]["conditions"] = [
        {"type": "ImportSuccess", "status": "False", "reason": "NotFound", "generation": 5}
    ]
    assert resolve_latest_tagged_image(stream, "latest") == SOURCE


def test_behaviour_14_other_tags_do_not_resolve() -> None:
    assert resolve_latest_tagged_image(image_stream(tag="v1", items=[HEAD]), "latest") is None


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param({}, id="no status at all"),
        pytest.param({"status": None, "spec": None}, id="null status"),
        pytest.param({"status": {"tags": [{"tag": "latest", "items": None}]}}, id="null items"),
        pytest.param(image_stream(items=[{**HEAD, "dockerImageReference": ""}]), id="empty ref"),
    ],
)
def test_behaviour_14_malformed_streams_are_unresolved_not_errors(stream: dict[str, Any]) -> None:
    assert resolve_latest_tagged_image(stream, "latest") is None
