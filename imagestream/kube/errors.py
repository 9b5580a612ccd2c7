"""Our own small vocabulary of API errors.

The client library raises `ApiException` with an HTTP status, and aiohttp
raises its own connection errors. Callers should not have to know either:
they decide between "re-read and re-apply" (Conflict), "relist" (Gone),
"the object is not there" (NotFound), "slow down" (TooManyRequests), "try
again later" (Retryable) and "do not retry until something changes"
(Terminal). Only `imagestream.kube` raises these.

NB: response bodies can echo request content; we keep only the Status
message, truncated, so a secret in a request never reaches a log line.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

_MAX_MESSAGE = 256


class KubeError(Exception):
    """Base of every API error we raise."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeError):
    """409: our resourceVersion is stale, or the object already exists."""


class Gone(KubeError):
    """410: the resourceVersion we watch from has been compacted; relist."""


class NotFound(KubeError):
    """404: the object (or its namespace, or its API) does not exist."""


class Retryable(KubeError):
    """A transient failure: connection refused or reset, timeout, 5xx."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class TooManyRequests(Retryable):
    """429: the API server asks us to slow down (honour `retry_after_s`)."""


class Terminal(KubeError):
    """400, 401, 403, 422 and the like: retrying the same request cannot help."""


def _status_message(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body[:_MAX_MESSAGE]
        message = parsed.get("message") if isinstance(parsed, dict) else None
        if isinstance(message, str):
            return message[:_MAX_MESSAGE]
        return body[:_MAX_MESSAGE]
    return ""


def _retry_after(headers: object) -> float | None:
    if headers is None:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_status(status: int, body: bytes | str | None, headers: object) -> KubeError:
    """The error for an HTTP error answer of the API server."""
    message = f"{status}: {_status_message(body)}"
    if status == 409:
        return Conflict(message, status=status)
    if status == 410:
        return Gone(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    if status == 429:
        return TooManyRequests(message, status=status, retry_after_s=_retry_after(headers))
    if status >= 500:
        return Retryable(message, status=status, retry_after_s=_retry_after(headers))
    return Terminal(message, status=status)


def translate(error: BaseException) -> KubeError:
    """Map a client-library or transport exception to one of ours."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(error, KubeError):
        return error
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        if status == 0:
            return Retryable(f"{error.reason}"[:_MAX_MESSAGE])
        return translate_status(status, error.body, error.headers)
    if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError | OSError):
        return Retryable(f"{type(error).__name__}: {error}"[:_MAX_MESSAGE])
    return Terminal(f"{type(error).__name__}: {error}"[:_MAX_MESSAGE])
