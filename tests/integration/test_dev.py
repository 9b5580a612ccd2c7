"""`imagestream dev` brings the whole system up, announces READY, and cleans up on Ctrl-C;
when one of its parts stops, it stops too and says which and why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from localdev.controlplane import free_port
from tests.integration.proctree import descendants, read_ready_line, wait_all_gone

EXIT_BUDGET_S = 60.0


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
            _check_dev(dev, registry_port=registry_port, webhook_port=webhook_port)
        except AssertionError as error:
            err.flush()
            tail = "".join(stderr_path.read_text().splitlines(True)[-15:])
            raise AssertionError(f"{error}\n--- dev's stderr, last lines:\n{tail}") from None


def _check_dev(dev: subprocess.Popen[str], *, registry_port: int, webhook_port: int) -> None:
    try:
        ready = read_ready_line(dev)
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
