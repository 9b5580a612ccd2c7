"""Finding a registry's credentials in a `.dockerconfigjson`, as kubelet and Docker would."""

from __future__ import annotations

import base64
import json

import pytest

from imagestream.registry_client import RegistryCredentials, credentials_from_dockerconfigjson


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


CONFIG = {
    "auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hubuser", "hubpass")},
        "quay.io": {"username": "quser", "password": "qpass"},
        "quay.io/team-a": {"auth": _auth("team-a", "apass")},
        "quay.io/team-a/special": {"auth": _auth("special", "spass")},
        "https://registry.example.com:5000/v2/": {"auth": _auth("ex", "expass:with:colons")},
        "*.azurecr.io": {"auth": _auth("acr", "acrpass")},
        "broken.example.com": {"auth": "%%% not base64"},
        "empty.example.com": {},
    }
}


@pytest.mark.parametrize(
    ("registry", "repository", "expected"),
    [
        ("docker.io", None, RegistryCredentials("hubuser", "hubpass")),
        ("index.docker.io", None, RegistryCredentials("hubuser", "hubpass")),
        ("registry-1.docker.io", None, RegistryCredentials("hubuser", "hubpass")),
        ("quay.io", None, RegistryCredentials("quser", "qpass")),
        ("QUAY.io", None, RegistryCredentials("quser", "qpass")),
        ("quay.io", "team-b/app", RegistryCredentials("quser", "qpass")),
        ("quay.io", "team-a/app", RegistryCredentials("team-a", "apass")),
        ("quay.io", "team-a", RegistryCredentials("team-a", "apass")),
        ("quay.io", "team-ab/app", RegistryCredentials("quser", "qpass")),  # not a path prefix
        ("quay.io", "team-a/special/x", RegistryCredentials("special", "spass")),
        ("registry.example.com:5000", None, RegistryCredentials("ex", "expass:with:colons")),
        ("registry.example.com", None, None),  # the port is part of the host
        ("myreg.azurecr.io", None, RegistryCredentials("acr", "acrpass")),
        ("a.b.azurecr.io", None, None),  # one label per `*`
        ("broken.example.com", None, None),
        ("empty.example.com", None, None),
        ("ghcr.io", None, None),
    ],
)
def test_lookup(
    registry: str, repository: str | None, expected: RegistryCredentials | None
) -> None:
    assert credentials_from_dockerconfigjson(CONFIG, registry, repository=repository) == expected


def test_accepts_the_secret_bytes_and_the_legacy_dockercfg_form() -> None:
    as_bytes = json.dumps(CONFIG).encode()
    assert credentials_from_dockerconfigjson(as_bytes, "quay.io") == RegistryCredentials(
        "quser", "qpass"
    )
    legacy = json.dumps(CONFIG["auths"]).encode()  # kubernetes.io/dockercfg
    assert credentials_from_dockerconfigjson(legacy, "quay.io") == RegistryCredentials(
        "quser", "qpass"
    )


def test_exact_host_beats_wildcard() -> None:
    config = {
        "auths": {
            "*.example.com": {"auth": _auth("wild", "w")},
            "reg.example.com": {"auth": _auth("exact", "e")},
        }
    }
    found = credentials_from_dockerconfigjson(config, "reg.example.com")
    assert found == RegistryCredentials("exact", "e")


def test_malformed_json_is_a_value_error_without_the_content() -> None:
    with pytest.raises(ValueError, match="not a valid docker config") as raised:
        credentials_from_dockerconfigjson(b'{"auths": {"x": {"auth": "s3cr3t"', "x")
    assert "s3cr3t" not in str(raised.value)
    with pytest.raises(ValueError, match="expected a JSON object"):
        credentials_from_dockerconfigjson(b"[]", "x")


def test_password_is_not_in_the_repr() -> None:
    assert "hubpass" not in repr(RegistryCredentials("hubuser", "hubpass"))
