"""Payload parsers: real payloads in, exact PushRecords / Ignored out; anything else is BadPayload.

The payloads are copies of real or schema-derived deliveries
(tests/data/payloads/SOURCES.md). Where a vendor sample redacts its digest
the test shows the rejection, then substitutes a well-formed digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from imagestream.references import is_valid_digest, is_valid_repository, is_valid_tag
from webhook.events import BadPayload, Ignored, ParsedNotification, PushRecord, UnsupportedMediaType
from webhook.parsing import REASONS, RECEIVER_TYPES, parse_notification

PAYLOADS = Path(__file__).resolve().parent.parent / "data" / "payloads"
JSON_HEADERS = {"Content-Type": "application/json"}
RECEIVER = "test-receiver"
# A well-formed stand-in for the redacted digests of vendor samples.
DIGEST = "sha256:" + "ab" * 32


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def document(name: str) -> Any:
    return json.loads(payload(name))


def with_digest(name: str, redacted: str) -> bytes:
    body = payload(name)
    assert redacted.encode() in body
    return body.replace(redacted.encode(), DIGEST.encode())


def parse(
    receiver_type: str,
    body: bytes | Any,
    *,
    headers: Mapping[str, str] = JSON_HEADERS,
    registry: str = "",
) -> ParsedNotification:
    return parse_notification(
        receiver_type,
        headers=headers,
        body=body if isinstance(body, bytes) else json.dumps(body).encode(),
        receiver=RECEIVER,
        default_registry=registry,
    )


def entries(parsed: ParsedNotification) -> list[PushRecord | Ignored]:
    return [*parsed.records, *parsed.ignored]


def only(parsed: ParsedNotification) -> PushRecord | Ignored:
    (entry,) = entries(parsed)
    return entry


def reason(parsed: ParsedNotification) -> str:
    """The reason of a notification that is exactly one Ignored entry."""
    assert parsed.records == []
    (ignored,) = parsed.ignored
    return ignored.reason


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def content_id(
    receiver_type: str, registry: str, repository: str, tag: str, digest: str, at: datetime | None
) -> str:
    """The documented id for senders without one: sha256 of the fields, newline-joined."""
    fields = [receiver_type, registry, repository, tag, digest, at.isoformat() if at else ""]
    return "content:" + hashlib.sha256("\n".join(fields).encode()).hexdigest()


def record(
    registry: str,
    repository: str,
    tag: str,
    digest: str,
    *,
    media_type: str = "",
    pushed_at: datetime | None = None,
    event_id: str,
) -> PushRecord:
    return PushRecord(
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        pushed_at=pushed_at,
        event_id=event_id,
        receiver=RECEIVER,
    )


# --- distribution -----------------------------------------------------------------

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


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


# --- Harbor -----------------------------------------------------------------------


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


# --- CloudEvents ------------------------------------------------------------------

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
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


ACR_PUSHED = record(
    "demo.azurecr.io",
    "aci-helloworld",
    "v1",
    "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5",
    media_type=DOCKER_V2,
    # The registry's own timestamp in `data`, not Event Grid's later `time`.
    pushed_at=utc(2018, 4, 25, 21, 39, 47, 276585),
    event_id=(
        "/subscriptions/<subscription-id>/resourceGroups/<resource-group-name>/providers/"
        "Microsoft.ContainerRegistry/registries/<name>#831e1650-001e-001b-66ab-eeb76e069631"
    ),
)


@pytest.mark.parametrize("headers", [BATCH, JSON_HEADERS, {}])
def test_cloudevents_acr_event_grid_batch_is_a_record(headers: dict[str, str]) -> None:
    body = payload("acr-eventgrid-imagepushed-cloudevents-docs.json")
    assert parse("cloudevents", body, headers=headers).records == [ACR_PUSHED]


def cdevent_binary(*, tag: str = "") -> tuple[dict[str, str], bytes]:
    """The constructed OCI CDEvent in binary mode, as its documentation headers describe."""
    sample = document("cdevents-artifact-published-oci-constructed.json")
    headers: dict[str, str] = sample["_http_headers_binary_mode"]
    body = sample["body"]
    if tag:
        headers["ce-subject"] += f"&tag={tag}"
        body["subject"]["id"] += f"&tag={tag}"
    return headers, json.dumps(body).encode()


CDEVENT_ID = "/registry/mycr.io#271069a8-fc18-44f1-b38f-9d70a1695819"
CDEVENT_DIGEST = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"


def test_cloudevents_cdevent_without_tag_is_an_untagged_manifest() -> None:
    headers, body = cdevent_binary()
    assert only(parse("cloudevents", body, headers=headers)) == Ignored(
        "untagged_manifest", event_id=CDEVENT_ID, detail=f"myapp@{CDEVENT_DIGEST}"
    )


def test_cloudevents_cdevent_with_tag_is_a_record_in_binary_and_structured_mode() -> None:
    headers, body = cdevent_binary(tag="v1")
    expected = [
        record(
            "mycr.io",
            "myapp",
            "v1",
            CDEVENT_DIGEST,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id=CDEVENT_ID,
        )
    ]
    assert parse("cloudevents", body, headers=headers).records == expected
    structured = {
        "specversion": "1.0",
        "id": headers["ce-id"],
        "source": headers["ce-source"],
        "type": headers["ce-type"],
        "time": headers["ce-time"],
        "datacontenttype": "application/json",
        "data": json.loads(body),
    }
    assert parse("cloudevents", structured, headers=STRUCTURED).records == expected


def test_cloudevents_cdevent_for_a_go_module_is_not_an_image() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "271069a8-fc18-44f1-b38f-9d70a1695819",
        "ce-source": "/event/source/123",
        "ce-type": "dev.cdevents.artifact.published.0.3.0",
        "Content-Type": "application/json",
    }
    body = payload("cdevents-artifact-published-conformance.json")
    assert only(parse("cloudevents", body, headers=headers)) == Ignored(
        "not_an_image",
        event_id="/event/source/123#271069a8-fc18-44f1-b38f-9d70a1695819",
        detail="pkg:golang",
    )


def test_cloudevents_ecr_input_template_is_a_record() -> None:
    template = payload(
        "ecr-eventbridge-to-cloudevents-input-template-argocd-image-updater.json"
    ).decode()
    for placeholder, value in {
        "<id>": "0f5a",
        "<region>": "eu-west-1",
        "<account>": "123456789012",
        "<repo>": "team/app",
        "<tag>": "v1",
        "<time>": "2026-01-15T10:00:02Z",
        "<digest>": DIGEST,
    }.items():
        template = template.replace(placeholder, value)
    source = "urn:aws:ecr:eu-west-1:123456789012:repository/team/app"
    assert parse("cloudevents", template.encode(), headers=STRUCTURED).records == [
        record(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "team/app",
            "v1",
            DIGEST,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id=f"{source}#0f5a",
        )
    ]


GENERIC_DATA = {
    "registry": "Registry.Example.com",
    "repository": "team/app",
    "tag": "v2",
    "digest": DIGEST,
    "mediaType": OCI_INDEX,
}


def test_cloudevents_generic_push_type_in_structured_and_binary_mode() -> None:
    expected = [
        record(
            "registry.example.com",
            "team/app",
            "v2",
            DIGEST,
            media_type=OCI_INDEX,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id="/ci/build#42",
        )
    ]
    structured = {
        "specversion": "1.0",
        "type": "io.imagestream.push.v1",
        "source": "/ci/build",
        "id": "42",
        "time": "2026-01-15T10:00:02Z",
        "data": GENERIC_DATA,
    }
    assert parse("cloudevents", structured, headers=STRUCTURED).records == expected
    binary = {
        "CE-SpecVersion": "1.0",
        "CE-Type": "io.imagestream.push.v1",
        "CE-Source": "/ci/build",
        "CE-Id": "42",
        "CE-Time": "2026-01-15T10:00:02Z",
        "Content-Type": "application/json",
    }
    assert parse("cloudevents", GENERIC_DATA, headers=binary).records == expected


def test_cloudevents_without_time_has_no_push_time_and_without_registry_uses_the_receivers() -> (
    None
):
    data = {key: value for key, value in GENERIC_DATA.items() if key != "registry"}
    event = {
        "specversion": "1.0",
        "type": "io.imagestream.push.v1",
        "source": "/ci",
        "id": "1",
        "data": data,
    }
    (pushed,) = parse(
        "cloudevents", event, headers=STRUCTURED, registry="registry.local:5000"
    ).records
    # The SDK would default `time` to now; a push time must come from the sender.
    assert (pushed.registry, pushed.pushed_at) == ("registry.local:5000", None)


def test_cloudevents_of_other_types_are_ignored() -> None:
    event = {"specversion": "1.0", "type": "com.example.build.finished", "source": "/ci", "id": "7"}
    assert only(parse("cloudevents", event, headers=STRUCTURED)) == Ignored(
        "unsupported_event_type", event_id="/ci#7", detail="com.example.build.finished"
    )


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        # The SDK would invent an id, which defeats deduplication.
        (STRUCTURED, b'{"specversion": "1.0", "type": "t", "source": "/s"}', "no id"),
        ({"ce-specversion": "1.0", "ce-type": "t", "ce-source": "/s"}, b"{}", "ce-id"),
        (
            STRUCTURED,
            b'{"specversion": "0.9", "type": "t", "source": "/s", "id": "1"}',
            "specversion",
        ),
        (
            STRUCTURED,
            b'{"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "time": "x"}',
            "valid",
        ),
        (STRUCTURED, b"[]", "not a JSON object"),
        (BATCH, b"{}", "not a JSON array"),
    ],
)
def test_cloudevents_malformed_events_are_bad(
    headers: dict[str, str], body: bytes, message: str
) -> None:
    with pytest.raises(BadPayload, match=message):
        parse("cloudevents", body, headers=headers)


# --- Quay -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "repository", "tag"),
    [
        ("quay-repo-push-docs.json", "dgangaia/test", "latest"),
        ("quay-repo-push-flux-recv.json", "hiddeco/foo", "3.10"),
        ("quay-repo-push-legacy-2013-gist.json", "devtable/ubuntu", "latest"),
    ],
)
def test_quay_push_is_a_record_without_digest(name: str, repository: str, tag: str) -> None:
    assert parse("quay", payload(name)).records == [
        record(
            "quay.io",
            repository,
            tag,
            "",
            event_id=content_id("quay", "quay.io", repository, tag, "", None),
        )
    ]


def test_quay_test_notification_is_ignored() -> None:
    parsed = parse("quay", payload("quay-repo-push-test-notification-constructed.json"))
    assert only(parsed) == Ignored("test_notification", detail="mynamespace/myrepo")


def test_quay_push_of_several_tags_gives_records_with_distinct_ids() -> None:
    push = document("quay-repo-push-docs.json") | {"updated_tags": ["latest", "v1"]}
    parsed = parse("quay", push)
    assert [r.tag for r in parsed.records] == ["latest", "v1"]
    assert len({r.event_id for r in parsed.records}) == 2


def test_quay_other_events_and_empty_pushes_are_ignored() -> None:
    build = {
        key: value
        for key, value in document("quay-repo-push-docs.json").items()
        if key != "updated_tags"
    }
    assert only(parse("quay", build | {"build_id": "b1"})) == Ignored(
        "not_a_push", detail="dgangaia/test"
    )
    empty = document("quay-repo-push-docs.json") | {"updated_tags": []}
    assert only(parse("quay", empty)) == Ignored("no_tag", detail="dgangaia/test")


# --- Docker Hub -------------------------------------------------------------------


def test_dockerhub_push_is_a_docker_io_record_without_digest() -> None:
    pushed_at = utc(2014, 12, 3, 0, 22, 41)
    repository = "svendowideit/testhook"
    assert parse("dockerhub", payload("dockerhub-push-docs.json")).records == [
        record(
            "docker.io",
            repository,
            "latest",
            "",
            pushed_at=pushed_at,
            event_id=content_id("dockerhub", "docker.io", repository, "latest", "", pushed_at),
        )
    ]


def test_dockerhub_official_image_lives_under_library() -> None:
    push = document("dockerhub-push-docs.json")
    push["repository"]["repo_name"] = "nginx"
    (pushed,) = parse("dockerhub", push).records
    assert pushed.repository == "library/nginx"


def test_dockerhub_push_without_tag_is_bad() -> None:
    push = document("dockerhub-push-docs.json")
    del push["push_data"]["tag"]
    with pytest.raises(BadPayload, match="tag"):
        parse("dockerhub", push)


# --- Azure Container Registry ------------------------------------------------------

ACR_REDACTED = "sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx"


def test_acr_webhook_push_with_redacted_digest_is_bad_and_with_a_digest_a_record() -> None:
    with pytest.raises(BadPayload, match="digest"):
        parse("acr", payload("acr-webhook-push-docs.json"))
    assert parse("acr", with_digest("acr-webhook-push-docs.json", ACR_REDACTED)).records == [
        record(
            "myregistry.azurecr.io",
            "hello-world",
            "v1",
            DIGEST,
            media_type=DOCKER_V2,
            pushed_at=utc(2023, 11, 17, 16, 52, 1, 343145),
            event_id="cb8c3971-9adc-488b-xxxx-43cbb4974ff5",
        )
    ]


def test_acr_captured_webhook_push_is_a_record() -> None:
    parsed = parse("acr", with_digest("acr-webhook-push-captured-kobold.json", ACR_REDACTED))
    assert parsed.records == [
        record(
            "test.azurecr.io",
            "busybox",
            "v1",
            DIGEST,
            media_type=DOCKER_V2,
            pushed_at=utc(2023, 10, 11, 14, 45, 59, 730519),
            event_id="9a5f8995-dbab-4c2b-b06c-0c29c23e759e",
        )
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "acr-webhook-delete-docs.json",
            Ignored("delete", event_id="afc359ce-df7f-4e32-xxxx-1ff8aa80927b", detail="delete"),
        ),
        (
            "acr-webhook-chart-push-docs.json",
            Ignored(
                "not_an_image", event_id="6356e9e0-627f-4fed-xxxx-d9059b5143ac", detail="chart_push"
            ),
        ),
    ],
)
def test_acr_webhook_events_that_move_no_tag_are_ignored(name: str, expected: Ignored) -> None:
    assert only(parse("acr", payload(name))) == expected


ACR_EVENT_GRID_PUSHED = record(
    "matellcr.azurecr.io",
    "ubuntu",
    "18.04",
    "sha256:3013b0d761d4bad6ff16dd2805887a2f2c3fc140d6206086698b5c3e44e0f7fe",
    media_type=DOCKER_V2,
    pushed_at=utc(2020, 7, 9, 0, 29, 38, 143428),
    event_id="b734f818-f923-472b-aec8-50995013fd7c",
)


def test_acr_event_grid_schema_with_data_as_a_string_is_a_record() -> None:
    single = payload("acr-eventgrid-imagepushed-eventgridschema-captured-2020.json")
    assert parse("acr", single).records == [ACR_EVENT_GRID_PUSHED]
    array = b"[" + single + b"]"
    assert parse("acr", array).records == [ACR_EVENT_GRID_PUSHED]


def test_acr_event_grid_subscription_validation_carries_the_code() -> None:
    validation = [
        {
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2018-01-25T22:12:19.4556811Z",
        }
    ]
    assert only(parse("acr", validation)) == Ignored(
        "subscription_validation",
        event_id="2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        detail="512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
    )


def test_acr_receiver_reads_the_event_grid_cloudevents_schema() -> None:
    body = payload("acr-eventgrid-imagepushed-cloudevents-docs.json")
    assert parse("acr", body, headers=BATCH).records == [ACR_PUSHED]


# --- Google Artifact Registry / GCR --------------------------------------------------

GAR_REPOSITORY = "my-project/my-repo/hello-world"


def test_gcr_push_envelope_is_a_record() -> None:
    assert parse("gcr", payload("gar-pubsub-push-envelope-constructed.json")).records == [
        record(
            "us-west1-docker.pkg.dev",
            GAR_REPOSITORY,
            "1.1",
            "sha256:" + "a" * 64,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id="1234567890123456",
        )
    ]


def test_gcr_unwrapped_message_is_a_record_with_a_content_id() -> None:
    digest = "sha256:17f4431497a07da98bc16e599ef9d38afb9817049b6e98b71b7e321b946a24d4"
    repository, tag = "freshly-docker/freshly", "PIG-267-refactor-email-service"
    assert parse("gcr", payload("gcr-pubsub-message-insert-captured.json")).records == [
        record(
            "gcr.io",
            repository,
            tag,
            digest,
            event_id=content_id("gcr", "gcr.io", repository, tag, digest, None),
        )
    ]


def test_gcr_unwrapped_message_takes_id_and_time_from_pubsub_headers() -> None:
    body = with_digest("gar-pubsub-message-insert-digest-and-tag-docs.json", "sha256:...")
    headers = JSON_HEADERS | {
        "X-Goog-Pubsub-Message-Id": "99",
        "X-Goog-Pubsub-Publish-Time": "2026-01-15T10:00:02.5Z",
    }
    assert parse("gcr", body, headers=headers).records == [
        record(
            "us-west1-docker.pkg.dev",
            GAR_REPOSITORY,
            "1.1",
            DIGEST,
            pushed_at=utc(2026, 1, 15, 10, 0, 2, 500000),
            event_id="99",
        )
    ]


def test_gcr_digest_only_insert_is_an_untagged_manifest() -> None:
    name = "gar-pubsub-message-insert-digest-only-docs.json"
    with pytest.raises(BadPayload, match="digest"):  # the docs elide it: "sha256:..."
        parse("gcr", payload(name))
    assert only(parse("gcr", with_digest(name, "sha256:..."))) == Ignored(
        "untagged_manifest", detail=f"{GAR_REPOSITORY}@{DIGEST}"
    )


def test_gcr_delete_is_ignored() -> None:
    parsed = parse("gcr", payload("gar-pubsub-message-delete-tag-docs.json"))
    assert only(parsed) == Ignored("delete", detail=f"us-west1-docker.pkg.dev/{GAR_REPOSITORY}:1.1")


def test_gcr_envelope_of_another_topic_is_bad() -> None:
    # Pub/Sub's own sample: the data is "Hello Cloud Pub/Sub! ...", not JSON.
    with pytest.raises(BadPayload, match="not JSON"):
        parse("gcr", payload("pubsub-push-envelope-docs.json"))


# --- Amazon ECR -------------------------------------------------------------------

ECR_DOCS_DIGEST = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234"


def test_ecr_push_is_a_record_on_the_account_registry() -> None:
    name = "ecr-eventbridge-image-push-docs.json"
    with pytest.raises(BadPayload, match="digest"):  # the AWS sample's digest has 60 digits
        parse("ecr", payload(name))
    assert parse("ecr", with_digest(name, ECR_DOCS_DIGEST)).records == [
        record(
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
            "my-repository-name",
            "latest",
            DIGEST,
            pushed_at=utc(2019, 11, 16, 1, 54, 34),
            event_id="13cde686-328b-6117-af20-0e5566167482",
        )
    ]


def test_ecr_china_regions_use_their_own_domain() -> None:
    event = json.loads(with_digest("ecr-eventbridge-image-push-docs.json", ECR_DOCS_DIGEST))
    (pushed,) = parse("ecr", event | {"region": "cn-north-1"}).records
    assert pushed.registry == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"


def test_ecr_events_that_move_no_tag_are_ignored() -> None:
    delete = parse("ecr", payload("ecr-eventbridge-image-delete-docs.json"))
    assert only(delete) == Ignored("delete", event_id="dd3b46cb-2c74-f49e-393b-28286b67279d")
    push = document("ecr-eventbridge-image-push-docs.json")
    failed = push | {"detail": push["detail"] | {"result": "FAILURE"}}
    assert only(parse("ecr", failed)) == Ignored(
        "push_failed", event_id="13cde686-328b-6117-af20-0e5566167482", detail="FAILURE"
    )
    scan = push | {"detail-type": "ECR Image Scan"}
    assert reason(parse("ecr", scan)) == "scan_completed"


# --- GitHub / GHCR -----------------------------------------------------------------

GITHUB_HEADERS = JSON_HEADERS | {
    "X-GitHub-Event": "package",
    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
}
GHCR_DIGEST = "sha256:7d3848ba2f2e7f69bebb4b576e5fad0379b64a0b1512aee6ad0ec9e7c6319fed"


def test_github_ghcr_package_is_a_record() -> None:
    parsed = parse(
        "github", payload("ghcr-package-create-captured-keel-2020.json"), headers=GITHUB_HEADERS
    )
    assert parsed.records == [
        record(
            "ghcr.io",
            "utaitebox/utaitebox-server",
            "3.2.1",
            GHCR_DIGEST,
            media_type=DOCKER_V2,
            event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
    ]


def test_github_form_encoded_delivery_is_read_like_json() -> None:
    body = urlencode({"payload": payload("ghcr-package-create-captured-keel-2020.json").decode()})
    headers = GITHUB_HEADERS | {"Content-Type": "application/x-www-form-urlencoded"}
    (pushed,) = parse("github", body.encode(), headers=headers).records
    assert (pushed.repository, pushed.tag) == ("utaitebox/utaitebox-server", "3.2.1")


def test_github_legacy_docker_pkg_package_is_a_record() -> None:
    headers = GITHUB_HEADERS | {"X-GitHub-Event": "registry_package"}
    parsed = parse(
        "github",
        payload("github-registry-package-published-docker-pkg-captured-keel-2019.json"),
        headers=headers,
    )
    assert parsed.records == [
        record(
            "docker.pkg.github.com",
            "dingggu/utaitebox/server",
            "1.2.3",
            "",
            pushed_at=utc(2019, 11, 1, 5, 30, 31),
            event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
    ]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("github-package-published-docker-octokit-example.json", "package"),
        ("github-registry-package-published-docker-octokit-example.json", "registry_package"),
    ],
)
def test_github_npm_package_is_not_an_image(name: str, event: str) -> None:
    headers = GITHUB_HEADERS | {"X-GitHub-Event": event}
    assert only(parse("github", payload(name), headers=headers)) == Ignored(
        "not_an_image", event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958", detail="npm"
    )


def octokit_container(tag: str) -> dict[str, Any]:
    """octokit's example made a container package (it says npm), with a full-length digest."""
    event = document("github-package-published-docker-octokit-example.json")
    package = event["package"]
    package["package_type"] = "CONTAINER"
    package["package_version"]["container_metadata"]["tag"] = {"name": tag, "digest": DIGEST}
    return dict(event)


