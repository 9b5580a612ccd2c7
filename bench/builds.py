"""Figure 7 (issue 12): base image push to rolled pod Ready through a real build, on a node.

The loop: skopeo pushes a new base image (`localdev.images.make_app_image`) to
`<registry>/bench-builds/base:latest`; the registry notifies the webhook, which moves the
tag; the controller's BuildConfig loop starts a Build (ImageChange trigger); the Build's
Job pod runs buildah (the builder image made here, `localdev.builder`), pulls the base by
digest, runs the Dockerfile's one RUN under vfs, pushes to `bench-builds/app:latest` and
reports the digest; the controller records it on the output tag; the Deployment that
follows `app:latest` is patched and rolls to a pod of the built digest. Measured from
just before the push until a pod watch (in the bench process) first shows a pod Ready
whose `imageID` is the built digest.

Where the time goes, from the same run (a Build watch in the bench process; phases as
first seen): push to Build created, Build created to Running (Job, pod scheduled, the
builder container started), Running to Complete ("the build itself": buildah pulls,
builds, pushes), and Complete to pod Ready (tag, patch, rollout). The share of the
build is the median of (Running to Complete) / total, sample by sample.

No floor: no simpler script does a build. Each push starts once the previous rollout has
ended (one pod left).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import create_namespace, latency_summary, percentile, scaled
from bench.pods import PodWatch, app_deployment
from imagestream.kube.client import Kube
from imagestream.kube.errors import Gone, KubeError
from imagestream.kube.resources import BUILDCONFIGS, BUILDS, DEPLOYMENTS, IMAGESTREAMS
from imagestream.objects import Obj
from localdev.images import make_app_image, skopeo_push

NAMESPACE = "bench-builds"
BUILDS_PER_RUN = 10
"""At scale 1 (the issue asks for a p50 over at least 10 builds)."""
BUILD_BUDGET_S = 300.0
DOCKERFILE = (
    'FROM base\nRUN echo "<html><body>marker=built-$(date +%s)</body></html>" > /www/index.html\n'
)


def buildconfig() -> Obj:
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "app"},
        "spec": {
            "triggers": [{"type": "ImageChange", "imageChange": {}}],
            "source": {"type": "Dockerfile", "dockerfile": DOCKERFILE},
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "base:latest"}},
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
            "successfulBuildsHistoryLimit": 2,
        },
    }


@dataclass
class BuildWatch:
    """When each Build was first seen in each phase, and its output digest, by watch."""

    kube: Kube
    namespace: str
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> BuildWatch:
        _, version = await self.kube.list(BUILDS, self.namespace)
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
                    BUILDS, self.namespace, resource_version=version, timeout_s=600
                ):
                    now = time.monotonic()
                    build = event.get("object") or {}
                    version = str(build.get("metadata", {}).get("resourceVersion") or version)
                    if event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    name = build["metadata"]["name"]
                    status = build.get("status") or {}
                    self.seen.setdefault(name, {}).setdefault(status.get("phase") or "New", now)
                    digest = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
                    if digest:
                        self.digests[name] = digest
                    self._changed.set()
            except Gone:
                _, version = await self.kube.list(BUILDS, self.namespace)
            except KubeError:
                await asyncio.sleep(0.2)

    async def wait_ended(self, name: str) -> str:
        """The phase `name` ended in."""
        ends = ("Complete", "Failed", "Error", "Cancelled")
        try:
            async with asyncio.timeout(BUILD_BUDGET_S):
                while not any(p in self.seen.get(name, {}) for p in ends):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"build {name} did not end within {BUILD_BUDGET_S}s") from None
        return next(p for p in ends if p in self.seen[name])


async def push_to_rolled_pod(kube: Kube, host: str, workdir: Path, scale: float) -> dict[str, Any]:
    """Run figure 7 with the node, the webhook and the controller (watching NAMESPACE) up."""
    count = scaled(BUILDS_PER_RUN, scale, minimum=3)
    await create_namespace(kube, NAMESPACE)
    for stream in ("base", "app"):
        await kube.create(
            IMAGESTREAMS,
            NAMESPACE,
            {
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStream",
                "metadata": {"name": stream},
            },
        )
    await kube.create(DEPLOYMENTS, NAMESPACE, app_deployment("app", follows="app:latest"))
    await kube.create(BUILDCONFIGS, NAMESPACE, buildconfig())
    pods = await PodWatch(kube, NAMESPACE).start()
    builds = await BuildWatch(kube, NAMESPACE).start()
    base_repository = f"{host}/{NAMESPACE}/base"
    app_repository = f"{host}/{NAMESPACE}/app"
    total: list[float] = []
    phases: dict[str, list[float]] = {
        "to_created": [],
        "to_running": [],
        "build": [],
        "to_ready": [],
    }
    shares: list[float] = []
    try:
        # Build 1 is a warm-up, not counted (containerd pulls the builder image once).
        for number in range(1, count + 2):
            marker = f"base-{number}-{uuid.uuid4().hex[:8]}"
            image = await asyncio.to_thread(make_app_image, workdir / "images" / marker, marker)
            started = time.monotonic()
            await asyncio.to_thread(skopeo_push, image, f"{base_repository}:latest")
            name = f"app-{number}"
            phase = await builds.wait_ended(name)
            if phase != "Complete":
                raise RuntimeError(f"build {name} ended {phase}")
            built = f"{app_repository}@{builds.digests[name]}"
            ready = await pods.wait_ready(built)
            await pods.wait_alone()
            if number == 1:
                continue
            seen = builds.seen[name]
            created = seen.get("New", seen.get("Pending", started))
            running = seen.get("Running", seen.get("Pending", created))
            complete = seen["Complete"]
            total.append(ready - started)
            phases["to_created"].append(created - started)
            phases["to_running"].append(running - created)
            phases["build"].append(complete - running)
            phases["to_ready"].append(ready - complete)
            shares.append((complete - running) / (ready - started))
    finally:
        await builds.stop()
        await pods.stop()
    return {
        "title": "base image push to rolled pod Ready, through a real build (real node)",
        "unit": "ms",
        "builds": count,
        "what": "skopeo push of a new base -> Build -> tag -> a pod of the built digest Ready",
        "ours": {
            **latency_summary(total),
            "push_to_build_created": latency_summary(phases["to_created"]),
            "build_created_to_running": latency_summary(phases["to_running"]),
            "build_running_to_complete": latency_summary(phases["build"]),
            "build_complete_to_pod_ready": latency_summary(phases["to_ready"]),
        },
        "build_share_p50": round(percentile(shares, 0.5), 3),
        "goal": "(reported)",
    }
