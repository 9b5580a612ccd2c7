"""The five measurements of issue 7, each with its floor, measured in the same run.

Each section takes the running system (`Context`) and returns one figure:
a JSON-able dict with the unit, our numbers, the floor's, the ratio, the
goal and whether it was met. `bench/README.md` explains each one.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    CpuMeter,
    DeploymentWatch,
    Sender,
    create_all,
    create_namespace,
    deployment,
    digest_of,
    imagestream,
    in_parallel,
    latency_summary,
    notification,
    patch_image,
    percentile,
    scaled,
    timestamp,
    write_tag,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from imagestream.objects import Obj
from localdev.components import ComponentProcess, peak_rss_kib
from localdev.images import make_oci_image, skopeo_push

CONTROLLER_WORKERS = 8
SENDERS = 16
BURST_CONCURRENCY = 100
MIB = 1024


@dataclass
class Context:
    kube: Kube
    session: aiohttp.ClientSession
    sender: Sender
    host: str
    """The registry host notifications name (the integrated registry)."""
    webhook: ComponentProcess
    controller: ComponentProcess
    scale: float
    workdir: Path
    start_webhook: Callable[[str, list[str]], ComponentProcess]
    """Start another webhook process: (name, extra args)."""
    start_controller: Callable[[str, list[str]], ComponentProcess]
    apiserver_metrics: Callable[[], str] = lambda: ""
    """The API server's /metrics text (for what it served during a measurement)."""
    system_pids: dict[str, int] = field(default_factory=dict)
    """etcd, kube-apiserver (and the bench itself), for CPU accounting."""
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Peak RSS and start-to-ready time of every process, by name."""

    def note_process(self, name: str, process: ComponentProcess, **extra: Any) -> None:
        entry = self.processes.setdefault(name, {})
        entry["peak_rss_mib"] = round(process.peak_rss_kib() / MIB, 1)
        entry.update(extra)


async def _quiet(process: ComponentProcess, *, budget_s: float = 60.0) -> None:
    """Wait until `process` has made no API request for a second (its backlog is done)."""
    deadline = time.monotonic() + budget_s
    last = sum((await process.api_requests()).values())
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = sum((await process.api_requests()).values())
        if now == last:
            return
        last = now


async def _served(ctx: Context) -> dict[str, float]:
    """apiserver_request_total by `VERB resource code` (mutating verbs and lists only)."""
    text = await asyncio.to_thread(ctx.apiserver_metrics)
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(
            part.split("=", 1) for part in labels[len("apiserver_request_total{") : -1].split(",")
        )
        verb = fields.get("verb", "").strip('"')
        if verb in ("GET", "WATCH"):
            continue
        resource, code = fields.get("resource", ""), fields.get("code", "")
        key = f"{verb} {resource.strip(chr(34))} {code.strip(chr(34))}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def _meter(ctx: Context, *processes: ComponentProcess) -> CpuMeter:
    pids = dict(ctx.system_pids)
    for process in processes:
        pids[process.process.name] = process.pid
    return CpuMeter(pids).start()


def _delta(after: dict[str, float], before: dict[str, float], per: int) -> dict[str, float]:
    """API requests made in between, per event, by `VERB code`."""
    return {
        key: round((after[key] - before.get(key, 0.0)) / per, 3)
        for key in sorted(after)
        if after[key] - before.get(key, 0.0) > 0
    }


async def _api_requests(ctx: Context) -> dict[str, float]:
    """API requests our processes made so far, by `process VERB code` (one process in `run`)."""
    counts: dict[str, float] = {}
    for process in {ctx.webhook.pid: ctx.webhook, ctx.controller.pid: ctx.controller}.values():
        for key, value in (await process.api_requests()).items():
            counts[f"{process.process.name} {key}"] = value
    return counts


def _ratio(ours: float, floor: float) -> float:
    return round(ours / floor, 3) if floor else float("nan")


async def _fresh(kube: Kube, namespace: str, name: str) -> Obj:
    return await kube.get(IMAGESTREAMS, namespace, name)


async def _settle(seconds: float = 2.0) -> None:
    """Let the processes finish reacting to setup (their bookkeeping writes) first."""
    await asyncio.sleep(seconds)


# --- 1. push to patch latency -------------------------------------------------------------

# Issue 17's goals, each against the floor measured in the same run.
LATENCY_GOAL_RATIO = 1.2
"""Push to patch: p50 and p99 within this of the two-write floor's."""
INTAKE_GOAL_RATIO = 0.9
"""Intake: at least this share of the raw status-write rate at the same concurrency."""
FANOUT_GOAL_RATIO = 1.2
"""Fan-out: within this of as many raw patches at the same concurrency."""