def test_github_container_package_takes_its_repository_from_the_package_url() -> None:
    (pushed,) = parse("github", octokit_container("v1"), headers=GITHUB_HEADERS).records
    # package_url "ghcr.io/Codertocat/hello-world:" (sic), lower-cased like image paths.
    assert (pushed.registry, pushed.repository, pushed.tag, pushed.digest) == (
        "ghcr.io",
        "codertocat/hello-world",
        "v1",
        DIGEST,
    )


def test_github_untagged_container_version_is_an_untagged_manifest() -> None:
    assert only(parse("github", octokit_container(""), headers=GITHUB_HEADERS)) == Ignored(
        "untagged_manifest",
        event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        detail=f"codertocat/hello-world@{DIGEST}",
    )


def test_github_helm_chart_ping_and_other_events_are_ignored() -> None:
    chart = octokit_container("1.0.0")
    manifest = chart["package"]["package_version"]["container_metadata"]["manifest"]
    manifest["config"]["media_type"] = "application/vnd.cncf.helm.config.v1+json"
    assert reason(parse("github", chart, headers=GITHUB_HEADERS)) == "not_an_image"
    ping = GITHUB_HEADERS | {"X-GitHub-Event": "ping"}
    assert (
        reason(parse("github", {"zen": "Design for failure."}, headers=ping)) == "test_notification"
    )
    push = GITHUB_HEADERS | {"X-GitHub-Event": "push"}
    assert reason(parse("github", {"ref": "refs/heads/main"}, headers=push)) == "not_a_push"


