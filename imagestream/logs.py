"""structlog set up once per process, with stable keys.

Log events are short snake_case names (`imagestream_updated`), never
f-strings, and details go in keys: `key`, `imagestream`, `tag`, `digest`,
`event_id`. Values under keys that name a secret are replaced before any
renderer sees them, so a careless `log.info(..., token=token)` cannot leak.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
_SECRET_KEY_PARTS = ("token", "secret", "password", "authorization", "signature", "credential")
REDACTED = "[redacted]"


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(part in key.lower() for part in _SECRET_KEY_PARTS) and not key.endswith("_file"):
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(*, log_format: str, log_level: str) -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    level = logging.getLevelNamesMapping()[log_level.upper()]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard library (aiohttp's access log) go to
    # the same stream at the same level.
    logging.basicConfig(stream=sys.stderr, level=level, format="%(name)s %(message)s")
