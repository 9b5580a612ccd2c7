"""Sonatype Nexus Repository webhooks: repository `component` and `asset` events.

Accepts, as `application/json`:

* component events `{"action", "repositoryName", "component": {"format",
  "name", "version"}}`: for the docker format the name is the image path and
  the version is the tag (or a digest, for untagged manifests);
* asset events `{"action", "asset": {"format", "name"}}` where a docker
  manifest asset is named `v2/<repository>/manifests/<tag or digest>`;
  every other docker asset is a blob.

`CREATED` and `UPDATED` are pushes, `DELETED` is `delete`. Other formats
(npm, maven...) are `not_an_image`; global events (audit, repository
configuration) are `not_a_push`. Configure component events: one push fires
one component event but several asset events (one per blob).

Nexus sends neither a digest for components nor the registry host: the
receiver must configure `registry`, the host[:port] of the Docker connector
of that Nexus repository (the payload's `repositoryName` is the Nexus
repository, not part of the image path). The event id is the
`X-Nexus-Webhook-Delivery` header.
"""

from __future__ import annotations

import re
from typing import Any, Final

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    BLOB,
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    NOT_AN_IMAGE,
    Entry,
    Request,
    as_object,
    load_json,
    notification,
    optional_iso_time,
    push_entry,
    required_text,
    text,
)

_MANIFEST_ASSET = re.compile(r"v2/(?P<repository>.+)/manifests/(?P<reference>[^/]+)")
_PUSH_ACTIONS: Final = frozenset({"CREATED", "UPDATED"})


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    payload = as_object(load_json(request.body, what="body"), what="Nexus event")
    return notification([_entry(request, payload)])


def _entry(request: Request, payload: dict[str, Any]) -> Entry:
    event_id = request.header("x-nexus-webhook-delivery")
    kind = next((key for key in ("component", "asset") if key in payload), None)
    if kind is None:
        if "audit" in payload or "repository" in payload:
            return Ignored(
                NOT_A_PUSH, event_id=event_id, detail=request.header("x-nexus-webhook-id")
            )
        raise BadPayload("Nexus event has neither 'component' nor 'asset'")
    item = as_object(payload[kind], what=f"Nexus {kind}")
    action = required_text(payload, "action", what="Nexus event")
    item_format = required_text(item, "format", what=kind)
    if item_format != "docker":
        return Ignored(NOT_AN_IMAGE, event_id=event_id, detail=item_format)
    if action == "DELETED":
        return Ignored(DELETE, event_id=event_id)
    if action not in _PUSH_ACTIONS:
        return Ignored(NOT_A_PUSH, event_id=event_id, detail=action)
    name = required_text(item, "name", what=kind)
    if kind == "component":
        repository, reference = name, text(item, "version", what=kind)
    elif match := _MANIFEST_ASSET.fullmatch(name):
        repository, reference = match["repository"], match["reference"]
    else:
        return Ignored(BLOB, event_id=event_id, detail=name)
    tagged = ":" not in reference  # a tag cannot hold ':', a digest always does
    return push_entry(
        request,
        registry="",
        repository=repository,
        tag=reference if tagged else "",
        digest="" if tagged else reference,
        pushed_at=optional_iso_time(payload, "timestamp", what="Nexus event"),
        event_id=event_id,
    )
