"""Figure 6 (issue 11): push to new pod Ready, on a real node, beside its floor.

Ours: skopeo pushes a new app image (`localdev.images.make_app_image`) to
`<registry>/bench-pods/app:latest`; the registry notifies the webhook, which
moves the ImageStream tag; the controller patches the Deployment that follows
it; kube-controller-manager, the scheduler, the kubelet and containerd roll
it to a new pod, which pulls the image by digest and passes its readiness
probe. Measured from just before the push until a pod watch (in the bench
process) first shows a pod Ready whose `imageID` is the pushed digest.

Floor, in the same run, alternating with ours push by push: the same push (to
a namespace nothing follows), then a minimal script patches the Deployment's
image to the digest (the controller's JSON Patch: test, test, replace), and
the same watch waits for the same kind of pod. No webhook, no ImageStream, no
controller: what is left is the push and the rollout itself.

Both Deployments are alike: one replica, `maxSurge: 1`, `maxUnavailable: 0`,
a readiness probe every second, no service account token, one second of
termination grace. Before each sample the previous rollout has ended (one
pod left), so every sample starts from the same state. Also reported, for
where the time goes: push returned, and Deployment patched (ours: seen
through a watch; floor: the PATCH answered).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    DeploymentWatch,
    create_namespace,
    deployment,
    image_of,
    latency_summary,
    patch_image,
    percentile,
    scaled,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Gone, KubeError
from imagestream.kube.resources import DEPLOYMENTS, PODS
from imagestream.objects import Obj
from localdev.images import APP_PORT, OciImage, make_app_image, skopeo_push

NAMESPACE = "bench-pods"
FLOOR_NAMESPACE = "bench-pods-floor"
PUSHES = 50
"""Per side at scale 1 (the issue asks for at least 50)."""
ROLLOUT_BUDGET_S = 120.0


def app_deployment(name: str, *, follows: str | None, image: str = " ") -> Obj:
    """One replica of the app image (container `main`), Ready once it serves its page."""
    body = deployment(name, follows=follows, image=image)
    spec = body["spec"]
    spec["replicas"] = 1
    spec["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec["template"]["spec"] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "main",
                "image": image,
                "ports": [{"containerPort": APP_PORT}],
                "readinessProbe": {"httpGet": {"path": "/", "port": APP_PORT}, "periodSeconds": 1},
            }
        ],
    }
    return body


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return (
        pod["metadata"].get("deletionTimestamp") is None
        and status.get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )


@dataclass
class PodWatch:
    """When a pod running each image was first seen Ready, and which pods exist, by watch."""

    kube: Kube
    namespace: str
    ready_at: dict[str, float] = field(default_factory=dict)
    """imageID -> monotonic time a Ready pod running it was first seen."""
    pods: dict[str, Obj] = field(default_factory=dict)
    counted: Callable[[Obj], bool] = lambda _pod: True
    """Which pods `wait_alone` counts (the builds figure leaves out build pods)."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> PodWatch:
        items, version = await self.kube.list(PODS, self.namespace)
        self.pods = {pod["metadata"]["name"]: pod for pod in items}
        self._task = asyncio.create_task(self._run(version))
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, version: str) -> None:
        while True:
            try:
                async for event in self.kube.watch(
                    PODS, self.namespace, resource_version=version, timeout_s=600
                ):
                    now = time.monotonic()
                    pod = event.get("object") or {}
                    version = str(pod.get("metadata", {}).get("resourceVersion") or version)
                    kind = event.get("type")
                    if kind not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    name = pod["metadata"]["name"]
                    if kind == "DELETED":
                        self.pods.pop(name, None)
                    else:
                        self.pods[name] = pod
                        if _ready(pod):
                            for status in pod["status"].get("containerStatuses") or []:
                                self.ready_at.setdefault(status.get("imageID", ""), now)
                    self._changed.set()
            except Gone:
                items, version = await self.kube.list(PODS, self.namespace)
                self.pods = {pod["metadata"]["name"]: pod for pod in items}
            except KubeError:
                await asyncio.sleep(0.2)

    async def _until(self, predicate: Any, what: str) -> None:
        try:
            async with asyncio.timeout(ROLLOUT_BUDGET_S):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"not seen within {ROLLOUT_BUDGET_S}s: {what}") from None

    async def wait_ready(self, image: str) -> float:
        await self._until(lambda: image in self.ready_at, f"a Ready pod running {image}")
        return self.ready_at[image]

    async def wait_alone(self) -> None:
        """Until exactly one pod is left (the previous rollout has ended)."""
        await self._until(
            lambda: sum(map(self.counted, self.pods.values())) == 1,
            f"one pod left in {self.namespace}",
        )


@dataclass
class Side:
    namespace: str
    host: str
    pods: PodWatch
    total: list[float] = field(default_factory=list)
    pushed: list[float] = field(default_factory=list)
    patched: list[float] = field(default_factory=list)

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.namespace}/app"


