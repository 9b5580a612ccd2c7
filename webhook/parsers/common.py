"""What every payload parser shares: the request, typed JSON access, names, reasons, ids.

Invariant: a parser either returns entries that passed the project's image
grammar (`imagestream.references`, distribution's `reference` package) or
raises `BadPayload`; it never lets a `KeyError`, `TypeError` or a half-valid
name through. That prevents a malformed or hostile body from crashing the
handler (a 500 makes distribution retry forever) and keeps names that no
registry would accept out of PushRecords and API objects.

Digests are checked with the same grammar, so a sample whose digest is
redacted (`sha256:xxxx...`) is a BadPayload, not a record with a fake digest.
The grammar is exactly distribution's and OCI's (ASCII only, `sha256` and
`sha512` with lower-case hex of their length, ports 1-65535): whatever a
parser accepts, the API server and a registry take
(tests/integration/test_reference_grammar.py), so no accepted event can end
in a 422 on every redelivery.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from imagestream.references import (
    NAME_TOTAL_LENGTH_MAX,
    is_valid_digest,
    is_valid_registry_host,
    is_valid_repository,
    is_valid_tag,
    normalize_registry,
    normalize_repository,
)
from webhook.events import BadPayload, Ignored, ParsedNotification, PushRecord, UnsupportedMediaType

JSON_MEDIA_TYPE: Final = "application/json"
JSON_ONLY: Final = frozenset({JSON_MEDIA_TYPE})

# Why an event was acknowledged and not applied. Stable: they are metric labels.
NOT_A_PUSH: Final = "not_a_push"  # a kind of event that never moves a tag (quota, label, ...)
PULL: Final = "pull"
BLOB: Final = "blob"  # a layer or config blob, not a manifest
MOUNT: Final = "mount"  # a blob mounted from another repository
DELETE: Final = "delete"
UNTAGGED_MANIFEST: Final = "untagged_manifest"  # a manifest pushed by digest alone
NO_TAG: Final = "no_tag"  # neither a tag nor a digest: nothing to apply
NOT_AN_IMAGE: Final = "not_an_image"  # Helm chart, npm package, Go module...
TEST_NOTIFICATION: Final = "test_notification"  # "Test"/"Ping" buttons
SCAN_COMPLETED: Final = "scan_completed"  # a vulnerability scan ended (any outcome)
REPLICATION: Final = "replication"
PUSH_FAILED: Final = "push_failed"  # the sender reports the push itself failed
SUBSCRIPTION_VALIDATION: Final = "subscription_validation"  # Event Grid handshake
UNSUPPORTED_EVENT_TYPE: Final = "unsupported_event_type"  # a CloudEvent type we do not read

REASONS: Final = frozenset(
    {
        NOT_A_PUSH,
        PULL,
        BLOB,
        MOUNT,
        DELETE,
        UNTAGGED_MANIFEST,
        NO_TAG,
        NOT_AN_IMAGE,
        TEST_NOTIFICATION,
        SCAN_COMPLETED,
        REPLICATION,
        PUSH_FAILED,
        SUBSCRIPTION_VALIDATION,
        UNSUPPORTED_EVENT_TYPE,
    }
)

Entry = PushRecord | Ignored


@dataclass(frozen=True, kw_only=True)
class Request:
    """One notification as the parsers see it.

    `headers` has lower-cased names, `media_type` is the Content-Type without
    parameters, lower-cased, "" when absent; `default_registry` is already
    normalised.
    """

    receiver_type: str
    headers: Mapping[str, str]
    body: bytes
    receiver: str
    default_registry: str
    media_type: str

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def require_media_type(self, accepted: frozenset[str]) -> None:
        # A missing Content-Type is tolerated: every sender here speaks JSON,
        # and some proxies and hand-written senders drop the header.
        if self.media_type and self.media_type not in accepted:
            raise UnsupportedMediaType(
                f"a {self.receiver_type} receiver does not read Content-Type "
                f"{self.media_type!r} (accepted: {', '.join(sorted(accepted))})"
            )


def media_type_of(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def load_json(data: bytes | str, *, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadPayload(f"{what} is not JSON: {exc}") from None


def as_object(value: Any, *, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(f"{what} is not a JSON object")
    return value


def json_object(value: Any, *, what: str) -> dict[str, Any]:
    """An object, or a string/bytes holding one (Event Grid sometimes string-encodes `data`)."""
    if isinstance(value, str | bytes):
        value = load_json(value, what=what)
    return as_object(value, what=what)


def optional_object(obj: Mapping[str, Any], key: str, *, what: str) -> dict[str, Any]:
    value = obj.get(key)
    return {} if value is None else as_object(value, what=f"{what}.{key}")


def text(obj: Mapping[str, Any], key: str, *, what: str) -> str:
    """An optional string field: "" when absent or null."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"{what}.{key} is not a string")
    return value


