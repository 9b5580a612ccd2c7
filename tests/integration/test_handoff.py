"""In `imagestream run` the webhook hands each status write to the controller in-process (issue 17).

The handoff (`imagestream.written`, `Informer.observe`) puts the object the
API server answered into the one ImageStream cache the two components share,
so the trigger loop plans at once instead of a watch event later. It only
wakes keys: the reconcile still plans from the cache, and the watch event of
the same write, arriving after, must change nothing. A handoff older than
what the cache holds must never win over it.

These tests run the same composition as `imagestream run` (controller and
webhook in one process, `starters_for("run")`) on the session control plane
(kube-controller-manager included, so a rollout is a ReplicaSet), and a probe
component that only keeps the process's collaborators, to hand over an old
object the way the webhook hands over a new one. They assert the world: the
Deployment's images, its generation, its ReplicaSets and its Events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from imagestream.cli.main import starters_for
from imagestream.health import ReadinessCheck
from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS, REPLICASETS
from imagestream.process import Collaborators
from localdev.controlplane import ControlPlane
from localdev.private import write_private
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.conftest import eventually, new_namespace
from tests.integration.workloads import images, imagestream, trigger, workload

SETTLE_S = 2.0
"""How long to watch for a write that must not happen (a negative check has to wait)."""
REGISTRY = "registry.handoff.test:5000"
"""The integrated registry's name in pull specs; nothing here contacts it (digests come from
the notifications, as an integrated receiver records them without `verify: registry`)."""


@dataclass
class Probe:
    """A component that does nothing but keep what the process gave its components."""

    collaborators: Collaborators
    name: str = "probe"
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    async def aclose(self) -> None:
        return None


@dataclass
class OneProcess:
    running: RunningSystem
    probe: Probe
    token: str
    kube: Kube


@pytest.fixture(scope="module")
async def one_process(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[OneProcess]:
    workdir = tmp_path_factory.mktemp("handoff")
    token = "handoff-token-" + uuid.uuid4().hex
    write_private(workdir / "token", token)
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=workdir / "token",
        integrated_registry=REGISTRY,
    )
    probes: list[Probe] = []

    async def probe(collaborators: Collaborators) -> Probe:
        probes.append(Probe(collaborators))
        return probes[-1]

    async with run_system(settings, [*starters_for("run"), probe]) as running:
        yield OneProcess(running=running, probe=probes[0], token=token, kube=kube)


async def notify(system: OneProcess, namespace: str, stream: str, digest: str) -> None:
    """One push notification, as the integrated registry sends it; answered once persisted."""
    body = {
        "events": [
            {
                "id": uuid.uuid4().hex,
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": f"{namespace}/{stream}",
                    "tag": "v1",
                },
                "request": {"host": REGISTRY},
            }
        ]
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{system.running.webhook_url}/v1/events/distribution",
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {system.token}",
                "Content-Type": "application/vnd.docker.distribution.events.v2+json",
            },
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def following(system: OneProcess) -> tuple[str, str]:
    """A namespace with stream `app` and a Deployment `web` following `app:v1`."""
    namespace = await new_namespace(system.kube, "handoff")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    return namespace, f"{REGISTRY}/{namespace}/app"


async def carries(system: OneProcess, namespace: str, image: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
        return obj if images(obj).get("main") == image else None

    return await eventually(check, what=f"web carries {image}")


async def replica_set_images(system: OneProcess, namespace: str) -> list[str]:
    sets, _ = await system.kube.list(REPLICASETS, namespace)
    return sorted(rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in sets)


async def triggered_notes(system: OneProcess, namespace: str) -> list[str]:
    events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
    return [
        e.get("note", "")
        for e in events.get("items") or []
        if e["reason"] == "ImageTriggered" and e["regarding"]["name"] == "web"
    ]


async def test_a_push_patches_once_and_rolls_once_though_the_watch_event_follows(
    one_process: OneProcess,
) -> None:
    namespace, repository = await following(one_process)
    created = await one_process.kube.get(DEPLOYMENTS, namespace, "web")
    digest = "sha256:" + "a" * 64
    await notify(one_process, namespace, "app", digest)
    patched = await carries(one_process, namespace, f"{repository}@{digest}")
    # The watch events of the status write and of the patch both arrive in this time;
    # neither may cause a second write.
    await asyncio.sleep(SETTLE_S)
    settled = await one_process.kube.get(DEPLOYMENTS, namespace, "web")
    assert settled["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert settled["spec"] == patched["spec"]  # kube-controller-manager writes status only

    async def rolled_once() -> list[str] | None:
        found = await replica_set_images(one_process, namespace)
        return found if f"{repository}@{digest}" in found else None

    assert (await eventually(rolled_once, what="the new ReplicaSet")).count(
        f"{repository}@{digest}"
    ) == 1

    async def explained() -> list[str] | None:  # Events are posted after the patch
        return await triggered_notes(one_process, namespace) or None

    assert len(await eventually(explained, what="the ImageTriggered Event")) == 1


async def test_handing_over_an_older_version_than_the_cache_holds_changes_nothing(
    one_process: OneProcess,
) -> None:
    namespace, repository = await following(one_process)
    first, second = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    await notify(one_process, namespace, "app", first)
    await carries(one_process, namespace, f"{repository}@{first}")
    older = await one_process.kube.get(IMAGESTREAMS, namespace, "app")
    await notify(one_process, namespace, "app", second)
    before = await carries(one_process, namespace, f"{repository}@{second}")

    # The stream as it was after the first push, handed over as if just written: were it
    # taken, the trigger would roll the Deployment back to the first digest.
    one_process.probe.collaborators.written_imagestreams.publish(older)
    await asyncio.sleep(SETTLE_S)

    after = await one_process.kube.get(DEPLOYMENTS, namespace, "web")
    assert images(after).get("main") == f"{repository}@{second}"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    notes = await triggered_notes(one_process, namespace)
    assert len(notes) == 2, notes  # the two pushes, and no roll back
