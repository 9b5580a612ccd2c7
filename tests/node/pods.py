"""What the node tier's tests share: the app's pod spec, and waits and watches on real pods.

Every workload here runs the app image (`localdev.images.make_app_image`:
busybox httpd serving a marker on port 8080), with a readiness probe on that
page, no service account token and a one-second termination grace, so a
rollout on this node takes seconds. A pod counts as running an image only by
its `imageID` (what containerd pulled), never by its template.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import NAMESPACES, PODS, Resource
from localdev.images import APP_PORT, make_app_image, skopeo_push
from tests.integration.conftest import eventually
from tests.integration.nodecluster import NodeCluster

Obj = dict[str, Any]

ROLLOUT_BUDGET_S = 120.0
"""For one rollout on this node: pull, start, probe (seconds in practice; 2 shared cores)."""
GONE_BUDGET_S = 90.0
"""For a namespace to go, its pods stopped (one-second grace) and its objects deleted."""


def app_container(name: str, *, probe_port: int = APP_PORT) -> Obj:
    """The app's container, image left to a trigger (OpenShift templates write " ")."""
    return {
        "name": name,
        "image": " ",
        "ports": [{"containerPort": APP_PORT}],
        # Probed every second; on two shared cores a probe may be slow, so a Ready pod
        # turns unready only after 5 s of failures (the Rolling test counts Ready pods).
        "readinessProbe": {
            "httpGet": {"path": "/", "port": probe_port},
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "failureThreshold": 5,
        },
    }


def app_pod_spec(container: str) -> Obj:
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "containers": [app_container(container)],
    }


def running_the_app(body: Obj, container: str) -> Obj:
    """`body` (a workload manifest) with the app's pod spec, keeping its restartPolicy."""
    body = copy.deepcopy(body)
    spec = body["spec"]["jobTemplate"]["spec"] if body["kind"] == "CronJob" else body["spec"]
    template = spec["template"]
    restart = template["spec"].get("restartPolicy")
    template["spec"] = app_pod_spec(container)
    if restart:
        template["spec"]["restartPolicy"] = restart
    return body


async def push_app(
    cluster: NodeCluster, workdir: Path, repo: str, marker: str, *, tag: str = "latest"
) -> str:
    """Make the app image serving `marker`, push it to `<registry>/<repo>:<tag>`; its digest.

    In a thread: the controller and webhook share this event loop, and the
    registry's notification must find the webhook answering.
    """

    def make_and_push() -> str:
        image = make_app_image(workdir / marker, marker)
        skopeo_push(image, f"{cluster.registry.host}/{repo}:{tag}")
        return image.manifest_digest

    return await asyncio.to_thread(make_and_push)


# --- what a pod is ----------------------------------------------------------------------------


def terminating(pod: Obj) -> bool:
    return pod["metadata"].get("deletionTimestamp") is not None


def ready(pod: Obj) -> bool:
    """Running, Ready by its probe, and not on its way out."""
    status = pod.get("status") or {}
    return (
        not terminating(pod)
        and status.get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )


def image_ids(pod: Obj) -> list[str]:
    return [s.get("imageID", "") for s in (pod.get("status") or {}).get("containerStatuses") or []]


def uid(pod: Obj) -> str:
    return str(pod["metadata"]["uid"])


async def pods(kube: Kube, namespace: str, selector: str) -> list[Obj]:
    listed, _ = await kube.list(PODS, namespace, label_selector=selector)
    return listed


async def wait_pods_running(
    kube: Kube, namespace: str, selector: str, image: str, *, count: int
) -> list[Obj]:
    """Exactly `count` pods match `selector`, each Ready and running `image` (its imageID).

    Exactly: a pod of another version still there, even terminating, is not
    "gone", so this is also the wait for the old pods to go.
    """

    async def check() -> list[Obj] | None:
        found = await pods(kube, namespace, selector)
        done = len(found) == count and all(
            ready(pod) and image_ids(pod) == [image] for pod in found
        )
        return found if done else None

    return await eventually(
        check,
        timeout_s=ROLLOUT_BUDGET_S,
        interval_s=0.2,
        what=f"{count} pod(s) {selector} in {namespace} Ready, running {image}, no other",
    )


async def delete_namespace(kube: Kube, namespace: str) -> None:
    """Delete `namespace` and wait until it is gone, with every pod in it."""
    with contextlib.suppress(NotFound):
        await kube.delete(NAMESPACES, None, namespace)

    async def gone() -> bool:
        try:
            await kube.get(NAMESPACES, None, namespace)
        except NotFound:
            return True
        return False

    await eventually(gone, timeout_s=GONE_BUDGET_S, interval_s=0.5, what=f"{namespace} deleted")


# --- what happened, in order --------------------------------------------------------------


@dataclass
class PodHistory:
    """Every state of a namespace's pods seen through one watch, in the API server's order.

    `states[i]` maps pod name to the pod as it was after the i-th event (the
    first is the list the watch started from); deleted pods leave it.
    """

    states: list[dict[str, Obj]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def watched_states(
    kube: Kube, resource: Resource, namespace: str, states: list[dict[str, Obj]]
) -> AsyncIterator[None]:
    """Append to `states` every state of `namespace`'s objects of `resource`, name to
    object, as one watch sees them (the first is the list it started from)."""
    items, version = await kube.list(resource, namespace)
    current = {obj["metadata"]["name"]: obj for obj in items}
    states.append(dict(current))

    async def follow() -> None:
        async for event in kube.watch(resource, namespace, resource_version=version, timeout_s=600):
            obj = event["object"]
            if event["type"] in ("ADDED", "MODIFIED"):
                current[obj["metadata"]["name"]] = obj
            elif event["type"] == "DELETED":
                current.pop(obj["metadata"]["name"], None)
            else:
                continue
            states.append(dict(current))

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def watching_pods(kube: Kube, namespace: str) -> AsyncIterator[PodHistory]:
    history = PodHistory()
    async with watched_states(kube, PODS, namespace, history.states):
        yield history
