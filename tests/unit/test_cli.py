"""Flags, their environment variables and their defaults."""

from __future__ import annotations

import pytest

from imagestream.cli.main import build_parser, settings_from
from imagestream.settings import HostPort, SettingsError


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IMAGESTREAM_WEBHOOK_ADDR", "IMAGESTREAM_LOG_FORMAT", "IMAGESTREAM_KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from(build_parser().parse_args(["run"]))
    assert settings.webhook_addr == HostPort("0.0.0.0", 8080)
    assert settings.health_addr == HostPort("0.0.0.0", 8081)
    assert settings.metrics_addr == HostPort("0.0.0.0", 9090)
    assert settings.log_format == "json"
    assert settings.kubeconfig is None


def test_every_process_flag_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESTREAM_KUBECONFIG", "/tmp/kc")
    monkeypatch.setenv("IMAGESTREAM_WEBHOOK_ADDR", "127.0.0.1:18080")
    monkeypatch.setenv("IMAGESTREAM_HEALTH_ADDR", "127.0.0.1:18081")
    monkeypatch.setenv("IMAGESTREAM_METRICS_ADDR", "[::1]:19090")
    monkeypatch.setenv("IMAGESTREAM_LOG_FORMAT", "console")
    monkeypatch.setenv("IMAGESTREAM_LOG_LEVEL", "debug")
    for command in ("run", "controller", "webhook"):
        settings = settings_from(build_parser().parse_args([command]))
        assert str(settings.kubeconfig) == "/tmp/kc"
        assert settings.webhook_addr == HostPort("127.0.0.1", 18080)
        assert settings.health_addr == HostPort("127.0.0.1", 18081)
        assert settings.metrics_addr == HostPort("::1", 19090)
        assert (settings.log_format, settings.log_level) == ("console", "debug")


def test_a_flag_wins_over_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESTREAM_WEBHOOK_ADDR", "127.0.0.1:18080")
    args = build_parser().parse_args(["webhook", "--webhook-addr", "127.0.0.1:28080"])
    assert settings_from(args).webhook_addr == HostPort("127.0.0.1", 28080)


def test_dev_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGESTREAM_REGISTRY_PORT", raising=False)
    args = build_parser().parse_args(["dev", "--webhook-port", "8181"])
    assert (args.state_dir, args.registry_port, args.webhook_port) == (".dev", 5000, 8181)


def test_an_invalid_log_format_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--log-format", "xml"])


@pytest.mark.parametrize("text", ["8080", "host:", "host:port", "h:70000"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(SettingsError):
        HostPort.parse(text)


def test_address_forms() -> None:
    assert HostPort.parse(":8080") == HostPort("0.0.0.0", 8080)
    assert str(HostPort.parse("[::1]:80")) == "[::1]:80"
