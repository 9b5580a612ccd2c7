"""JFrog Artifactory webhooks for the `docker` domain.

Accepts `{"domain": "docker", "event_type": "pushed", "data": {"repo_key",
"image_name", "tag", "sha256", "path"}, "jpd_origin", ...}` as
`application/json`. `pushed` is a record; `deleted` is `delete`, other docker
events (`promoted`) are `not_a_push`, and every other domain (artifact,
build, ...) is `not_an_image`.

Where the image lives depends on the Artifactory "Docker access method",
which the payload does not state, so the receiver must configure
`registry`: the host clients pull from. The repository is
`<repo_key>/<image_name>`, the "repository path" method (Artifactory 7's
default, and the only one on JFrog Cloud): `docker pull
<registry>/<repo_key>/<image>:<tag>`. With the subdomain or port methods the
repository key is not part of the path and such a receiver will not match;
and when clients pull through a virtual repository, its key differs from
the local `repo_key` in the event.

The digest is `sha256:` + `data.sha256`, the checksum of the stored
`manifest.json` / `list.manifest.json`, i.e. the manifest digest. JFrog sends
no event id; records get a content id.
"""

from __future__ import annotations

from webhook.events import Ignored, ParsedNotification
from webhook.parsers.common import (
    DELETE,
    JSON_ONLY,
    NOT_A_PUSH,
    NOT_AN_IMAGE,
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
    what = "JFrog event"
    payload = as_object(load_json(request.body, what="body"), what=what)
    domain = required_text(payload, "domain", what=what)
    event_type = required_text(payload, "event_type", what=what)
    if domain != "docker":
        return notification([Ignored(NOT_AN_IMAGE, detail=domain)])
    if event_type == "deleted":
        return notification([Ignored(DELETE)])
    if event_type != "pushed":
        return notification([Ignored(NOT_A_PUSH, detail=event_type)])
    data = as_object(payload.get("data"), what=f"{what} data")
    checksum = text(data, "sha256", what="data")
    repo_key = required_text(data, "repo_key", what="data")
    image_name = required_text(data, "image_name", what="data")
    return notification(
        [
            push_entry(
                request,
                registry="",
                repository=f"{repo_key}/{image_name}",
                tag=required_text(data, "tag", what="data"),
                digest=f"sha256:{checksum}" if checksum else "",
            )
        ]
    )
