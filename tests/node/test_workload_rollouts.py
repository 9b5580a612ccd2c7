"""A push rolls every annotated kind to new pods of the pushed digest, on a real node.

For Deployments, StatefulSets and DaemonSets (issue 11): two pushes to the
tag a workload follows; after each, the workload's pods are all new, Running,
Ready by their probe and running the pushed digest (`imageID`, what
containerd pulled), serve the marker built into that image, and no pod of
the previous version is left. For a CronJob the trigger changes the Jobs it
starts, not the ones it started: a Job created from it after each push
(`kubectl create job --from=cronjob/...`) runs the pushed digest and logs
its marker, and the first Job's pod keeps running the first digest.

The trigger-side behaviours (14-22) are tests/integration/test_triggers.py,
against the control plane alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.resources import CRONJOBS, REPLICASETS
from localdev.images import APP_PORT
from tests.integration.conftest import eventually
from tests.integration.nodecluster import http_get
from tests.integration.workloads import RESOURCES, images, trigger, workload
from tests.node.conftest import NodeSystem
from tests.node.pods import (
    image_ids,
    pods,
    push_app,
    ready,
    running_the_app,
    uid,
    wait_pods_running,
)

REPLICAS = {"Deployment": 2, "StatefulSet": 2, "DaemonSet": 1}
"""A DaemonSet has one pod per node, and this cluster has one node."""


def following(kind: str, replicas: int) -> dict[str, Any]:
    body = running_the_app(
        workload(kind, "app", [trigger("app:latest", "app", kind=kind)], ["app"]), "app"
    )
    if kind in ("Deployment", "StatefulSet"):
        body["spec"]["replicas"] = replicas
    if kind == "Deployment":
        body["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return body


async def settled_status(system: NodeSystem, kind: str, namespace: str) -> dict[str, Any]:
    """The workload once its controller reports the rollout done, by the kind's own status."""

    async def check() -> dict[str, Any] | None:
        obj = await system.kube.get(RESOURCES[kind], namespace, "app")
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        replicas = REPLICAS[kind]
        if kind == "DaemonSet":
            done = (status.get("updatedNumberScheduled"), status.get("numberReady")) == (1, 1)
        elif kind == "StatefulSet":
            done = (
                status.get("currentRevision") == status.get("updateRevision")
                and status.get("updatedReplicas") == replicas
                and status.get("readyReplicas") == replicas
            )
        else:
            done = (
                status.get("updatedReplicas"),
                status.get("availableReplicas"),
                status.get("replicas"),
            ) == (replicas, replicas, replicas)
        return obj if done else None

    return await eventually(check, timeout_s=60, interval_s=0.2, what=f"{kind} status settled")


@pytest.mark.parametrize("kind", list(REPLICAS))
async def test_a_push_rolls_the_workload_to_new_pods_of_that_digest(
    system: NodeSystem, namespace: str, workdir: Path, kind: str
) -> None:
    kube, cluster = system.kube, system.cluster
    replicas = REPLICAS[kind]
    await kube.create(RESOURCES[kind], namespace, following(kind, replicas))
    repository = f"{cluster.registry.host}/{namespace}/app"

    previous: set[str] = set()
    for marker in (f"{namespace}-one", f"{namespace}-two"):
        digest = await push_app(cluster, workdir, f"{namespace}/app", marker)
        image = f"{repository}@{digest}"
        running = await wait_pods_running(kube, namespace, "app=app", image, count=replicas)
        assert not previous & {uid(pod) for pod in running}, "a pod of the old version is left"
        for pod in running:
            page = await asyncio.to_thread(http_get, f"http://{pod['status']['podIP']}:{APP_PORT}/")
            assert marker in page
        obj = await settled_status(system, kind, namespace)
        assert images(obj)["app"] == image
        previous = {uid(pod) for pod in running}

    if kind == "StatefulSet":  # the same identities, new pods
        assert sorted(pod["metadata"]["name"] for pod in running) == ["app-0", "app-1"]
    if kind == "Deployment":  # the old ReplicaSets are kept, scaled to zero
        sets, _ = await kube.list(REPLICASETS, namespace)
        assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 0, replicas]


async def test_a_push_changes_the_jobs_a_cronjob_starts_not_the_ones_it_started(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube, cluster = system.kube, system.cluster
    await kube.create(CRONJOBS, namespace, following("CronJob", 1))
    repository = f"{cluster.registry.host}/{namespace}/app"

    started: dict[str, str] = {}  # Job name -> the image it was started with
    for job, marker in (("first", f"{namespace}-one"), ("second", f"{namespace}-two")):
        digest = await push_app(cluster, workdir, f"{namespace}/app", marker)
        image = f"{repository}@{digest}"

        async def patched(image: str = image) -> bool:
            cronjob = await kube.get(CRONJOBS, namespace, "app")
            return images(cronjob)["app"] == image

        await eventually(patched, what=f"the CronJob's jobTemplate carries {image}")
        await asyncio.to_thread(
            cluster.kubectl, "-n", namespace, "create", "job", job, "--from=cronjob/app"
        )
        (pod,) = await wait_pods_running(kube, namespace, f"job-name={job}", image, count=1)
        log = await asyncio.to_thread(
            cluster.kubectl, "-n", namespace, "logs", pod["metadata"]["name"]
        )
        assert f"app {marker} starting" in log
        started[job] = image

    # A Job started before the push is not the CronJob's template: it runs on, unchanged.
    (first,) = await pods(kube, namespace, "job-name=first")
    assert ready(first) and image_ids(first) == [started["first"]]
