"""tilt/Tiltfile evaluates, with the real tilt (built from Go modules by localkube/build.sh).

`tilt alpha tiltfile-result` runs the Tiltfile as `tilt up` would, without deploying
anything and without a Docker engine, and prints the resources it defines; exit code 5
means a Tiltfile error. It runs against the session control plane, whose kube context is
the one local context the Tiltfile accepts besides kind-* and k3d-*.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localdev.controlplane import ControlPlane
from localdev.private import write_private
from tests.integration.helm import tool

REPO_ROOT = Path(__file__).resolve().parents[2]
TILTFILE = REPO_ROOT / "tilt" / "Tiltfile"
TILT_TIMEOUT_S = 180.0
TILTFILE_ERROR = 5


@pytest.fixture(scope="module")
def tilt() -> Path:
    return tool("tilt")


def _tiltfile_result(
    tilt: Path, kubeconfig: Path, home: Path
) -> tuple[subprocess.CompletedProcess[str], Any]:
    env = {
        "PATH": f"{tool('helm').parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
    }
    result = subprocess.run(
        [str(tilt), "alpha", "tiltfile-result", "--file", str(TILTFILE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TILT_TIMEOUT_S,
        check=False,
    )
    return result, json.loads(result.stdout) if result.returncode == 0 else None


def test_the_tiltfile_evaluates(tilt: Path, controlplane: ControlPlane, tmp_path: Path) -> None:
    result, loaded = _tiltfile_result(tilt, controlplane.kubeconfig_path, tmp_path)
    assert result.returncode == 0, result.stderr
    manifests = {manifest["Name"]: manifest for manifest in loaded["Manifests"]}
    assert {
        "crds",
        "controller",
        "webhook",
        "registry",
        "sample-imagestream",
        "sample-deployment",
        "push-test-image",
    } <= set(manifests)
    # crds -> controller -> webhook -> registry -> samples
    assert manifests["controller"]["ResourceDependencies"] == ["crds"]
    assert "controller" in manifests["webhook"]["ResourceDependencies"]
    assert manifests["registry"]["ResourceDependencies"] == ["webhook"]
    assert "registry" in manifests["push-test-image"]["ResourceDependencies"]
    # Both processes run the image Tilt builds, live-updated with the Python sources.
    for name in ("controller", "webhook"):
        (image,) = manifests[name]["ImageTargets"]
        syncs = image["LiveUpdateSpec"]["syncs"]
        assert {sync["localPath"] for sync in syncs} == {
            "../imagestream",
            "../controller",
            "../webhook",
        }
        assert all("/site-packages/" in sync["containerPath"] for sync in syncs)
    assert loaded["VersionSettings"] is not None


def test_the_tiltfile_refuses_other_contexts(
    tilt: Path, controlplane: ControlPlane, tmp_path: Path
) -> None:
    config = yaml.safe_load(controlplane.kubeconfig_path.read_text())
    config["contexts"][0]["name"] = "production-eu-1"
    config["current-context"] = "production-eu-1"
    kubeconfig = tmp_path / "kubeconfig"
    write_private(kubeconfig, yaml.safe_dump(config))
    result, _ = _tiltfile_result(tilt, kubeconfig, tmp_path)
    assert result.returncode == TILTFILE_ERROR, result.stderr
    assert "refusing kube context" in result.stderr
    assert "production-eu-1" in result.stderr
