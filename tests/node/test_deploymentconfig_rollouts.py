"""DeploymentConfig rollouts on a real node: our controller steps them, real pods run them.

Behaviours 23 and 24 are docs/openshift-behaviours.md#behaviour-23 and
docs/openshift-behaviours.md#behaviour-24. There is no deployer pod: the
controller (controller/rollouts/) moves replicas from the RCs' available
pods, and here those pods really start, pass their readiness probe (or, in
the failure test, never do) and stop. Each test pushes real images, waits
for the pods of the new version to be Running and Ready with the pushed
digest (`imageID`), and for the old version's pods to be gone.

The DeploymentConfig tests that need no running pod (a blank image, paused,
the history limit, a manual trigger) are tests/integration/test_dc_rollouts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagestream.cli import rollout
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS, REPLICATIONCONTROLLERS
from tests.integration.conftest import eventually
from tests.integration.rollouts import (
    condition,
    dc_manifest,
    image_change,
    phase,
    rolled_out,
    versions,
)
from tests.integration.workloads import imagestream
from tests.node.conftest import NodeSystem
from tests.node.pods import (
    ROLLOUT_BUDGET_S,
    PodHistory,
    image_ids,
    push_app,
    ready,
    running_the_app,
    uid,
    wait_pods_running,
    watching_pods,
)

SETTLE_S = 1.5
"""How long to watch for a rollout that must not happen."""
NEVER_READY_PORT = 8081
"""Nothing listens there: a probe on it never passes."""

Obj = dict[str, Any]


def app_dc(name: str, stream_tag: str, **options: Any) -> Obj:
    """A DeploymentConfig of the app, its image left to an ImageChange trigger on `stream_tag`."""
    return running_the_app(
        dc_manifest(name, image=" ", image_triggers=[image_change(stream_tag)], **options), "web"
    )


async def finished(kube: Kube, namespace: str, name: str, version: int) -> Obj:
    """`rolled_out`, with a budget for real pods (pull, start, probe)."""
    async with asyncio.timeout(ROLLOUT_BUDGET_S):
        return await rolled_out(kube, namespace, name, version)


def version_pods(state: dict[str, Obj], version: str) -> list[Obj]:
    return [pod for pod in state.values() if pod["metadata"]["labels"]["deployment"] == version]


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
            REPLICATIONCONTROLLERS, namespace, resource_version=version, timeout_s=300
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
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube, cluster = system.kube, system.cluster
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await kube.create(DEPLOYMENTCONFIGS, namespace, app_dc("web", "app:v1"))
    await asyncio.sleep(SETTLE_S)
    dc = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert dc.get("status", {}).get("latestVersion", 0) == 0, "no image yet: no rollout"
    assert await versions(kube, namespace, "web") == {}

    repository = f"{cluster.registry.host}/{namespace}/app"
    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-one", tag="v1")
    first = f"{repository}@{digest}"
    dc = await finished(kube, namespace, "web", 1)
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
    (pod,) = await wait_pods_running(kube, namespace, "deployment=web-1", first, count=1)

    async def available() -> Obj | None:
        current = await kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        status = current["status"]
        ok = (status.get("availableReplicas"), status.get("updatedReplicas")) == (1, 1)
        return current if ok and condition(current, "Available").get("status") == "True" else None

    dc = await eventually(available, what="one available, updated replica")
    assert dc["status"]["observedGeneration"] == dc["metadata"]["generation"]
    assert dc["status"]["unavailableReplicas"] == 0

    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-two", tag="v1")
    second = f"{repository}@{digest}"
    dc = await finished(kube, namespace, "web", 2)
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
    # The new version's pod runs the pushed digest; version 1's is gone.
    (new,) = await wait_pods_running(kube, namespace, "deploymentconfig=web", second, count=1)
    assert uid(new) != uid(pod)


# --- strategies -------------------------------------------------------------------------------


@dataclass
class SecondVersion:
    replicas: ReplicaLog
    pods: PodHistory


async def _second_version(
    system: NodeSystem, namespace: str, workdir: Path, strategy: Obj
) -> SecondVersion:
    """Two replicas rolled out from a push; a second push rolls them again, watched."""
    kube, cluster = system.kube, system.cluster
    repository = f"{cluster.registry.host}/{namespace}/app"
    await kube.create(
        DEPLOYMENTCONFIGS, namespace, app_dc("web", "app:latest", replicas=2, strategy=strategy)
    )
    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-one")
    await finished(kube, namespace, "web", 1)
    first = await wait_pods_running(
        kube, namespace, "deploymentconfig=web", f"{repository}@{digest}", count=2
    )
    async with watching_replicas(kube, namespace) as log, watching_pods(kube, namespace) as pods:
        digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-two")
        await finished(kube, namespace, "web", 2)
        second = await wait_pods_running(
            kube, namespace, "deploymentconfig=web", f"{repository}@{digest}", count=2
        )
    assert all(pod["metadata"]["labels"]["deployment"] == "web-2" for pod in second)
    assert not {uid(pod) for pod in first} & {uid(pod) for pod in second}
    rcs = await versions(kube, namespace, "web")
    assert (rcs["web-1"]["spec"]["replicas"], rcs["web-2"]["spec"]["replicas"]) == (0, 2)
    return SecondVersion(replicas=log, pods=pods)


async def test_recreate_stops_every_old_pod_before_starting_new_ones(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    seen = await _second_version(system, namespace, workdir, {"type": "Recreate"})
    log = seen.replicas.states
    first_new = next(i for i, state in enumerate(log) if state.get("web-2", (0, 0))[0] > 0)
    # When web-2 first asks for pods, web-1 asks for none and has none left.
    assert log[first_new]["web-1"] == (0, 0), log
    # On the node: when the first new pod appears, no old pod is serving any more.
    states = seen.pods.states
    first_pod = next(i for i, state in enumerate(states) if version_pods(state, "web-2"))
    assert not [p for p in version_pods(states[first_pod], "web-1") if ready(p)]
    assert not [
        state
        for state in states
        if any(ready(p) for p in version_pods(state, "web-1"))
        and any(ready(p) for p in version_pods(state, "web-2"))
    ], "old and new pods served side by side"


async def test_rolling_starts_new_pods_before_stopping_old_ones(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    strategy = {"type": "Rolling", "rollingParams": {"maxSurge": 1, "maxUnavailable": 0}}
    seen = await _second_version(system, namespace, workdir, strategy)
    log = seen.replicas.states
    overlapping = [
        s for s in log if s.get("web-1", (0, 0))[0] > 0 and s.get("web-2", (0, 0))[0] > 0
    ]
    assert overlapping, f"old and new never ran side by side: {log}"
    # maxSurge 1 over 2 replicas: never more than 3 pods asked for.
    assert all(s.get("web-1", (0, 0))[0] + s.get("web-2", (0, 0))[0] <= 3 for s in log)
    # On the node: old and new pods really served side by side, maxUnavailable 0 kept two
    # pods Ready all along, and maxSurge 1 never let more than three run.
    states = seen.pods.states
    assert any(
        any(ready(p) for p in version_pods(s, "web-1"))
        and any(ready(p) for p in version_pods(s, "web-2"))
        for s in states
    ), "no moment with old and new pods both Ready"
    assert all(len([p for p in s.values() if ready(p)]) >= 2 for s in states), [
        sorted(n for n, p in s.items() if ready(p)) for s in states
    ]
    assert all(
        len([p for p in s.values() if p["metadata"].get("deletionTimestamp") is None]) <= 3
        for s in states
    )


# --- failure ------------------------------------------------------------------------------------


async def test_a_failed_rollout_scales_the_last_complete_version_back_up(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube, cluster = system.kube, system.cluster
    strategy = {"type": "Rolling", "rollingParams": {"timeoutSeconds": 600}}
    await kube.create(DEPLOYMENTCONFIGS, namespace, app_dc("web", "app:latest", strategy=strategy))
    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-one")
    image = f"{cluster.registry.host}/{namespace}/app@{digest}"
    await finished(kube, namespace, "web", 1)
    (good,) = await wait_pods_running(kube, namespace, "deploymentconfig=web", image, count=1)

    # Version 2's pods never pass their probe; and it may take 5 s, not 600.
    async with watching_pods(kube, namespace) as seen:
        await kube.patch(
            DEPLOYMENTCONFIGS,
            namespace,
            "web",
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/port",
                    "value": NEVER_READY_PORT,
                },
                {
                    "op": "replace",
                    "path": "/spec/strategy/rollingParams/timeoutSeconds",
                    "value": 5,
                },
            ],
            patch_type=JSON_PATCH,
        )

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

        dc = await eventually(
            failed, timeout_s=60, what="version 2 failed and version 1 scaled back up"
        )
        # The old pod served all along; the new version's pod is gone.
        (kept,) = await wait_pods_running(kube, namespace, "deploymentconfig=web", image, count=1)
    assert uid(kept) == uid(good)
    assert condition(dc, "Progressing")["status"] == "False"
    assert phase((await versions(kube, namespace, "web"))["web-2"]) == "Failed"
    text, code = await rollout.status(kube, namespace, "web")
    assert code == 1 and 'replication controller "web-2" has failed progressing' in text
    states = seen.states
    assert any(version_pods(s, "web-2") for s in states), "version 2 never started a pod"
    assert not any(ready(p) for s in states for p in version_pods(s, "web-2"))
    assert all(
        any(uid(p) == uid(good) and ready(p) for p in version_pods(s, "web-1")) for s in states
    ), "the last complete version stopped serving"


# --- the command: undo, history, status ---------------------------------------------------------


async def test_undo_rolls_back_and_history_tells_the_story(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube, cluster = system.kube, system.cluster
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    repository = f"{cluster.registry.host}/{namespace}/app"
    await kube.create(DEPLOYMENTCONFIGS, namespace, app_dc("web", "app:latest"))
    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-one")
    first = f"{repository}@{digest}"
    await finished(kube, namespace, "web", 1)
    digest = await push_app(cluster, workdir, f"{namespace}/app", f"{namespace}-two")
    second = f"{repository}@{digest}"
    await finished(kube, namespace, "web", 2)
    await wait_pods_running(kube, namespace, "deploymentconfig=web", second, count=1)

    text = await rollout.undo(kube, namespace, "web")
    assert text.startswith("deploymentconfig.apps.openshift.io/web rolled back\n")
    assert "app:latest" in text  # the trigger it disabled
    dc = await finished(kube, namespace, "web", 3)
    assert dc["spec"]["template"]["spec"]["containers"][0]["image"] == first
    assert dc["spec"]["triggers"][1]["imageChangeParams"]["automatic"] is False
    assert dc["status"]["details"]["message"] == "rollback to revision 1"
    rcs = await versions(kube, namespace, "web")
    assert [rcs[f"web-{v}"]["spec"]["replicas"] for v in (1, 2, 3)] == [0, 0, 1]
    assert rcs["web-2"]["spec"]["template"]["spec"]["containers"][0]["image"] == second
    # The rollback really runs the first digest again, in a pod of version 3.
    (pod,) = await wait_pods_running(kube, namespace, "deploymentconfig=web", first, count=1)
    assert pod["metadata"]["labels"]["deployment"] == "web-3"
    assert image_ids(pod) == [first]

    # The command line itself, as a user runs it.
    environment = os.environ | {"KUBECONFIG": str(cluster.plane.kubeconfig_path)}
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
