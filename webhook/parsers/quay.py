"""Quay (quay.io, Red Hat Quay) "Repository Push" notifications.

Accepts the repository event body as `application/json`:
`{"repository": "ns/name", "docker_url": "host/ns/name", "updated_tags": [...]}`.
Quay's v2 API sends one notification per manifest PUT by tag; the legacy
format (2013) has `updated_tags` as a `{tag: image_id}` object, read the
same way. Each updated tag becomes a record with an empty digest: Quay sends
none, so the webhook resolves the tag at the registry.

The registry is the host of `docker_url` (Quay's SERVER_HOSTNAME), else the
receiver's `registry`. The "Test Notification" button sends sample data with
`pruned_image_count`, which real pushes never carry: `test_notification`.
Other Quay events (builds, mirror syncs, vulnerabilities) posted to the same
receiver have no `updated_tags` and are `not_a_push`.

Quay sends no event id; records get a content id.
"""

from __future__ import annotations

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    JSON_ONLY,
    NO_TAG,
    NOT_A_PUSH,
    TEST_NOTIFICATION,
    Request,
    as_object,
    load_json,
    notification,
    push_entry,
    required_text,
    text,
)


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    payload = as_object(load_json(request.body, what="body"), what="Quay payload")
    repository = required_text(payload, "repository", what="Quay payload")
    if "updated_tags" not in payload:
        return notification([Ignored(NOT_A_PUSH, detail=repository)])
    if "pruned_image_count" in payload:
        return notification([Ignored(TEST_NOTIFICATION, detail=repository)])
    updated = payload["updated_tags"]
    if not isinstance(updated, list | dict) or not all(isinstance(tag, str) for tag in updated):
        raise BadPayload("Quay updated_tags is neither a list of tags nor an object keyed by tag")
    if not updated:
        return notification([Ignored(NO_TAG, detail=repository)])
    registry = text(payload, "docker_url", what="Quay payload")
    return notification(
        push_entry(
            request,
            registry=registry.removeprefix("https://").removeprefix("http://").partition("/")[0],
            repository=repository,
            tag=tag,
            digest="",
        )
        for tag in updated
    )
