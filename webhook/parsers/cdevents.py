"""CDEvents `artifact.published` events whose artifact is an OCI image.

A CDEvent travels as the `data` of a CloudEvent of type
`dev.cdevents.artifact.published.<version>` (binary mode puts the whole
CDEvent in the body); the cloudevents parser hands the data here.

The artifact is named by the package URL in `subject.id` (the `ce-subject`
attribute when the body has none). Only `pkg:oci` names a pullable image
unambiguously (a `pkg:docker` version may be an image id, not a digest), so
other purl types are `not_an_image`. For
`pkg:oci/<name>@<url-encoded digest>?repository_url=<host>/<path>&tag=<tag>`:

* registry and repository come from `repository_url` (the full repository,
  name included), or are the receiver's `registry` and `<name>` without it;
* the digest is the purl version; the tag is the `tag` qualifier, and a
  purl without one is `untagged_manifest`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from webhook.events import BadPayload, Ignored
from webhook.parsers.common import (
    NOT_AN_IMAGE,
    Entry,
    Request,
    optional_iso_time,
    optional_object,
    push_entry,
    split_reference,
    text,
)

PUBLISHED_TYPE_PREFIX: Final = "dev.cdevents.artifact.published."


def published_entry(
    request: Request,
    *,
    data: dict[str, Any],
    subject: str,
    event_id: str,
    pushed_at: datetime | None,
) -> Entry:
    purl = text(optional_object(data, "subject", what="CDEvent"), "id", what="subject") or subject
    if not purl:
        raise BadPayload("CDEvent names no artifact: no subject.id and no CloudEvent subject")
    context = optional_object(data, "context", what="CDEvent")
    return _purl_entry(
        request,
        purl,
        event_id=event_id,
        pushed_at=pushed_at or optional_iso_time(context, "timestamp", what="context"),
    )


def _purl_entry(request: Request, purl: str, *, event_id: str, pushed_at: datetime | None) -> Entry:
    scheme, colon, rest = purl.partition(":")
    if scheme.lower() != "pkg" or not colon:
        raise BadPayload(f"artifact id {purl!r} is not a package URL")
    # pkg:type/name@version?qualifiers#subpath; purl allows slashes after "pkg:".
    rest, _, query = rest.lstrip("/").partition("#")[0].partition("?")
    purl_type, _, path = rest.partition("/")
    if purl_type.lower() != "oci":
        return Ignored(NOT_AN_IMAGE, event_id=event_id, detail=f"pkg:{purl_type}")
    name, _, version = path.partition("@")
    qualifiers = dict(parse_qsl(query))
    repository_url = qualifiers.get("repository_url", "")
    if repository_url:
        location = split_reference(repository_url, what="repository_url")
        registry, repository = location.registry, location.repository
    else:
        registry, repository = "", unquote(name)
    return push_entry(
        request,
        registry=registry,
        repository=repository,
        tag=qualifiers.get("tag", ""),
        digest=unquote(version),
        pushed_at=pushed_at,
        event_id=event_id,
    )