async def push_to_patch(ctx: Context, namespace: str, floor_namespace: str) -> dict[str, Any]:
    kube, host = ctx.kube, ctx.host
    streams = scaled(30, ctx.scale, minimum=2)
    pushes = scaled(300, ctx.scale, minimum=20)
    await create_all(
        kube,
        DEPLOYMENTS,
        namespace,
        [deployment(f"d{i}", follows=f"s{i}:latest") for i in range(streams)],
    )
    watch = await DeploymentWatch(kube, namespace).start()
    try:
        # Warm-up: the first push creates each stream and rolls its Deployment once.
        for i in range(streams):
            digest = digest_of(f"warm-{namespace}-{i}")
            await ctx.sender.post(
                ctx.webhook.webhook_url,
                notification(
                    event_id=f"warm-{namespace}-{i}",
                    host=host,
                    repository=f"{namespace}/s{i}",
                    tag="latest",
                    digest=digest,
                    created=timestamp(i),
                ),
            )
            await watch.wait_for(digest, f"{namespace}/d{i}")
        await _settle()
        samples = []
        meter = _meter(ctx, ctx.webhook, ctx.controller)
        requests_before = await _api_requests(ctx)
        for k in range(pushes):
            i = k % streams
            digest = digest_of(f"lat-{namespace}-{k}")
            body = notification(
                event_id=f"lat-{namespace}-{k}",
                host=host,
                repository=f"{namespace}/s{i}",
                tag="latest",
                digest=digest,
                created=timestamp(1000 + k),
            )
            started = time.monotonic()
            await ctx.sender.post(ctx.webhook.webhook_url, body)
            seen = await watch.wait_for(digest, f"{namespace}/d{i}")
            samples.append(seen - started)
        cpu = meter.stop()
        requests = _delta(await _api_requests(ctx), requests_before, pushes)
        real = await _real_pushes(ctx, namespace, watch, streams)
    finally:
        await watch.stop()

    floor, floor_returned, floor_cpu = await _floor_pushes(
        ctx, floor_namespace, streams=streams, pushes=pushes, label=namespace
    )
    ours, base = latency_summary(samples), latency_summary(floor)
    base["writes_returned"] = latency_summary(floor_returned)  # type: ignore[assignment]
    ratio = _ratio(float(ours["p99_ms"]), float(base["p99_ms"]))
    ratio_p50 = _ratio(float(ours["p50_ms"]), float(base["p50_ms"]))
    return {
        "title": "push to patch latency",
        "unit": "ms",
        "streams": streams,
        "ours": ours,
        "floor": base,
        "floor_is": "ImageStream status PUT + Deployment JSON patch, back to back, until the "
        "same watch shows the patch (writes_returned: until the PATCH answered)",
        "ratio": ratio,
        "ratio_of": "p99 / floor p99",
        "ratio_p50": ratio_p50,
        "goal": f"p50 and p99 <= {LATENCY_GOAL_RATIO} x floor",
        "met": ratio <= LATENCY_GOAL_RATIO and ratio_p50 <= LATENCY_GOAL_RATIO,
        "real_pushes": real,
        "api_requests_per_push": requests,
        "cpu_seconds": {"ours": cpu, "floor": floor_cpu},
    }


