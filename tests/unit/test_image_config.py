"""The cluster image configuration's decisions (behaviour 31), apart from the doing."""

from __future__ import annotations

from typing import Any

import pytest

from imagestream.image_config import (
    ImageConfig,
    RegistryLocation,
    RegistryPolicy,
    ca_bundles,
    import_refusal,
    parse_image_config,
    registry_source_refusal,
    source_matches,
)


def _image(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "cluster"}, "spec": spec, "status": status or {}}


def test_parse_reads_openshifts_fields() -> None:
    config = parse_image_config(
        _image(
            {
                "allowedRegistriesForImport": [
                    {"domainName": "quay.io"},
                    {"domainName": "reg.local:5000", "insecure": True},
                    {"insecure": True},  # no domainName: ignored
                ],
                "registrySources": {
                    "blockedRegistries": ["evil.io"],
                    "insecureRegistries": ["plain.local:5000"],
                    "containerRuntimeSearchRegistries": ["docker.io"],
                },
                "additionalTrustedCA": {"name": "registry-cas"},
                "externalRegistryHostnames": ["registry.example.com"],
            },
            {
                "internalRegistryHostname": "image-registry.svc:5000",
                "externalRegistryHostnames": ["route.example.com", "registry.example.com"],
            },
        )
    )
    assert config.allowed_for_import == (
        RegistryLocation("quay.io"),
        RegistryLocation("reg.local:5000", insecure=True),
    )
    assert config.blocked_registries == ("evil.io",)
    assert config.insecure_registries == ("plain.local:5000",)
    assert config.trusted_ca == "registry-cas"
    # spec first (as OpenShift uses the first for publicDockerImageRepository), no repeats
    assert config.external_hostnames == ("registry.example.com", "route.example.com")
    assert config.internal_hostname == "image-registry.svc:5000"
    assert not config.invalid


def test_no_object_is_no_policy() -> None:
    assert parse_image_config(None) == ImageConfig()
    policy = RegistryPolicy()
    access = policy.decide("anything.io", repository="a/b", insecure=False, importing=True)
    assert not access.refused and not access.plain_http and not access.ca_pem


def test_allowed_and_blocked_together_refuse_everything_with_the_reason() -> None:
    config = parse_image_config(
        _image({"registrySources": {"allowedRegistries": ["a.io"], "blockedRegistries": ["b.io"]}})
    )
    assert "only one of them may be set" in config.invalid
    access = RegistryPolicy(config=config).decide("a.io", insecure=False, importing=False)
    assert access.refused == config.invalid


def test_malformed_shapes_do_not_raise() -> None:
    assert parse_image_config({"spec": "x"}).invalid
    assert parse_image_config({"spec": {"registrySources": ["x"]}}).invalid
    odd = parse_image_config(
        {"spec": {"allowedRegistriesForImport": ["quay.io", 3], "additionalTrustedCA": "x"}}
    )
    assert odd.allowed_for_import == () and odd.trusted_ca == "" and not odd.invalid


def test_ca_bundles_spell_the_port_with_two_dots() -> None:
    bundles = ca_bundles(
        {"data": {"Registry.Example.com..5000": "PEM-A", "quay.io": "PEM-B", "empty": " "}}
    )
    assert bundles == {"registry.example.com:5000": "PEM-A", "quay.io": "PEM-B"}
    assert ca_bundles(None) == {} and ca_bundles({"data": None}) == {}


@pytest.mark.parametrize(
    ("registry", "domain", "insecure_entry", "plain_http", "allowed"),
    [
        ("quay.io", "quay.io", False, False, True),
        ("QUAY.IO", "quay.io", False, False, True),
        ("quay.io:443", "quay.io", False, False, True),  # the default TLS port
        ("quay.io:5000", "quay.io", False, False, False),  # another port must be named
        ("quay.io:5000", "quay.io:5000", False, False, True),
        ("a.corp.io", "*.corp.io", False, False, True),
        ("corp.io", "*.corp.io", False, False, False),
        ("reg1.io", "reg?.io", False, False, True),
        ("quay.io", "quay.io", False, True, False),  # plain HTTP needs insecure: true
        ("quay.io", "quay.io", True, True, True),
        ("quay.io:80", "quay.io", True, True, True),  # the default plain-HTTP port
        ("quay.io", "quay.io", True, False, True),  # an insecure entry admits TLS too
        ("docker.io", "quay.io", False, False, False),
    ],
)
def test_allowed_registries_for_import(
    registry: str, domain: str, insecure_entry: bool, plain_http: bool, allowed: bool
) -> None:
    locations = (RegistryLocation(domain, insecure=insecure_entry),)
    refusal = import_refusal(registry, locations, plain_http=plain_http)
    assert (refusal == "") is allowed
    if not allowed:
        assert "spec.allowedRegistriesForImport" in refusal and registry in refusal


