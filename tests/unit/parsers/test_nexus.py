"""Sonatype Nexus repository webhooks."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    DIGEST,
    NEXUS_HEADERS,
    document,
    only,
    parse,
    payload,
    reason,
    record,
    utc,
    with_digest,
)
from webhook.events import BadPayload, Ignored


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