async def _floor_pushes(
    ctx: Context, floor_namespace: str, *, streams: int, pushes: int, label: str
) -> tuple[list[float], list[float], dict[str, float]]:
    """The floor of push to patch: the two writes that must happen anyway, back to back, by
    a minimal script, observed the way ours is (the same kind of watch, from this process).

    Returns the seconds until the watch showed each patch, until the PATCH answered, and
    this process's CPU seconds.
    """
    kube = ctx.kube
    reference = f"{ctx.host}/{floor_namespace}"
    await create_all(
        kube, IMAGESTREAMS, floor_namespace, [imagestream(f"s{i}") for i in range(streams)]
    )
    await create_all(
        kube,
        DEPLOYMENTS,
        floor_namespace,
        [deployment(f"d{i}", follows=None, image="floor:0") for i in range(streams)],
    )
    objects = {i: await _fresh(kube, floor_namespace, f"s{i}") for i in range(streams)}
    images = dict.fromkeys(range(streams), "floor:0")
    meter = _meter(ctx)
    seen_after, returned_after = [], []
    watch = await DeploymentWatch(kube, floor_namespace).start()
    try:
        for k in range(pushes):
            i = k % streams
            digest = digest_of(f"floor-{label}-{k}")
            started = time.monotonic()
            objects[i] = await write_tag(
                kube, objects[i], "latest", digest, f"{reference}/s{i}", timestamp(1000 + k)
            )
            new = f"{reference}/s{i}@{digest}"
            await patch_image(kube, floor_namespace, f"d{i}", images[i], new)
            returned_after.append(time.monotonic() - started)
            seen = await watch.wait_for(digest, f"{floor_namespace}/d{i}")
            seen_after.append(seen - started)
            images[i] = new
    finally:
        await watch.stop()
    return seen_after, returned_after, meter.stop()


async def _real_pushes(
    ctx: Context, namespace: str, watch: DeploymentWatch, streams: int
) -> dict[str, Any]:
    """A few real pushes: skopeo -> registry -> its notification -> webhook -> controller."""
    count = scaled(10, ctx.scale, minimum=3)
    total, after_push = [], []
    for k in range(count):
        i = k % streams
        image = make_oci_image(
            ctx.workdir / "images" / uuid.uuid4().hex, f"real-{k}-{uuid.uuid4()}"
        )
        started = time.monotonic()
        await asyncio.to_thread(skopeo_push, image, f"{ctx.host}/{namespace}/s{i}:latest")
        pushed = time.monotonic()
        seen = await watch.wait_for(image.manifest_digest, f"{namespace}/d{i}")
        total.append(seen - started)
        after_push.append(seen - pushed)
    return {
        "what": "skopeo push start -> Deployment carries the digest (real registry notification)",
        "total": latency_summary(total),
        "after_push_returned": latency_summary(after_push),
    }


# --- 2. intake throughput and coalescing --------------------------------------------------


async def intake(ctx: Context, namespace: str, floor_namespace: str) -> dict[str, Any]:
    kube, host = ctx.kube, ctx.host
    streams = scaled(100, ctx.scale, minimum=4)
    tags = 10
    rng = random.Random(7)
    await create_all(kube, IMAGESTREAMS, namespace, [imagestream(f"s{i}") for i in range(streams)])
    await _settle()
    events = [(i, t) for i in range(streams) for t in range(tags)]
    rng.shuffle(events)
    writes_before = await ctx.webhook.metric("imagestream_status_writes_total")
    requests_before = await ctx.webhook.api_requests()

    async def send(item: tuple[int, int]) -> None:
        i, t = item
        await ctx.sender.post(
            ctx.webhook.webhook_url,
            notification(
                event_id=f"in-{namespace}-{i}-{t}",
                host=host,
                repository=f"{namespace}/s{i}",
                tag=f"t{t}",
                digest=digest_of(f"in-{namespace}-{i}-{t}"),
                created=timestamp(2000 + i * tags + t),
            ),
        )

    meter = _meter(ctx, ctx.webhook, ctx.controller)
    started = time.monotonic()
    await in_parallel(events, send, concurrency=SENDERS)
    elapsed = time.monotonic() - started
    cpu = meter.stop()
    writes = await ctx.webhook.metric("imagestream_status_writes_total") - writes_before
    requests = _delta(await ctx.webhook.api_requests(), requests_before, len(events))
    listed, _ = await kube.list(IMAGESTREAMS, namespace)
    persisted = sum(
        1
        for stream in listed
        for entry in (stream.get("status") or {}).get("tags") or []
        if entry.get("items")
    )

    # Floor: raw status writes at the same concurrency (one writer per stream at a time).
    await create_all(
        kube, IMAGESTREAMS, floor_namespace, [imagestream(f"s{i}") for i in range(streams)]
    )
    objects = {i: await _fresh(kube, floor_namespace, f"s{i}") for i in range(streams)}
    locks = {i: asyncio.Lock() for i in range(streams)}
    conflicts = 0

    async def raw(item: tuple[int, int]) -> None:
        nonlocal conflicts
        i, t = item
        async with locks[i]:
            while True:
                try:
                    objects[i] = await write_tag(
                        kube,
                        objects[i],
                        f"t{t}",
                        digest_of(f"floor-{namespace}-{i}-{t}"),
                        f"{host}/{floor_namespace}/s{i}",
                        timestamp(2000 + i * tags + t),
                    )
                    return
                except Conflict:
                    conflicts += 1
                    objects[i] = await _fresh(kube, floor_namespace, f"s{i}")

    floor_meter = _meter(ctx, ctx.webhook, ctx.controller)
    floor_started = time.monotonic()
    await in_parallel(events, raw, concurrency=SENDERS)
    floor_elapsed = time.monotonic() - floor_started
    floor_cpu = floor_meter.stop()
    ours_rate = len(events) / elapsed
    floor_rate = len(events) / floor_elapsed
    ratio = _ratio(ours_rate, floor_rate)
    burst = await _burst(ctx, namespace)
    return {
        "title": "intake throughput",
        "unit": "notifications/s",
        "streams": streams,
        "tags": len(events),
        "senders": SENDERS,
        "ours": {
            "rate": round(ours_rate, 1),
            "seconds": round(elapsed, 2),
            "persisted_tags": persisted,
            "status_writes": int(writes),
            "api_requests_per_event": requests,
            "cpu_seconds": cpu,
            "samples": len(events),
        },
        "floor": {
            "rate": round(floor_rate, 1),
            "seconds": round(floor_elapsed, 2),
            "status_writes": len(events),
            "conflicts": conflicts,
            "cpu_seconds": floor_cpu,
            "samples": len(events),
        },
        "floor_is": f"raw ImageStream status PUTs, {SENDERS} at once",
        "ratio": ratio,
        "ratio_of": "rate / floor rate",
        "goal": f">= {INTAKE_GOAL_RATIO} x floor; burst writes far fewer than events",
        "met": ratio >= INTAKE_GOAL_RATIO and persisted == len(events) and burst["coalesced"],
        "burst": burst,
    }


