"""The commands fail like kubectl and oc: one line on stderr, exit code 1, never a traceback.

Each case runs the real command (`python -m imagestream.cli ...`) as a
subprocess, as a user would, and asserts the exit code, that stderr is
exactly one line starting with `error:` that names the file or flag to fix,
and that no Python traceback was printed (issue 14, point 10).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from threading import Thread

import pytest

from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTCONFIGS
from localdev.controlplane import ControlPlane, free_port
from localdev.private import write_private
from tests.integration.conftest import new_namespace
from tests.integration.ports import held_port, pretend_registry
from tests.integration.rollouts import dc_manifest, image_change

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 120.0

# Commands that talk to the API server, with arguments that need nothing in it.
CLIENT_COMMANDS = {
    "explain": ["explain", "deployment/web"],
    "rollout-status": ["rollout", "status", "dc/web"],
    "start-build": ["start-build", "web"],
    "registry-login": ["registry", "login", "--to", "-"],
}


def command_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would configure the command behind our back."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("IMAGESTREAM_", "KUBERNETES_SERVICE_")) and name != "KUBECONFIG"
    }
    env.update(extra)
    return env


def run_command(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagestream.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=command_env() if env is None else env,
        timeout=timeout_s,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{result.stderr}"
    (line,) = lines
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert result.returncode == 1, (result.returncode, line)
    return line


def process_flags() -> list[str]:
    """Loopback addresses for a process command, so a failed test never binds 0.0.0.0."""
    return [
        f"--webhook-addr=127.0.0.1:{free_port()}",
        f"--health-addr=127.0.0.1:{free_port()}",
        f"--metrics-addr=127.0.0.1:{free_port()}",
        # The default receiver is integrated: it needs the integrated registry named.
        "--integrated-registry=127.0.0.1:5000",
        "--log-level=error",
    ]


def kubeconfig_for(path: Path, server: str) -> Path:
    write_private(
        path,
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-real-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n",
    )
    return path


# --- kubeconfig and server: every command that talks to the API server ---------------------


def _case(tmp_path: Path, case: str) -> tuple[list[str], dict[str, str], list[str]]:
    """(extra arguments, environment, what the error line must name) for one broken setup."""
    if case == "missing-file":
        path = tmp_path / "no-such-kubeconfig"
        return [f"--kubeconfig={path}"], command_env(), [str(path), "--kubeconfig", "no such file"]
    if case == "missing-file-in-env":
        path = tmp_path / "no-such-kubeconfig"
        return [], command_env(KUBECONFIG=str(path)), [str(path), "$KUBECONFIG", "no such file"]
    if case == "not-yaml":
        path = write_private(tmp_path / "broken", "clusters: [\n")
        return [f"--kubeconfig={path}"], command_env(), [str(path), "not valid YAML"]
    if case == "no-current-context":
        path = write_private(tmp_path / "empty", "apiVersion: v1\nkind: Config\n")
        return [f"--kubeconfig={path}"], command_env(), [str(path), "current-context"]
    if case == "none-and-not-in-a-cluster":
        return [], command_env(), ["--kubeconfig", "$KUBECONFIG"]
    if case == "server-unreachable":
        port = free_port()  # nothing listens there
        path = kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{port}")
        expected = [f"127.0.0.1:{port}", "connection refused", str(path), "--kubeconfig"]
        return [f"--kubeconfig={path}"], command_env(), expected
    raise AssertionError(case)


KUBECONFIG_CASES = [
    "missing-file",
    "missing-file-in-env",
    "not-yaml",
    "no-current-context",
    "none-and-not-in-a-cluster",
    "server-unreachable",
]


@pytest.mark.parametrize("case", KUBECONFIG_CASES)
@pytest.mark.parametrize("command", sorted(CLIENT_COMMANDS))
def test_a_client_command_names_what_is_wrong_with_the_kubeconfig_or_server(
    tmp_path: Path, command: str, case: str
) -> None:
    extra, env, expected = _case(tmp_path, case)
    result = run_command([*CLIENT_COMMANDS[command], *extra], env=env)
    assert_one_line_error(result, *expected)


@pytest.mark.parametrize("case", ["missing-file", "not-yaml", "server-unreachable"])
@pytest.mark.parametrize("command", ["run", "controller", "webhook"])
def test_a_process_command_names_what_is_wrong_with_the_kubeconfig_or_server(
    tmp_path: Path, command: str, case: str
) -> None:
    if command == "webhook" and case == "server-unreachable":
        pytest.skip("the webhook waits for its API server, not ready meanwhile (/readyz)")
    extra, env, expected = _case(tmp_path, case)
    token = write_private(tmp_path / "token", "process-command-token\n")
    args = [command, *extra, *process_flags(), f"--webhook-token-file={token}"]
    result = run_command(args, env=env)
    assert_one_line_error(result, *expected)


# --- addresses in use ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "server"), [("--webhook-addr", "webhook"), ("--health-addr", "health")]
)
def test_an_address_in_use_names_the_flag_that_sets_it(
    controlplane: ControlPlane, crds: list[str], tmp_path: Path, flag: str, server: str
) -> None:
    token = write_private(tmp_path / "token", "address-in-use-token\n")
    with held_port() as port:
        flags = [f for f in process_flags() if not f.startswith(flag + "=")]
        result = run_command(
            [
                "webhook",
                f"--kubeconfig={controlplane.kubeconfig_path}",
                f"--webhook-token-file={token}",
                *flags,
                f"{flag}=127.0.0.1:{port}",
            ]
        )
    assert_one_line_error(
        result, f"127.0.0.1:{port}", "address already in use", f"for the {server}", flag
    )


def run_dev_until_exit(args: Sequence[str], *, budget_s: float = 240) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `imagestream dev`; fails at once if it announces READY."""
    with subprocess.Popen(
        [sys.executable, "-m", "imagestream.cli", "dev", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=command_env(),
    ) as dev:
        assert dev.stdout is not None and dev.stderr is not None
        stderr: list[str] = []
        reader = Thread(target=lambda: stderr.extend(dev.stderr or []), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + budget_s
            stdout = ""
            for line in dev.stdout:  # ends when dev exits and closes it
                stdout += line
                assert not line.startswith("READY"), "dev announced READY with a part missing"
                assert time.monotonic() < deadline, "dev did not exit"
            code = dev.wait(timeout=budget_s)
            reader.join(timeout=10)
            return code, stdout, "".join(stderr)
        finally:
            if dev.poll() is None:
                dev.kill()  # our own child, by its PID; its children die with it (PDEATHSIG)
                dev.wait()


def test_dev_refuses_a_registry_port_in_use_instead_of_using_whatever_answers_there(
    tmp_path: Path,
) -> None:
    """Today's failure: another server answering /v2/ there made dev announce READY."""
    with pretend_registry() as port:
        code, stdout, stderr = run_dev_until_exit(
            [
                f"--state-dir={tmp_path / 'state'}",
                f"--registry-port={port}",
                f"--webhook-port={free_port()}",
            ]
        )
    result = subprocess.CompletedProcess([], code, stdout, stderr)
    assert_one_line_error(result, f"127.0.0.1:{port}", "address already in use", "--registry-port")


def test_dev_refuses_a_webhook_port_in_use(tmp_path: Path) -> None:
    with held_port() as port:
        code, stdout, stderr = run_dev_until_exit(
            [
                f"--state-dir={tmp_path / 'state'}",
                f"--registry-port={free_port()}",
                f"--webhook-port={port}",
            ]
        )
    result = subprocess.CompletedProcess([], code, stdout, stderr)
    assert_one_line_error(result, f"127.0.0.1:{port}", "address already in use", "--webhook-port")


# --- rollout status --watch --timeout -------------------------------------------------------


@pytest.mark.parametrize("duration", ["2", "2s"])
async def test_rollout_status_watch_fails_when_the_rollout_has_not_finished_by_the_timeout(
    controlplane: ControlPlane, kube: Kube, crds: list[str], duration: str
) -> None:
    namespace = await new_namespace(kube, "status-timeout")
    # Waits on an image that is never pushed: the rollout cannot finish.
    await kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        dc_manifest("web", image=" ", image_triggers=[image_change("never:pushed")]),
    )
    started = time.monotonic()
    result = await asyncio.to_thread(
        run_command,
        [
            "rollout",
            "status",
            "-w",
            f"--timeout={duration}",
            "-n",
            namespace,
            "dc/web",
            f"--kubeconfig={controlplane.kubeconfig_path}",
        ],
    )
    elapsed = time.monotonic() - started
    assert_one_line_error(result, "timed out", "dc/web", "--timeout")
    assert "waiting" in result.stdout.lower(), result.stdout  # what it was waiting for
    assert 2.0 <= elapsed < 60, elapsed
