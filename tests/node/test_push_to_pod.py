"""A push becomes a running pod of the pushed digest: the promise, end to end, on a real node.

skopeo pushes a runnable image to the registry; the registry's notification
reaches the webhook, which records the digest on the ImageStream tag; the
controller patches the Deployment that follows the tag; the real scheduler,
kubelet and containerd run the new pod, which passes its readiness probe and
serves the marker built into that image. The test reads the marker from the
pod over the pod network, so it proves which image runs, not only what the
template says.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from imagestream.kube.resources import DEPLOYMENTS, PODS
from localdev.images import APP_PORT
from tests.integration.conftest import eventually
from tests.integration.nodecluster import app_deployment, http_get
from tests.integration.workloads import trigger
from tests.node.conftest import NodeSystem
from tests.node.pods import push_app

ROLLOUT_BUDGET_S = 90.0


def following(name: str, stream_tag: str) -> dict[str, Any]:
    """The app Deployment, its image left to the trigger (as OpenShift templates write it)."""
    body = app_deployment(name, " ")
    body["metadata"]["annotations"] = {
        "image.openshift.io/triggers": json.dumps([trigger(stream_tag, "app")])
    }
    return body


async def ready_pods(system: NodeSystem, namespace: str, app: str) -> list[dict[str, Any]]:
    listed, _ = await system.kube.list(PODS, namespace, label_selector=f"app={app}")
    return [
        pod
        for pod in listed
        if pod["metadata"].get("deletionTimestamp") is None
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
    ]


async def wait_running(system: NodeSystem, namespace: str, app: str, image: str) -> dict[str, Any]:
    """The one Ready pod of `app`, once it runs `image` (by digest) and nothing else is left."""

    async def check() -> dict[str, Any] | None:
        listed, _ = await system.kube.list(PODS, namespace, label_selector=f"app={app}")
        ready = await ready_pods(system, namespace, app)
        if len(listed) != 1 or len(ready) != 1:
            return None
        statuses = ready[0]["status"].get("containerStatuses") or []
        return ready[0] if [s.get("imageID") for s in statuses] == [image] else None

    return await eventually(
        check, timeout_s=ROLLOUT_BUDGET_S, interval_s=0.2, what=f"{app} runs {image}"
    )


async def test_a_push_rolls_the_deployment_to_a_running_pod_of_that_digest(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    cluster = system.cluster
    await system.kube.create(DEPLOYMENTS, namespace, following("web", "app:latest"))
    repository = f"{cluster.registry.host}/{namespace}/app"

    for marker in ("first-build", "second-build"):
        digest = await push_app(cluster, workdir, f"{namespace}/app", marker)
        pod = await wait_running(system, namespace, "web", f"{repository}@{digest}")
        deployment = await system.kube.get(DEPLOYMENTS, namespace, "web")
        template = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert template == f"{repository}@{digest}"
        page = await asyncio.to_thread(http_get, f"http://{pod['status']['podIP']}:{APP_PORT}/")
        assert marker in page