async def _burst(ctx: Context, namespace: str) -> dict[str, Any]:
    events = scaled(500, ctx.scale, minimum=50)
    tags = 50
    order = list(range(events))
    random.Random(11).shuffle(order)
    writes_before = await ctx.webhook.metric("imagestream_status_writes_total")

    async def send(k: int) -> None:
        await ctx.sender.post(
            ctx.webhook.webhook_url,
            notification(
                event_id=f"burst-{namespace}-{k}",
                host=ctx.host,
                repository=f"{namespace}/burst",
                tag=f"t{k % tags}",
                digest=digest_of(f"burst-{namespace}-{k}"),
                created=timestamp(5000 + k),
            ),
        )

    started = time.monotonic()
    await in_parallel(order, send, concurrency=BURST_CONCURRENCY)
    elapsed = time.monotonic() - started
    writes = int(await ctx.webhook.metric("imagestream_status_writes_total") - writes_before)
    stream = await _fresh(ctx.kube, namespace, "burst")
    recorded = sum(len(e.get("items") or []) for e in stream["status"]["tags"])
    return {
        "events": events,
        "concurrency": BURST_CONCURRENCY,
        "status_writes": writes,
        "events_per_write": round(events / writes, 1) if writes else None,
        "recorded_items": recorded,
        "seconds": round(elapsed, 2),
        "coalesced": writes <= events / 5 and recorded == events,
    }


# --- 3. fan-out ---------------------------------------------------------------------------


