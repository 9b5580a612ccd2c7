"""Google Artifact Registry and GCR, through Pub/Sub (push envelope or bare message)."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    DIGEST,
    JSON_HEADERS,
    content_id,
    only,
    parse,
    payload,
    record,
    utc,
    with_digest,
)
from webhook.events import BadPayload, Ignored

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
