"""Playing the kubelet for the build tests, which run against the control plane without a node.

Only tests/integration/test_builds.py uses this. Every other test whose pods must run
or become Ready does so on the real node (tests/node/), where nothing is forged. Builds
do not run yet (a Build's Job pod needs a builder image made here), so the build tests
write what a kubelet would, through the `pods/status` subresource:

- `finish_build_pod(...)`: the build pod of a Job exits 0 with the pushed digest as its
  termination message, as `buildah push --digestfile /dev/termination-log` leaves it; the
  real Job controller then marks the Job Complete.
- `Kubelet(kube, namespace)`: while active, marks every other pod of the namespace Running
  and Ready, for the DeploymentConfig at the end of the whole build loop
  (`test_the_whole_loop_base_image_to_build_to_output_to_rollout`), whose rollout needs an
  available pod. Its pods' `imageID` stays empty: nothing here proves which image runs.

Once builds run on the node, this file goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound, Terminal
from imagestream.kube.resources import PODS

POLL_S = 0.1
MAX_POLLS = 3000
"""A bound on the loop (5 minutes at 0.1 s); a test never runs that long."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


async def _mark_ready(kube: Kube, pod: dict[str, Any]) -> None:
    """Write the status a kubelet writes once every container runs and passes readiness."""
    metadata = pod["metadata"]
    now = _now()
    containers = (pod.get("spec") or {}).get("containers") or []
    body = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }
    }
    with contextlib.suppress(NotFound, Conflict):
        await kube.patch(PODS, metadata["namespace"], metadata["name"], body, subresource="status")


@dataclass
class Kubelet:
    kube: Kube
    namespace: str
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for _ in range(MAX_POLLS):
            pods, _ = await self.kube.list(PODS, self.namespace)
            for pod in pods:
                metadata = pod["metadata"]
                if metadata.get("deletionTimestamp") or _ready(pod):
                    continue
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                if "openshift.io/build.name" in (metadata.get("labels") or {}):
                    continue  # build pods are finished by `finish_build_pod`
                await _mark_ready(self.kube, pod)
            await asyncio.sleep(POLL_S)

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def finish_build_pod(
    kube: Kube, namespace: str, job_uid: str, digest: str, *, exit_code: int = 0
) -> str:
    """The build container of the Job's pod ends, reporting `digest`; returns the pod name."""
    for _ in range(100):
        pods, _ = await kube.list(
            PODS, namespace, label_selector=f"batch.kubernetes.io/controller-uid={job_uid}"
        )
        if pods:
            break
        await asyncio.sleep(POLL_S)
    else:
        raise AssertionError(f"the Job {job_uid} made no pod")
    pod = pods[0]
    now = _now()
    body = {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": "build",
                    "image": pod["spec"]["containers"][0].get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "message": digest,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
    }
    try:
        await kube.patch(PODS, namespace, pod["metadata"]["name"], body, subresource="status")
    except Terminal as error:  # pragma: no cover - says what the API server refused
        raise AssertionError(f"pods/status refused: {error}") from error
    return str(pod["metadata"]["name"])