async def fan_out(ctx: Context, namespace: str, floor_namespace: str) -> dict[str, Any]:
    kube, host = ctx.kube, ctx.host
    count = scaled(1000, ctx.scale, minimum=20)
    await create_all(
        kube,
        DEPLOYMENTS,
        namespace,
        [deployment(f"d{i}", follows="app:latest") for i in range(count)],
    )
    watch = await DeploymentWatch(kube, namespace).start()
    try:
        first = digest_of(f"fan-first-{namespace}")
        await ctx.sender.post(
            ctx.webhook.webhook_url,
            notification(
                event_id=f"fan-first-{namespace}",
                host=host,
                repository=f"{namespace}/app",
                tag="latest",
                digest=first,
                created=timestamp(9000),
            ),
        )
        await watch.wait_count(first, count, timeout_s=600)
        await _quiet(ctx.controller)  # the first rollout's Events are all posted
        patches_before = await ctx.controller.metric("imagestream_trigger_patches_total")
        requests_before = await ctx.controller.api_requests()
        second = digest_of(f"fan-second-{namespace}")
        meter = _meter(ctx, ctx.webhook, ctx.controller)
        served_before = await _served(ctx)
        started = time.monotonic()
        await ctx.sender.post(
            ctx.webhook.webhook_url,
            notification(
                event_id=f"fan-second-{namespace}",
                host=host,
                repository=f"{namespace}/app",
                tag="latest",
                digest=second,
                created=timestamp(9001),
            ),
        )
        last = await watch.wait_count(second, count, timeout_s=600)
        elapsed = last - started
        cpu = meter.stop()
        served = _delta(await _served(ctx), served_before, count)
        patches = await ctx.controller.metric("imagestream_trigger_patches_total") - patches_before
        requests = _delta(await ctx.controller.api_requests(), requests_before, count)
    finally:
        await watch.stop()

    await create_all(
        kube,
        DEPLOYMENTS,
        floor_namespace,
        [deployment(f"d{i}", follows=None, image="floor:0") for i in range(count)],
    )
    floor_digest = digest_of("fan-floor")
    new = f"{host}/{floor_namespace}/app@{floor_digest}"

    async def raw(i: int) -> None:
        await patch_image(kube, floor_namespace, f"d{i}", "floor:0", new)

    await _quiet(ctx.controller)  # its Events for our rollout must not land in the floor's time
    floor_watch = await DeploymentWatch(kube, floor_namespace).start()
    try:
        floor_meter = _meter(ctx, ctx.webhook, ctx.controller)
        floor_served_before = await _served(ctx)
        floor_started = time.monotonic()
        await in_parallel(range(count), raw, concurrency=CONTROLLER_WORKERS)
        floor_returned = time.monotonic() - floor_started
        floor_elapsed = await floor_watch.wait_count(floor_digest, count) - floor_started
        floor_cpu = floor_meter.stop()
        floor_served = _delta(await _served(ctx), floor_served_before, count)
    finally:
        await floor_watch.stop()
    ratio = _ratio(elapsed, floor_elapsed)
    return {
        "title": "fan-out",
        "unit": "s",
        "deployments": count,
        "ours": {
            "seconds": round(elapsed, 3),
            "per_second": round(count / elapsed, 1),
            "patches": int(patches),
            "api_requests_per_deployment": requests,
            "cpu_seconds": cpu,
            "apiserver_served_per_deployment": served,
            "samples": count,
        },
        "floor": {
            "seconds": round(floor_elapsed, 3),
            "patches_returned_s": round(floor_returned, 3),
            "per_second": round(count / floor_elapsed, 1),
            "cpu_seconds": floor_cpu,
            "apiserver_served_per_deployment": floor_served,
            "samples": count,
        },
        "floor_is": f"{count} raw JSON patches, {CONTROLLER_WORKERS} at once (--workers), "
        "until the same watch has seen them all",
        "ratio": ratio,
        "ratio_of": "seconds / floor seconds",
        "goal": f"<= {FANOUT_GOAL_RATIO} x floor",
        "met": ratio <= FANOUT_GOAL_RATIO,
    }


# --- 5. convergence under conflict --------------------------------------------------------


@dataclass(frozen=True)
class _Push:
    stream: int
    tag: str
    k: int
    digest: str
    created: str