# --- JFrog Artifactory ---------------------------------------------------------------

JFROG_DIGEST = "sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce"


def test_jfrog_docker_push_is_a_record_under_the_repository_key() -> None:
    repository = "docker-remote-cache/library/ubuntu"
    registry = "artifactory.example.com"
    assert parse("jfrog", payload("jfrog-docker-pushed-keel.json"), registry=registry).records == [
        record(
            registry,
            repository,
            "latest",
            JFROG_DIGEST,
            event_id=content_id("jfrog", registry, repository, "latest", JFROG_DIGEST, None),
        )
    ]


def test_jfrog_docs_data_object_needs_its_envelope() -> None:
    data = payload("jfrog-docker-pushed-data-docs.json")
    with pytest.raises(BadPayload, match="domain"):
        parse("jfrog", data)
    envelope = {"domain": "docker", "event_type": "pushed", "data": json.loads(data)}
    keel = parse("jfrog", payload("jfrog-docker-pushed-keel.json"))
    assert parse("jfrog", envelope) == keel


def test_jfrog_other_domains_and_events_are_ignored() -> None:
    assert only(
        parse("jfrog", {"domain": "artifact", "event_type": "deployed", "data": {}})
    ) == Ignored("not_an_image", detail="artifact")
    assert only(
        parse("jfrog", {"domain": "docker", "event_type": "deleted", "data": {}})
    ) == Ignored("delete")


