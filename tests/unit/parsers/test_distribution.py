"""distribution's notifications (the registry's own `events` envelope)."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    DIGEST,
    DOCKER_V2,
    OCI_INDEX,
    document,
    only,
    parse,
    payload,
    record,
    utc,
    with_digest,
)
from webhook.events import BadPayload, Ignored


def test_distribution_push_by_tag_is_a_record() -> None:
    parsed = parse(
        "distribution", payload("distribution-push-manifest-tag-captured-maiev-2017.json")
    )
    assert parsed.records == [
        record(
            "localdocker:5000",
            "nginx",
            "test",
            "sha256:11756e3866c185aa3cc5fa77b912456da847d276e3d55c50eabc6421612a2a1f",
            media_type=DOCKER_V2,
            pushed_at=utc(2017, 5, 2, 15, 20, 42, 909063),
            event_id="269b7346-dc07-45cd-ad9e-bb9d6d7c532c",
        )
    ]
    assert parsed.ignored == []


def test_distribution_index_push_by_tag_is_a_record() -> None:
    parsed = parse(
        "distribution", payload("distribution-push-index-with-references-constructed.json")
    )
    assert parsed.records == [
        record(
            "registry.example.com",
            "team/app",
            "v1.2.3",
            "sha256:" + "1" * 64,
            media_type=OCI_INDEX,
            pushed_at=utc(2026, 1, 15, 10, 0, 1, 123456),
            event_id="6f0d4c1e-0000-4000-8000-000000000002",
        )
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "distribution-push-child-manifest-by-digest-constructed.json",
            Ignored(
                "untagged_manifest",
                event_id="6f0d4c1e-0000-4000-8000-000000000003",
                detail="team/app@sha256:" + "2" * 64,
            ),
        ),
        (
            "distribution-push-blob-constructed.json",
            Ignored(
                "blob",
                event_id="6f0d4c1e-0000-4000-8000-000000000001",
                detail="application/octet-stream",
            ),
        ),
        (
            "distribution-mount-blob-constructed.json",
            Ignored("mount", event_id="6f0d4c1e-0000-4000-8000-000000000006"),
        ),
        (
            "distribution-pull-manifest-tag-docs.json",
            Ignored("pull", event_id="320678d8-ca14-430f-8bb6-4ca139cd83f7"),
        ),
        (
            "distribution-delete-manifest-constructed.json",
            Ignored("delete", event_id="6f0d4c1e-0000-4000-8000-000000000004"),
        ),
        (
            "distribution-delete-tag-constructed.json",
            Ignored("delete", event_id="6f0d4c1e-0000-4000-8000-000000000005"),
        ),
    ],
)
def test_distribution_events_that_move_no_tag_are_ignored(name: str, expected: Ignored) -> None:
    assert only(parse("distribution", payload(name))) == expected


def test_distribution_envelope_with_several_events_gives_one_entry_each() -> None:
    name = "distribution-push-envelope-test-fixture.json"
    # distribution's own test fixture uses a 17-digit digest for the manifest.
    with pytest.raises(BadPayload, match="digest"):
        parse("distribution", payload(name))
    parsed = parse("distribution", with_digest(name, "sha256:0123456789abcdef0"))
    rootfs = "application/vnd.docker.container.image.rootfs.diff+x-gtar"
    assert parsed.records == []
    assert parsed.ignored == [
        Ignored(
            "untagged_manifest", event_id="asdf-asdf-asdf-asdf-0", detail=f"library/test@{DIGEST}"
        ),
        Ignored("blob", event_id="asdf-asdf-asdf-asdf-1", detail=rootfs),
        Ignored("blob", event_id="asdf-asdf-asdf-asdf-2", detail=rootfs),
    ]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json; charset=utf-8",
        None,
    ],
)
def test_distribution_content_types_of_v2_and_v3_are_read(content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = payload("distribution-push-manifest-tag-captured-maiev-2017.json")
    assert len(parse("distribution", body, headers=headers).records) == 1


def test_distribution_without_request_host_uses_the_receiver_registry() -> None:
    envelope = document("distribution-push-index-with-references-constructed.json")
    del envelope["events"][0]["request"]
    (pushed,) = parse("distribution", envelope, registry="Registry.Internal:5000").records
    assert pushed.registry == "registry.internal:5000"


def test_distribution_fragment_without_envelope_is_bad() -> None:
    with pytest.raises(BadPayload, match="events"):
        parse("distribution", payload("distribution-delete-target-fragment-docs.json"))
