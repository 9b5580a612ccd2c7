"""Google Artifact Registry and Container Registry, through a Pub/Sub push subscription.

Both publish to the project's `gcr` topic. Accepts, as `application/json`:

* the push envelope `{"message": {"data": base64(json), "messageId",
  "publishTime"}, "subscription"}` (snake_case `message_id`/`publish_time`
  are read too: Pub/Sub sends both spellings);
* the same message unwrapped ("payload unwrapping" subscriptions): the body
  is the JSON itself, and the id and time come from the
  `x-goog-pubsub-message-id` / `x-goog-pubsub-publish-time` headers when
  "write metadata" is on.

The message is `{"action": "INSERT"|"DELETE", "digest": "host/path@sha256:...",
"tag": "host/path:tag"}` with full references on `gcr.io`, `*.gcr.io` or
`*-docker.pkg.dev`. An INSERT with a tag is a record (digest "" when the
message has none); with only a digest it is `untagged_manifest`. DELETE is
`delete`. The event id is the Pub/Sub `messageId`, which redeliveries keep.
"""

from __future__ import annotations

import base64

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    Request,
    as_object,
    iso_time,
    load_json,
    notification,
    push_entry,
    required_text,
    split_reference,
    text,
)


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    body = as_object(load_json(request.body, what="body"), what="Pub/Sub push")
    if "message" in body:
        envelope = as_object(body["message"], what="Pub/Sub message")
        message = as_object(
            load_json(
                _base64(required_text(envelope, "data", what="Pub/Sub message")), what="data"
            ),
            what="Pub/Sub message data",
        )
        event_id = text(envelope, "messageId", what="Pub/Sub message") or text(
            envelope, "message_id", what="Pub/Sub message"
        )
        published = text(envelope, "publishTime", what="Pub/Sub message") or text(
            envelope, "publish_time", what="Pub/Sub message"
        )
    else:
        message = body
        event_id = request.header("x-goog-pubsub-message-id")
        published = request.header("x-goog-pubsub-publish-time")
    pushed_at = iso_time(published, what="publishTime") if published else None

    what = "registry message"
    action = required_text(message, "action", what=what)
    if action == "DELETE":
        return notification(
            [Ignored(DELETE, event_id=event_id, detail=text(message, "tag", what=what))]
        )
    if action != "INSERT":
        return notification([Ignored(NOT_A_PUSH, event_id=event_id, detail=action)])
    tag_ref = text(message, "tag", what=what)
    digest_ref = text(message, "digest", what=what)
    if not tag_ref and not digest_ref:
        raise BadPayload("registry INSERT message has neither 'tag' nor 'digest'")
    digest = ""
    if digest_ref:
        digest = split_reference(digest_ref, what="digest").digest
        if not digest:
            raise BadPayload(f"digest {digest_ref!r} has no '@<digest>'")
    reference = split_reference(tag_ref or digest_ref, what="tag" if tag_ref else "digest")
    if tag_ref and not reference.tag:
        raise BadPayload(f"tag {tag_ref!r} has no ':<tag>'")
    return notification(
        [
            push_entry(
                request,
                registry=reference.registry,
                repository=reference.repository,
                tag=reference.tag if tag_ref else "",
                digest=digest,
                pushed_at=pushed_at,
                event_id=event_id,
            )
        ]
    )


def _base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise BadPayload("Pub/Sub message data is not base64") from None
