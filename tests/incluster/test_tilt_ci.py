"""`tilt ci -f tilt/Tiltfile` for real, against the local node, with no Docker engine.

Tilt builds our image (target `dev`) with buildah through the Tiltfile's
`custom_build` (`python -m localdev.project_image`), pushes it to the node's
registry (`default_registry`), deploys the chart with the dev values, the
dev registry (Debian's docker-registry at a fixed Service address the node
pulls from over HTTP and this machine reaches through kube-proxy) and the
samples, and exits 0 only when every resource is Ready. The push-test-image
resource ran once at start, so the sample Deployment, which follows the
sample ImageStream, has a pod running the pushed digest; the button's
action, run here as the command it is, pushes a fresh image and the sample
pod rolls to it. `tilt down` and the namespaces' deletion clean up, and
tilt is stopped by its PID if it outlives its budget.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localdev.controlplane import free_port
from localdev.private import write_private
from tests.incluster.conftest import (
    IMAGES_BUDGET_S,
    IN_CLUSTER_REGISTRY,
    IN_CLUSTER_REGISTRY_IP,
    Images,
    delete_namespace,
)
from tests.integration.helm import REPO_ROOT, helm_dir, tool
from tests.integration.nodecluster import NodeCluster, wait_for

TILTFILE = REPO_ROOT / "tilt" / "Tiltfile"
PUSH_SCRIPT = REPO_ROOT / "tilt" / "push-test-image.sh"
TILT_CI_BUDGET_S = 900  # a cold dev build is about a minute; pods on two shared cores
ROLLOUT_BUDGET_S = 120.0
STOP_BUDGET_S = 30.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(IMAGES_BUDGET_S + TILT_CI_BUDGET_S)]


@dataclass
class TiltRun:
    env: dict[str, str]
    namespace: str
    samples: str
    cluster: NodeCluster

    def run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """Run tilt in a process group of its own; on overrun, stop that group by its id."""
        with subprocess.Popen(
            [str(tool("tilt")), *args],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                output, _ = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    output, _ = process.communicate(timeout=STOP_BUDGET_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    output, _ = process.communicate()
                overran = f"tilt {args[0]} overran {timeout_s}s:\n{output[-4000:]}"
                raise AssertionError(overran) from None
        return subprocess.CompletedProcess(process.args, process.returncode, output, "")

    def demo_pod(self, image_prefix: str) -> dict[str, Any] | None:
        """The one live, Ready pod of the sample Deployment, if it runs an image by digest
        from `image_prefix`."""
        listed = self.cluster.get("-n", self.samples, "pods", "-l", "app=demo")["items"]
        live = [p for p in listed if p["metadata"].get("deletionTimestamp") is None]
        if len(live) != 1:
            return None
        status = live[0].get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        ids = [s.get("imageID", "") for s in status.get("containerStatuses") or []]
        return live[0] if ready and len(ids) == 1 and ids[0].startswith(image_prefix) else None


@pytest.fixture
def tilt_run(cluster: NodeCluster, images: Images, tmp_path: Path) -> Iterator[TiltRun]:
    suffix = uuid.uuid4().hex[:6]
    settings = {
        "namespace": f"tilt-{suffix}",
        "samples_namespace": f"tilt-demo-{suffix}",
        "default_registry": f"{cluster.registry.host}/tilt",
        "registry_cluster_ip": IN_CLUSTER_REGISTRY_IP,
        "registry_image": f"{images.registry_repository}:{images.registry_tag}",
        "builder": "buildah",
    }
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    kubeconfig = tmp_path / "kubeconfig"
    write_private(kubeconfig, cluster.plane.kubeconfig_path.read_text())
    env = {
        "PATH": os.pathsep.join(
            [str(helm_dir()), str(cluster.node.bin_dir), os.environ.get("PATH", "/usr/bin:/bin")]
        ),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "IMAGESTREAM_TILT_SETTINGS": str(settings_file),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
        "TILT_DISABLE_ANALYTICS": "1",
        **{k: v for k, v in os.environ.items() if k.startswith("IMAGESTREAM_CACHE")},
    }
    run = TiltRun(env, settings["namespace"], settings["samples_namespace"], cluster)
    try:
        yield run
    finally:
        try:
            run.run("down", "-f", str(TILTFILE), "--delete-namespaces", timeout_s=180)
        finally:
            for namespace in (run.samples, run.namespace):
                delete_namespace(cluster, namespace)


def test_tilt_ci_deploys_everything_ready_and_the_push_button_rolls_the_sample(
    tilt_run: TiltRun,
) -> None:
    port = free_port()
    result = tilt_run.run(
        "ci",
        "-f",
        str(TILTFILE),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--timeout",
        f"{TILT_CI_BUDGET_S - 60}s",
        timeout_s=TILT_CI_BUDGET_S,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    # Our image, built by buildah through custom_build, is what both processes run.
    assert "localdev.project_image" in result.stdout
    for component in ("controller", "webhook"):
        pods = tilt_run.cluster.get(
            "-n", tilt_run.namespace, "pods", "-l", f"app.kubernetes.io/component={component}"
        )["items"]
        assert pods, component
        for pod in pods:
            [status] = pod["status"]["containerStatuses"]
            assert status["ready"] is True, (component, status)
            assert status["imageID"].startswith(f"{tilt_run.cluster.registry.host}/tilt/"), status

    # push-test-image ran once at start: the sample pod runs what it pushed.
    repository = f"{IN_CLUSTER_REGISTRY}/{tilt_run.samples}/demo@"
    first = wait_for(
        lambda: tilt_run.demo_pod(repository),
        timeout_s=ROLLOUT_BUDGET_S,
        what="the sample pod runs the first pushed image",
    )
    first_image = first["status"]["containerStatuses"][0]["imageID"]

    pushed = subprocess.run(
        [str(PUSH_SCRIPT), IN_CLUSTER_REGISTRY, f"{tilt_run.samples}/demo:latest"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r"(sha256:[0-9a-f]{64})", pushed)
    assert match, pushed
    expected = repository + match.group(1)
    assert expected != first_image
    wait_for(
        lambda: tilt_run.demo_pod(expected),
        timeout_s=ROLLOUT_BUDGET_S,
        what=f"the sample pod rolls to {expected}",
    )
