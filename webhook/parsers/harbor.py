"""Harbor webhooks in the "Default" (JSON) format, Harbor 2.x and 1.x.

Accepts `{"type": ..., "occur_at": <unix seconds>, "event_data": {...}}` as
`application/json`. Harbor 2.x names events `PUSH_ARTIFACT`, `PULL_ARTIFACT`...;
Harbor 1.x (`pushImage`, ...) has the same body, so both are read. A policy
set to the CloudEvents format is read by the cloudevents parser, which calls
`event_entries` here with the CloudEvent's `data`.

A push lists `resources[]`: each one is a record, with the repository from
`event_data.repository.repo_full_name`, the registry from the host part of
`resource_url` (Harbor's `ext_endpoint`) and its `digest` and `tag`. An
untagged push (a multi-arch child) repeats the digest as its tag: that is
`untagged_manifest`. Pulls, deletes, scans, replication and chart events are
acknowledged and ignored; so is every other topic (quota, retention, ...).

The Default format carries no event id, so records get a content id.
Harbor formats the body before queueing the job, so retries resend it
unchanged and the id is stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    NOT_AN_IMAGE,
    PULL,
    REPLICATION,
    SCAN_COMPLETED,
    Entry,
    Request,
    as_object,
    load_json,
    notification,
    push_entry,
    required_text,
    split_reference,
    text,
    unix_time,
)

_PUSH_TOPICS: Final = frozenset({"PUSH_ARTIFACT", "pushImage"})
_IGNORED_TOPICS: Final = {
    "PULL_ARTIFACT": PULL,
    "pullImage": PULL,
    "DELETE_ARTIFACT": DELETE,
    "deleteImage": DELETE,
    "SCANNING_COMPLETED": SCAN_COMPLETED,
    "SCANNING_FAILED": SCAN_COMPLETED,
    "SCANNING_STOPPED": SCAN_COMPLETED,
    "scanningCompleted": SCAN_COMPLETED,
    "scanningFailed": SCAN_COMPLETED,
    "REPLICATION": REPLICATION,
    # ChartMuseum (removed in Harbor 2.8) and Harbor 1.x chart events.
    "UPLOAD_CHART": NOT_AN_IMAGE,
    "DOWNLOAD_CHART": NOT_AN_IMAGE,
    "DELETE_CHART": NOT_AN_IMAGE,
    "uploadChart": NOT_AN_IMAGE,
    "downloadChart": NOT_AN_IMAGE,
    "deleteChart": NOT_AN_IMAGE,
}

# CloudEvents `type` -> Harbor topic (src/pkg/notifier/formats/cloudevents.go).
CLOUDEVENT_TOPICS: Final = {
    "harbor.artifact.pushed": "PUSH_ARTIFACT",
    "harbor.artifact.pulled": "PULL_ARTIFACT",
    "harbor.artifact.deleted": "DELETE_ARTIFACT",
    "harbor.quota.exceeded": "QUOTA_EXCEED",
    "harbor.quota.warned": "QUOTA_WARNING",
    "harbor.replication.status.changed": "REPLICATION",
    "harbor.scan.failed": "SCANNING_FAILED",
    "harbor.scan.completed": "SCANNING_COMPLETED",
    "harbor.scan.stopped": "SCANNING_STOPPED",
    "harbor.tag_retention.finished": "TAG_RETENTION",
}


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    payload = as_object(load_json(request.body, what="body"), what="Harbor payload")
    occur_at = payload.get("occur_at")
    return notification(
        event_entries(
            request,
            topic=required_text(payload, "type", what="Harbor payload"),
            data=payload.get("event_data"),
            pushed_at=None if occur_at is None else unix_time(occur_at, what="occur_at"),
            event_id="",
        )
    )


def event_entries(
    request: Request, *, topic: str, data: Any, pushed_at: datetime | None, event_id: str
) -> list[Entry]:
    """The entries of one Harbor event, whichever format carried it.

    When one event lists several resources, `/<index>` is appended to a
    sender's `event_id` so that each record keeps an id of its own.
    """
    if topic in _IGNORED_TOPICS:
        return [Ignored(_IGNORED_TOPICS[topic], event_id=event_id, detail=topic)]
    if topic not in _PUSH_TOPICS:
        return [Ignored(NOT_A_PUSH, event_id=event_id, detail=topic)]
    event_data = as_object(data, what="Harbor event_data")
    repository = required_text(
        as_object(event_data.get("repository"), what="Harbor event_data.repository"),
        "repo_full_name",
        what="Harbor event_data.repository",
    )
    resources = event_data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise BadPayload("Harbor push has no resources")
    entries: list[Entry] = []
    for index, item in enumerate(resources):
        what = f"Harbor resources[{index}]"
        resource = as_object(item, what=what)
        digest = text(resource, "digest", what=what)
        tag = text(resource, "tag", what=what)
        if ":" in tag:
            tag = ""  # Harbor's spelling of "pushed by digest": the digest as tag
        url = split_reference(required_text(resource, "resource_url", what=what), what=what)
        entries.append(
            push_entry(
                request,
                registry=url.registry,
                repository=repository,
                tag=tag,
                digest=digest,
                pushed_at=pushed_at,
                event_id=f"{event_id}/{index}" if event_id and len(resources) > 1 else event_id,
            )
        )
    return entries
