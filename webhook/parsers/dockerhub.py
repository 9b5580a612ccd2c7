"""Docker Hub repository webhooks.

Accepts `{"push_data": {"tag", "pushed_at"}, "repository": {"repo_name"}}` as
`application/json`. Docker Hub fires only for pushes by tag, so `push_data.tag`
is required. The registry is `docker.io`, the name users write in image
references (the API host `registry-1.docker.io` is the registry client's
business); a one-segment `repo_name` is an official image under `library/`.
The receiver's `registry`, if configured, is where Docker Hub names are
resolved instead (a Docker Hub mirror, or a test registry); the repository
keeps its Docker Hub form there (`nginx` is `library/nginx`).

No digest is sent, so records carry an empty digest and the webhook
resolves the tag. Docker Hub sends no event id; records get a content id
from the repository, tag and `pushed_at`.
"""

from __future__ import annotations

from imagestream.references import DOCKER_HUB, normalize_repository
from webhook.events import ParsedNotification
from webhook.parsers.common import (
    JSON_ONLY,
    Request,
    as_object,
    load_json,
    notification,
    push_entry,
    required_text,
    unix_time,
)


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(JSON_ONLY)
    payload = as_object(load_json(request.body, what="body"), what="Docker Hub payload")
    push_data = as_object(payload.get("push_data"), what="Docker Hub push_data")
    repository = as_object(payload.get("repository"), what="Docker Hub repository")
    pushed_at = push_data.get("pushed_at")
    return notification(
        [
            push_entry(
                request,
                registry=request.default_registry or DOCKER_HUB,
                repository=normalize_repository(
                    DOCKER_HUB,
                    required_text(repository, "repo_name", what="Docker Hub repository"),
                ),
                tag=required_text(push_data, "tag", what="Docker Hub push_data"),
                digest="",
                pushed_at=None if pushed_at is None else unix_time(pushed_at, what="pushed_at"),
            )
        ]
    )
