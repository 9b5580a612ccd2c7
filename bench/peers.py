"""Push to patch beside a peer: Keel, built from its Go module, on the same API server.

Users choose between us and Keel for the same job: a registry push becomes a patched
Deployment. This section measures both, and the floor, in one run, push by push, in turn
(ours, Keel's, the floor's, then again), so that a machine that slows down for a while
slows all three alike.

- **Ours:** a distribution notification POSTed to our webhook, until a watch (in this
  process) sees the Deployment carry the pushed digest.
- **Keel:** the same kind of push told to Keel's native webhook (`POST /v1/webhooks/native`
  `{"name", "tag"}`, answered before Keel acts), for a Deployment with `keel.sh/policy: all`;
  Keel patches it to the new semver tag. Until the same kind of watch sees that image.
- **Floor:** the two writes that must happen anyway (`bench.sections.push_to_patch`'s floor):
  one ImageStream status PUT and one Deployment JSON patch, back to back.

Keel runs out of cluster (`--no-incluster --kubeconfig`), with its data in the work
directory. It listens on its fixed port 9300 on every address: the section refuses to start
when something else holds that port, rather than measure another process.

Invariant: Keel is started here, by PID, and stopped here, pass or fail (localdev.processes).
Failure it prevents: a comparison whose two sides ran at different times, or against
different servers, and so says more about the machine than about the tools.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    CpuMeter,
    DeploymentWatch,
    create_all,
    deployment,
    digest_of,
    imagestream,
    latency_summary,
    notification,
    patch_image,
    scaled,
    timestamp,
    write_tag,
)
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from imagestream.objects import Obj
from localdev.components import ComponentProcess, peak_rss_kib
from localdev.controlplane import REPO_ROOT
from localdev.processes import ManagedProcess, wait_until

KEEL_PORT = 9300
"""Keel's HTTP port: a constant in its source (types.KeelDefaultPort), not a flag."""
KEEL_READY_S = 60.0


def keel_binary() -> Path:
    """Keel from localkube/keel (`localkube/build.sh keel`, cached outside the repository)."""
    out = subprocess.run(
        [str(REPO_ROOT / "localkube" / "build.sh"), "keel"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(out) / "keel"


def keel_version() -> str:
    for line in (REPO_ROOT / "localkube" / "keel" / "go.mod").read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["github.com/keel-hq/keel"] or fields[1:2] == ["github.com/keel-hq/keel"]:
            return fields[1] if fields[0] == "github.com/keel-hq/keel" else fields[2]
    return "unknown"


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _healthy() -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{KEEL_PORT}/healthz", timeout=1) as answer:
        return bool(answer.status == 200)


def start_keel(binary: Path, kubeconfig: Path, workdir: Path) -> ManagedProcess:
    if _port_taken(KEEL_PORT):
        raise RuntimeError(f"port {KEEL_PORT} is in use: Keel cannot listen there")
    data = workdir / "keel-data"
    data.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data),
        "XDG_DATA_HOME": str(data),
        "POLL": "0",
        "NOTIFICATION_LEVEL": "fatal",
    }
    process = ManagedProcess(
        name="keel",
        argv=[str(binary), "--no-incluster", f"--kubeconfig={kubeconfig}"],
        log_path=workdir / "logs" / "keel.log",
        env=env,
        cwd=data,
    ).start()
    wait_until("keel /healthz", _healthy, timeout_s=KEEL_READY_S, processes=[process])
    return process


KEEL_FOLLOWS = {"keel.sh/policy": "all", "keel.sh/trigger": "default"}
"""A workload's annotations for Keel: any newer semver tag, through its webhooks."""


def keel_deployment(name: str, image: str) -> Obj:
    """A Deployment Keel follows (`KEEL_FOLLOWS`)."""
    body = deployment(name, follows=None, image=image)
    body["metadata"]["annotations"] = dict(KEEL_FOLLOWS)
    return body


async def tell_keel(session: aiohttp.ClientSession, name: str, tag: str) -> None:
    """Keel's native webhook: `name` (an image without its tag) has a new `tag`. Keel
    answers before it acts."""
    async with session.post(
        f"http://127.0.0.1:{KEEL_PORT}/v1/webhooks/native",
        data=json.dumps({"name": name, "tag": tag}),
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"keel answered {response.status}: {await response.text()}")


async def push_to_patch_beside_keel(
    *,
    kube: Any,
    session: aiohttp.ClientSession,
    post_ours: Callable[[bytes], Any],
    host: str,
    namespaces: tuple[str, ...],
    webhook: ComponentProcess,
    controller: ComponentProcess,
    kubeconfig: Path,
    workdir: Path,
    system_pids: dict[str, int],
    scale: float,
) -> dict[str, Any]:
    ours_ns, keel_ns, floor_ns = namespaces
    streams = scaled(30, scale, minimum=2)
    pushes = scaled(300, scale, minimum=20)
    # Started from this (the main) thread, blocking the loop for a moment: a child dies with
    # the thread that forked it (PR_SET_PDEATHSIG), and nothing is measured yet.
    keel = start_keel(keel_binary(), kubeconfig, workdir)
    try:
        await create_all(
            kube,
            DEPLOYMENTS,
            ours_ns,
            [deployment(f"d{i}", follows=f"s{i}:latest") for i in range(streams)],
        )
        await create_all(
            kube,
            DEPLOYMENTS,
            keel_ns,
            [keel_deployment(f"k{i}", f"{host}/{keel_ns}/k{i}:1.0.0") for i in range(streams)],
        )
        await create_all(
            kube, IMAGESTREAMS, floor_ns, [imagestream(f"s{i}") for i in range(streams)]
        )
        await create_all(
            kube,
            DEPLOYMENTS,
            floor_ns,
            [deployment(f"d{i}", follows=None, image="floor:0") for i in range(streams)],
        )
        watch = await DeploymentWatch(kube).start()
        try:
            return await _interleaved(
                kube=kube,
                session=session,
                post_ours=post_ours,
                host=host,
                namespaces=namespaces,
                watch=watch,
                streams=streams,
                pushes=pushes,
                meters={
                    "ours": {"webhook": webhook.pid, "controller": controller.pid},
                    "keel": {"keel": keel.pid},
                    "system": system_pids,
                },
                processes={"webhook": webhook.pid, "controller": controller.pid, "keel": keel.pid},
            )
        finally:
            await watch.stop()
    finally:
        keel.stop()


