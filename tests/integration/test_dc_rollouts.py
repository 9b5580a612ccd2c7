"""DeploymentConfig rollouts that need no running pod, on the real control plane (issue 6).

The behaviours are docs/openshift-behaviours.md#behaviour-23 and
docs/openshift-behaviours.md#behaviour-24.

Here: a blank image never rolls out, paused stops new versions, the history limit prunes,
and a manual trigger acts only on `rollout latest` (behaviour 24). Every DeploymentConfig
here has zero replicas, so no pod is ever asked for. The rollouts whose pods must become
Ready (behaviour 23's first rollout and image change, Recreate and Rolling, a failed
rollout, undo and history) run on a real node: tests/node/test_deploymentconfig_rollouts.py.

Behaviour 22 (automatic triggers write images and lastTriggeredImage only together) is
`test_deploymentconfigs.py::test_behaviour_22_no_write_until_every_automatic_trigger_resolves`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from imagestream.cli import rollout
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.rollouts import (
    change_template,
    condition,
    dc_manifest,
    image_change,
    rolled_out,
    versions,
)
from tests.integration.workloads import imagestream, move_tag

REGISTRY = "registry.invalid:5000"
SETTLE_S = 1.5
"""How long to watch for a rollout that must not happen."""

Obj = dict[str, Any]


# --- behaviour 23: when versions start --------------------------------------------------------


async def test_a_blank_image_never_rolls_out(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "blank")
    await kube.create(DEPLOYMENTCONFIGS, namespace, dc_manifest("web", image=" ", replicas=0))
    await asyncio.sleep(SETTLE_S)
    assert await versions(kube, namespace, "web") == {}
    assert (await kube.get(DEPLOYMENTCONFIGS, namespace, "web")).get("status", {}).get(
        "latestVersion", 0
    ) == 0
    await kube.patch(
        DEPLOYMENTCONFIGS,
        namespace,
        "web",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "example/app:1",
            }
        ],
        patch_type="application/json-patch+json",
    )
    await rolled_out(kube, namespace, "web", 1)


# --- paused, history limit -----------------------------------------------------------------------


async def test_a_paused_deploymentconfig_does_not_roll_out(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "paused")
    await kube.create(DEPLOYMENTCONFIGS, namespace, dc_manifest("web", replicas=0, paused=True))

    async def paused_condition() -> Obj | None:
        dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        return (
            dc if condition(dc, "Progressing").get("reason") == "DeploymentConfigPaused" else None
        )

    dc = await eventually(paused_condition, what="Progressing says paused")
    assert dc["status"]["latestVersion"] == 0
    assert await versions(kube, namespace, "web") == {}

    await kube.patch(DEPLOYMENTCONFIGS, namespace, "web", {"spec": {"paused": False}})
    await rolled_out(kube, namespace, "web", 1)
    await kube.patch(DEPLOYMENTCONFIGS, namespace, "web", {"spec": {"paused": True}})
    await change_template(kube, namespace, "web", "while paused")
    await asyncio.sleep(SETTLE_S)
    assert (await kube.get(DEPLOYMENTCONFIGS, namespace, "web"))["status"]["latestVersion"] == 1
    assert set(await versions(kube, namespace, "web")) == {"web-1"}


async def test_revision_history_limit_prunes_old_versions(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "history")
    await kube.create(
        DEPLOYMENTCONFIGS, namespace, dc_manifest("web", replicas=0, revisionHistoryLimit=1)
    )
    await rolled_out(kube, namespace, "web", 1)
    for version in (2, 3, 4):
        await change_template(kube, namespace, "web", str(version))
        await rolled_out(kube, namespace, "web", version)

    async def pruned() -> set[str] | None:
        names = set(await versions(kube, namespace, "web"))
        return names if names == {"web-3", "web-4"} else None

    await eventually(pruned, what="only the active version and one older one are kept")


# --- the command: latest (behaviour 24) ---------------------------------------------------------


async def test_behaviour_24_a_manual_trigger_acts_only_on_rollout_latest(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "dc24")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    repository = f"{REGISTRY}/{namespace}/app"
    await move_tag(kube, namespace, "app", "v1", repository, "sha256:" + "1" * 64)
    await kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        dc_manifest(
            "web", image=" ", replicas=0, image_triggers=[image_change("app:v1", automatic=False)]
        ),
    )
    await asyncio.sleep(SETTLE_S)
    dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert dc["metadata"]["generation"] == 1, "a manual trigger writes nothing by itself"
    assert dc.get("status", {}).get("latestVersion", 0) == 0
    assert await versions(kube, namespace, "web") == {}

    assert await rollout.latest(kube, namespace, "web") == (
        "deploymentconfig.apps.openshift.io/web rolled out\n"
    )
    dc = await rolled_out(kube, namespace, "web", 1)
    image = f"{repository}@sha256:" + "1" * 64
    assert dc["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert dc["spec"]["triggers"][1]["imageChangeParams"]["lastTriggeredImage"] == image
    assert dc["spec"]["triggers"][1]["imageChangeParams"]["automatic"] is False
    assert dc["status"]["details"] == {"message": "manual change", "causes": [{"type": "Manual"}]}

    await move_tag(kube, namespace, "app", "v1", repository, "sha256:" + "2" * 64)
    await asyncio.sleep(SETTLE_S)
    dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert dc["status"]["latestVersion"] == 1
    assert dc["spec"]["template"]["spec"]["containers"][0]["image"] == image

    await rollout.latest(kube, namespace, "web")
    dc = await rolled_out(kube, namespace, "web", 2)
    assert (
        dc["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{repository}@sha256:" + "2" * 64
    )
