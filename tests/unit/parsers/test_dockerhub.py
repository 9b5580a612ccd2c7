"""Docker Hub's push webhooks."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    content_id,
    document,
    parse,
    payload,
    record,
    utc,
)
from webhook.events import BadPayload


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
