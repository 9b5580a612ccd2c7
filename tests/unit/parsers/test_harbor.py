"""Harbor: the Default (v1, v2) format, and a policy switched to CloudEvents."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    STRUCTURED,
    content_id,
    document,
    only,
    parse,
    payload,
    record,
    utc,
)
from webhook.events import BadPayload, Ignored


def test_harbor_v2_push_is_a_record_with_a_content_id() -> None:
    pushed_at = utc(2020, 4, 15, 3, 45, 8)
    digest = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
    parsed = parse("harbor", payload("harbor-push-default-v2-flux-recv.json"))
    assert parsed.records == [
        record(
            "hub.harbor.com",
            "test-webhook/debian",
            "latest",
            digest,
            pushed_at=pushed_at,
            event_id=content_id(
                "harbor", "hub.harbor.com", "test-webhook/debian", "latest", digest, pushed_at
            ),
        )
    ]


def test_harbor_v1_push_image_is_a_record() -> None:
    pushed_at = utc(2020, 4, 2, 16, 50, 34)
    digest = "sha256:e4355b66995c96b4b468159fc5c7e3540fcef961189ca13fee877798649f531a"
    parsed = parse("harbor", payload("harbor-v1-pushimage-flux-recv.json"))
    assert parsed.records == [
        record(
            "demo.goharbor.io",
            "test123/alpine",
            "3.10",
            digest,
            pushed_at=pushed_at,
            event_id=content_id(
                "harbor", "demo.goharbor.io", "test123/alpine", "3.10", digest, pushed_at
            ),
        )
    ]


HARBOR_UNTAGGED_DIGEST = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "harbor-push-default-docs.json",
            Ignored("untagged_manifest", detail=f"harbor/alpine@{HARBOR_UNTAGGED_DIGEST}"),
        ),
        ("harbor-delete-default-docs.json", Ignored("delete", detail="DELETE_ARTIFACT")),
        (
            "harbor-scanning-completed-default-docs.json",
            Ignored("scan_completed", detail="SCANNING_COMPLETED"),
        ),
        ("harbor-replication-default-docs.json", Ignored("replication", detail="REPLICATION")),
    ],
)
def test_harbor_events_that_move_no_tag_are_ignored(name: str, expected: Ignored) -> None:
    assert only(parse("harbor", payload(name))) == expected


def test_harbor_receiver_reads_a_policy_switched_to_cloudevents() -> None:
    parsed = parse(
        "harbor",
        payload("harbor-push-cloudevents-tagged-constructed.json"),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert [entry.tag for entry in parsed.records] == ["master-491-6bac849"]


def test_harbor_cloudevent_with_several_resources_gives_each_record_its_own_id() -> None:
    event = document("harbor-push-cloudevents-tagged-constructed.json")
    first = event["data"]["resources"][0]
    event["data"]["resources"].append({**first, "tag": "latest"})
    parsed = parse("cloudevents", event, headers={"Content-Type": "application/cloudevents+json"})
    base = "/projects/2/webhook/policies/15#00000000-0000-0000-0000-000000000002"
    assert [(r.tag, r.event_id) for r in parsed.records] == [
        ("master-491-6bac849", f"{base}/0"),
        ("latest", f"{base}/1"),
    ]


HARBOR_SOURCE = "/projects/2/webhook/policies/15"


def test_cloudevents_harbor_tagged_push_is_a_record() -> None:
    parsed = parse(
        "cloudevents",
        payload("harbor-push-cloudevents-tagged-constructed.json"),
        headers=STRUCTURED,
    )
    assert parsed.records == [
        record(
            "harbor.mydomain.lan",
            "mynamespace/myapp",
            "master-491-6bac849",
            "sha256:fd49e9a1a36d28c54520d89bb23f07365802c5c75108c7eaca4400ed60bb19a5",
            pushed_at=utc(2024, 4, 14, 11, 44, 46),
            event_id=f"{HARBOR_SOURCE}#00000000-0000-0000-0000-000000000002",
        )
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "harbor-push-cloudevents-docs.json",
            Ignored(
                "untagged_manifest",
                event_id=f"{HARBOR_SOURCE}#66e18103-09c1-41f6-982f-37df223f3eeb",
                detail=f"harbor/alpine@{HARBOR_UNTAGGED_DIGEST}",
            ),
        ),
        (
            "harbor-delete-cloudevents-docs.json",
            Ignored(
                "delete",
                event_id=f"{HARBOR_SOURCE}#343f1623-7cba-487c-88f1-c5ebf55e93aa",
                detail="DELETE_ARTIFACT",
            ),
        ),
        (
            "harbor-scanning-completed-cloudevents-docs.json",
            Ignored(
                "scan_completed",
                event_id=f"{HARBOR_SOURCE}#64bce2fe-6159-454d-8389-852d01ef1e9d",
                detail="SCANNING_COMPLETED",
            ),
        ),
    ],
)
def test_cloudevents_harbor_events_that_move_no_tag_are_ignored(
    name: str, expected: Ignored
) -> None:
    assert only(parse("cloudevents", payload(name), headers=STRUCTURED)) == expected


def test_cloudevents_harbor_cdevents_proposal_is_not_a_harbor_push() -> None:
    # Never merged: typed harbor.artifact.pushed but carrying a CDEvent.
    with pytest.raises(BadPayload, match="Harbor"):
        parse(
            "cloudevents",
            payload("harbor-push-cdevents-unmerged-pr-comment.json"),
            headers=STRUCTURED,
        )
