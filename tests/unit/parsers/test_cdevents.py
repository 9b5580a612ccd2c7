"""CDEvents `artifact.published`, carried as CloudEvents."""

from __future__ import annotations

import json

from tests.unit.parsers.helpers import (
    STRUCTURED,
    document,
    only,
    parse,
    payload,
    record,
    utc,
)
from webhook.events import Ignored


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
