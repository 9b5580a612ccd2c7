"""The operator's registry runs on the node and keeps images across restarts (behaviour 32).

A controller of this test's own, with `--registry-operator` and Debian's docker-registry
image (made here, pushed to the node's registry), on the node tier's cluster:

- `emptyDir`: the registry pod runs and is Ready; skopeo pushes an image from the host to
  the Service `image-registry` (its cluster IP, through kube-proxy); the registry container
  is restarted (its process killed: the kubelet starts it again in the same pod, whose
  emptyDir outlives it); the same digest is pulled back, every blob;
- `pvc`: with a default StorageClass and a hostPath PersistentVolume made by the test, the
  operator provisions its claim, the claim binds, the registry runs on it; a push, the pod
  deleted (a new pod on the same volume), and a pull of the same digest; the blobs are on
  the host directory;
- `Removed` at the end deletes the registry and the claim; the test deletes the volume,
  its directory and the namespace, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller import app as controller_app
from controller.registryoperator.plan import DEFAULT_CLAIM
from imagestream.kube.client import Kube, connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import (
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    REGISTRY_CONFIGS,
    SERVICES,
    STORAGECLASSES,
)
from imagestream.objects import Obj
from localdev import debian_images
from localdev.images import make_oci_image, skopeo_push
from localdev.system import local_settings, run_system
from tests.integration.conftest import eventually
from tests.integration.nodecluster import NodeCluster, http_get
from tests.integration.registryconfig import replace_registry_config
from tests.node.pods import delete_namespace, ready

NS = "openshift-image-registry"
SELECTOR = "docker-registry=default"
STORAGE_CLASS = "node-hostpath"
VOLUME = "image-registry-node-pv"
REGISTRY_UID = 65532
"""The uid the operator's registry pods run as (the chart's nonroot)."""
POD_BUDGET_S = 300.0
SKOPEO_TIMEOUT_S = 120


@contextlib.asynccontextmanager
async def operator(cluster: NodeCluster, image: str) -> AsyncIterator[None]:
    settings = local_settings(
        kubeconfig=cluster.plane.kubeconfig_path,
        registry_operator=True,
        registry_image=image,
        allowed_registries=(cluster.registry.host,),
    )
    async with run_system(settings, [controller_app.start]):
        yield


async def set_spec(kube: Kube, spec: dict[str, Any]) -> None:
    for _ in range(10):
        with contextlib.suppress(Conflict):
            await kube.patch(REGISTRY_CONFIGS, None, "cluster", {"spec": spec})
            return
    raise AssertionError("registry Config: too many conflicts")


async def running_registry(kube: Kube, *, not_uid: str = "") -> Obj:
    """The one registry pod, Ready (and not the pod `not_uid`)."""

    async def check() -> Obj | None:
        listed, _ = await kube.list(PODS, NS, label_selector=SELECTOR)
        current = [p for p in listed if p["metadata"]["uid"] != not_uid]
        if len(listed) == 1 and len(current) == 1 and ready(current[0]):
            return current[0]
        return None

    return await eventually(check, timeout_s=POD_BUDGET_S, interval_s=0.5, what="registry Ready")


def diagnosis(cluster: NodeCluster) -> str:
    """What a person would look at first when the registry does not come up."""
    return "\n".join(
        cluster.kubectl(*args, check=False)
        for args in (
            ("get", "pv,pvc,pods", "-n", NS, "-o", "wide"),
            ("describe", "pods", "-n", NS, "-l", SELECTOR),
            ("describe", "pvc", "-n", NS),
        )
    )


async def service_address(kube: Kube) -> str:
    """The Service's cluster IP and port, once it answers from the host (kube-proxy's rules
    for a new Service arrive a moment after the pod is Ready)."""
    service = await kube.get(SERVICES, NS, "image-registry")
    address = f"{service['spec']['clusterIP']}:5000"

    async def answers() -> bool:
        try:
            await asyncio.to_thread(http_get, f"http://{address}/v2/", timeout_s=2.0)
        except OSError:
            return False
        return True

    await eventually(answers, timeout_s=POD_BUDGET_S, interval_s=0.5, what=f"{address} answers")
    return address


def skopeo_copy(cluster: NodeCluster, source: str, destination: str) -> None:
    """skopeo copy over plain HTTP; a failure says skopeo's and the registry's last words."""
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            source,
            destination,
        ],
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        logs = cluster.kubectl("-n", NS, "logs", "-l", SELECTOR, "--tail=20", check=False)
        raise AssertionError(f"skopeo copy {source} {destination}: {done.stderr}\n{logs}")


def pull_digest(cluster: NodeCluster, source: str, directory: Path) -> str:
    """Copy `source` (every blob) into an OCI layout; the digest of its manifest."""
    skopeo_copy(cluster, f"docker://{source}", f"oci:{directory}:pulled")
    index = json.loads((directory / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


async def push_restart_pull(
    kube: Kube, cluster: NodeCluster, tmp_path: Path, restart: str
) -> tuple[str, Obj]:
    pod = await running_registry(kube)
    address = await service_address(kube)
    repository = f"regop-{uuid.uuid4().hex[:8]}/app"
    image = make_oci_image(tmp_path / uuid.uuid4().hex, f"{restart} {uuid.uuid4().hex}")
    await asyncio.to_thread(
        skopeo_copy, cluster, f"oci:{image.layout_dir}", f"docker://{address}/{repository}:latest"
    )
    if restart == "container":
        # The registry is PID 1 of its container; killing it restarts the container in
        # the same pod (restartPolicy Always), whose emptyDir outlives it.
        # The exec's own shell dies with the container: its exit status says nothing.
        cluster.kubectl(
            "-n", NS, "exec", pod["metadata"]["name"], "--", "sh", "-c", "kill 1", check=False
        )  # fmt: skip

        async def restarted() -> Obj | None:
            current = await kube.get(PODS, NS, pod["metadata"]["name"])
            statuses = (current.get("status") or {}).get("containerStatuses") or [{}]
            return current if statuses[0].get("restartCount", 0) >= 1 and ready(current) else None

        pod = await eventually(restarted, timeout_s=POD_BUDGET_S, interval_s=0.5, what="restart")
    else:
        await kube.delete(PODS, NS, pod["metadata"]["name"])
        pod = await running_registry(kube, not_uid=pod["metadata"]["uid"])
    # The restarted pod's endpoint comes back to kube-proxy a moment after it is Ready.
    address = await service_address(kube)
    pulled = await asyncio.to_thread(
        pull_digest, cluster, f"{address}/{repository}:latest", tmp_path / uuid.uuid4().hex
    )
    assert pulled == image.manifest_digest
    return pulled, pod


@pytest.mark.timeout(1200)
async def test_registry_keeps_images_across_restarts_on_emptydir_and_pvc(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the hostPath volume is made for the registry's uid: needs root")
    built = await asyncio.to_thread(debian_images.build, debian_images.REGISTRY)
    tag = built.digest.removeprefix("sha256:")[:16]
    await asyncio.to_thread(
        skopeo_push, built.image, f"{cluster.registry.host}/localdev/registry:{tag}"
    )
    image = f"{cluster.registry.host}/localdev/registry@{built.digest}"
    volume_dir = tmp_path / "volume"
    volume_dir.mkdir(mode=0o700)
    os.chown(volume_dir, REGISTRY_UID, REGISTRY_UID)
    kube = await connect(cluster.plane.kubeconfig_path)
    try:
        await install_crds(kube, load_crds())
        async with operator(cluster, image):
            try:
                await _emptydir_then_pvc(kube, cluster, tmp_path, volume_dir)
            finally:
                await _remove(kube)
        # With the operator stopped, or it would bootstrap a new one.
        with contextlib.suppress(NotFound):
            await kube.delete(REGISTRY_CONFIGS, None, "cluster")
    finally:
        await kube.close()
        shutil.rmtree(volume_dir)


async def _emptydir_then_pvc(
    kube: Kube, cluster: NodeCluster, tmp_path: Path, volume_dir: Path
) -> None:
    await replace_registry_config(
        kube, {"managementState": "Managed", "replicas": 1, "storage": {"emptyDir": {}}}
    )
    _, pod = await push_restart_pull(kube, cluster, tmp_path, "container")
    assert {"name": "registry-storage", "emptyDir": {}} in pod["spec"]["volumes"]

    await kube.create(
        STORAGECLASSES,
        None,
        {
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        },
    )
    await kube.create(
        PERSISTENTVOLUMES,
        None,
        {
            "metadata": {"name": VOLUME},
            "spec": {
                "capacity": {"storage": "100Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(volume_dir), "type": "Directory"},
            },
        },
    )
    await set_spec(kube, {"storage": {"emptyDir": None, "pvc": {"claim": ""}}})

    async def bound() -> bool:
        try:
            claim = await kube.get(PERSISTENTVOLUMECLAIMS, NS, DEFAULT_CLAIM)
        except NotFound:
            return False
        return (claim.get("spec") or {}).get("volumeName") == VOLUME

    try:
        await eventually(bound, timeout_s=POD_BUDGET_S, interval_s=0.5, what="claim bound")
    except TimeoutError:
        raise AssertionError(f"claim not bound:\n{diagnosis(cluster)}") from None

    async def on_the_claim() -> Obj | None:
        pod = await running_registry(kube)
        claims = [v.get("persistentVolumeClaim") for v in pod["spec"]["volumes"]]
        return pod if {"claimName": DEFAULT_CLAIM} in claims else None

    try:
        await eventually(on_the_claim, timeout_s=POD_BUDGET_S, interval_s=0.5, what="pod")
    except TimeoutError:
        raise AssertionError(f"no registry pod on the claim:\n{diagnosis(cluster)}") from None
    await push_restart_pull(kube, cluster, tmp_path, "pod")
    assert (volume_dir / "docker" / "registry" / "v2" / "blobs").is_dir()


async def _remove(kube: Kube) -> None:
    """Removed: the registry and the provisioned claim go; then what the test made."""
    with contextlib.suppress(NotFound):
        await set_spec(kube, {"managementState": "Removed"})

    async def claim_gone() -> bool:
        try:
            await kube.get(PERSISTENTVOLUMECLAIMS, NS, DEFAULT_CLAIM)
        except NotFound:
            return True
        return False

    try:
        await eventually(claim_gone, timeout_s=POD_BUDGET_S, interval_s=0.5, what="claim gone")
    finally:
        for resource, name in ((PERSISTENTVOLUMES, VOLUME), (STORAGECLASSES, STORAGE_CLASS)):
            with contextlib.suppress(NotFound):
                await kube.delete(resource, None, name)
        await delete_namespace(kube, NS)
