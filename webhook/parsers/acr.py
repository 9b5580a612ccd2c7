"""Azure Container Registry: native webhooks and Event Grid (Event Grid schema).

Accepts, as `application/json`:

* a native ACR webhook, one event per POST with no envelope: `id`,
  `timestamp`, `action`, `target{repository, tag, digest, mediaType}`,
  `request{host}`. `push` by tag is a record; `delete` is `delete`;
  `chart_push`/`chart_delete` are `not_an_image`; the portal's `ping` is a
  `test_notification`; anything else (`quarantine`) is `not_a_push`.
* Event Grid schema events, an array (how Event Grid delivers) or a single
  object: `Microsoft.ContainerRegistry.*` events carry the same
  distribution-like body in `data`, which ACR has been seen to send as a
  JSON string (Azure SDK note of 2020-07-10), so both forms are read.
  `Microsoft.EventGrid.SubscriptionValidationEvent` is `subscription_validation`
  with the `validationCode` as detail, for the handler to answer the
  handshake; other event types are `unsupported_event_type`.

An Event Grid subscription using the CloudEvents schema posts
`application/cloudevents+json`, which the cloudevents parser reads (it calls
`event_entry` here). The registry is `request.host`, else the receiver's
`registry`. The event id is the native `id`, or the Event Grid `id`, which
Event Grid reuses on every retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from webhook.events import Ignored, ParsedNotification
from webhook.parsers.common import (
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    NOT_AN_IMAGE,
    SUBSCRIPTION_VALIDATION,
    TEST_NOTIFICATION,
    UNSUPPORTED_EVENT_TYPE,
    Entry,
    Request,
    as_object,
    json_object,
    load_json,
    notification,
    optional_iso_time,
    optional_object,
    push_entry,
    required_text,
    text,
)

EVENT_TYPE_PREFIX: Final = "Microsoft.ContainerRegistry."
_VALIDATION_EVENT: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
_IGNORED_ACTIONS: Final = {
    "delete": DELETE,
    "chart_push": NOT_AN_IMAGE,
    "chart_delete": NOT_AN_IMAGE,
    "ping": TEST_NOTIFICATION,
}


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    payload = load_json(request.body, what="body")
    if isinstance(payload, list):
        return notification(
            _event_grid_entry(request, as_object(event, what=f"events[{index}]"))
            for index, event in enumerate(payload)
        )
    event = as_object(payload, what="ACR payload")
    if "eventType" in event:
        return notification([_event_grid_entry(request, event)])
    return notification(
        [webhook_entry(request, event, event_id=text(event, "id", what="ACR event"))]
    )


def webhook_entry(
    request: Request, event: dict[str, Any], *, event_id: str, fallback_time: datetime | None = None
) -> Entry:
    """One event in ACR's distribution-like shape (a native webhook, or Event Grid `data`)."""
    action = required_text(event, "action", what="ACR event")
    if action in _IGNORED_ACTIONS:
        return Ignored(_IGNORED_ACTIONS[action], event_id=event_id, detail=action)
    if action != "push":
        return Ignored(NOT_A_PUSH, event_id=event_id, detail=action)
    target = as_object(event.get("target"), what="ACR event target")
    return push_entry(
        request,
        registry=text(optional_object(event, "request", what="ACR event"), "host", what="request"),
        repository=required_text(target, "repository", what="ACR target"),
        tag=text(target, "tag", what="ACR target"),
        digest=required_text(target, "digest", what="ACR target"),
        media_type=text(target, "mediaType", what="ACR target"),
        pushed_at=optional_iso_time(event, "timestamp", what="ACR event") or fallback_time,
        event_id=event_id,
    )


def event_entry(
    request: Request, *, event_type: str, data: Any, event_id: str, time: datetime | None
) -> Entry:
    """A `Microsoft.ContainerRegistry.*` event from Event Grid, in either schema."""
    return webhook_entry(
        request, json_object(data, what=f"{event_type} data"), event_id=event_id, fallback_time=time
    )


def _event_grid_entry(request: Request, event: dict[str, Any]) -> Entry:
    what = "Event Grid event"
    event_type = required_text(event, "eventType", what=what)
    event_id = text(event, "id", what=what)
    if event_type == _VALIDATION_EVENT:
        code = text(
            json_object(event.get("data"), what=f"{what} data"), "validationCode", what=what
        )
        return Ignored(SUBSCRIPTION_VALIDATION, event_id=event_id, detail=code)
    if not event_type.startswith(EVENT_TYPE_PREFIX):
        return Ignored(UNSUPPORTED_EVENT_TYPE, event_id=event_id, detail=event_type)
    return event_entry(
        request,
        event_type=event_type,
        data=event.get("data"),
        event_id=event_id,
        time=optional_iso_time(event, "eventTime", what=what),
    )
