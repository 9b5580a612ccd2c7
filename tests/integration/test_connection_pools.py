"""Streams never starve requests: a process holding more watches than the request pool has
connections still lists, patches and answers its readiness check.

A controller in namespaced mode holds about fifteen watches per namespace. When watches
and requests shared one pool of `CONNECTION_POOL_SIZE` connections, twelve namespaces'
watches took them all, and the controller never became ready (no list could start).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from imagestream.kube.client import CONNECTION_POOL_SIZE, Kube, connect
from imagestream.kube.resources import NAMESPACES, Resource
from localdev.components import metric_sum
from localdev.controlplane import ControlPlane
from tests.integration.conftest import eventually

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
WATCHES = CONNECTION_POOL_SIZE + 16


async def _watches_served(plane: ControlPlane) -> float:
    """ConfigMap watches the API server is serving now, by its own gauge (read on a
    connection of its own, not the pools under test)."""
    text = await asyncio.to_thread(plane.get_raw, "/metrics")
    return metric_sum(text, "apiserver_longrunning_requests", resource="configmaps", verb="WATCH")


@contextlib.asynccontextmanager
async def _held_watches(
    plane: ControlPlane, kube: Kube, namespace: str, count: int
) -> AsyncIterator[None]:
    """`count` watches the API server serves (it says so), held until the block ends."""
    _, version = await kube.list(CONFIGMAPS, namespace)
    before = await _watches_served(plane)

    async def hold() -> None:
        async for _event in kube.watch(
            CONFIGMAPS, namespace, resource_version=version, timeout_s=300
        ):
            pass

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    try:
        await eventually(
            lambda: _at_least(plane, before + count),
            timeout_s=60.0,
            what=f"{count} watches served",
        )
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _at_least(plane: ControlPlane, wanted: float) -> bool:
    return await _watches_served(plane) >= wanted


async def test_requests_are_answered_while_more_watches_than_the_pool_are_open(
    controlplane: ControlPlane,
) -> None:
    kube = await connect(controlplane.kubeconfig_path)
    namespace = f"pools-{uuid.uuid4().hex[:8]}"
    try:
        await kube.create(NAMESPACES, None, {"metadata": {"name": namespace}})
        async with _held_watches(controlplane, kube, namespace, WATCHES):
            async with asyncio.timeout(20):
                assert await kube.reachable()
                made = await kube.create(
                    CONFIGMAPS, namespace, {"metadata": {"name": "after"}, "data": {"k": "v"}}
                )
                items, _ = await kube.list(CONFIGMAPS, namespace)
            assert made["data"] == {"k": "v"}
            assert "after" in {item["metadata"]["name"] for item in items}
    finally:
        await kube.delete(NAMESPACES, None, namespace)
        await kube.close()
