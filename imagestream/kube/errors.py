"""Our own small vocabulary of API errors.

The API server answers with HTTP statuses and aiohttp raises its own
connection errors. Callers should not have to know either: they decide
between "re-read and re-apply" (Conflict), "our JSON Patch no longer
applies, plan again" (PatchTestFailed), "relist" (Gone), "the object is not
there" (NotFound), "slow down" (TooManyRequests), "try again later"
(Retryable), "the server refused what we sent" (Invalid) and "do not retry
until something changes" (Terminal). Only `imagestream.kube` raises these.

These are API errors, not reconcile outcomes: a reconciler turns them into
requeue, retry later or give up (`controller.loop.outcomes`) as its own
situation demands.

NB: response bodies can echo request content; we keep only the Status
message, truncated, so a secret in a request never reaches a log line.
"""

from __future__ import annotations

import json

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


class Unreachable(Retryable):
    """No answer at all from the API server: connection refused, unknown host, TLS failure.

    Still `Retryable` for the loops (an API server restarting is refused for
    a moment); the commands read `server`, `reason` and `source` to say in
    one line what to fix instead of printing a traceback.
    """

    def __init__(self, *, server: str, reason: str, source: str, request: str) -> None:
        super().__init__(
            f"{request}: cannot reach the API server {server}: {reason}"[:_MAX_MESSAGE]
        )
        self.server = server
        self.reason = reason
        self.source = source
        """Where the server address came from, e.g. `kubeconfig /x/config (--kubeconfig)`."""


class TooManyRequests(Retryable):
    """429: the API server asks us to slow down (honour `retry_after_s`)."""


class KubeconfigError(KubeError):
    """No usable client configuration: `connect()` could not load the kubeconfig.

    Raised only by `connect()`, before any request; the message names the
    file (and the flag or variable it came from) and what is wrong with it,
    in one line, never its content (a kubeconfig holds credentials).
    """


class Terminal(KubeError):
    """400, 401, 403 and the like: retrying the same request cannot help."""


class Invalid(Terminal):
    """422 for what we sent: field validation, or an admission policy refused it.

    `str(error)` carries the server's own message (which names the policy), so
    a caller can show a user why, e.g. in a Warning Event.
    """


class PatchTestFailed(KubeError):
    """422 for a JSON Patch that no longer applies: a `test` op failed or a path is gone.

    The object changed since we read it: plan again from a fresh read. Not a
    `Terminal` error, so that nobody mistakes a stale read for a refusal (and
    not a refusal for a stale read: that mistake once made a 5 Hz patch loop
    against an admission policy).
    """


def _status(body: object) -> dict[str, object]:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"message": body}
        if isinstance(parsed, dict):
            return parsed
        return {"message": body}
    return {}


def _retry_after(headers: object) -> float | None:
    if headers is None:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_status(
    status: int, body: bytes | str | None, headers: object, *, json_patch: bool = False
) -> KubeError:
    """The error for an HTTP error answer of the API server.

    `json_patch`: the request was a JSON Patch. The API server answers a patch
    that does not apply (a failed `test`, a missing path) with a 422 whose
    Status names no object (`details` is empty), and a refusal of the patched
    object (validation, admission) with a 422 whose `details` name it; that
    is how the two are told apart (docs/architecture.md#api-errors).
    """
    parsed = _status(body)
    text = parsed.get("message")
    message = f"{status}: {(text if isinstance(text, str) else '')[:_MAX_MESSAGE]}"
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
    if status == 422:
        details = parsed.get("details")
        names_object = isinstance(details, dict) and bool(
            details.get("name") or details.get("kind")
        )
        if json_patch and not names_object:
            return PatchTestFailed(message, status=status)
        return Invalid(message, status=status)
    return Terminal(message, status=status)
