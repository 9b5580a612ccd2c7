"""The webhook's entry point to payload parsing; the parsers live in `webhook.parsers`.

`parse_notification(receiver_type, headers=, body=, receiver=, default_registry=)`
returns a `ParsedNotification` or raises `BadPayload` / `UnsupportedMediaType`.
"""

from __future__ import annotations

from webhook.parsers import REASONS, RECEIVER_TYPES, parse_notification

__all__ = ["REASONS", "RECEIVER_TYPES", "parse_notification"]
