"""JFrog Artifactory's Docker webhooks."""

from __future__ import annotations

import json

import pytest

from tests.unit.parsers.helpers import (
    content_id,
    only,
    parse,
    payload,
    record,
)
from webhook.events import BadPayload, Ignored

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
