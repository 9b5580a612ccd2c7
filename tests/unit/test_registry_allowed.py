"""Which registries imports may contact (OpenShift's allowedRegistriesForImport)."""

from __future__ import annotations

import pytest

from imagestream.registry_access import registry_allowed


@pytest.mark.parametrize(
    ("registry", "patterns", "allowed"),
    [
        ("quay.io", (), True),
        ("quay.io", ("quay.io",), True),
        ("QUAY.IO", ("quay.io",), True),
        ("docker.io", ("quay.io",), False),
        ("registry.corp.example.com", ("*.corp.example.com",), True),
        ("corp.example.com.evil.io", ("*.corp.example.com",), False),
        ("127.0.0.1:5000", ("127.0.0.1:*",), True),
        ("127.0.0.1", ("127.0.0.1:*",), False),
    ],
)
def test_patterns(registry: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert registry_allowed(registry, patterns) is allowed
