"""The API error table: which failure becomes which of our errors."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from imagestream.kube.errors import (
    Conflict,
    Gone,
    KubeError,
    NotFound,
    Retryable,
    Terminal,
    TooManyRequests,
    translate,
)


def _api_error(status: int, body: str = "", headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason="reason")
    error.body = body
    error.headers = headers
    return error


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (409, Conflict),
        (410, Gone),
        (404, NotFound),
        (429, TooManyRequests),
        (500, Retryable),
        (503, Retryable),
        (504, Retryable),
        (400, Terminal),
        (401, Terminal),
        (403, Terminal),
        (422, Terminal),
    ],
)
def test_status_codes(status: int, expected: type[KubeError]) -> None:
    translated = translate(_api_error(status))
    assert type(translated) is expected
    assert translated.status == status


def test_retry_after_is_kept() -> None:
    translated = translate(_api_error(429, headers={"Retry-After": "3"}))
    assert isinstance(translated, TooManyRequests)
    assert translated.retry_after_s == 3.0


@pytest.mark.parametrize(
    "error",
    [aiohttp.ClientConnectionError("refused"), TimeoutError(), ConnectionResetError()],
)
def test_transport_failures_are_retryable(error: BaseException) -> None:
    assert type(translate(error)) is Retryable


def test_only_the_status_message_is_kept_and_it_is_truncated() -> None:
    body = '{"kind":"Status","message":"' + "x" * 1000 + '","details":{"token":"secret"}}'
    message = str(translate(_api_error(422, body)))
    assert "secret" not in message
    assert len(message) < 300
