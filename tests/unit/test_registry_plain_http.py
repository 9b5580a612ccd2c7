"""Which registries verification and imports speak plain HTTP to (issue 14, point 6).

Plain HTTP lets anyone on the path choose the digest we record, so it is
chosen only when configured (`importPolicy.insecure`, a receiver's
`insecure: true`) or for the configured integrated registry on a loopback
address, never for another registry because it happens to be local.
"""

from __future__ import annotations

import pytest

from imagestream.registry_access import is_loopback_host, plain_http


@pytest.mark.parametrize(
    ("registry", "integrated", "insecure", "expected"),
    [
        # The integrated registry of `imagestream dev` and the tests.
        ("127.0.0.1:5000", "127.0.0.1:5000", False, True),
        ("localhost:5000", "localhost:5000", False, True),
        ("[::1]:5000", "[::1]:5000", False, True),
        ("127.0.0.2:5000", "127.0.0.2:5000", False, True),
        # Another registry on loopback is not the integrated one: HTTPS.
        ("127.0.0.1:5001", "127.0.0.1:5000", False, False),
        ("127.0.0.1:5000", "", False, False),
        # An integrated registry that is not on loopback: HTTPS unless asked.
        ("image-registry.svc:5000", "image-registry.svc:5000", False, False),
        ("10.0.0.5:5000", "10.0.0.5:5000", False, False),
        ("127.0.0.1.nip.io:5000", "127.0.0.1.nip.io:5000", False, False),
        # Asked for in so many words.
        ("image-registry.svc:5000", "image-registry.svc:5000", True, True),
        ("quay.io", "", True, True),
        ("quay.io", "", False, False),
    ],
)
def test_plain_http_only_for_the_loopback_integrated_registry_or_when_asked(
    registry: str, integrated: str, insecure: bool, expected: bool
) -> None:
    assert plain_http(registry, insecure=insecure, integrated_registry=integrated) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST:80", True),
        ("127.0.0.1", True),
        ("127.255.0.9:1", True),
        ("::1", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("localhost.example.com", False),
        ("[::2]:5000", False),
        ("registry", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected
