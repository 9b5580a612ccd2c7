"""The one shape every registry's push notification is normalised into.

Eleven senders speak eleven dialects; after parsing, the rest of the webhook
sees only `PushRecord`s (something to apply) and `Ignored` entries
(acknowledged, counted by reason, never written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PushRecord:
    """A manifest pushed by tag.

    `registry` is the host (with port) as clients pull from it, lower-cased;
    empty when the payload does not say and the receiver has no `registry`
    configured. `repository` is the path inside the registry (`demo/app`,
    `library/nginx`). `digest` is empty when the payload carries none (Docker
    Hub, Quay, Nexus): the webhook then resolves the tag at the registry.
    """

    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str = ""
    pushed_at: datetime | None = None
    event_id: str = ""
    receiver: str = ""


@dataclass(frozen=True)
class Ignored:
    """An event we acknowledge but do not apply, and why (a stable snake_case reason)."""

    reason: str
    event_id: str = ""
    detail: str = ""


@dataclass
class ParsedNotification:
    records: list[PushRecord] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


class BadPayload(ValueError):
    """The body is not a notification of the receiver's type (400, or 200 for distribution)."""


class UnsupportedMediaType(BadPayload):
    """The Content-Type is not one the receiver's type can carry (415)."""
