"""Rollback awareness with the real `kubectl rollout undo` (issue 14, point 7).

With `imagestream.dev/on-manual-change: pause` a hand-made image change pauses the trigger
instead of being reverted (docs/openshift-behaviours.md#behaviour-19 says what OpenShift
does without it). The hand-made change users mean most is `kubectl rollout undo`, and for a
Deployment it does more than a template edit: k8s.io/kubectl's DeploymentRollbacker
replaces `/spec/template` AND `/metadata/annotations` with the old ReplicaSet's, which
kube-controller-manager copied from the Deployment when that ReplicaSet was new. So every
annotation the controller keeps on the Deployment comes back as it was then, and looks as
if nothing had changed by hand. These tests run the real kubectl against the real control
plane, whose kube-controller-manager makes the ReplicaSets and ControllerRevisions that
kubectl rolls back to.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS, REPLICASETS, Resource
from localdev.controlplane import ControlPlane
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.kubectl import kubectl_binary
from tests.integration.workloads import (
    RESOURCES,
    TRIGGERS,
    images,
    imagestream,
    move_tag,
    trigger,
    workload,
)

REGISTRY = "registry.invalid:5000"
SETTLE_S = 1.5
"""How long to watch for a write that must not happen (a negative check has to wait)."""
REPO = Path(__file__).resolve().parents[2]
CONTROLLERREVISIONS = Resource("apps", "v1", "controllerrevisions", "ControllerRevision")
"""What kubectl rolls StatefulSets and DaemonSets back to (the controller never reads them)."""


async def kubectl(plane: ControlPlane, *args: str) -> str:
    """Run kubectl against `plane` without blocking the loop the controller runs on."""
    process = await asyncio.create_subprocess_exec(
        await kubectl_binary(),
        f"--kubeconfig={plane.kubeconfig_path}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


def digest(n: int) -> str:
    return "sha256:" + str(n) * 64


async def trigger_paused(system: System, kind: str, namespace: str, name: str) -> bool:
    obj = await system.kube.get(RESOURCES[kind], namespace, name)
    return bool(json.loads(obj["metadata"]["annotations"][TRIGGERS])[0].get("paused"))


async def history_has(system: System, kind: str, namespace: str, image: str) -> bool:
    """Whether kube-controller-manager recorded a revision with `image` to roll back to."""
    if kind == "Deployment":
        sets, _ = await system.kube.list(REPLICASETS, namespace)
        # Listed items carry no `kind`, which `images()` reads.
        return any(image in json.dumps(rs["spec"]["template"]) for rs in sets)
    revisions, _ = await system.kube.list(CONTROLLERREVISIONS, namespace)
    return any(image in json.dumps(r.get("data")) for r in revisions)


async def follow(system: System, kind: str, namespace: str, n: int) -> str:
    """Move `app:v1` to image `n`; wait until the workload runs it and its history has it."""
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(n))
    image = f"{REGISTRY}/{namespace}/app@{digest(n)}"

    async def rolled() -> bool:
        obj = await system.kube.get(RESOURCES[kind], namespace, "web")
        return images(obj)["main"] == image and await history_has(system, kind, namespace, image)

    await eventually(rolled, what=f"{kind} web runs image {n}, and its history has it")
    return image


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
async def test_kubectl_rollout_undo_pauses_the_trigger_instead_of_being_reverted(
    system: System, controlplane: ControlPlane, kind: str
) -> None:
    namespace = await new_namespace(system.kube, "undo")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    body = workload(kind, "web", [trigger("app:v1", "main")], ["main"])
    body["metadata"]["annotations"]["imagestream.dev/on-manual-change"] = "pause"
    await system.kube.create(RESOURCES[kind], namespace, body)
    first = await follow(system, kind, namespace, 1)
    second = await follow(system, kind, namespace, 2)
    # kube-controller-manager records the Deployment's revision once the new ReplicaSet is in.
    await asyncio.sleep(0.5)

    await kubectl(controlplane, "rollout", "undo", "-n", namespace, f"{kind.lower()}/web")

    async def decided() -> dict[str, Any] | None:
        obj = await system.kube.get(RESOURCES[kind], namespace, "web")
        reverted = images(obj)["main"] == second
        paused = json.loads(obj["metadata"]["annotations"][TRIGGERS])[0].get("paused")
        return obj if reverted or paused else None

    obj = await eventually(decided, what="the controller paused the trigger or reverted the undo")
    assert images(obj)["main"] == first, "the controller reverted `kubectl rollout undo`"
    assert await trigger_paused(system, kind, namespace, "web")

    # Paused: a new image on the tag is not applied either.
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(3))
    await asyncio.sleep(SETTLE_S)
    assert images(await system.kube.get(RESOURCES[kind], namespace, "web"))["main"] == first

    async def explained() -> list[dict[str, Any]]:  # Events are posted in the background
        events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
        return [
            e
            for e in events["items"]
            if e["reason"] == "TriggerPausedAfterManualChange" and first in e.get("note", "")
        ]

    await eventually(explained, what="a Warning saying the trigger paused, naming the image kept")


async def test_unpausing_after_an_undo_follows_the_tag_again(
    system: System, controlplane: ControlPlane
) -> None:
    """The undo is kept until someone says otherwise; `paused: false` follows the tag again."""
    namespace = await new_namespace(system.kube, "unpause")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    body = workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    body["metadata"]["annotations"]["imagestream.dev/on-manual-change"] = "pause"
    await system.kube.create(DEPLOYMENTS, namespace, body)
    await follow(system, "Deployment", namespace, 1)
    second = await follow(system, "Deployment", namespace, 2)
    await asyncio.sleep(0.5)
    await kubectl(controlplane, "rollout", "undo", "-n", namespace, "deployment/web")
    await eventually(
        lambda: trigger_paused(system, "Deployment", namespace, "web"), what="trigger paused"
    )
    await kubectl(
        controlplane,
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "deployment/web",
        f"{TRIGGERS}={json.dumps([trigger('app:v1', 'main')])}",
    )

    async def following() -> bool:
        obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
        return images(obj)["main"] == second

    await eventually(following, what="unpaused, the Deployment follows the tag again")
