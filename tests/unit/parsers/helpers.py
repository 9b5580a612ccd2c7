"""What every parser test shares: loading `tests/data/payloads/*.json`, parsing it as a
receiver would, the expected PushRecords, and the property-test machinery."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from imagestream.references import is_valid_digest, is_valid_repository, is_valid_tag
from webhook.events import BadPayload, Ignored, ParsedNotification, PushRecord
from webhook.parsers import REASONS, parse_notification

PAYLOADS = Path(__file__).resolve().parents[2] / "data" / "payloads"
JSON_HEADERS = {"Content-Type": "application/json"}
RECEIVER = "test-receiver"
# A well-formed stand-in for the redacted digests of vendor samples.
DIGEST = "sha256:" + "ab" * 32

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}

# Sender headers the sender's own tests and the properties both use.
GITHUB_HEADERS = JSON_HEADERS | {
    "X-GitHub-Event": "package",
    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
}
NEXUS_HEADERS = JSON_HEADERS | {
    "X-Nexus-Webhook-Id": "rm:repository:component",
    "X-Nexus-Webhook-Delivery": "7f9dba67-1b2c-4f5e-9a33-5d0b0f1f6e21",
}


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def document(name: str) -> Any:
    return json.loads(payload(name))


def with_digest(name: str, redacted: str) -> bytes:
    body = payload(name)
    assert redacted.encode() in body
    return body.replace(redacted.encode(), DIGEST.encode())


def parse(
    receiver_type: str,
    body: bytes | Any,
    *,
    headers: Mapping[str, str] = JSON_HEADERS,
    registry: str = "",
) -> ParsedNotification:
    return parse_notification(
        receiver_type,
        headers=headers,
        body=body if isinstance(body, bytes) else json.dumps(body).encode(),
        receiver=RECEIVER,
        default_registry=registry,
    )


def entries(parsed: ParsedNotification) -> list[PushRecord | Ignored]:
    return [*parsed.records, *parsed.ignored]


def only(parsed: ParsedNotification) -> PushRecord | Ignored:
    (entry,) = entries(parsed)
    return entry


def reason(parsed: ParsedNotification) -> str:
    """The reason of a notification that is exactly one Ignored entry."""
    assert parsed.records == []
    (ignored,) = parsed.ignored
    return ignored.reason


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def content_id(
    receiver_type: str, registry: str, repository: str, tag: str, digest: str, at: datetime | None
) -> str:
    """The documented id for senders without one: sha256 of the fields, newline-joined."""
    fields = [receiver_type, registry, repository, tag, digest, at.isoformat() if at else ""]
    return "content:" + hashlib.sha256("\n".join(fields).encode()).hexdigest()


def record(
    registry: str,
    repository: str,
    tag: str,
    digest: str,
    *,
    media_type: str = "",
    pushed_at: datetime | None = None,
    event_id: str,
) -> PushRecord:
    return PushRecord(
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        pushed_at=pushed_at,
        event_id=event_id,
        receiver=RECEIVER,
    )


# --- properties --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["events", "action", "target", "tag", "digest", "repository", "data", "type"]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def assert_parses_or_is_bad(receiver_type: str, body: bytes, headers: Mapping[str, str]) -> None:
    try:
        parsed = parse(receiver_type, body, headers=headers)
    except BadPayload:
        return
    for pushed in parsed.records:
        assert is_valid_repository(pushed.repository) and is_valid_tag(pushed.tag)
        assert pushed.digest == "" or is_valid_digest(pushed.digest)
        assert pushed.event_id and pushed.receiver == RECEIVER
        assert pushed.pushed_at is None or pushed.pushed_at.tzinfo is not None
    assert all(ignored.reason in REASONS for ignored in parsed.ignored)


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