@pytest.mark.parametrize(
    ("pattern", "registry", "repository", "matches"),
    [
        ("quay.io", "quay.io", "a/b", True),
        ("quay.io", "quay.io:5000", "a/b", False),
        ("quay.io:5000", "quay.io:5000", "a/b", True),
        ("*.example.com", "reg.example.com", "", True),
        ("*.example.com", "reg.example.com:5000", "", True),
        ("*.example.com", "example.com", "", False),
        ("*.example.com", "evilexample.com", "", False),
        ("*.example.com:5000", "reg.example.com:5000", "", True),
        ("*.example.com:5000", "reg.example.com:5001", "", False),
        ("quay.io/team", "quay.io", "team/app", True),
        ("quay.io/team", "quay.io", "teamx/app", False),
        ("quay.io/team", "quay.io", "", False),
    ],
)
def test_registry_source_patterns(
    pattern: str, registry: str, repository: str, matches: bool
) -> None:
    assert source_matches(pattern, registry, repository) is matches


def test_blocked_and_allowed_registry_sources() -> None:
    blocked = ImageConfig(blocked_registries=("evil.io",))
    assert "blockedRegistries" in registry_source_refusal("evil.io", "x", blocked)
    assert registry_source_refusal("good.io", "x", blocked) == ""
    allowed = ImageConfig(allowed_registries=("good.io",))
    assert registry_source_refusal("good.io", "x", allowed) == ""
    assert "allowedRegistries" in registry_source_refusal("other.io", "x", allowed)


def test_flags_and_cluster_limits_both_apply() -> None:
    policy = RegistryPolicy(
        flag_allowed=("127.0.0.1:*",),
        config=ImageConfig(allowed_for_import=(RegistryLocation("quay.io"),)),
    )
    # The cluster object allows quay.io; the flag does not: refused.
    assert policy.decide("quay.io", insecure=False, importing=True).refused
    # The flag allows the loopback registry; the cluster object does not: refused.
    assert policy.decide("127.0.0.1:5000", insecure=False, importing=True).refused
    # allowedRegistriesForImport is about imports: verification is not limited by it.
    assert not policy.decide("127.0.0.1:5000", insecure=False, importing=False).refused


def test_the_integrated_registry_is_always_allowed_for_import() -> None:
    config = ImageConfig(
        allowed_for_import=(RegistryLocation("quay.io"),),
        internal_hostname="image-registry.svc:5000",
    )
    policy = RegistryPolicy(flag_integrated_registry="127.0.0.1:5000", config=config)
    assert policy.integrated_registry == "image-registry.svc:5000"  # the cluster's wins
    for host in ("image-registry.svc:5000", "127.0.0.1:5000"):
        assert not policy.decide(host, insecure=False, importing=True).refused
    assert policy.decide("docker.io", insecure=False, importing=True).refused


def test_insecure_registries_and_trusted_cas_are_added_up() -> None:
    policy = RegistryPolicy(
        flag_integrated_registry="127.0.0.1:5000",
        config=ImageConfig(insecure_registries=("plain.local:5000",), trusted_ca="cas"),
        bundles={"tls.local:8443": "PEM"},
    )
    assert policy.decide("plain.local:5000", insecure=False, importing=True).plain_http
    assert policy.decide("127.0.0.1:5000", insecure=False, importing=True).plain_http
    assert policy.decide("other.local", insecure=True, importing=True).plain_http
    assert not policy.decide("other.local", insecure=False, importing=True).plain_http
    tls = policy.decide("TLS.local:8443", insecure=False, importing=True)
    assert tls.ca_pem == "PEM" and not tls.plain_http
    assert policy.decide("tls.local", insecure=False, importing=True).ca_pem == ""


def test_public_registry_is_the_first_external_hostname() -> None:
    config = ImageConfig(external_hostnames=("a.example.com", "b.example.com"))
    assert RegistryPolicy(config=config).public_registry() == "a.example.com"
    assert RegistryPolicy().public_registry() == ""


def test_a_digest_pinned_import_asks_no_registry_so_only_the_cluster_rules_apply() -> None:
    policy = RegistryPolicy(
        flag_allowed=("127.0.0.1:*",),
        config=ImageConfig(blocked_registries=("evil.io",)),
    )
    assert not policy.decide("quay.io", insecure=False, importing=True, contacting=False).refused
    assert policy.decide("quay.io", insecure=False, importing=True).refused
    assert policy.decide("evil.io", insecure=False, importing=True, contacting=False).refused
