"""What a failing command prints: one line naming what to fix, or None for a bug."""

from __future__ import annotations

import pytest

from imagestream.cli.errors import CommandError, user_message
from imagestream.health import ListenError
from imagestream.kube.errors import KubeconfigError, Terminal, Unreachable
from imagestream.settings import HostPort
from localdev.processes import last_message
from webhook.config import ConfigError


def test_an_unreachable_server_names_the_server_and_where_it_came_from() -> None:
    error = Unreachable(
        server="https://127.0.0.1:1",
        reason="connection refused",
        source="kubeconfig /k (--kubeconfig)",
        request="GET /apis",
    )
    message = user_message(error)
    assert message is not None
    assert "https://127.0.0.1:1: connection refused" in message
    assert "kubeconfig /k (--kubeconfig)" in message


@pytest.mark.parametrize(
    ("server", "listen_flags", "flag"),
    [
        ("webhook", None, "--webhook-addr"),
        ("health", None, "--health-addr"),
        ("metrics", None, "--metrics-addr"),
        ("webhook", {"webhook": "--webhook-port"}, "--webhook-port"),
    ],
)
def test_an_address_in_use_names_its_flag(
    server: str, listen_flags: dict[str, str] | None, flag: str
) -> None:
    error = ListenError(server=server, addr=HostPort("127.0.0.1", 8080), reason="in use")
    message = user_message(error, listen_flags=listen_flags)
    assert message == f"cannot listen on 127.0.0.1:8080 for the {server}: in use (set {flag})"


def test_known_failures_are_one_line_and_others_are_bugs() -> None:
    for error in (
        KubeconfigError("cannot load kubeconfig /k (--kubeconfig):\n no such file"),
        CommandError("dev: a\npart stopped"),
        ConfigError("/c.yaml: receivers[0]: bad"),
        Terminal("403: forbidden\nby RBAC"),
    ):
        message = user_message(error)
        assert message is not None and "\n" not in message, error
    assert user_message(KeyError("a bug")) is None
    assert user_message(RuntimeError("a bug")) is None


@pytest.mark.parametrize(
    ("log", "message"),
    [
        (
            'time="t" level=fatal msg="listen tcp 127.0.0.1:5000: bind: address already in use"'
            " go.version=go1.19\n\n",
            "listen tcp 127.0.0.1:5000: bind: address already in use",
        ),
        ('{"level":"fatal","msg":"listen failed","error":"in use"}\n', "listen failed: in use"),
        ("first\nE1201 12:00 klog line\n", "E1201 12:00 klog line"),
        ("", "(nothing in its log)"),
    ],
)
def test_the_reason_a_part_stopped_is_its_last_log_message(log: str, message: str) -> None:
    assert last_message(log) == message
