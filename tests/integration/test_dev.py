"""`imagestream dev` brings the whole system up, announces READY, and cleans up on Ctrl-C;
when one of its parts stops, it stops too and says which and why.

With a node, the registry READY names is the operator's (behaviour 32): its Deployment in
`openshift-image-registry` is Available, a skopeo push from this host to the address dev
printed moves a tag, and the tag's image is recorded under the integrated registry's
hostname (`image-registry.openshift-image-registry.svc:5000`), which pods pull through the
node's containerd mirror."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from imagestream.kube.client import connect
from imagestream.kube.resources import DEPLOYMENTS
from localdev.controlplane import free_port
from tests.integration.devpush import push_and_wait_recorded
from tests.integration.proctree import (
    READY_BUDGET_S,
    descendants,
    read_ready_line,
    wait_all_gone,
)

EXIT_BUDGET_S = 60.0
# Start-up (after any wait for the node), the checks, the exit and its cleanup.
pytestmark = pytest.mark.timeout(READY_BUDGET_S + 300)


def test_dev_reaches_ready_and_exits_cleanly_on_sigint(tmp_path: Path) -> None:
    registry_port, webhook_port = free_port(), free_port()
    stderr_path = tmp_path / "dev.stderr"
    with (
        stderr_path.open("w") as err,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagestream.cli",
                "dev",
                f"--state-dir={tmp_path / 'state'}",
                f"--registry-port={registry_port}",
                f"--webhook-port={webhook_port}",
                "--log-format=json",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "KUBECONFIG": ""},
        ) as dev,
    ):
        try:
            _check_dev(
                dev, registry_port=registry_port, webhook_port=webhook_port, tmp_path=tmp_path
            )
        except AssertionError as error:
            err.flush()
            tail = "".join(stderr_path.read_text().splitlines(True)[-15:])
            raise AssertionError(f"{error}\n--- dev's stderr, last lines:\n{tail}") from None


def _check_dev(
    dev: subprocess.Popen[str], *, registry_port: int, webhook_port: int, tmp_path: Path
) -> None:
    try:
        ready = read_ready_line(dev)
        assert Path(ready["kubeconfig"]).is_file()
        assert Path(ready["token_file"]).read_text().strip()
        if ready["node"] is None:
            assert ready["registry"] == f"127.0.0.1:{registry_port}"
            assert ready["webhook"] == f"http://127.0.0.1:{webhook_port}"
        else:
            # The operator's registry, at its Service's fixed address; the webhook where
            # that registry's pod reaches it (the node's host-only address).
            assert ready["registry"] == "10.0.0.12:5000"
            assert ready["registry_hostname"] == "image-registry.openshift-image-registry.svc:5000"
            assert ready["webhook"] == f"http://10.244.255.1:{webhook_port}"
            assert Path(ready["kubectl"]).is_file()
        assert ready["metrics"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"http://{ready['registry']}/v2/", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{ready['health']}/readyz", timeout=5) as response:
            assert response.read() == b"ok"
        if ready["node"] is not None:
            kubeconfig = Path(ready["kubeconfig"])
            assert asyncio.run(_registry_deployment_available(kubeconfig))
            event = asyncio.run(push_and_wait_recorded(kubeconfig, ready["registry"], tmp_path))
            assert event["dockerImageReference"].startswith(f"{ready['registry_hostname']}/")

        children = descendants(dev.pid)
        # etcd, kube-apiserver, kube-controller-manager and the registry.
        assert len(children) >= 4, children

        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=EXIT_BUDGET_S) == 0
        assert wait_all_gone(children, timeout_s=EXIT_BUDGET_S) == set()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()


async def _registry_deployment_available(kubeconfig: Path) -> bool:
    kube = await connect(kubeconfig)
    try:
        deployment = await kube.get(DEPLOYMENTS, "openshift-image-registry", "image-registry")
    finally:
        await kube.close()
    conditions = (deployment.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def test_dev_exits_with_the_reason_when_one_of_its_parts_stops(tmp_path: Path) -> None:
    """Today's failure: with its registry gone, dev kept running and looked healthy."""
    registry_port, webhook_port = free_port(), free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagestream.cli",
            "dev",
            f"--state-dir={tmp_path / 'state'}",
            f"--registry-port={registry_port}",
            f"--webhook-port={webhook_port}",
            "--log-level=error",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "KUBECONFIG": ""},
    ) as dev:
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.extend(dev.stderr or []), daemon=True)
        reader.start()
        try:
            read_ready_line(dev)
            children = descendants(dev.pid)
            (registry,) = [pid for pid in children if "docker-registry" in _cmdline(pid)[0]]
            os.kill(registry, signal.SIGKILL)  # a child of the dev we started, by its PID
            assert dev.wait(timeout=EXIT_BUDGET_S) == 1
            assert wait_all_gone(children, timeout_s=EXIT_BUDGET_S) == set()
        finally:
            if dev.poll() is None:
                dev.kill()
                dev.wait()
        reader.join(timeout=10)
    text = "".join(stderr)
    assert "Traceback" not in text, text
    last = text.splitlines()[-1]
    assert last.startswith("error: docker-registry stopped (killed by SIGKILL)"), last
    assert str(tmp_path / "state" / "logs" / "registry.log") in last, last
