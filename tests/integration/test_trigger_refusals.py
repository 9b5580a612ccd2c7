"""When the API server will not take a trigger's patch: refused, or the workload is gone.

Two 422s mean different things (docs/architecture.md, "API errors"): a JSON
Patch whose `test` op failed means our read was stale (plan again), and a
refusal by validation or an admission policy means someone decided against
the image (say why, back off). These tests refuse for real, with a
ValidatingAdmissionPolicy on the real control plane, and count the PATCH
requests with the API server's own `apiserver_request_total` metric.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.events import EventRecorder
from controller.loop.queue import WorkQueue
from controller.triggers.index import TriggerIndex
from controller.triggers.pullaccess import PullAccess
from controller.triggers.reactors import AnnotationReactor
from controller.triggers.reconciler import TriggerMetrics, TriggerReconciler
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import Invalid
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS
from localdev.components import metric_sum
from localdev.controlplane import ControlPlane
from tests.integration.admission import refuse_in_namespace
from tests.integration.conftest import (
    System,
    eventually,
    kube_with_crds,
    new_namespace,
    own_control_plane,
    push,
)
from tests.integration.workloads import images, imagestream, move_tag, trigger, workload

REFUSAL = "digest pull specs are not allowed here"
WATCH_S = 30.0
PATCH_BUDGET = 15
"""A capped exponential back-off from 50 ms makes about ten tries in 30 s; a loop without
back-off made about 150."""


def _refused_patches(plane: ControlPlane) -> float:
    """PATCHes of Deployments the API server answered 422, by its own count (no dry runs)."""
    return metric_sum(
        plane.get_raw("/metrics"),
        "apiserver_request_total",
        verb="PATCH",
        resource="deployments",
        code="422",
        dry_run="",
    )


async def _refuse_digests_in(kube: Kube, namespace: str) -> None:
    """A ValidatingAdmissionPolicy refusing any Deployment update to a digest in `namespace`."""
    await refuse_in_namespace(
        kube,
        name=f"no-digests-{namespace}",
        namespace=namespace,
        rule={"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]},
        expression="object.spec.template.spec.containers.all(c, !c.image.contains('@sha256:'))",
        message=REFUSAL,
    )


async def _policy_in_force(kube: Kube, namespace: str, name: str) -> bool:
    """The API server loads policies asynchronously: ask it, with a dry run."""
    path = DEPLOYMENTS.path(namespace=namespace, name=name)
    probe = [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": "probe@sha256:" + "0" * 64,
        }
    ]
    try:
        await kube.request(
            "PATCH", path, params={"dryRun": "All"}, body=probe, content_type=JSON_PATCH
        )
    except Invalid:
        return True
    return False


async def _events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    listed, _ = await kube.list(EVENTS, namespace)
    return [e for e in listed if (e.get("regarding") or {}).get("name") == name]


async def test_a_refused_image_leaves_the_workload_says_why_and_backs_off(
    system: System, controlplane: ControlPlane, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "refused")
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    await _refuse_digests_in(system.kube, namespace)

    async def in_force() -> bool:
        return await _policy_in_force(system.kube, namespace, "web")

    await eventually(in_force, timeout_s=30, interval_s=0.5, what="policy in force")
    before = _refused_patches(controlplane)
    push(system, tmp_path, f"{namespace}/app:v1")

    async def warned() -> dict[str, Any] | None:
        for event in await _events(system.kube, namespace, "web"):
            if event.get("reason") == "TriggerPatchRefused":
                return event
        return None

    warning = await eventually(warned, what="a TriggerPatchRefused Event")
    assert warning["type"] == "Warning"
    assert REFUSAL in warning["note"]
    await asyncio.sleep(WATCH_S)

    refused = _refused_patches(controlplane) - before
    assert 1 <= refused <= PATCH_BUDGET, f"{refused} refused PATCHes in {WATCH_S} s"
    deployment = await system.kube.get(DEPLOYMENTS, namespace, "web")
    assert "@sha256:" not in images(deployment)["main"]
    assert not [
        e
        for e in await _events(system.kube, namespace, "web")
        if e.get("reason") == "ImageTriggered"
    ]


@pytest.fixture
async def quiet_plane(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A control plane with no controller of ours: only the test's reconciler acts."""
    with own_control_plane(tmp_path_factory, "deleted-between") as plane:
        async with kube_with_crds(plane) as kube:
            yield kube


@pytest.mark.parametrize("deleted", [True, False], ids=["deleted", "present"])
async def test_a_workload_deleted_between_read_and_patch_gets_no_event(
    quiet_plane: Kube, deleted: bool
) -> None:
    kube = quiet_plane
    namespace = await new_namespace(kube, "gone")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    reactor = AnnotationReactor(DEPLOYMENTS)
    streams = InformerSet.create(kube, IMAGESTREAMS, [])
    deployments = InformerSet.create(kube, DEPLOYMENTS, [], transform=reactor.trim)
    registry = CollectorRegistry()
    events = EventRecorder(kube=kube, instance="test")
    reconciler = TriggerReconciler(
        kube=kube,
        queue=WorkQueue(),
        reactors={"deployments": reactor},
        caches={"deployments": deployments},
        streams=streams,
        index=TriggerIndex(),
        events=events,
        metrics=TriggerMetrics.create(registry),
        pull_access=PullAccess.reviewing(kube),
    )
    tasks = [asyncio.create_task(s.run()) for s in (streams, deployments)]
    try:
        await streams.wait_synced()
        await deployments.wait_synced()

        async def cached() -> bool:
            return bool(deployments.get(f"{namespace}/web") and streams.get(f"{namespace}/app"))

        await eventually(cached, what="deployment and stream cached")
        # The reconciler sees the trigger wait for its tag, then the tag moves: the patch
        # it plans is push-driven, so it would take a latency sample.
        assert await reconciler.reconcile(reactor.key(namespace, "web")) is None
        await move_tag(
            kube, namespace, "app", "v1", f"127.0.0.1:5000/{namespace}/app", "sha256:" + "a" * 64
        )

        async def moved() -> bool:
            stream = streams.get(f"{namespace}/app") or {}
            return bool((stream.get("status") or {}).get("tags"))

        await eventually(moved, what="the moved tag cached")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The cache now holds the Deployment as read; the API server may no longer.
    if deleted:
        await kube.delete(DEPLOYMENTS, namespace, "web")

    assert await reconciler.reconcile(reactor.key(namespace, "web")) is None
    await events.drain()

    triggered = [
        e for e in await _events(kube, namespace, "web") if e.get("reason") == "ImageTriggered"
    ]
    samples = registry.get_sample_value("imagestream_tag_to_patch_seconds_count") or 0.0
    patches = (
        registry.get_sample_value("imagestream_trigger_patches_total", {"resource": "deployments"})
        or 0.0
    )
    if deleted:
        assert (triggered, samples, patches) == ([], 0.0, 0.0)
    else:  # the same path with the workload there: it is patched and says so
        assert len(triggered) == 1
        assert (samples, patches) == (1.0, 1.0)
