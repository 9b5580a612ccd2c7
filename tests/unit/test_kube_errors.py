"""The API error table: which answer of the API server becomes which of our errors."""

from __future__ import annotations

import json

import pytest

from imagestream.kube.errors import (
    Conflict,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    PatchTestFailed,
    Retryable,
    Terminal,
    TooManyRequests,
    translate_status,
)

# What kube-apiserver v1.37 answered on the local control plane (tests/integration
# exercise the same cases for real): a JSON Patch whose `test` op fails, and a
# ValidatingAdmissionPolicy refusing the patched object.
TEST_OP_FAILED = {
    "kind": "Status",
    "status": "Failure",
    "message": "the server rejected our request due to an error in our request",
    "reason": "Invalid",
    "details": {},
    "code": 422,
}
REFUSED_BY_POLICY = {
    "kind": "Status",
    "status": "Failure",
    "message": "deployments.apps \"d\" is forbidden: ValidatingAdmissionPolicy 'no-bad' with"
    " binding 'no-bad' denied request: images named bad are refused",
    "reason": "Invalid",
    "details": {"name": "d", "group": "apps", "kind": "deployments"},
    "code": 422,
}


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
        (422, Invalid),
    ],
)
def test_status_codes(status: int, expected: type[KubeError]) -> None:
    translated = translate_status(status, b"", None)
    assert type(translated) is expected
    assert translated.status == status


def test_retry_after_is_kept() -> None:
    translated = translate_status(429, b"", {"Retry-After": "3"})
    assert isinstance(translated, TooManyRequests)
    assert translated.retry_after_s == 3.0


def test_a_json_patch_that_no_longer_applies_is_told_apart_from_a_refusal() -> None:
    stale = translate_status(422, json.dumps(TEST_OP_FAILED), None, json_patch=True)
    refused = translate_status(422, json.dumps(REFUSED_BY_POLICY), None, json_patch=True)
    assert type(stale) is PatchTestFailed
    assert not isinstance(stale, Terminal)
    assert type(refused) is Invalid
    assert "denied request: images named bad are refused" in str(refused)


def test_only_a_json_patch_can_fail_a_test() -> None:
    assert type(translate_status(422, json.dumps(TEST_OP_FAILED), None)) is Invalid


def test_only_the_status_message_is_kept_and_it_is_truncated() -> None:
    body = '{"kind":"Status","message":"' + "x" * 1000 + '","details":{"token":"secret"}}'
    message = str(translate_status(422, body, None))
    assert "secret" not in message
    assert len(message) < 300
