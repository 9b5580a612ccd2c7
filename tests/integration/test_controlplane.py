"""The local control plane is a real one: version, CRUD, watch, and controllers."""

from __future__ import annotations

import asyncio
import re
import uuid

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from imagestream.kube.client import Kube
from localdev.controlplane import ControlPlane

BUDGET_S = 60.0


def _deployment(name: str, image: str) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


async def _namespace(kube: Kube) -> str:
    name = f"cp-{uuid.uuid4().hex[:8]}"
    await k8s.CoreV1Api(kube.api_client).create_namespace({"metadata": {"name": name}})
    return name


async def test_version_is_the_one_built(controlplane: ControlPlane, kube: Kube) -> None:
    version = await kube.server_version()
    assert re.fullmatch(r"v1\.3[5-7]\.\d+", version["gitVersion"]), version
    # The binaries were built with the version ldflags, not the v0.0.0-master default.
    assert version["major"] == "1"
    assert controlplane.version()["gitVersion"] == version["gitVersion"]


async def test_create_and_watch_a_deployment(kube: Kube) -> None:
    namespace = await _namespace(kube)
    apps = k8s.AppsV1Api(kube.api_client)
    created = await apps.create_namespaced_deployment(namespace, _deployment("web", "nginx:1"))
    seen_images: list[str] = []

    async def watch_for_new_image() -> None:
        stream = watch.Watch()
        async with stream.stream(
            apps.list_namespaced_deployment,
            namespace=namespace,
            resource_version=created.metadata.resource_version,
            timeout_seconds=int(BUDGET_S),
        ) as events:
            async for event in events:
                image = event["object"].spec.template.spec.containers[0].image
                seen_images.append(image)
                if image == "nginx:2":
                    return

    watcher = asyncio.create_task(watch_for_new_image())
    await asyncio.sleep(0.2)  # let the watch open before the change
    await apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}},
    )
    await asyncio.wait_for(watcher, BUDGET_S)
    assert seen_images[-1] == "nginx:2"


async def test_controller_manager_makes_a_replicaset(kube: Kube) -> None:
    namespace = await _namespace(kube)
    await k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(
        namespace, _deployment("rs-maker", "nginx:1")
    )
    async with asyncio.timeout(BUDGET_S):
        while True:
            replica_sets = await k8s.AppsV1Api(kube.api_client).list_namespaced_replica_set(
                namespace
            )
            if replica_sets.items:
                break
            await asyncio.sleep(0.2)
    (replica_set,) = replica_sets.items
    assert replica_set.metadata.owner_references[0].name == "rs-maker"
    assert replica_set.spec.template.spec.containers[0].image == "nginx:1"
