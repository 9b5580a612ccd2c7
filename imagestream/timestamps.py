"""The two timestamp formats the API uses, each under its own name.

Kubernetes has `Time` (RFC 3339, whole seconds: creationTimestamp, Build and
DeploymentConfig status times) and `MicroTime` (RFC 3339 with microseconds:
Lease renewals, events.k8s.io `eventTime`). Tag events are written with
microseconds too, so that pushes a few milliseconds apart still order.
Formatting one as the other is a real bug (a Lease renewal rounded to the
second looks expired early; a `Time` field with microseconds is refused), so
the two never share a name.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339_seconds(moment: datetime) -> str:
    """A `Time`: `2026-12-01T09:00:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    """A `MicroTime`: `2026-12-01T09:00:00.123456Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: object) -> datetime | None:
    """Either format back to an aware datetime; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
