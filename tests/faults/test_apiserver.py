"""The API server goes away: restarted, and paused (SIGSTOP) longer than a watch timeout.

The controller and the webhook reach it through a FaultProxy, which counts
their connections: while the API server is away, each retry is a new
connection, so the count shows whether they back off or spin. While it is
away both report not ready and the webhook answers 503 with Retry-After;
once it is back their watches recover (a relist where the resourceVersion
is gone) and nothing changed in the meantime is lost.

These tests stop the API server, so they get a control plane of their own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from bench.common import deployment, digest_of, image_of, imagestream, notification, timestamp
from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from localdev.components import ComponentProcess
from localdev.controlplane import ControlPlane
from localdev.faultproxy import FaultProxy
from localdev.processes import wait_until
from tests.faults.conftest import TOKEN, Processes, ProxyFactory, figure
from tests.integration.conftest import (
    eventually,
    kube_with_crds,
    new_namespace,
    own_control_plane,
)
from tests.integration.workloads import move_tag

WATCH_TIMEOUT_S = 5
"""Short, so a pause can outlast it (the client drops a silent watch 15 s later)."""
PAUSE_S = WATCH_TIMEOUT_S + 15 + 5
AWAY_S = 12.0
"""How long the API server stays stopped in the restart test."""
INFORMERS = 7
"""The controller's six (ImageStreams, Deployments, StatefulSets, DaemonSets, CronJobs,
DeploymentConfigs) and the webhook's one."""
MAX_CONNECTIONS_PER_S_PER_INFORMER = 1.0
POLL_S = 1.0
REGISTRY_HOST = "127.0.0.1:5999"
"""Named by the notifications; never contacted (their digests are trusted)."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory, "apiserver-faults") as own:
        yield own


@pytest.fixture(scope="module")
async def plane_kube(plane: ControlPlane) -> AsyncIterator[Kube]:
    async with kube_with_crds(plane) as kube:
        yield kube


@dataclass
class World:
    namespace: str
    proxy: FaultProxy
    controller: ComponentProcess
    webhook: ComponentProcess


async def start_world(
    plane: ControlPlane, kube: Kube, processes: Processes, proxies: ProxyFactory, prefix: str
) -> World:
    namespace = await new_namespace(kube, prefix)
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    for tag in ("v1", "v2"):
        await kube.create(DEPLOYMENTS, namespace, deployment(f"web-{tag}", follows=f"app:{tag}"))
    proxy, kubeconfig = await proxies(plane, prefix)
    common = ("--watch-namespaces", namespace, "--watch-timeout", str(WATCH_TIMEOUT_S))
    controller = processes.start("controller", kubeconfig, *common)
    webhook = processes.start("webhook", kubeconfig, *common)
    await asyncio.gather(controller.wait_ready(), webhook.wait_ready())
    return World(namespace=namespace, proxy=proxy, controller=controller, webhook=webhook)


async def post(
    session: aiohttp.ClientSession, world: World, tag: str, digest: str, offset: float
) -> tuple[int, str | None]:
    body = notification(
        event_id=f"{tag}-{digest[-8:]}",
        host=REGISTRY_HOST,
        repository=f"{world.namespace}/app",
        tag=tag,
        digest=digest,
        created=timestamp(offset),
    )
    async with session.post(
        f"{world.webhook.webhook_url}/v1/events/distribution",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        await response.read()
        return response.status, response.headers.get("Retry-After")


async def rolled(kube: Kube, namespace: str, name: str, digest: str) -> bool:
    return image_of(await kube.get(DEPLOYMENTS, namespace, name)).endswith(f"@{digest}")


async def while_away(
    world: World, session: aiohttp.ClientSession, *, seconds: float, digest: str
) -> dict[str, object]:
    """What the processes say while the API server is away; `seconds` long."""
    deadline = time.monotonic() + seconds
    not_ready: dict[str, float] = {}
    refused: tuple[int, str | None] | None = None
    began = time.monotonic()
    while time.monotonic() < deadline:
        for name, process in (("controller", world.controller), ("webhook", world.webhook)):
            if name not in not_ready and not await process.ready(session):
                not_ready[name] = time.monotonic() - began
        if refused is None and "webhook" in not_ready:
            status, retry_after = await post(session, world, "v1", digest, 500)
            if status == 503:
                refused = (status, retry_after)
        await asyncio.sleep(POLL_S)
    return {"not_ready_after_s": not_ready, "refused": refused}


async def recovered(
    session: aiohttp.ClientSession, kube: Kube, world: World, *, during: str, direct: str
) -> None:
    """Once the API server is back: the refused push is taken on the sender's retry and
    rolls out, the change made while it was away rolls out (only a watch brings it), and
    both processes are ready and running."""

    async def resent() -> bool:  # the sender's retry of the refused notification
        return (await post(session, world, "v1", during, 500))[0] == 200

    await eventually(resent, timeout_s=60, interval_s=0.5, what="the webhook takes it again")
    await eventually(
        lambda: rolled(kube, world.namespace, "web-v1", during),
        timeout_s=60,
        what="the retried push rolled out",
    )
    await eventually(
        lambda: rolled(kube, world.namespace, "web-v2", direct),
        timeout_s=60,
        what="the change made while the API server was away rolled out",
    )
    for process in (world.controller, world.webhook):
        assert await process.ready(session)
        process.process.check_running()


def behaved_while_away(
    seen: dict[str, object], rate: float, word: str
) -> tuple[dict[str, float], tuple[int, str], float]:
    """Readiness dropped in both processes, the webhook answered 503 with Retry-After, and
    reconnects stayed under the bound (no hot loop); returns what the figure reports."""
    not_ready = seen["not_ready_after_s"]
    assert isinstance(not_ready, dict)
    assert set(not_ready) == {"controller", "webhook"}, f"readiness while {word}: {not_ready}"
    refused = seen["refused"]
    assert isinstance(refused, tuple) and refused[0] == 503 and refused[1], refused
    bound = INFORMERS * MAX_CONNECTIONS_PER_S_PER_INFORMER + 2 / POLL_S + 1
    assert rate <= bound, f"{rate:.1f} connections/s while {word} (bound {bound})"
    return not_ready, refused, bound


async def test_apiserver_restarted_watches_recover_nothing_lost(
    plane: ControlPlane, plane_kube: Kube, processes: Processes, proxies: ProxyFactory
) -> None:
    kube = plane_kube
    world = await start_world(plane, kube, processes, proxies, "restart")
    async with aiohttp.ClientSession() as session:
        before = digest_of("restart-before")
        assert (await post(session, world, "v1", before, 100))[0] == 200
        await eventually(lambda: rolled(kube, world.namespace, "web-v1", before), what="baseline")

        await asyncio.to_thread(plane.apiserver.stop)
        down = time.monotonic()
        during = digest_of("restart-during")
        seen = await while_away(world, session, seconds=AWAY_S, digest=during)
        connections = world.proxy.connections_between(down + 5.0, time.monotonic())
        rate = connections / (time.monotonic() - down - 5.0)
        plane.apiserver.start()
        await asyncio.to_thread(
            wait_until,
            "kube-apiserver ready again",
            lambda: plane.get_raw("/readyz") == "ok",
            timeout_s=120,
            interval_s=0.25,
        )
        up = time.monotonic()
        # Changed while the processes were still away: only their watches can bring it.
        direct = digest_of("restart-direct")
        await move_tag(
            kube, world.namespace, "app", "v2", f"{REGISTRY_HOST}/{world.namespace}/app", direct
        )

        await recovered(session, kube, world, during=during, direct=direct)
        converged = time.monotonic() - up
    not_ready, refused, bound = behaved_while_away(seen, rate, "away")
    relists = len(world.controller.log_events("informer_relist")) + len(
        world.webhook.log_events("informer_relist")
    )
    figure(
        "apiserver-restart",
        away_s=round(up - down, 1),
        connections_per_s_while_away=round(rate, 2),
        bound=bound,
        not_ready_after_s=json.dumps({k: round(v, 1) for k, v in not_ready.items()}),
        webhook_answer=f"{refused[0]} Retry-After={refused[1]}",
        relists_on_410=relists,
        converged_after_up_s=round(converged, 2),
    )


async def test_apiserver_paused_longer_than_a_watch_timeout_recovers(
    plane: ControlPlane, plane_kube: Kube, processes: Processes, proxies: ProxyFactory
) -> None:
    kube = plane_kube
    world = await start_world(plane, kube, processes, proxies, "pause")
    async with aiohttp.ClientSession() as session:
        before = digest_of("pause-before")
        assert (await post(session, world, "v1", before, 100))[0] == 200
        await eventually(lambda: rolled(kube, world.namespace, "web-v1", before), what="baseline")

        plane.apiserver.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            during = digest_of("pause-during")
            seen = await while_away(world, session, seconds=PAUSE_S, digest=during)
            connections = world.proxy.connections_between(paused + 5.0, time.monotonic())
            rate = connections / (time.monotonic() - paused - 5.0)
        finally:
            plane.apiserver.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        direct = digest_of("pause-direct")
        await move_tag(
            kube, world.namespace, "app", "v2", f"{REGISTRY_HOST}/{world.namespace}/app", direct
        )

        await recovered(session, kube, world, during=during, direct=direct)
        converged = time.monotonic() - resumed
    not_ready, refused, bound = behaved_while_away(seen, rate, "paused")
    dropped = len(world.controller.log_events("informer_retry")) + len(
        world.webhook.log_events("informer_retry")
    )
    figure(
        "apiserver-paused",
        paused_s=round(resumed - paused, 1),
        watch_timeout_s=WATCH_TIMEOUT_S,
        connections_per_s_while_paused=round(rate, 2),
        bound=bound,
        not_ready_after_s=json.dumps({k: round(v, 1) for k, v in not_ready.items()}),
        webhook_answer=f"{refused[0]} Retry-After={refused[1]}",
        watch_retries=dropped,
        converged_after_resume_s=round(converged, 2),
    )