# --- Nexus ------------------------------------------------------------------------

NEXUS_HEADERS = JSON_HEADERS | {
    "X-Nexus-Webhook-Id": "rm:repository:component",
    "X-Nexus-Webhook-Delivery": "7f9dba67-1b2c-4f5e-9a33-5d0b0f1f6e21",
}


def test_nexus_docker_component_is_a_record_on_the_receivers_registry() -> None:
    parsed = parse(
        "nexus",
        payload("nexus-component-created-docker-flux-recv.json"),
        headers=NEXUS_HEADERS,
        registry="nexus.example.com:8443",
    )
    assert parsed.records == [
        record(
            "nexus.example.com:8443",
            "app1/alpine",
            "3.4",
            "",
            pushed_at=utc(2020, 4, 5, 21, 49, 44, 219000),
            event_id="7f9dba67-1b2c-4f5e-9a33-5d0b0f1f6e21",
        )
    ]


def test_nexus_assets() -> None:
    name = "nexus-asset-created-docker-kraken-doc.json"
    with pytest.raises(BadPayload, match="digest"):  # hand-edited, 25 digits
        parse("nexus", payload(name))
    untagged = parse("nexus", with_digest(name, "sha256:26fc80ffe8cc20647e054e923"))
    assert only(untagged) == Ignored("untagged_manifest", detail=f"fakeone/fakeimage@{DIGEST}")
    asset = document(name)
    asset["asset"]["name"] = "v2/fakeone/fakeimage/manifests/1.0"
    (pushed,) = parse("nexus", asset).records
    assert (pushed.repository, pushed.tag, pushed.digest) == ("fakeone/fakeimage", "1.0", "")
    asset["asset"]["name"] = f"v2/-/blobs/{DIGEST}"
    assert reason(parse("nexus", asset)) == "blob"
    npm = parse("nexus", payload("nexus-asset-created-docs.json"))
    assert only(npm) == Ignored("not_an_image", detail="npm")


