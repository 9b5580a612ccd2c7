"""CloudEvents over HTTP, read with the `cloudevents` SDK (2.x, `cloudevents.core`).

Modes (CloudEvents HTTP binding):

* structured: `Content-Type: application/cloudevents+json`, one event in the body;
* batch: `application/cloudevents-batch+json`, a JSON array of structured events;
* binary: attributes in `ce-*` headers, the body is `data` (its Content-Type
  is the event's `datacontenttype`, whatever it is);
* leniently, `application/json` or no Content-Type without `ce-*` headers: an
  object is read as a structured event, an array as a batch (Event Grid's
  CloudEvents schema is documented as an array).

Event types read:

* `harbor.*` (Harbor >= 2.8, structured): `data` is the Default format's
  `event_data`; see `harbor`.
* `Microsoft.ContainerRegistry.*` (ACR through Event Grid): see `acr`.
* `dev.cdevents.artifact.published.*` (CDEvents): see `cdevents`.
* `com.amazon.ecr.image.push` (an EventBridge input template): see `ecr`.
* `io.imagestream.push.v1`, this project's own type, for senders with no
  format of their own (CI jobs, scripts)::

      {"specversion": "1.0", "type": "io.imagestream.push.v1",
       "source": "/ci/pipelines/build-app", "id": "<unique per push>",
       "time": "2026-01-15T10:00:02Z",
       "data": {"registry": "registry.example.com",    # optional: receiver's registry
                "repository": "team/app",              # required
                "tag": "v1.2.3",                       # required for a record
                "digest": "sha256:<64 hex>",           # optional: resolved when absent
                "mediaType": "application/vnd.oci.image.index.v1+json"}}  # optional

Any other type is `unsupported_event_type`.

The event id is `<source>#<id>`: the spec makes `source` + `id` unique, and
senders reuse both on retries. `id` is required here although the SDK would
invent one, since an invented id defeats deduplication; for the same reason
`pushed_at` is only set from a `time` the sender wrote (the SDK defaults it
to now).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_binary_event,
    from_structured_event,
)
from cloudevents.core.exceptions import BaseCloudEventException

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers import acr, cdevents, ecr, harbor
from webhook.parsers.common import (
    JSON_ONLY,
    UNSUPPORTED_EVENT_TYPE,
    Entry,
    Request,
    as_object,
    json_object,
    load_json,
    notification,
    push_entry,
    required_text,
    text,
)

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
MEDIA_TYPES: Final = frozenset({STRUCTURED, BATCH})
GENERIC_PUSH_TYPE: Final = "io.imagestream.push.v1"

# What the SDK raises on bad input: its validation errors, and whatever
# dateutil, base64 and json raise underneath.
_SDK_ERRORS: Final = (
    BaseCloudEventException,
    ValueError,
    TypeError,
    AttributeError,
    OverflowError,
    RecursionError,
)


@dataclass(frozen=True)
class _Event:
    type: str
    source: str
    subject: str
    event_id: str
    time: datetime | None
    data: Any


def parse(request: Request) -> ParsedNotification:
    return notification(entry for event in _read(request) for entry in _entries(request, event))


def _read(request: Request) -> list[_Event]:
    if request.media_type == STRUCTURED:
        return [_structured(load_json(request.body, what="body"), what="CloudEvent")]
    if request.media_type == BATCH:
        return _batch(load_json(request.body, what="body"))
    if any(name.startswith("ce-") for name in request.headers):
        return [_binary(request)]
    request.require_media_type(JSON_ONLY | MEDIA_TYPES)
    body = load_json(request.body, what="body")
    return _batch(body) if isinstance(body, list) else [_structured(body, what="CloudEvent")]


def _batch(body: Any) -> list[_Event]:
    if not isinstance(body, list):
        raise BadPayload("CloudEvents batch is not a JSON array")
    return [_structured(item, what=f"CloudEvent [{index}]") for index, item in enumerate(body)]


def _structured(value: Any, *, what: str) -> _Event:
    raw = as_object(value, what=what)
    if "id" not in raw:
        raise BadPayload(f"{what} has no id")
    event = _sdk(
        lambda: from_structured_event(
            HTTPMessage(headers={"content-type": STRUCTURED}, body=json.dumps(raw).encode())
        )
    )
    return _event(event, has_time="time" in raw)


def _binary(request: Request) -> _Event:
    if not request.header("ce-id"):
        raise BadPayload("binary-mode CloudEvent has no ce-id header")
    event = _sdk(lambda: from_binary_event(HTTPMessage(dict(request.headers), request.body)))
    return _event(event, has_time=bool(request.header("ce-time")))


def _sdk(read: Callable[[], BaseCloudEvent]) -> BaseCloudEvent:
    try:
        return read()
    except _SDK_ERRORS as exc:
        raise BadPayload(f"not a valid CloudEvent: {exc}") from None


def _event(event: BaseCloudEvent, *, has_time: bool) -> _Event:
    return _Event(
        type=event.get_type(),
        source=event.get_source(),
        subject=event.get_subject() or "",
        event_id=f"{event.get_source()}#{event.get_id()}",
        time=event.get_time() if has_time else None,
        data=event.get_data(),
    )


def _entries(request: Request, event: _Event) -> list[Entry]:
    if event.type in harbor.CLOUDEVENT_TOPICS:
        return harbor.event_entries(
            request,
            topic=harbor.CLOUDEVENT_TOPICS[event.type],
            data=event.data,
            pushed_at=event.time,
            event_id=event.event_id,
        )
    if event.type.startswith(acr.EVENT_TYPE_PREFIX):
        return [
            acr.event_entry(
                request,
                event_type=event.type,
                data=event.data,
                event_id=event.event_id,
                time=event.time,
            )
        ]
    if event.type.startswith(cdevents.PUBLISHED_TYPE_PREFIX):
        return [
            cdevents.published_entry(
                request,
                data=json_object(event.data, what=f"{event.type} data"),
                subject=event.subject,
                event_id=event.event_id,
                pushed_at=event.time,
            )
        ]
    if event.type == ecr.CLOUDEVENT_TYPE:
        return [
            ecr.cloudevent_entry(
                request,
                data=json_object(event.data, what=f"{event.type} data"),
                source=event.source,
                event_id=event.event_id,
                pushed_at=event.time,
            )
        ]
    if event.type == GENERIC_PUSH_TYPE:
        return [_generic_entry(request, event)]
    return [Ignored(UNSUPPORTED_EVENT_TYPE, event_id=event.event_id, detail=event.type)]


def _generic_entry(request: Request, event: _Event) -> Entry:
    what = f"{GENERIC_PUSH_TYPE} data"
    data = json_object(event.data, what=what)
    return push_entry(
        request,
        registry=text(data, "registry", what=what),
        repository=required_text(data, "repository", what=what),
        tag=text(data, "tag", what=what),
        digest=text(data, "digest", what=what),
        media_type=text(data, "mediaType", what=what),
        pushed_at=event.time,
        event_id=event.event_id,
    )
