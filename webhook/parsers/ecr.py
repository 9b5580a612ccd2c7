"""Amazon ECR image actions, as EventBridge delivers them (API destination).

Accepts the EventBridge event unchanged, as `application/json`:
`{"id", "detail-type": "ECR Image Action", "account", "region", "time",
"detail": {"action-type", "result", "repository-name", "image-digest",
"image-tag"}}`. A `PUSH` with `result: SUCCESS` is a record; a failed push
is `push_failed`, `DELETE` is `delete`, `ECR Image Scan` is `scan_completed`
and other detail types (pull-through cache, scan resource changes) are
`not_a_push`. A push without `image-tag` is `untagged_manifest`.

AWS does not say which host was pushed to, so the registry is built:
`<account>.dkr.ecr.<region>.amazonaws.com` (`.amazonaws.com.cn` in the China
regions). The event id is EventBridge's `id`.

The community EventBridge input template that reshapes the event into a
CloudEvent (`com.amazon.ecr.image.push`, argocd-image-updater's docs) is a
CloudEvent: the cloudevents parser reads it through `cloudevent_entry`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    PUSH_FAILED,
    SCAN_COMPLETED,
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

CLOUDEVENT_TYPE: Final = "com.amazon.ecr.image.push"
_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
# The template's `source`: urn:aws:ecr:<region>:<account>:repository/<name>
_SOURCE = re.compile(r"urn:aws:ecr:(?P<region>[^:]+):[^:]*:repository/.+")


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    event = as_object(load_json(request.body, what="body"), what="EventBridge event")
    return notification([_entry(request, event)])


def _entry(request: Request, event: dict[str, Any]) -> Entry:
    what = "EventBridge event"
    event_id = text(event, "id", what=what)
    detail_type = required_text(event, "detail-type", what=what)
    if detail_type == "ECR Image Scan":
        return Ignored(SCAN_COMPLETED, event_id=event_id, detail=detail_type)
    if detail_type != "ECR Image Action":
        return Ignored(NOT_A_PUSH, event_id=event_id, detail=detail_type)
    detail = as_object(event.get("detail"), what=f"{what} detail")
    action = required_text(detail, "action-type", what="detail")
    if action == "DELETE":
        return Ignored(DELETE, event_id=event_id)
    if action != "PUSH":
        return Ignored(NOT_A_PUSH, event_id=event_id, detail=action)
    result = text(detail, "result", what="detail")
    if result != "SUCCESS":
        return Ignored(PUSH_FAILED, event_id=event_id, detail=result)
    return push_entry(
        request,
        registry=ecr_host(
            account=required_text(event, "account", what=what),
            region=required_text(event, "region", what=what),
        ),
        repository=required_text(detail, "repository-name", what="detail"),
        tag=text(detail, "image-tag", what="detail"),
        digest=required_text(detail, "image-digest", what="detail"),
        pushed_at=optional_iso_time(event, "time", what=what),
        event_id=event_id,
    )


def ecr_host(*, account: str, region: str) -> str:
    if not _ACCOUNT.fullmatch(account):
        raise BadPayload(f"ECR account {account!r} is not a 12-digit AWS account id")
    if not _REGION.fullmatch(region):
        raise BadPayload(f"ECR region {region!r} is not an AWS region")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}"


def cloudevent_entry(
    request: Request,
    *,
    data: dict[str, Any],
    source: str,
    event_id: str,
    pushed_at: datetime | None,
) -> Entry:
    """A `com.amazon.ecr.image.push` CloudEvent made by an EventBridge input template.

    The region is only in `source`; when the template was changed and it is
    not an ECR URN, the receiver's `registry` is used.
    """
    what = f"{CLOUDEVENT_TYPE} data"
    match = _SOURCE.fullmatch(source)
    registry = (
        ecr_host(account=required_text(data, "registryId", what=what), region=match["region"])
        if match
        else ""
    )
    return push_entry(
        request,
        registry=registry,
        repository=required_text(data, "repositoryName", what=what),
        tag=text(data, "imageTag", what=what),
        digest=text(data, "imageDigest", what=what),
        pushed_at=pushed_at,
        event_id=event_id,
    )