def test_nexus_global_events_are_not_pushes() -> None:
    audit = {"nodeId": "n", "initiator": "admin", "audit": {"domain": "security.user"}}
    assert reason(parse("nexus", audit)) == "not_a_push"


# --- every receiver ----------------------------------------------------------------


def test_headers_are_matched_case_insensitively_with_aiohttps_mapping() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"CONTENT-TYPE": "Application/JSON; charset=UTF-8"}))
    body = payload("distribution-push-manifest-tag-captured-maiev-2017.json")
    assert len(parse("distribution", body, headers=headers).records) == 1


def test_configuration_errors_are_not_bad_payloads() -> None:
    body = payload("dockerhub-push-docs.json")
    with pytest.raises(ValueError, match="unknown receiver type") as unknown:
        parse("gitlab", body)
    assert not isinstance(unknown.value, BadPayload)
    with pytest.raises(ValueError, match="registry") as invalid:
        parse("nexus", body, registry="not a host")
    assert not isinstance(invalid.value, BadPayload)


@pytest.mark.parametrize("receiver_type", RECEIVER_TYPES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_content_types_a_receiver_cannot_carry_are_unsupported(
    receiver_type: str, content_type: str
) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(receiver_type, b"{}", headers={"Content-Type": content_type})


@pytest.mark.parametrize("receiver_type", RECEIVER_TYPES)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"42",
        b'"text"',
        b"{}",
        b'{"events": {}}',
        b"[" * 100_000,
    ],
)
def test_malformed_bodies_are_bad_payloads(receiver_type: str, body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse(receiver_type, body)


# --- properties --------------------------------------------------------------------

# (receiver type, sample, headers) for every sample above; mutating them reaches deep paths.
SAMPLES: list[tuple[str, str, dict[str, str]]] = [
    ("distribution", "distribution-push-index-with-references-constructed.json", JSON_HEADERS),
    ("distribution", "distribution-push-envelope-test-fixture.json", JSON_HEADERS),
    ("harbor", "harbor-push-default-v2-flux-recv.json", JSON_HEADERS),
    ("harbor", "harbor-replication-default-docs.json", JSON_HEADERS),
    ("cloudevents", "harbor-push-cloudevents-tagged-constructed.json", STRUCTURED),
    ("cloudevents", "acr-eventgrid-imagepushed-cloudevents-docs.json", BATCH),
    (
        "cloudevents",
        "ecr-eventbridge-to-cloudevents-input-template-argocd-image-updater.json",
        STRUCTURED,
    ),
    ("quay", "quay-repo-push-legacy-2013-gist.json", JSON_HEADERS),
    ("dockerhub", "dockerhub-push-docs.json", JSON_HEADERS),
    ("acr", "acr-webhook-push-docs.json", JSON_HEADERS),
    ("acr", "acr-eventgrid-imagepushed-eventgridschema-captured-2020.json", JSON_HEADERS),
    ("gcr", "gar-pubsub-push-envelope-constructed.json", JSON_HEADERS),
    ("gcr", "gcr-pubsub-message-insert-captured.json", JSON_HEADERS),
    ("ecr", "ecr-eventbridge-image-push-docs.json", JSON_HEADERS),
    ("github", "ghcr-package-create-captured-keel-2020.json", GITHUB_HEADERS),
    (
        "github",
        "github-registry-package-published-docker-pkg-captured-keel-2019.json",
        JSON_HEADERS,
    ),
    ("jfrog", "jfrog-docker-pushed-keel.json", JSON_HEADERS),
    ("nexus", "nexus-component-created-docker-flux-recv.json", NEXUS_HEADERS),
    ("nexus", "nexus-asset-created-docker-kraken-doc.json", NEXUS_HEADERS),
]

HEADER_CHOICES: list[dict[str, str]] = [
    {},
    JSON_HEADERS,
    STRUCTURED,
    BATCH,
    {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "io.imagestream.push.v1"},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["events", "action", "target", "tag", "digest", "repository", "data", "type"]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replaced(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], tuple(rest), new)  # type: ignore[index]
    return copy


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    receiver_type, name, headers = draw(st.sampled_from(SAMPLES))
    sample = document(name)
    path = draw(st.sampled_from(list(_paths(sample))))
    return receiver_type, json.dumps(_replaced(sample, path, draw(json_values))).encode(), headers


def assert_parses_or_is_bad(receiver_type: str, body: bytes, headers: Mapping[str, str]) -> None:
    try:
        parsed = parse(receiver_type, body, headers=headers)
    except BadPayload:
        return
    for pushed in parsed.records:
        assert is_valid_repository(pushed.repository) and is_valid_tag(pushed.tag)
        assert pushed.digest == "" or is_valid_digest(pushed.digest)
        assert pushed.event_id and pushed.receiver == RECEIVER
        assert pushed.pushed_at is None or pushed.pushed_at.tzinfo is not None
    assert all(ignored.reason in REASONS for ignored in parsed.ignored)


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(
    receiver_type=st.sampled_from(RECEIVER_TYPES),
    body=st.binary(max_size=256),
    headers=st.sampled_from(HEADER_CHOICES),
)
def test_arbitrary_bytes_parse_or_are_bad_payloads(
    receiver_type: str, body: bytes, headers: dict[str, str]
) -> None:
    assert_parses_or_is_bad(receiver_type, body, headers)


@PROPERTY_SETTINGS
@given(
    receiver_type=st.sampled_from(RECEIVER_TYPES),
    value=json_values,
    headers=st.sampled_from(HEADER_CHOICES),
)
def test_arbitrary_json_parses_or_is_bad_payload(
    receiver_type: str, value: Any, headers: dict[str, str]
) -> None:
    assert_parses_or_is_bad(receiver_type, json.dumps(value).encode(), headers)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=mutated_samples())
def test_mutated_real_payloads_parse_or_are_bad_payloads(
    sample: tuple[str, bytes, dict[str, str]],
) -> None:
    assert_parses_or_is_bad(*sample)


@PROPERTY_SETTINGS
@given(
    attributes=st.dictionaries(
        st.sampled_from(
            [
                "ce-specversion",
                "ce-id",
                "ce-source",
                "ce-type",
                "ce-time",
                "ce-subject",
                "ce-x",
                "content-type",
            ]
        ),
        st.text(max_size=30),
    ),
    value=json_values,
)
def test_arbitrary_binary_mode_cloudevents_parse_or_are_bad_payloads(
    attributes: dict[str, str], value: Any
) -> None:
    headers = {"ce-type": "io.imagestream.push.v1"} | attributes
    assert_parses_or_is_bad("cloudevents", json.dumps(value).encode(), headers)
