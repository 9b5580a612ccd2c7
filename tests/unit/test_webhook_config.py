"""The receiver config loads completely or fails naming the receiver and the field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from webhook.config import (
    AuthConfig,
    ConfigError,
    Receiver,
    default_receivers,
    load_config,
    parse_config,
)

FULL = """
receivers:
  - name: distribution
    type: distribution
    integrated: true
    auth:
      type: bearer
      secretFiles: [/etc/s/token, token.next]
  - name: harbor
    type: harbor
    auth: {type: harbor, secretFiles: [/etc/s/harbor]}
  - name: github
    type: github
    registry: GHCR.io
    verify: registry
    auth: {type: hmac-sha256, secretFiles: [/etc/s/gh]}
  - name: jfrog
    type: jfrog
    registry: artifactory.example.com:8443
    auth:
      type: hmac-sha256
      header: X-JFrog-Event-Auth
      prefix: ""
      secretFiles: [/etc/s/jfrog]
  - name: acr
    type: acr
    auth: {type: basic, secretFiles: [/etc/s/acr]}
  - name: dockerhub
    type: dockerhub
    auth: {type: path-secret, secretFiles: [/etc/s/hub]}
  - name: open
    type: cloudevents
    auth: {type: none}
"""


def _load(tmp_path: Path, text: str) -> list[Receiver]:
    path = tmp_path / "webhook.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def test_full_example_loads(tmp_path: Path) -> None:
    receivers = {r.name: r for r in _load(tmp_path, FULL)}
    assert list(receivers) == [
        "distribution",
        "harbor",
        "github",
        "jfrog",
        "acr",
        "dockerhub",
        "open",
    ]
    dist = receivers["distribution"]
    assert dist.integrated is True and dist.verify == "payload" and dist.registry == ""
    # A relative secret file is relative to the config file.
    assert dist.auth == AuthConfig(
        type="bearer", secret_files=(Path("/etc/s/token"), tmp_path / "token.next")
    )
    assert receivers["harbor"].auth.header == "Authorization"
    github = receivers["github"]
    assert github.registry == "ghcr.io" and github.verify == "registry"
    assert (github.auth.header, github.auth.prefix) == ("X-Hub-Signature-256", "sha256=")
    jfrog = receivers["jfrog"].auth
    assert (jfrog.header, jfrog.prefix) == ("X-JFrog-Event-Auth", "")
    assert receivers["open"].auth == AuthConfig(type="none")
    assert receivers["acr"].integrated is False


def test_default_receivers(tmp_path: Path) -> None:
    (receiver,) = default_receivers(tmp_path / "token")
    assert receiver == Receiver(
        name="distribution",
        type="distribution",
        auth=AuthConfig(type="bearer", secret_files=(tmp_path / "token",)),
        integrated=True,
    )


def test_the_module_docstring_example_is_valid() -> None:
    import webhook.config

    doc = webhook.config.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\nFields of a receiver", 1)[0]
    assert len(parse_config(_yaml(example), source="docstring", base_dir=Path("/"))) == 6


def _yaml(text: str) -> object:
    import yaml

    return yaml.safe_load(textwrap.dedent(text))


RECEIVER = "  - name: r1\n    type: distribution\n"
BEARER = "    auth: {type: bearer, secretFiles: [/s]}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a mapping with a 'receivers' list"),
        ("receivers: []", "'receivers' must be a non-empty list"),
        ("receiver: []", "top level: unknown key(s) receiver"),
        ("receivers:\n  - name: Bad_Name\n    type: distribution\n", "receivers[0]: name: must be"),
        ("receivers:\n  - type: distribution\n", "receivers[0]: name: must be"),
        ("receivers:\n  - name: r1\n    type: dockerhu\n" + BEARER, "(r1): type: must be one of"),
        (RECEIVER, "(r1): auth: required"),
        (RECEIVER + BEARER + "    secretfiles: [/s]\n", "(r1): unknown key(s) secretfiles"),
        (RECEIVER + BEARER + "    verify: always\n", "(r1): verify: must be one of"),
        (RECEIVER + BEARER + "    integrated: 'yes'\n", "(r1): integrated: must be true or false"),
        (RECEIVER + BEARER + "    registry: http://x\n", "(r1): registry: must be host"),
        (RECEIVER + "    auth: {type: token, secretFiles: [/s]}\n", "(r1): auth: type: must be"),
        (RECEIVER + "    auth: {type: bearer}\n", "(r1): auth: secretFiles: must list one or 2"),
        (
            RECEIVER + "    auth: {type: bearer, secretFiles: [/a, /b, /c]}\n",
            "(r1): auth: secretFiles: must list",
        ),
        (RECEIVER + "    auth: {type: bearer, secretFiles: [/a, /a]}\n", "listed twice"),
        (
            RECEIVER + "    auth: {type: bearer, secretFiles: [/s], header: X-T}\n",
            "(r1): auth (type bearer): unknown key(s) header",
        ),
        (
            RECEIVER + "    auth: {type: none, secretFiles: [/s]}\n",
            "(r1): auth (type none): unknown key(s) secretFiles",
        ),
        (
            RECEIVER + "    auth: {type: hmac-sha256, secretFiles: [/s], header: 'X Sig'}\n",
            "(r1): auth: header: must be an HTTP header name",
        ),
        (RECEIVER + BEARER + RECEIVER + BEARER, "receivers[1] (r1): name is used by another"),
        ("receivers: [\n", "not valid YAML"),
    ],
)
def test_errors_name_the_receiver_and_field(tmp_path: Path, text: str, message: str) -> None:
    if text.startswith("  - "):
        text = "receivers:\n" + text
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        _load(tmp_path, text)
    assert str(raised.value).startswith(str(tmp_path / "webhook.yaml"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read webhook config"):
        load_config(tmp_path / "absent.yaml")


def test_an_integrated_receiver_needs_the_integrated_registry() -> None:
    """It records pushes to `--integrated-registry` only (issue 14, point 1): no silent default."""
    from webhook.app import check_integrated_registry

    receivers = default_receivers(Path("/token"))
    with pytest.raises(ConfigError, match="receiver distribution is integrated: give --integrated"):
        check_integrated_registry(receivers, "")
    with pytest.raises(ConfigError, match="--integrated-registry: must be host or host:port"):
        check_integrated_registry(receivers, "https://registry.example.com/")
    check_integrated_registry(receivers, "registry.example.com:5000")
    external = [Receiver(name="gh", type="github", auth=AuthConfig(type="none"))]
    check_integrated_registry(external, "")  # nothing integrated: nothing needed
