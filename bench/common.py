"""What every benchmark section shares: object builders, notifications, the watch, stats.

Everything here talks to the API server through `imagestream.kube.client.Kube`,
the client the controller and the webhook use, with the same connection
settings, so a floor and the figure it is paired with differ only in what
our processes add.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from imagestream.imagestreams import TagEvent, copy_for_write, record, refresh_summary
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import Gone, KubeError
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS, NAMESPACES, Resource
from imagestream.objects import Obj
from imagestream.timestamps import rfc3339_micro

TRIGGERS = "image.openshift.io/triggers"
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
POST_ATTEMPTS = 50
"""Per notification, on 503/429 (the sender retries, as distribution does)."""
POST_RETRY_S = 0.05
WAIT_BUDGET_S = 120.0


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


BASE_TIME = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
"""Push times are offsets (at most a day) from here: in the past, within the week before
receipt in which the webhook believes a payload's push time (webhook/intake.py)."""


def timestamp(offset_s: float) -> str:
    return rfc3339_micro(BASE_TIME + timedelta(seconds=offset_s))


# --- objects ------------------------------------------------------------------------------


async def create_namespace(kube: Kube, name: str) -> str:
    await kube.create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


def imagestream(name: str) -> Obj:
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {},
    }


def deployment(name: str, *, follows: str | None, image: str = " ") -> Obj:
    """A Deployment with one container `main`, following `stream:tag` when `follows` is set.

    replicas 0: nothing in the benchmark needs pods.
    """
    labels = {"app": name}
    metadata: Obj = {"name": name, "labels": labels}
    if follows:
        metadata["annotations"] = {
            TRIGGERS: json.dumps(
                [
                    {
                        "from": {"kind": "ImageStreamTag", "name": follows},
                        "fieldPath": 'spec.template.spec.containers[?(@.name=="main")].image',
                    }
                ]
            )
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def image_of(obj: Obj) -> str:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return str(containers[0].get("image", ""))


async def in_parallel(
    items: Iterable[Any], work: Callable[[Any], Awaitable[Any]], *, concurrency: int
) -> list[Any]:
    """`work(item)` for every item, at most `concurrency` at once; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def create_all(
    kube: Kube, resource: Resource, namespace: str, bodies: Sequence[Obj], *, concurrency: int = 16
) -> list[Obj]:
    async def create(body: Obj) -> Obj:
        return await kube.create(resource, namespace, body)

    return await in_parallel(bodies, create, concurrency=concurrency)


async def write_tag(
    kube: Kube, stream: Obj, tag: str, digest: str, reference: str, created: str
) -> Obj:
    """One raw status write: the tag event, on the object as last written (no read)."""
    metadata = stream["metadata"]
    body = copy_for_write(stream)
    record(
        body,
        tag,
        TagEvent(
            created=created,
            docker_image_reference=f"{reference}@{digest}",
            image=digest,
            generation=int(metadata.get("generation") or 1),
        ),
    )
    refresh_summary(body)
    return await kube.replace(
        IMAGESTREAMS, metadata["namespace"], metadata["name"], body, subresource="status"
    )


def image_patch(old: str, new: str) -> list[Obj]:
    """The JSON Patch the controller sends for one container: test, test, replace."""
    path = "/spec/template/spec/containers/0"
    return [
        {"op": "test", "path": f"{path}/name", "value": "main"},
        {"op": "test", "path": f"{path}/image", "value": old},
        {"op": "replace", "path": f"{path}/image", "value": new},
    ]


async def patch_image(kube: Kube, namespace: str, name: str, old: str, new: str) -> Obj:
    return await kube.patch(
        DEPLOYMENTS, namespace, name, image_patch(old, new), patch_type=JSON_PATCH
    )


# --- notifications ------------------------------------------------------------------------


def notification(
    *, event_id: str, host: str, repository: str, tag: str, digest: str, created: str
) -> bytes:
    """A distribution (CNCF registry) push notification, as the real registry sends it."""
    return json.dumps(
        {
            "events": [
                {
                    "id": event_id,
                    "timestamp": created,
                    "action": "push",
                    "target": {
                        "mediaType": MEDIA_TYPE,
                        "size": 528,
                        "digest": digest,
                        "length": 528,
                        "repository": repository,
                        "url": f"http://{host}/v2/{repository}/manifests/{digest}",
                        "tag": tag,
                    },
                    "request": {
                        "id": f"request-{event_id}",
                        "addr": "127.0.0.1:40000",
                        "host": host,
                        "method": "PUT",
                        "useragent": "imagestream-bench",
                    },
                    "actor": {},
                    "source": {"addr": host, "instanceID": "bench"},
                }
            ]
        },
        separators=(",", ":"),
    ).encode()


@dataclass
class Sender:
    """POSTs notifications to webhooks, retrying 503/429 as a registry would."""

    session: aiohttp.ClientSession
    token: str
    retries: int = 0
    answers: dict[int, int] = field(default_factory=dict)

    async def post(self, url: str, body: bytes) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": EVENTS_MEDIA_TYPE}
        for _ in range(POST_ATTEMPTS):
            async with self.session.post(
                f"{url}/v1/events/distribution",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                status = response.status
                answer = await response.read()
            self.answers[status] = self.answers.get(status, 0) + 1
            if status == 200:
                result: dict[str, Any] = json.loads(answer)
                return result
            if status not in (429, 503):
                raise RuntimeError(f"webhook answered {status}: {answer[:300]!r}")
            self.retries += 1
            await asyncio.sleep(POST_RETRY_S)
        raise RuntimeError(f"webhook still refusing after {POST_ATTEMPTS} attempts")


# --- watching deployments -----------------------------------------------------------------


@dataclass
class DeploymentWatch:
    """Records when each Deployment is first seen carrying each image (through a watch)."""

    kube: Kube
    namespace: str | None = None
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    """digest (or the whole image, when it has none) -> {namespace/name: monotonic time first
    seen}."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> DeploymentWatch:
        page = await self.kube.request(
            "GET", DEPLOYMENTS.path(namespace=self.namespace), params={"limit": "1"}
        )
        resource_version = str((page.get("metadata") or {}).get("resourceVersion", ""))
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(resource_version, ready))
        await ready.wait()
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, resource_version: str, ready: asyncio.Event) -> None:
        while True:
            try:
                stream = self.kube.watch(
                    DEPLOYMENTS, self.namespace, resource_version=resource_version, timeout_s=600
                )
                ready.set()
                async for event in stream:
                    obj = event.get("object") or {}
                    resource_version = str(
                        (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    )
                    if event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    now = time.monotonic()
                    image = image_of(obj)
                    digest = image.rpartition("@")[2]
                    # A digest, or (for a peer that writes tags, like Keel) the whole image.
                    marker = digest if digest.startswith("sha256:") else image
                    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                    self.seen.setdefault(marker, {}).setdefault(key, now)
                    self._changed.set()
            except Gone:
                page = await self.kube.request(
                    "GET", DEPLOYMENTS.path(namespace=self.namespace), params={"limit": "1"}
                )
                resource_version = str((page.get("metadata") or {}).get("resourceVersion", ""))
            except KubeError:
                ready.set()
                await asyncio.sleep(0.2)

    async def wait(
        self, predicate: Callable[[], bool], *, timeout_s: float = WAIT_BUDGET_S, what: str = ""
    ) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"not seen within {timeout_s}s: {what}") from None

    async def wait_for(self, digest: str, key: str, *, timeout_s: float = WAIT_BUDGET_S) -> float:
        await self.wait(
            lambda: key in self.seen.get(digest, {}), timeout_s=timeout_s, what=f"{key} {digest}"
        )
        return self.seen[digest][key]

    async def wait_count(
        self, digest: str, count: int, *, timeout_s: float = WAIT_BUDGET_S
    ) -> float:
        """Wait until `count` Deployments carry `digest`; the time the last one was seen."""
        await self.wait(
            lambda: len(self.seen.get(digest, {})) >= count,
            timeout_s=timeout_s,
            what=f"{count} deployments at {digest}",
        )
        return max(self.seen[digest].values())


# --- CPU accounting ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds each named process spends between `start()` and `stop()`."""

    pids: dict[str, int]
    _before: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        return {
            name: round(cpu_seconds(pid) - self._before[name], 2) for name, pid in self.pids.items()
        }


# --- statistics ---------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation): a sample that really happened."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(samples_s: Sequence[float]) -> dict[str, float | int]:
    return {
        "p50_ms": round(percentile(samples_s, 0.50) * 1000, 2),
        "p95_ms": round(percentile(samples_s, 0.95) * 1000, 2),
        "p99_ms": round(percentile(samples_s, 0.99) * 1000, 2),
        "max_ms": round(max(samples_s) * 1000, 2) if samples_s else math.nan,
        "samples": len(samples_s),
    }


def scaled(count: int, scale: float, *, minimum: int = 1) -> int:
    return max(minimum, round(count * scale))
