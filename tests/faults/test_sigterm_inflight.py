"""SIGTERM while requests are in flight (docs/delivery-semantics.md#shutdown).

The webhook's API traffic is slowed at its proxy, so 100 notifications are
all inside the webhook, waiting on their status writes, when SIGTERM
arrives. Every request whose connection was made before the signal must be
answered 200 (none reset, none dropped) and be persisted; the process must
then exit on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from types import SimpleNamespace

import aiohttp

from bench.common import digest_of, imagestream, notification, timestamp
from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS
from localdev.controlplane import ControlPlane
from tests.faults.conftest import TOKEN, Processes, ProxyFactory, figure
from tests.integration.conftest import new_namespace
from tests.integration.proctree import wait_all_gone

STREAMS, TAGS = 20, 5  # 100 requests
API_DELAY_MS = 150.0
"""Slow enough to hold the writes; fast enough for the readiness check (2 s)."""
CONNECT_BUDGET_S = 5.0
EXIT_BUDGET_S = 30.0
HOST = "127.0.0.1:5999"


async def test_sigterm_loses_no_request_that_started(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
    proxies: ProxyFactory,
) -> None:
    namespace = await new_namespace(kube, "sigterm")
    for s in range(STREAMS):
        await kube.create(IMAGESTREAMS, namespace, imagestream(f"s{s}"))
    proxy, kubeconfig = await proxies(controlplane, "webhook")
    webhook = processes.start("webhook", kubeconfig, "--watch-namespaces", namespace)
    await webhook.wait_ready()
    proxy.set_delay(API_DELAY_MS)

    connected: list[float] = []
    all_connected = asyncio.Event()

    async def on_connection(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, _params: object
    ) -> None:
        connected.append(time.monotonic())
        if len(connected) >= STREAMS * TAGS:
            all_connected.set()

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    items = [(s, t) for s in range(STREAMS) for t in range(TAGS)]
    answers: dict[tuple[int, int], object] = {}

    async def send(session: aiohttp.ClientSession, item: tuple[int, int]) -> None:
        s, t = item
        body = notification(
            event_id=f"term-{s}-{t}",
            host=HOST,
            repository=f"{namespace}/s{s}",
            tag=f"t{t}",
            digest=digest_of(f"term-{namespace}-{s}-{t}"),
            created=timestamp(s * TAGS + t),
        )
        try:
            async with session.post(
                f"{webhook.webhook_url}/v1/events/distribution",
                data=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                await response.read()
                answers[item] = response.status
        except aiohttp.ClientError as error:
            answers[item] = f"{type(error).__name__}: {error}"

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True), trace_configs=[trace]
    ) as session:
        sending = asyncio.gather(*(send(session, item) for item in items))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_connected.wait(), CONNECT_BUDGET_S)
        await asyncio.sleep(0.05)  # the request bytes follow the connection at once
        signalled = time.monotonic()
        started = sum(1 for moment in connected if moment < signalled)
        in_flight = len(items) - len(answers)
        webhook.process.send_signal(signal.SIGTERM)
        await sending
    assert started == len(items), f"only {started} requests had started before SIGTERM"
    left = await asyncio.to_thread(wait_all_gone, {webhook.pid}, timeout_s=EXIT_BUDGET_S)
    exited_after = time.monotonic() - signalled
    assert left == set(), "the webhook did not exit after SIGTERM"

    failed = {item: answer for item, answer in answers.items() if answer != 200}
    assert not failed, (
        f"{len(failed)} started requests not answered 200: {list(failed.items())[:5]}"
    )
    listed, _ = await kube.list(IMAGESTREAMS, namespace)
    persisted = {
        (int(stream["metadata"]["name"][1:]), int(entry["tag"][1:]))
        for stream in listed
        for entry in (stream.get("status") or {}).get("tags") or []
        if entry.get("items")
    }
    assert persisted == set(items), f"{len(set(items) - persisted)} answered 200 but not persisted"
    figure(
        "sigterm-in-flight",
        started_before_sigterm=started,
        unanswered_at_sigterm=in_flight,
        answered_200=len(items) - len(failed),
        persisted=len(persisted),
        lost=len(items) - len(persisted),
        exited_after_s=round(exited_after, 2),
    )
