"""GitHub Packages webhooks: `package` and `registry_package` events for GHCR.

Accepts the event as `application/json`, or as
`application/x-www-form-urlencoded` with the JSON in the `payload` field (a
per-hook GitHub option). `X-GitHub-Event` says which event it is; without the
header the body's `package`/`registry_package` key decides. `ping` is a
`test_notification`; other events (push, issues...) are `not_a_push`.

A record is an action `published` or `updated` (`create` in GHCR's beta) of a
package whose `package_type` (or `ecosystem`) is `CONTAINER`, or `docker` for
the retired docker.pkg.github.com. Other package types, and Helm charts
stored in GHCR (told by their config media type), are `not_an_image`.

* registry/repository: `package_version.package_url` (`ghcr.io/Owner/name:`,
  sometimes with a trailing colon and no tag), lower-cased since image paths
  are; else `ghcr.io/<namespace or owner>/<name>`; for docker.pkg.github.com
  payloads, `registry.url` + `/<name>`.
* tag: `container_metadata.tag.name`, "" for untagged children
  (`untagged_manifest`); `package_version.version` in docker.pkg.github.com
  payloads, which have no container metadata.
* digest: `container_metadata.tag.digest`, else `package_version.name` when
  that is a digest.
* event id: the `X-GitHub-Delivery` GUID.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from imagestream.references import is_valid_digest
from webhook.events import BadPayload, Ignored, ParsedNotification
from webhook.parsers.common import (
    JSON_MEDIA_TYPE,
    NOT_A_PUSH,
    NOT_AN_IMAGE,
    TEST_NOTIFICATION,
    Entry,
    Reference,
    Request,
    as_object,
    load_json,
    notification,
    optional_iso_time,
    optional_object,
    push_entry,
    required_text,
    split_reference,
    text,
)

GHCR: Final = "ghcr.io"
_FORM: Final = "application/x-www-form-urlencoded"
_PACKAGE_EVENTS: Final = frozenset({"package", "registry_package"})
_PUBLISHING_ACTIONS: Final = frozenset({"published", "updated", "create"})
_CONTAINER_TYPES: Final = frozenset({"container", "docker"})


def parse(request: Request) -> ParsedNotification:
    request.require_media_type(frozenset({JSON_MEDIA_TYPE, _FORM}))
    payload = as_object(_load(request), what="GitHub event")
    return notification([_entry(request, payload)])


def _load(request: Request) -> Any:
    if request.media_type != _FORM:
        return load_json(request.body, what="body")
    try:
        fields = parse_qs(request.body.decode(), strict_parsing=True)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadPayload(f"form body is not URL-encoded: {exc}") from None
    payload = fields.get("payload")
    if not payload:
        raise BadPayload("form body has no 'payload' field")
    return load_json(payload[0], what="payload field")


def _entry(request: Request, payload: dict[str, Any]) -> Entry:
    delivery = request.header("x-github-delivery")
    event = request.header("x-github-event")
    if event == "ping":
        return Ignored(TEST_NOTIFICATION, event_id=delivery)
    if event and event not in _PACKAGE_EVENTS:
        return Ignored(NOT_A_PUSH, event_id=delivery, detail=event)
    key = event or ("package" if "package" in payload else "registry_package")
    package = as_object(payload.get(key), what=f"GitHub {key}")
    action = required_text(payload, "action", what="GitHub event")
    if action not in _PUBLISHING_ACTIONS:
        return Ignored(NOT_A_PUSH, event_id=delivery, detail=f"action {action!r}")
    package_type = text(package, "package_type", what=key) or text(package, "ecosystem", what=key)
    if package_type.lower() not in _CONTAINER_TYPES:
        return Ignored(NOT_AN_IMAGE, event_id=delivery, detail=package_type)

    version = as_object(package.get("package_version"), what=f"{key}.package_version")
    metadata = optional_object(version, "container_metadata", what="package_version")
    manifest = optional_object(metadata, "manifest", what="container_metadata")
    config = optional_object(manifest, "config", what="manifest")
    if text(config, "media_type", what="config").startswith("application/vnd.cncf.helm."):
        return Ignored(NOT_AN_IMAGE, event_id=delivery, detail="helm chart")
    if metadata:
        tag_info = optional_object(metadata, "tag", what="container_metadata")
        tag = text(tag_info, "name", what="tag")
        digest = text(tag_info, "digest", what="tag")
    else:
        tag = text(version, "version", what="package_version")
        digest = ""
    if not digest and is_valid_digest(name := text(version, "name", what="package_version")):
        digest = name

    location = _location(package, version, package_type=package_type.lower(), what=key)
    updated_at = optional_iso_time(version, "updated_at", what="package_version")
    return push_entry(
        request,
        registry=location.registry,
        repository=location.repository.lower(),
        tag=tag,
        digest=digest,
        media_type=text(manifest, "media_type", what="manifest"),
        # GitHub writes 0001-01-01 when it has no time; that is not a push time.
        pushed_at=updated_at if updated_at and updated_at.year > 1 else None,
        event_id=delivery,
    )


def _location(
    package: dict[str, Any], version: dict[str, Any], *, package_type: str, what: str
) -> Reference:
    package_url = text(version, "package_url", what="package_version")
    if package_url:
        return split_reference(package_url, what="package_url")
    name = required_text(package, "name", what=what)
    if package_type == "docker":
        registry_url = required_text(
            optional_object(package, "registry", what=what), "url", what=f"{what}.registry"
        )
        return split_reference(f"{registry_url.rstrip('/')}/{name}", what="registry url")
    namespace = text(package, "namespace", what=what) or required_text(
        optional_object(package, "owner", what=what), "login", what=f"{what}.owner"
    )
    return Reference(registry=GHCR, repository=f"{namespace}/{name}", tag="", digest="")
