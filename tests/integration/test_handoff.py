"""In `imagestream run` the webhook hands each status write to the controller in-process (issue 17).

The handoff (`imagestream.written`, `Informer.observe`) puts the object the
API server answered into the one ImageStream cache the two components share,
so the trigger loop plans at once instead of a watch event later. It only
wakes keys: the reconcile still plans from the cache, and the watch event of
the same write, arriving after, must change nothing. A handoff older than
what the cache holds must never win over it.

These tests use the session system: the composition of `imagestream run`
(controller and webhook in one process) on the session control plane
(kube-controller-manager included, so a rollout is a ReplicaSet), with a
probe component that only keeps the process's collaborators, to hand over an
old object the way the webhook hands over a new one. Notifications are
posted as the registry sends them. They assert the world: the
Deployment's images, its generation, its ReplicaSets and its Events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS, REPLICASETS
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.workloads import images, imagestream, trigger, workload

SETTLE_S = 2.0
"""How long to watch for a write that must not happen (a negative check has to wait)."""


async def notify(system: System, namespace: str, stream: str, digest: str) -> None:
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
                "request": {"host": system.registry.host},
            }
        ]
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{system.webhook_url}/v1/events/distribution",
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {system.token}",
                "Content-Type": "application/vnd.docker.distribution.events.v2+json",
            },
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def following(system: System) -> tuple[str, str]:
    """A namespace with stream `app` and a Deployment `web` following `app:v1`."""
    namespace = await new_namespace(system.kube, "handoff")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    return namespace, f"{system.registry.host}/{namespace}/app"


async def carries(system: System, namespace: str, image: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
        return obj if images(obj).get("main") == image else None

    return await eventually(check, what=f"web carries {image}")


async def replica_set_images(system: System, namespace: str) -> list[str]:
    sets, _ = await system.kube.list(REPLICASETS, namespace)
    return sorted(rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in sets)


async def triggered_notes(system: System, namespace: str) -> list[str]:
    events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
    return [
        e.get("note", "")
        for e in events.get("items") or []
        if e["reason"] == "ImageTriggered" and e["regarding"]["name"] == "web"
    ]


async def test_a_push_patches_once_and_rolls_once_though_the_watch_event_follows(
    system: System,
) -> None:
    namespace, repository = await following(system)
    created = await system.kube.get(DEPLOYMENTS, namespace, "web")
    digest = "sha256:" + "a" * 64
    await notify(system, namespace, "app", digest)
    patched = await carries(system, namespace, f"{repository}@{digest}")
    # The watch events of the status write and of the patch both arrive in this time;
    # neither may cause a second write.
    await asyncio.sleep(SETTLE_S)
    settled = await system.kube.get(DEPLOYMENTS, namespace, "web")
    assert settled["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert settled["spec"] == patched["spec"]  # kube-controller-manager writes status only

    async def rolled_once() -> list[str] | None:
        found = await replica_set_images(system, namespace)
        return found if f"{repository}@{digest}" in found else None

    assert (await eventually(rolled_once, what="the new ReplicaSet")).count(
        f"{repository}@{digest}"
    ) == 1

    async def explained() -> list[str] | None:  # Events are posted after the patch
        return await triggered_notes(system, namespace) or None

    assert len(await eventually(explained, what="the ImageTriggered Event")) == 1


async def test_handing_over_an_older_version_than_the_cache_holds_changes_nothing(
    system: System,
) -> None:
    namespace, repository = await following(system)
    first, second = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    await notify(system, namespace, "app", first)
    await carries(system, namespace, f"{repository}@{first}")
    older = await system.kube.get(IMAGESTREAMS, namespace, "app")
    await notify(system, namespace, "app", second)
    before = await carries(system, namespace, f"{repository}@{second}")

    # The stream as it was after the first push, handed over as if just written: were it
    # taken, the trigger would roll the Deployment back to the first digest.
    system.collaborators.written_imagestreams.publish(older)
    await asyncio.sleep(SETTLE_S)

    after = await system.kube.get(DEPLOYMENTS, namespace, "web")
    assert images(after).get("main") == f"{repository}@{second}"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    notes = await triggered_notes(system, namespace)
    assert len(notes) == 2, notes  # the two pushes, and no roll back
