"""DeploymentConfig rollouts on the real control plane (issue 6; behaviours 23 and 24).

The behaviours are docs/openshift-behaviours.md#behaviour-23 and
docs/openshift-behaviours.md#behaviour-24.

Behaviour 22 (automatic triggers write images and lastTriggeredImage only together) is
`test_deploymentconfigs.py::test_behaviour_22_no_write_until_every_automatic_trigger_resolves`.

kube-controller-manager runs the ReplicationControllers' pods; no kubelet runs them, so
`tests.integration.kubelet.Kubelet` marks them Ready, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from imagestream.cli import rollout
from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS, REPLICATIONCONTROLLERS
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.kubelet import Kubelet
from tests.integration.rollouts import (
    change_template,
    condition,
    dc_manifest,
    image_change,
    phase,
    rolled_out,
    versions,
)
from tests.integration.workloads import imagestream, move_tag

REGISTRY = "registry.invalid:5000"
SETTLE_S = 1.5
"""How long to watch for a rollout that must not happen."""

Obj = dict[str, Any]


@dataclass
class ReplicaLog:
    """Every (RC -> spec.replicas, status.replicas) state seen through a watch, in order."""

    states: list[dict[str, tuple[int, int]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def watching_replicas(kube: Kube, namespace: str) -> AsyncIterator[ReplicaLog]:
    log = ReplicaLog()
    current: dict[str, tuple[int, int]] = {}
    items, version = await kube.list(REPLICATIONCONTROLLERS, namespace)
    for rc in items:
        current[rc["metadata"]["name"]] = (
            rc["spec"].get("replicas", 0),
            rc.get("status", {}).get("replicas", 0),
        )
    log.states.append(dict(current))

    async def follow() -> None:
        async for event in kube.watch(
            REPLICATIONCONTROLLERS, namespace, resource_version=version, timeout_s=60
        ):
            rc = event["object"]
            if event["type"] in ("ADDED", "MODIFIED"):
                current[rc["metadata"]["name"]] = (
                    rc["spec"].get("replicas", 0),
                    rc.get("status", {}).get("replicas", 0),
                )
                log.states.append(dict(current))

    task = asyncio.create_task(follow())
    try:
        yield log
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- behaviour 23: when versions start --------------------------------------------------------


async def test_behaviour_23_first_rollout_waits_for_images_then_image_change_rolls_out(
    system: System,
) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "dc23")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    async with Kubelet(kube=kube, namespace=namespace):
        await kube.create(
            DEPLOYMENTCONFIGS,
            namespace,
            dc_manifest("web", image=" ", image_triggers=[image_change("app:v1")]),
        )
        await asyncio.sleep(SETTLE_S)
        dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        assert dc.get("status", {}).get("latestVersion", 0) == 0, "no image yet: no rollout"
        assert await versions(kube, namespace, "web") == {}

        first = f"{REGISTRY}/{namespace}/app@sha256:" + "1" * 64
        await move_tag(
            kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", "sha256:" + "1" * 64
        )
        dc = await rolled_out(kube, namespace, "web", 1)
        # OpenShift records the first rollout as a config change, though an image caused it.
        assert dc["status"]["details"] == {
            "message": "config change",
            "causes": [{"type": "ConfigChange"}],
        }
        rc = (await versions(kube, namespace, "web"))["web-1"]
        assert rc["metadata"]["labels"]["openshift.io/deployment-config.name"] == "web"
        assert rc["metadata"]["labels"]["deploymentconfig"] == "web"
        annotations = rc["metadata"]["annotations"]
        assert annotations["openshift.io/deployment-config.name"] == "web"
        assert annotations["openshift.io/deployment-config.latest-version"] == "1"
        assert '"latestVersion":1' in annotations["openshift.io/encoded-deployment-config"]
        (owner,) = rc["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "DeploymentConfig",
            "web",
            dc["metadata"]["uid"],
        )
        assert rc["spec"]["selector"] == {
            "app": "web",
            "deploymentconfig": "web",
            "deployment": "web-1",
        }
        assert rc["spec"]["template"]["spec"]["containers"][0]["image"] == first

        async def available() -> Obj | None:
            current = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
            status = current["status"]
            ok = (status.get("availableReplicas"), status.get("updatedReplicas")) == (1, 1)
            return (
                current if ok and condition(current, "Available").get("status") == "True" else None
            )

        dc = await eventually(available, what="one available, updated replica")
        assert dc["status"]["observedGeneration"] == dc["metadata"]["generation"]
        assert dc["status"]["unavailableReplicas"] == 0

        second = f"{REGISTRY}/{namespace}/app@sha256:" + "2" * 64
        await move_tag(
            kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", "sha256:" + "2" * 64
        )
        dc = await rolled_out(kube, namespace, "web", 2)
        assert dc["status"]["details"] == {
            "message": "image change",
            "causes": [
                {
                    "type": "ImageChange",
                    "imageTrigger": {"from": {"kind": "DockerImage", "name": second}},
                }
            ],
        }
        rcs = await versions(kube, namespace, "web")
        assert rcs["web-2"]["spec"]["template"]["spec"]["containers"][0]["image"] == second
        assert (rcs["web-1"]["spec"]["replicas"], rcs["web-2"]["spec"]["replicas"]) == (0, 1)


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


# --- strategies ---------------------------------------------------------------------------------


async def _second_version(kube: Kube, namespace: str, strategy: Obj) -> ReplicaLog:
    async with Kubelet(kube=kube, namespace=namespace):
        await kube.create(
            DEPLOYMENTCONFIGS, namespace, dc_manifest("web", replicas=2, strategy=strategy)
        )
        await rolled_out(kube, namespace, "web", 1)
        async with watching_replicas(kube, namespace) as log:
            await change_template(kube, namespace, "web", "2")
            await rolled_out(kube, namespace, "web", 2)
    rcs = await versions(kube, namespace, "web")
    assert (rcs["web-1"]["spec"]["replicas"], rcs["web-2"]["spec"]["replicas"]) == (0, 2)
    return log


async def test_recreate_stops_every_old_pod_before_starting_new_ones(system: System) -> None:
    namespace = await new_namespace(system.kube, "recreate")
    log = await _second_version(system.kube, namespace, {"type": "Recreate"})
    first_new = next(i for i, state in enumerate(log.states) if state.get("web-2", (0, 0))[0] > 0)
    # When web-2 first asks for pods, web-1 asks for none and has none left.
    assert log.states[first_new]["web-1"] == (0, 0), log.states


async def test_rolling_starts_new_pods_before_stopping_old_ones(system: System) -> None:
    namespace = await new_namespace(system.kube, "rolling")
    strategy = {"type": "Rolling", "rollingParams": {"maxSurge": 1, "maxUnavailable": 0}}
    log = await _second_version(system.kube, namespace, strategy)
    overlapping = [
        s for s in log.states if s.get("web-1", (0, 0))[0] > 0 and s.get("web-2", (0, 0))[0] > 0
    ]
    assert overlapping, f"old and new never ran side by side: {log.states}"
    # maxSurge 1 over 2 replicas: never more than 3 pods asked for.
    assert all(s.get("web-1", (0, 0))[0] + s.get("web-2", (0, 0))[0] <= 3 for s in log.states)


# --- paused, history limit, failure ---------------------------------------------------------------


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


async def test_a_failed_rollout_scales_the_last_complete_version_back_up(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "failed")
    strategy = {"type": "Rolling", "rollingParams": {"timeoutSeconds": 2}}
    async with Kubelet(kube=kube, namespace=namespace) as kubelet:
        await kube.create(DEPLOYMENTCONFIGS, namespace, dc_manifest("web", strategy=strategy))
        await rolled_out(kube, namespace, "web", 1)
        kubelet.paused = True  # the new version's pods never become ready
        await change_template(kube, namespace, "web", "never ready")

        async def failed() -> Obj | None:
            dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
            rcs = await versions(kube, namespace, "web")
            scaled_back = "web-2" in rcs and (
                rcs["web-1"]["spec"]["replicas"],
                rcs["web-2"]["spec"]["replicas"],
            ) == (1, 0)
            progressing = condition(dc, "Progressing")
            return (
                dc
                if scaled_back and progressing.get("reason") == "ProgressDeadlineExceeded"
                else None
            )

        dc = await eventually(failed, what="version 2 failed and version 1 scaled back up")
    assert condition(dc, "Progressing")["status"] == "False"
    assert phase((await versions(kube, namespace, "web"))["web-2"]) == "Failed"
    text, code = await rollout.status(kube, namespace, "web")
    assert code == 1 and 'replication controller "web-2" has failed progressing' in text


# --- the command: latest (behaviour 24), undo, history, status ----------------------------------


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


async def test_undo_rolls_back_and_history_tells_the_story(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "undo")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    repository = f"{REGISTRY}/{namespace}/app"
    first, second = (f"{repository}@sha256:" + c * 64 for c in "12")
    async with Kubelet(kube=kube, namespace=namespace):
        await kube.create(
            DEPLOYMENTCONFIGS,
            namespace,
            dc_manifest("web", image=" ", image_triggers=[image_change("app:latest")]),
        )
        await move_tag(kube, namespace, "app", "latest", repository, "sha256:" + "1" * 64)
        await rolled_out(kube, namespace, "web", 1)
        await move_tag(kube, namespace, "app", "latest", repository, "sha256:" + "2" * 64)
        await rolled_out(kube, namespace, "web", 2)

        text = await rollout.undo(kube, namespace, "web")
        assert text.startswith("deploymentconfig.apps.openshift.io/web rolled back\n")
        assert "app:latest" in text  # the trigger it disabled
        dc = await rolled_out(kube, namespace, "web", 3)
    assert dc["spec"]["template"]["spec"]["containers"][0]["image"] == first
    assert dc["spec"]["triggers"][1]["imageChangeParams"]["automatic"] is False
    assert dc["status"]["details"]["message"] == "rollback to revision 1"
    rcs = await versions(kube, namespace, "web")
    assert [rcs[f"web-{v}"]["spec"]["replicas"] for v in (1, 2, 3)] == [0, 0, 1]
    assert rcs["web-2"]["spec"]["template"]["spec"]["containers"][0]["image"] == second

    # The command line itself, as a user runs it.
    environment = os.environ | {"KUBECONFIG": str(system.running.settings.kubeconfig)}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "imagestream.cli", "rollout", "history", "-n", namespace, "dc/web"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["deploymentconfigs", '"web"']
    assert lines[1] == ["REVISION", "STATUS", "CAUSE"]
    assert lines[2:] == [
        ["1", "Complete", "config", "change"],
        ["2", "Complete", "image", "change"],
        ["3", "Complete", "rollback", "to", "revision", "1"],
    ]
    details = await rollout.history(kube, namespace, "web", revision=2)
    assert f"web:  {second}" in details and "ImageChange: " + second in details
    text, code = await rollout.status(kube, namespace, "web")
    assert (text, code) == ('replication controller "web-3" successfully rolled out\n', 0)