def required_text(obj: Mapping[str, Any], key: str, *, what: str) -> str:
    value = text(obj, key, what=what)
    if not value:
        raise BadPayload(f"{what} has no {key!r}")
    return value


def iso_time(value: str, *, what: str) -> datetime:
    """An RFC 3339 timestamp (nanoseconds are truncated); naive ones are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"{what} {value!r} is not an ISO 8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def optional_iso_time(obj: Mapping[str, Any], key: str, *, what: str) -> datetime | None:
    value = text(obj, key, what=what)
    return iso_time(value, what=f"{what}.{key}") if value else None


def unix_time(value: Any, *, what: str) -> datetime:
    # bool is an int subclass; `true` is not a timestamp.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadPayload(f"{what} is not a number of seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadPayload(f"{what} {value!r} is out of range") from None


def registry_host(value: str, *, what: str) -> str:
    """`host[:port]`, lower-cased, Docker Hub's aliases folded; a scheme or trailing `/` is cut."""
    host = value.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not is_valid_registry_host(host):
        raise BadPayload(f"{what} {value!r} is not a registry host[:port]")
    return normalize_registry(host)


@dataclass(frozen=True)
class Reference:
    """The pieces of `host/path[:tag][@digest]`, split but not yet validated."""

    registry: str
    repository: str
    tag: str
    digest: str


def split_reference(value: str, *, what: str) -> Reference:
    """Split a full reference whose first component is always the host.

    Senders that write full references (GCR, Harbor's `resource_url`,
    GitHub's `package_url`, purl `repository_url`) always include the host,
    so Docker's "is the first component a host?" guess is not wanted here.
    """
    rest = value.strip().removeprefix("https://").removeprefix("http://")
    name, _, digest = rest.partition("@")
    host, slash, path = name.partition("/")
    if not slash or not host or not path:
        raise BadPayload(f"{what} {value!r} is not a host/repository reference")
    tag = ""
    if ":" in path.rpartition("/")[2]:
        path, _, tag = path.rpartition(":")
    return Reference(registry=host, repository=path, tag=tag, digest=digest)


def content_event_id(*parts: str) -> str:
    """A stable id for senders that give none: a redelivery of the same push hashes the same."""
    return "content:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def push_entry(
    request: Request,
    *,
    registry: str,
    repository: str,
    tag: str,
    digest: str,
    media_type: str = "",
    pushed_at: datetime | None = None,
    event_id: str = "",
) -> Entry:
    """Validate one pushed manifest and make it a PushRecord, or an Ignored when it has no tag.

    `registry` is the host the payload names ("" when it names none: the
    receiver's configured registry is used). Untagged pushes are ignored
    here, after the names were checked, so a malformed untagged event is
    still reported as malformed.
    """
    host = registry_host(registry, what="registry") if registry else request.default_registry
    if not is_valid_repository(repository):
        raise BadPayload(f"repository {repository!r} is not a valid repository path")
    if len(host) + 1 + len(repository) > NAME_TOTAL_LENGTH_MAX:
        raise BadPayload(f"{host}/{repository} is longer than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest and not is_valid_digest(digest):
        raise BadPayload(f"digest {digest!r} of {repository} is not a valid digest")
    if not tag:
        if digest:
            return Ignored(UNTAGGED_MANIFEST, event_id=event_id, detail=f"{repository}@{digest}")
        return Ignored(NO_TAG, event_id=event_id, detail=repository)
    if not is_valid_tag(tag):
        raise BadPayload(f"tag {tag!r} of {repository} is not a valid tag")
    repository = normalize_repository(host, repository)
    # One zone for every sender, so times compare and content ids hash alike.
    pushed_at = pushed_at.astimezone(UTC) if pushed_at else None
    stamp = pushed_at.isoformat() if pushed_at else ""
    return PushRecord(
        registry=host,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        pushed_at=pushed_at,
        event_id=event_id
        or content_event_id(request.receiver_type, host, repository, tag, digest, stamp),
        receiver=request.receiver,
    )


def notification(entries: Iterable[Entry]) -> ParsedNotification:
    parsed = ParsedNotification()
    for entry in entries:
        if isinstance(entry, PushRecord):
            parsed.records.append(entry)
        else:
            parsed.ignored.append(entry)
    return parsed
