"""`imagestream dev` brings the whole system up, announces READY, and cleans up on Ctrl-C."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localdev.controlplane import free_port
from tests.integration.proctree import descendants, wait_all_gone

READY_BUDGET_S = 180.0
EXIT_BUDGET_S = 60.0


def _read_ready_line(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_BUDGET_S
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            assert process.poll() is None, f"imagestream dev exited with {process.returncode}"
            continue
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"imagestream dev closed stdout (exit {process.wait()})")
        if line.startswith("READY "):
            return dict(json.loads(line.removeprefix("READY ")))
    raise AssertionError(f"no READY line within {READY_BUDGET_S}s")


def test_dev_reaches_ready_and_exits_cleanly_on_sigint(tmp_path: Path) -> None:
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
            "--log-format=json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "KUBECONFIG": ""},
    ) as dev:
        _check_dev(dev, registry_port=registry_port, webhook_port=webhook_port)


def _check_dev(dev: subprocess.Popen[str], *, registry_port: int, webhook_port: int) -> None:
    try:
        ready = _read_ready_line(dev)
        assert Path(ready["kubeconfig"]).is_file()
        assert Path(ready["token_file"]).read_text().strip()
        # With a node the registry is on the node's host-only address, so pods can pull.
        host = "127.0.0.1" if ready["node"] is None else ready["registry"].rpartition(":")[0]
        assert ready["registry"] == f"{host}:{registry_port}"
        assert host in ("127.0.0.1", "10.244.255.1")
        assert Path(ready["kubectl"]).is_file() or ready["node"] is None
        assert ready["metrics"].startswith("http://127.0.0.1:")
        assert ready["webhook"] == f"http://127.0.0.1:{webhook_port}"
        with urllib.request.urlopen(f"http://{ready['registry']}/v2/", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{ready['health']}/readyz", timeout=5) as response:
            assert response.read() == b"ok"

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
