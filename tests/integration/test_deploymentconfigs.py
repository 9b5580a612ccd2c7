"""DeploymentConfig image triggers (behaviour 22), and rollback awareness on annotation triggers.

See docs/openshift-behaviours.md#behaviour-22 and docs/openshift-behaviours.md#behaviour-19.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from imagestream.kube.resources import DEPLOYMENTCONFIGS, DEPLOYMENTS, EVENTS, IMAGESTREAMS
from localdev.images import make_oci_image, skopeo_push
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.workloads import TRIGGERS, images, imagestream, move_tag, trigger, workload

REGISTRY = "registry.invalid:5000"
SETTLE_S = 1.5


def deploymentconfig(
    name: str, triggers: list[dict[str, Any]], containers: list[str]
) -> dict[str, Any]:
    """An OpenShift DeploymentConfig manifest, placeholder images and all."""
    return {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"app": name},
            "triggers": [{"type": "ConfigChange"}, *triggers],
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": c, "image": " "} for c in containers]},
            },
        },
    }


def image_change(
    stream_tag: str, containers: list[str], *, automatic: bool = True
) -> dict[str, Any]:
    return {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": automatic,
            "containerNames": containers,
            "from": {"kind": "ImageStreamTag", "name": stream_tag},
        },
    }


def dc_state(dc: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    containers = {c["name"]: c["image"] for c in dc["spec"]["template"]["spec"]["containers"]}
    last = [
        t.get("imageChangeParams", {}).get("lastTriggeredImage", "")
        for t in dc["spec"]["triggers"]
        if t["type"] == "ImageChange"
    ]
    return containers, last


async def test_behaviour_22_no_write_until_every_automatic_trigger_resolves(system: System) -> None:
    namespace = await new_namespace(system.kube, "dc22")
    for name in ("a", "b"):
        await system.kube.create(IMAGESTREAMS, namespace, imagestream(name))
    await system.kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        deploymentconfig(
            "web",
            [
                image_change("a:v1", ["one"]),
                image_change("b:v1", ["two"]),
                image_change("b:v1", ["three"], automatic=False),
            ],
            ["one", "two", "three"],
        ),
    )
    a_image = f"{REGISTRY}/{namespace}/a@sha256:" + "a" * 64
    await move_tag(
        system.kube, namespace, "a", "v1", f"{REGISTRY}/{namespace}/a", "sha256:" + "a" * 64
    )
    await asyncio.sleep(SETTLE_S)
    dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert dc["metadata"]["generation"] == 1, "no write while b:v1 has never resolved"
    assert dc_state(dc) == ({"one": " ", "two": " ", "three": " "}, ["", "", ""])

    b_image = f"{REGISTRY}/{namespace}/b@sha256:" + "b" * 64
    await move_tag(
        system.kube, namespace, "b", "v1", f"{REGISTRY}/{namespace}/b", "sha256:" + "b" * 64
    )

    async def both() -> dict[str, Any] | None:
        current = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        return current if dc_state(current)[1][:2] == [a_image, b_image] else None

    dc = await eventually(both, what="both automatic triggers applied together")
    # The manual trigger (automatic: false) changes nothing on its own.
    assert dc_state(dc) == ({"one": a_image, "two": b_image, "three": " "}, [a_image, b_image, ""])


async def test_rollback_aware_opt_in_pauses_instead_of_reverting(system: System) -> None:
    namespace = await new_namespace(system.kube, "undo")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    body = workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    body["metadata"]["annotations"]["imagestream.dev/on-manual-change"] = "pause"
    await system.kube.create(DEPLOYMENTS, namespace, body)
    first = f"{REGISTRY}/{namespace}/app@sha256:" + "1" * 64
    await move_tag(
        system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", "sha256:" + "1" * 64
    )

    async def image_is(expected: str) -> dict[str, Any] | None:
        obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
        return obj if images(obj)["main"] == expected else None

    await eventually(lambda: image_is(first), what="first image applied")
    # Someone rolls back by hand (what `kubectl rollout undo` does to the template).
    await system.kube.patch(
        DEPLOYMENTS,
        namespace,
        "web",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "main", "image": "example/app:previous"}]}
                }
            }
        },
        patch_type="application/strategic-merge-patch+json",
    )

    async def paused() -> dict[str, Any] | None:
        obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
        entries = json.loads(obj["metadata"]["annotations"][TRIGGERS])
        return obj if entries[0].get("paused") else None

    obj = await eventually(paused, what="the trigger paused after the manual change")
    assert images(obj)["main"] == "example/app:previous"
    await move_tag(
        system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", "sha256:" + "2" * 64
    )
    await asyncio.sleep(SETTLE_S)
    assert (
        images(await system.kube.get(DEPLOYMENTS, namespace, "web"))["main"]
        == "example/app:previous"
    )

    async def explained() -> bool:  # Events are posted in the background
        events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
        return any(e["reason"] == "TriggerPausedAfterManualChange" for e in events["items"])

    await eventually(explained, what="an Event saying why the trigger paused")


async def test_a_push_updates_a_deploymentconfig(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "dcpush")
    await system.kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        deploymentconfig("web", [image_change("app:latest", ["web"])], ["web"]),
    )
    image = make_oci_image(tmp_path / "image", f"dc push {namespace}")
    skopeo_push(image, f"{system.registry.host}/{namespace}/app:latest")
    expected = f"{system.registry.host}/{namespace}/app@{image.manifest_digest}"

    async def applied() -> dict[str, Any] | None:
        dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        return dc if dc_state(dc) == ({"web": expected}, [expected]) else None

    await eventually(applied, what="the DeploymentConfig carries the pushed digest")
