"""The operator's process settings: the token service (two settings, both or neither) and the
first Config (bootstrap), refused at start when unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.app import registry_bootstrap, token_auth_source
from controller.registryoperator.plan import Bootstrap
from controller.registryoperator.reconciler import SecretKey
from imagestream.registry_tokens import ISSUER, SERVICE
from imagestream.settings import HostPort, Settings, SettingsError

REALM = "http://10.96.0.20:8080/v1/registry/token"


def settings(**values: str) -> Settings:
    return Settings(
        kubeconfig=Path("kubeconfig"),
        webhook_addr=HostPort.parse(":8080"),
        health_addr=HostPort.parse(":8081"),
        metrics_addr=HostPort.parse(":9090"),
        log_format="json",
        log_level="info",
        registry_operator=True,
        **values,  # type: ignore[arg-type]
    )


def test_neither_setting_leaves_the_registry_without_auth() -> None:
    assert token_auth_source(settings()) is None


def test_both_give_the_realm_the_token_service_names_and_the_certificate() -> None:
    source = token_auth_source(
        settings(registry_token_realm=REALM, registry_token_signing_secret="system/signing")
    )
    assert source is not None
    assert (source.realm, source.service, source.issuer) == (REALM, SERVICE, ISSUER)
    assert source.certificate == SecretKey(namespace="system", name="signing", key="tls.crt")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"registry_token_realm": REALM}, "needs --registry-token-signing-secret"),
        ({"registry_token_signing_secret": "system/signing"}, "needs --registry-token-realm"),
        (
            {"registry_token_realm": "10.0.0.1:8080", "registry_token_signing_secret": "a/b"},
            "expected an http(s) URL",
        ),
        (
            {"registry_token_realm": REALM, "registry_token_signing_secret": "signing"},
            "expected namespace/name",
        ),
    ],
)
def test_half_or_broken_settings_are_refused_at_start(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        token_auth_source(settings(**values))


def test_the_bootstrap_settings_become_the_first_configs_part() -> None:
    given = registry_bootstrap(
        settings(
            registry_bootstrap_management_state="Managed",
            registry_bootstrap_spec='{"storage": {"s3": {"bucket": "b"}}, "replicas": 2}',
        )
    )
    assert given == Bootstrap(
        management_state="Managed", spec={"storage": {"s3": {"bucket": "b"}}, "replicas": 2}
    )
    assert registry_bootstrap(settings()) == Bootstrap()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"registry_bootstrap_spec": "{storage"}, "not JSON"),
        ({"registry_bootstrap_spec": "[1]"}, "expected a JSON object"),
        ({"registry_bootstrap_spec": '{"storage": {"hostPath": {}}}'}, "one of emptyDir, pvc"),
        (
            {"registry_bootstrap_spec": '{"storage": {"emptyDir": {}, "s3": {}}}'},
            "one of emptyDir, pvc",
        ),
        ({"registry_bootstrap_management_state": "Unmanaged"}, "expected Managed or Removed"),
    ],
)
def test_unusable_bootstrap_settings_are_refused_at_start(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        registry_bootstrap(settings(**values))