async def convergence(ctx: Context, namespace: str, floor_namespace: str) -> dict[str, Any]:
    kube, host = ctx.kube, ctx.host
    streams = scaled(50, ctx.scale, minimum=5)
    total = scaled(2000, ctx.scale, minimum=100)
    tags = ("v1", "v2", "v3", "v4")
    rng = random.Random(20260301)
    keys = [(s, t) for s in range(streams) for t in tags]
    offsets = list(range(total))
    rng.shuffle(offsets)
    pushes = [
        _Push(
            stream=keys[n % len(keys)][0],
            tag=keys[n % len(keys)][1],
            k=n,
            digest=digest_of(f"conv-{namespace}-{n}"),
            created=timestamp(20000 + offsets[n]),
        )
        for n in range(total)
    ]
    webhooks = [
        ctx.start_webhook(f"webhook-conv-{i}", ["--watch-namespaces", namespace]) for i in range(3)
    ]
    try:
        await asyncio.gather(*(w.wait_ready() for w in webhooks))
        plan: list[tuple[_Push, int]] = [(p, rng.randrange(3)) for p in pushes]
        redelivered = [(p, rng.randrange(3)) for p in rng.sample(pushes, total // 10)]
        plan += redelivered
        rng.shuffle(plan)
        controller_before = await ctx.controller.metric(
            "imagestream_controller_status_writes_total"
        )
        sent = 0
        halfway = asyncio.Event()

        async def deliver(item: tuple[_Push, int]) -> None:
            nonlocal sent
            push, target = item
            await ctx.sender.post(
                webhooks[target].webhook_url,
                notification(
                    event_id=f"conv-{namespace}-{push.k}",
                    host=host,
                    repository=f"{namespace}/s{push.stream}",
                    tag=push.tag,
                    digest=push.digest,
                    created=push.created,
                ),
            )
            sent += 1
            if sent >= len(plan) // 2:
                halfway.set()

        async def reference_tags() -> None:
            await halfway.wait()
            for s in range(streams):
                await kube.patch(
                    IMAGESTREAMS,
                    namespace,
                    f"s{s}",
                    {
                        "spec": {
                            "tags": [
                                {
                                    "name": "ref",
                                    "reference": True,
                                    "from": {
                                        "kind": "DockerImage",
                                        "name": f"{host}/{namespace}/s{s}:ref",
                                    },
                                }
                            ]
                        }
                    },
                )

        started = time.monotonic()
        await asyncio.gather(reference_tags(), in_parallel(plan, deliver, concurrency=SENDERS))
        deadline = time.monotonic() + 120
        while True:
            listed, _ = await kube.list(IMAGESTREAMS, namespace)
            done = [
                s
                for s in listed
                if (s.get("status") or {}).get("observedGeneration") == 2
                and "ref" in {t["tag"] for t in s["status"].get("tags") or []}
            ]
            if len(done) == streams or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        webhook_writes = 0.0
        for webhook in webhooks:
            webhook_writes += await webhook.metric("imagestream_status_writes_total")
        controller_writes = (
            await ctx.controller.metric("imagestream_controller_status_writes_total")
            - controller_before
        )
    finally:
        for i, webhook in enumerate(webhooks):
            ctx.note_process(f"webhook-conv-{i}", webhook)
            webhook.stop()

    mismatches = _compare_to_model(listed, pushes, tags, host, namespace)
    writes = webhook_writes + controller_writes

    # Floor: one sequential writer applying every distinct event, one write each.
    await create_all(
        kube, IMAGESTREAMS, floor_namespace, [imagestream(f"s{s}") for s in range(streams)]
    )
    objects = {s: await _fresh(kube, floor_namespace, f"s{s}") for s in range(streams)}
    floor_started = time.monotonic()
    applied: set[int] = set()
    for push, _target in plan:
        if push.k in applied:
            continue
        applied.add(push.k)
        objects[push.stream] = await write_tag(
            kube,
            objects[push.stream],
            push.tag,
            push.digest,
            f"{host}/{floor_namespace}/s{push.stream}",
            push.created,
        )
    floor_elapsed = time.monotonic() - floor_started
    per_event = writes / total
    return {
        "title": "convergence under conflict",
        "unit": "writes/event",
        "streams": streams,
        "events": total,
        "deliveries": len(plan),
        "webhooks": 3,
        "ours": {
            "writes_per_event": round(per_event, 3),
            "webhook_writes": int(webhook_writes),
            "controller_writes": int(controller_writes),
            "seconds": round(elapsed, 2),
            "mismatches": mismatches,
            "samples": total,
        },
        "floor": {
            "writes_per_event": 1.0,
            "seconds": round(floor_elapsed, 2),
            "samples": total,
        },
        "floor_is": "one sequential writer, one status PUT per distinct event",
        "ratio": _ratio(per_event, 1.0),
        "ratio_of": "writes per event / floor's",
        "time_ratio": _ratio(elapsed, floor_elapsed),
        "goal": "final state equals the sequential model",
        "met": not mismatches,
    }


def _compare_to_model(
    listed: list[Obj], pushes: list[_Push], tags: tuple[str, ...], host: str, namespace: str
) -> list[str]:
    by_name = {s["metadata"]["name"]: s for s in listed}
    problems = []
    for s in sorted({p.stream for p in pushes}):
        stream = by_name.get(f"s{s}")
        entries = {e["tag"]: e for e in ((stream or {}).get("status") or {}).get("tags") or []}
        for tag in tags:
            model = sorted(
                (p for p in pushes if (p.stream, p.tag) == (s, tag)),
                key=lambda p: p.created,
                reverse=True,
            )[:50]
            items = (entries.get(tag) or {}).get("items") or []
            got = [(i.get("created"), i.get("image")) for i in items]
            want = [(p.created, p.digest) for p in model]
            if got != want:
                problems.append(f"s{s}:{tag}: {len(got)} items, expected {len(want)}")
        if "ref" not in entries:
            problems.append(f"s{s}: reference tag not recorded")
    return problems[:20]


# --- 4. scale and memory ------------------------------------------------------------------


SCALE_RSS_GOAL_MIB = 250
SCALE_SYNCED_GOAL_S = 20
"""Issue 17's bounds at 100,000 Deployments and 20,000 ImageStreams, per process."""
SCALE_LATENCY_GOAL_RATIO = 1.5
"""Issue 17: push to patch p99 under that load, over the unloaded p99 (the latency section)."""


async def _list_everything(kube: Kube) -> float:
    """Seconds to list what the controller's two big caches list, both at once, as a
    minimal client would: the same pages, each object decoded and dropped."""
    started = time.monotonic()
    await asyncio.gather(
        *(
            kube.list(resource, None, transform=_kept_not)
            for resource in (DEPLOYMENTS, IMAGESTREAMS)
        )
    )
    return time.monotonic() - started


def _kept_not(_obj: Obj) -> None:
    """A transform that keeps nothing: the list then holds no object at all."""


@dataclass(frozen=True)
class ScaleLoad:
    """The objects the scale section made once, for every repetition to measure against."""

    namespaces: int
    streams_per: int
    deployments_per: int
    triggered_per: int
    created_s: float


async def scale_load(ctx: Context) -> ScaleLoad:
    """Fill the cluster: Deployments (half following a stream) and converged ImageStreams."""
    kube, host = ctx.kube, ctx.host
    namespaces = scaled(20, ctx.scale, minimum=1)
    streams_per, deployments_per = 100, 500
    triggered_per = deployments_per // 2
    created_started = time.monotonic()

    async def fill(n: int) -> None:
        namespace = await create_namespace(kube, f"bench-scale-{n}")
        streams = await create_all(
            kube, IMAGESTREAMS, namespace, [imagestream(f"s{j}") for j in range(streams_per)]
        )

        async def settle_status(stream: Obj) -> Obj:
            name = stream["metadata"]["name"]
            stream.setdefault("status", {}).update(
                {"dockerImageRepository": f"{host}/{namespace}/{name}", "observedGeneration": 1}
            )
            return await write_tag(
                kube,
                stream,
                "latest",
                digest_of(f"scale-{namespace}-{name}"),
                f"{host}/{namespace}/{name}",
                timestamp(30000),
            )

        await in_parallel(streams, settle_status, concurrency=16)
        bodies = []
        for d in range(deployments_per):
            if d < triggered_per:
                j = d % streams_per
                image = f"{host}/{namespace}/s{j}@{digest_of(f'scale-{namespace}-s{j}')}"
                bodies.append(deployment(f"t{d}", follows=f"s{j}:latest", image=image))
            else:
                bodies.append(deployment(f"u{d}", follows=None, image="plain:1"))
        await create_all(kube, DEPLOYMENTS, namespace, bodies)

    for n in range(namespaces):
        await fill(n)
    return ScaleLoad(
        namespaces=namespaces,
        streams_per=streams_per,
        deployments_per=deployments_per,
        triggered_per=triggered_per,
        created_s=time.monotonic() - created_started,
    )


async def scale(ctx: Context, load: ScaleLoad, repetition: int = 0) -> dict[str, Any]:
    """Fresh processes against the loaded cluster: start to synced, peak RSS, push to patch."""
    kube, host = ctx.kube, ctx.host
    namespaces, streams_per = load.namespaces, load.streams_per
    deployments_per, triggered_per = load.deployments_per, load.triggered_per
    created_s = load.created_s
    controller_name, webhook_name = (
        f"controller-scale-r{repetition}",
        f"webhook-scale-r{repetition}",
    )
    floor_synced = await _list_everything(kube)
    controller = ctx.start_controller(controller_name, [])
    webhook = ctx.start_webhook(webhook_name, [])
    try:
        controller_synced, webhook_synced = await asyncio.gather(
            controller.wait_ready(), webhook.wait_ready()
        )
        # Let the controller finish its first pass over every object (no writes expected).
        idle_deadline = time.monotonic() + 120
        while time.monotonic() < idle_deadline:
            if await controller.metric("imagestream_queue_depth") == 0:
                break
            await asyncio.sleep(0.2)
        initial_patches = await controller.metric("imagestream_trigger_patches_total")
        watch = await DeploymentWatch(kube, None).start()
        samples = []
        rng = random.Random(3)
        try:
            for k in range(scaled(100, ctx.scale, minimum=10)):
                n, j = rng.randrange(namespaces), rng.randrange(streams_per)
                namespace = f"bench-scale-{n}"
                digest = digest_of(f"scale-push-{repetition}-{k}")
                started = time.monotonic()
                await ctx.sender.post(
                    webhook.webhook_url,
                    notification(
                        event_id=f"scale-{repetition}-{k}",
                        host=host,
                        repository=f"{namespace}/s{j}",
                        tag="latest",
                        digest=digest,
                        # Later in every repetition: the streams are the same ones, and a
                        # push older than the tag's head is history, not a move (behaviour 1).
                        created=timestamp(40000 + 10_000 * repetition + k),
                    ),
                )
                seen = await watch.wait_for(digest, f"{namespace}/t{j}")
                samples.append(seen - started)
        finally:
            await watch.stop()
        # The floor under the same load, our processes still running: how much slower the
        # loaded API server and etcd make the two writes themselves.
        loaded_floor, _, _ = await _floor_pushes(
            ctx,
            await create_namespace(kube, f"bench-scale-floor-r{repetition}"),
            streams=30,
            pushes=len(samples),
            label=f"scale-{repetition}",
        )
        controller_rss = controller.peak_rss_kib() / MIB
        webhook_rss = webhook.peak_rss_kib() / MIB
        # What the machine needs anyway for this many objects (their peaks so far in the run).
        system_rss = {
            name: round(peak_rss_kib(pid) / MIB, 1)
            for name, pid in ctx.system_pids.items()
            if name in ("etcd", "kube-apiserver")
        }
    finally:
        ctx.note_process(controller_name, controller)
        ctx.note_process(webhook_name, webhook)
        controller.stop()
        webhook.stop()
    ctx.processes[controller_name]["start_to_synced_s"] = round(controller_synced, 2)
    ctx.processes[webhook_name]["start_to_synced_s"] = round(webhook_synced, 2)
    latency = latency_summary(samples)
    met = (
        max(controller_rss, webhook_rss) < SCALE_RSS_GOAL_MIB
        and max(controller_synced, webhook_synced) < SCALE_SYNCED_GOAL_S
    )
    return {
        "title": "scale and memory",
        "unit": "MiB / s",
        "deployments": namespaces * deployments_per,
        "triggered_deployments": namespaces * triggered_per,
        "imagestreams": namespaces * streams_per,
        "created_in_s": round(created_s, 1),
        "ours": {
            "controller_peak_rss_mib": round(controller_rss, 1),
            "webhook_peak_rss_mib": round(webhook_rss, 1),
            "controller_start_to_synced_s": round(controller_synced, 2),
            "webhook_start_to_synced_s": round(webhook_synced, 2),
            "patches_at_start": int(initial_patches),
            "push_to_patch": latency,
            "samples": len(samples),
        },
        "system_peak_rss_mib": system_rss,
        "floor": {"start_to_synced_s": round(floor_synced, 2)},
        "floor_is": (
            "start to synced: this client listing every Deployment and ImageStream at once,"
            " in the same pages, keeping nothing (memory has no floor: the goal's bounds)"
        ),
        "ratio": _ratio(controller_synced, floor_synced),
        "ratio_of": "controller start to synced / the floor's list",
        "goal": f"< {SCALE_RSS_GOAL_MIB} MiB RSS per process, synced < {SCALE_SYNCED_GOAL_S} s",
        "met": met,
        "p99_under_load_ms": percentile(samples, 0.99) * 1000 if samples else None,
        "floor_under_load": latency_summary(loaded_floor),
        "floor_under_load_is": "the latency section's floor (status PUT + PATCH, back to "
        "back, until the watch shows the patch), on the loaded plane, our processes running",
        "ratio_under_load": _ratio(
            float(latency["p99_ms"]), float(latency_summary(loaded_floor)["p99_ms"])
        ),
    }
