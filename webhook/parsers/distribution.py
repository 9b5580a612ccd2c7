"""CNCF distribution (registry v2, distribution v3) notification envelopes.

Accepts `{"events": [...]}` as `application/vnd.docker.distribution.events.v1+json`
(distribution 2.x), `...events.v2+json` (3.x, after schema1 was removed) or
`application/json`. v3 sends one event per POST, v2 could batch; either way
every event becomes one entry.

A record is a `push` of a manifest (Docker v2/schema1 manifest or list, OCI
manifest or index) with `target.tag`: a manifest PUT by digest (a child of a
multi-arch push) has no tag and is `untagged_manifest`. Any other pushed
media type is a blob (`application/octet-stream` when the client named
none); pulls, mounts and deletes are acknowledged and ignored.

The registry is `request.host`, the Host header clients pushed to, else the
receiver's `registry`. The event `id` is created once and reused on every
retry, so it is the event id.
"""

from __future__ import annotations

from typing import Any, Final

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    BLOB,
    DELETE,
    JSON_MEDIA_TYPE,
    MOUNT,
    NOT_A_PUSH,
    PULL,
    Entry,
    Request,
    as_object,
    load_json,
    notification,
    optional_iso_time,
    optional_object,
    push_entry,
    required_text,
    text,
)

MEDIA_TYPES: Final = frozenset(
    {
        JSON_MEDIA_TYPE,
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
    }
)

MANIFEST_MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        # schema1: distribution 2.x still stores and notifies them.
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)

_IGNORED_ACTIONS: Final = {"pull": PULL, "mount": MOUNT, "delete": DELETE}


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(MEDIA_TYPES)
    envelope = as_object(load_json(request.body, what="body"), what="distribution envelope")
    events = envelope.get("events")
    if not isinstance(events, list):
        raise BadPayload("distribution envelope has no 'events' list")
    return notification(
        _entry(request, as_object(event, what=f"events[{index}]"), what=f"events[{index}]")
        for index, event in enumerate(events)
    )


def _entry(request: Request, event: dict[str, Any], *, what: str) -> Entry:
    event_id = text(event, "id", what=what)
    action = required_text(event, "action", what=what)
    if action in _IGNORED_ACTIONS:
        return Ignored(_IGNORED_ACTIONS[action], event_id=event_id)
    if action != "push":
        return Ignored(NOT_A_PUSH, event_id=event_id, detail=f"action {action!r}")
    target = as_object(event.get("target"), what=f"{what}.target")
    media_type = text(target, "mediaType", what=f"{what}.target")
    if media_type not in MANIFEST_MEDIA_TYPES:
        return Ignored(BLOB, event_id=event_id, detail=media_type)
    return push_entry(
        request,
        registry=text(optional_object(event, "request", what=what), "host", what=f"{what}.request"),
        repository=required_text(target, "repository", what=f"{what}.target"),
        tag=text(target, "tag", what=f"{what}.target"),
        digest=required_text(target, "digest", what=f"{what}.target"),
        media_type=media_type,
        pushed_at=optional_iso_time(event, "timestamp", what=what),
        event_id=event_id,
    )