async def _interleaved(
    *,
    kube: Any,
    session: aiohttp.ClientSession,
    post_ours: Callable[[bytes], Any],
    host: str,
    namespaces: tuple[str, ...],
    watch: DeploymentWatch,
    streams: int,
    pushes: int,
    meters: dict[str, dict[str, int]],
    processes: dict[str, int],
) -> dict[str, Any]:
    ours_ns, keel_ns, floor_ns = namespaces

    async def ours(k: int, i: int, label: str) -> float:
        digest = digest_of(f"peer-{ours_ns}-{label}-{k}")
        body = notification(
            event_id=f"peer-{ours_ns}-{label}-{k}",
            host=host,
            repository=f"{ours_ns}/s{i}",
            tag="latest",
            digest=digest,
            created=timestamp(2000 + k),
        )
        started = time.monotonic()
        await post_ours(body)
        return await watch.wait_for(digest, f"{ours_ns}/d{i}") - started

    async def keel(k: int, i: int, label: str) -> float:
        tag = f"1.{1 if label == 'warm' else 2}.{k}"
        image = f"{host}/{keel_ns}/k{i}:{tag}"
        started = time.monotonic()
        await tell_keel(session, f"{host}/{keel_ns}/k{i}", tag)
        return await watch.wait_for(image, f"{keel_ns}/k{i}") - started

    stream_objects = {i: await kube.get(IMAGESTREAMS, floor_ns, f"s{i}") for i in range(streams)}
    floor_images = dict.fromkeys(range(streams), "floor:0")

    async def floor(k: int, i: int, label: str) -> float:
        digest = digest_of(f"peer-{floor_ns}-{label}-{k}")
        reference = f"{host}/{floor_ns}/s{i}"
        started = time.monotonic()
        stream_objects[i] = await write_tag(
            kube, stream_objects[i], "latest", digest, reference, timestamp(2000 + k)
        )
        new = f"{reference}@{digest}"
        await patch_image(kube, floor_ns, f"d{i}", floor_images[i], new)
        floor_images[i] = new
        return await watch.wait_for(digest, f"{floor_ns}/d{i}") - started

    sides = {"ours": ours, "keel": keel, "floor": floor}
    # Warm-up: every Deployment moves once on each side (caches, connections, first writes).
    for i in range(streams):
        for measure in sides.values():
            await measure(i, i, "warm")
    await asyncio.sleep(2.0)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    cpu = {name: CpuMeter(pids).start() for name, pids in meters.items()}
    order = list(sides)
    for k in range(pushes):
        i = k % streams
        # Rotate who goes first, so that no side always follows the same one.
        for name in order[k % 3 :] + order[: k % 3]:
            samples[name].append(await sides[name](k, i, "run"))
    spent = {name: meter.stop() for name, meter in cpu.items()}
    summaries = {name: latency_summary(values) for name, values in samples.items()}
    floor_p50, floor_p99 = summaries["floor"]["p50_ms"], summaries["floor"]["p99_ms"]
    ours_p50, ours_p99 = summaries["ours"]["p50_ms"], summaries["ours"]["p99_ms"]
    keel_p50, keel_p99 = summaries["keel"]["p50_ms"], summaries["keel"]["p99_ms"]
    return {
        "title": "push to patch beside Keel",
        "unit": "ms",
        "streams": streams,
        "pushes_each": pushes,
        "ours": summaries["ours"],
        "keel": summaries["keel"],
        "floor": summaries["floor"],
        "keel_version": keel_version(),
        "ratio": {
            "ours_p50_to_floor": round(ours_p50 / floor_p50, 3),
            "ours_p99_to_floor": round(ours_p99 / floor_p99, 3),
            "keel_p50_to_floor": round(keel_p50 / floor_p50, 3),
            "keel_p99_to_floor": round(keel_p99 / floor_p99, 3),
        },
        "cpu_seconds": spent,
        "peak_rss_mib": {
            name: round(peak_rss_kib(pid) / 1024, 1) for name, pid in processes.items()
        },
        "goal": "p50 and p99 within 1.2 x floor, and below Keel's",
        "met": ours_p50 <= 1.2 * floor_p50
        and ours_p99 <= 1.2 * floor_p99
        and ours_p50 < keel_p50
        and ours_p99 < keel_p99,
        "notes": "interleaved push by push; Keel watches every namespace (ours only our side's),"
        " so its CPU includes seeing the other sides' Deployments change",
    }
