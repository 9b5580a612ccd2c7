"""No secret in a file another user of the machine can read (issue 14, point 5).

Both systems the project runs on this machine are checked after a real push
has gone through them (so the registry has configured its notification
endpoint, logged what it logs, and delivered the token to the webhook):
`imagestream dev` (its state directory) and the tests' own system (the
session fixtures' temporary directories). Every file under them is read;
one that holds the webhook token or the API server's admin token must be
0600, the files that exist to hold secrets (token files, kubeconfigs, keys,
the registry's config, every log) must be 0600 whatever they hold, the
directories that hold them 0700, and the registry's log must not hold the
token at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagestream.kube.resources import IMAGESTREAMS
from localdev.controlplane import ControlPlane, free_port
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.devpush import push_and_wait_recorded
from tests.integration.proctree import READY_BUDGET_S, read_ready_line

EXIT_BUDGET_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def _files(root: Path) -> Iterable[Path]:
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _holding(roots: Iterable[Path], secrets: dict[str, str]) -> dict[str, list[Path]]:
    """Which files under `roots` hold which secret (by name)."""
    found: dict[str, list[Path]] = {name: [] for name in secrets}
    needles = {name: value.encode() for name, value in secrets.items()}
    for root in roots:
        for path in _files(root):
            try:
                content = path.read_bytes()
            except OSError:
                continue  # gone while we walked (a rotated log, a registry upload)
            for name, needle in needles.items():
                if needle in content:
                    found[name].append(path)
    return found


def _assert_private(
    roots: list[Path], secrets: dict[str, str], *, secret_files: list[Path], dirs: list[Path]
) -> dict[str, list[Path]]:
    holding = _holding(roots, secrets)
    readable = {
        str(path): oct(_mode(path))
        for paths in holding.values()
        for path in paths
        if _mode(path) & 0o077
    }
    assert readable == {}, f"secrets in files others can read: {readable}"
    wide_files = {str(p): oct(_mode(p)) for p in secret_files if _mode(p) != 0o600}
    assert wide_files == {}, f"secret-holding files not 0600: {wide_files}"
    wide_dirs = {str(d): oct(_mode(d)) for d in dirs if _mode(d) != 0o700}
    assert wide_dirs == {}, f"directories holding secrets not 0700: {wide_dirs}"
    return holding


def _admin_token(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["users"][0]["user"]["token"])


# --- imagestream dev -----------------------------------------------------------------------


@pytest.mark.timeout(READY_BUDGET_S + 300)  # start-up after any wait for the node
def test_the_dev_system_keeps_every_secret_to_its_owner(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagestream.cli",
            "dev",
            f"--state-dir={state}",
            f"--registry-port={free_port()}",
            f"--webhook-port={free_port()}",
            "--log-level=warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "KUBECONFIG": ""},
    ) as dev:
        try:
            ready = read_ready_line(dev)
            asyncio.run(
                push_and_wait_recorded(Path(ready["kubeconfig"]), ready["registry"], tmp_path)
            )
            dev.send_signal(signal.SIGINT)  # a whole run: every log as it is left behind
            assert dev.wait(timeout=EXIT_BUDGET_S) == 0
        finally:
            if dev.poll() is None:
                dev.kill()  # our own child, by its PID
                dev.wait()

    token = Path(ready["token_file"]).read_text().strip()
    secrets = {"webhook token": token, "admin token": _admin_token(Path(ready["kubeconfig"]))}
    pki = state / "controlplane" / "pki"
    logs = sorted((state / "logs").glob("*.log"))
    assert {p.name for p in logs} >= {"registry.log", "etcd.log", "kube-apiserver.log"}
    holding = _assert_private(
        [state],
        secrets,
        secret_files=[
            state / "webhook-token",
            state / "kubeconfig",
            state / "registry" / "config.yml",
            state / "controlplane" / "kubeconfig",
            pki / "tokens.csv",
            *pki.glob("*.key"),
            *logs,
        ],
        dirs=[state, state / "logs", state / "controlplane", pki, state / "registry"],
    )
    # distribution would log the notification headers; its config keeps them out.
    assert state / "logs" / "registry.log" not in holding["webhook token"]
    if ready["node"] is None:  # the host registry is the integrated one and notifies
        expected = {state / "webhook-token", state / "registry/config.yml"}
    else:  # the operator's registry notifies: the token is a Secret, in etcd's files
        etcd = state / "controlplane" / "etcd"
        expected = {
            state / "webhook-token",
            *(p for p in holding["webhook token"] if etcd in p.parents),
        }
    assert set(holding["webhook token"]) == expected


# --- the tests' own system -----------------------------------------------------------------


async def test_the_test_system_keeps_every_secret_to_its_owner(
    system: System,
    controlplane: ControlPlane,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    namespace = await new_namespace(system.kube, "secrets")
    digest = push(system, tmp_path, f"{namespace}/app:v1")

    async def recorded() -> dict[str, Any] | None:
        try:
            stream = await system.kube.get(IMAGESTREAMS, namespace, "app")
        except Exception:  # not created yet
            return None
        tags = (stream.get("status") or {}).get("tags") or []
        found = any((t.get("items") or [{}])[0].get("image") == digest for t in tags)
        return stream if found else None

    await eventually(recorded, timeout_s=60, what="the push recorded through the webhook")

    registry = system.registry.workdir
    system_dir = registry.parent
    pki = controlplane.workdir / "pki"
    secrets = {"webhook token": system.token, "admin token": controlplane.token}
    holding = _assert_private(
        # Every test's temporary directory of this session, not only the fixtures'.
        [tmp_path_factory.getbasetemp()],
        secrets,
        secret_files=[
            system_dir / "token",
            registry / "config.yml",
            registry / "registry.log",
            controlplane.kubeconfig_path,
            pki / "tokens.csv",
            *pki.glob("*.key"),
            *(controlplane.workdir / "logs").glob("*.log"),
        ],
        dirs=[system_dir, registry, controlplane.workdir, pki],
    )
    assert registry / "registry.log" not in holding["webhook token"]