def _image(workdir: Path, side: Side, k: int) -> OciImage:
    marker = f"{side.namespace}-{k}-{uuid.uuid4().hex[:8]}"
    return make_app_image(workdir / "images" / marker, marker)


async def push_to_pod_ready(kube: Kube, host: str, workdir: Path, scale: float) -> dict[str, Any]:
    """Run figure 6 on a cluster with a node, the webhook and the controller already up.

    `host` is the integrated registry; the controller and webhook watch `NAMESPACE` only.
    """
    pushes = scaled(PUSHES, scale, minimum=5)
    for namespace in (NAMESPACE, FLOOR_NAMESPACE):
        await create_namespace(kube, namespace)
    await kube.create(DEPLOYMENTS, NAMESPACE, app_deployment("app", follows="app:latest"))
    ours = Side(NAMESPACE, host, await PodWatch(kube, NAMESPACE).start())
    floor = Side(FLOOR_NAMESPACE, host, await PodWatch(kube, FLOOR_NAMESPACE).start())
    deployments = await DeploymentWatch(kube, NAMESPACE).start()
    try:
        # Warm-up, not counted: the first image per side (containerd pulls the busybox
        # layer once; the stream is created; the floor's Deployment is created with it).
        image = await asyncio.to_thread(_image, workdir, ours, -1)
        await asyncio.to_thread(skopeo_push, image, f"{ours.repository}:latest")
        await ours.pods.wait_ready(f"{ours.repository}@{image.manifest_digest}")
        image = await asyncio.to_thread(_image, workdir, floor, -1)
        await asyncio.to_thread(skopeo_push, image, f"{floor.repository}:latest")
        first = f"{floor.repository}@{image.manifest_digest}"
        await kube.create(
            DEPLOYMENTS, FLOOR_NAMESPACE, app_deployment("app", follows=None, image=first)
        )
        await floor.pods.wait_ready(first)
        current = first
        for side in (ours, floor):
            await side.pods.wait_alone()

        async def one_of_ours(k: int) -> None:
            """Push; the registry, webhook, controller and cluster do the rest."""
            image = await asyncio.to_thread(_image, workdir, ours, k)
            pull_spec = f"{ours.repository}@{image.manifest_digest}"
            started = time.monotonic()
            await asyncio.to_thread(skopeo_push, image, f"{ours.repository}:latest")
            ours.pushed.append(time.monotonic() - started)
            ready = await ours.pods.wait_ready(pull_spec)
            ours.total.append(ready - started)
            patched = await deployments.wait_for(image.manifest_digest, f"{NAMESPACE}/app")
            ours.patched.append(patched - started)
            await ours.pods.wait_alone()

        async def one_of_the_floor(k: int) -> None:
            """The same push, then the patch a minimal script makes."""
            nonlocal current
            image = await asyncio.to_thread(_image, workdir, floor, k)
            pull_spec = f"{floor.repository}@{image.manifest_digest}"
            started = time.monotonic()
            await asyncio.to_thread(skopeo_push, image, f"{floor.repository}:latest")
            floor.pushed.append(time.monotonic() - started)
            answer = await patch_image(kube, FLOOR_NAMESPACE, "app", current, pull_spec)
            floor.patched.append(time.monotonic() - started)
            if image_of(answer) != pull_spec:
                raise RuntimeError(f"the floor's patch did not take: {image_of(answer)}")
            current = pull_spec
            ready = await floor.pods.wait_ready(pull_spec)
            floor.total.append(ready - started)
            await floor.pods.wait_alone()

        # Alternating which goes first, so neither side always follows the other's cleanup.
        for k in range(pushes):
            pair = (
                (one_of_ours, one_of_the_floor) if k % 2 == 0 else (one_of_the_floor, one_of_ours)
            )
            for measure in pair:
                await measure(k)
    finally:
        await deployments.stop()
        for side in (ours, floor):
            await side.pods.stop()

    ratio = round(percentile(ours.total, 0.99) / percentile(floor.total, 0.99), 3)
    # A difference of medians (not the median of differences: the sides alternate).
    added_p50 = round((percentile(ours.total, 0.5) - percentile(floor.total, 0.5)) * 1000, 2)
    return {
        "title": "push to new pod Ready (real node)",
        "unit": "ms",
        "pushes": pushes,
        "what": "skopeo push start -> a pod running the pushed digest (imageID) is Ready",
        "ours": {
            **latency_summary(ours.total),
            "push_returned": latency_summary(ours.pushed),
            "deployment_patched": latency_summary(ours.patched),
        },
        "floor": {
            **latency_summary(floor.total),
            "push_returned": latency_summary(floor.pushed),
            "deployment_patched": latency_summary(floor.patched),
            "how": "the same skopeo push, then the Deployment's image patched directly",
        },
        "p50_ours_minus_floor_ms": added_p50,
        "ratio": ratio,
        "goal": "(reported)",
    }
