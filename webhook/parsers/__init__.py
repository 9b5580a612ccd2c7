"""Payload parsers of the webhook: one per receiver type, pure functions, no I/O.

`parse_notification` turns a request body into PushRecords (manifests
pushed by tag) and Ignored entries (acknowledged, counted by reason), or
raises `BadPayload` / `UnsupportedMediaType`. It never raises anything else
for any body or headers, so the handler can map exactly those two to its
answer (for distribution, a 200: a 4xx would wedge the registry's queue).

Each module's docstring says what it accepts and why; `common` holds the
validation every record goes through and the `REASONS`.

Event ids (`PushRecord.event_id`, for deduplication):

* the sender's own id where there is one, reused by the sender on retries:
  distribution event `id`, ACR `id`, Event Grid `id`, Pub/Sub `messageId`,
  EventBridge `id`, the `X-GitHub-Delivery` and `X-Nexus-Webhook-Delivery`
  headers, and `<source>#<id>` for CloudEvents; a Harbor CloudEvent listing
  several resources gives `<source>#<id>/<index>`;
* otherwise (Harbor Default, Quay, Docker Hub, JFrog, or a header missing)
  `content:<sha256>` of receiver type, registry, repository, tag, digest and
  push time, so a redelivered payload gets the same id and two tags of one
  Quay push get two.

Ignored entries carry the sender's id when there is one, else "".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from webhook.events import BadPayload, ParsedNotification
from webhook.parsers import (
    acr,
    cloudevents,
    distribution,
    dockerhub,
    ecr,
    gcr,
    github,
    harbor,
    jfrog,
    nexus,
    quay,
)
from webhook.parsers.common import REASONS, Request, media_type_of, registry_host

__all__ = ["REASONS", "RECEIVER_TYPES", "parse_notification"]

RECEIVER_TYPES: Final = (
    "distribution",
    "cloudevents",
    "harbor",
    "quay",
    "dockerhub",
    "acr",
    "gcr",
    "ecr",
    "github",
    "jfrog",
    "nexus",
)

_PARSERS: Final[Mapping[str, Callable[[Request], ParsedNotification]]] = {
    "distribution": distribution.parse,
    "cloudevents": cloudevents.parse,
    "harbor": harbor.parse,
    "quay": quay.parse,
    "dockerhub": dockerhub.parse,
    "acr": acr.parse,
    "gcr": gcr.parse,
    "ecr": ecr.parse,
    "github": github.parse,
    "jfrog": jfrog.parse,
    "nexus": nexus.parse,
}

# Senders that can be switched to CloudEvents (a Harbor policy's format, an
# Event Grid subscription's schema): their receiver reads both, told apart by
# the Content-Type, so switching the format does not need a new receiver.
_ALSO_CLOUDEVENTS: Final = frozenset({"harbor", "acr"})


def parse_notification(
    receiver_type: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    receiver: str,
    default_registry: str = "",
) -> ParsedNotification:
    """Parse one notification for a receiver of `receiver_type`.

    `headers` may be any mapping (aiohttp's case-insensitive one, or a plain
    dict): names are matched case-insensitively. `default_registry` is the
    receiver's configured `registry`, used when the payload names no host.
    `receiver` is copied into every PushRecord.

    Raises `ValueError` (not `BadPayload`) for an unknown `receiver_type` or
    an invalid `default_registry`: those are configuration errors.
    """
    parser = _PARSERS.get(receiver_type)
    if parser is None:
        raise ValueError(f"unknown receiver type {receiver_type!r}")
    try:
        registry = registry_host(default_registry, what="registry") if default_registry else ""
    except BadPayload as exc:
        raise ValueError(f"receiver {receiver!r}: {exc}") from None
    lowered = {name.lower(): value for name, value in headers.items()}
    request = Request(
        receiver_type=receiver_type,
        headers=lowered,
        body=body,
        receiver=receiver,
        default_registry=registry,
        media_type=media_type_of(lowered.get("content-type", "")),
    )
    if receiver_type in _ALSO_CLOUDEVENTS and request.media_type in cloudevents.MEDIA_TYPES:
        parser = cloudevents.parse
    return parser(request)
