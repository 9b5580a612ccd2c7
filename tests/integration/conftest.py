"""Session fixtures for the integration tier: real processes, started once.

One control plane per pytest session (starting one costs seconds on two
cores), stopped when the session ends, pass or fail. Tests that need their
own processes start them through `localdev` too, whose atexit hook and
parent-death signal make sure nothing outlives the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from imagestream.kube.client import Kube, connect
from localdev.controlplane import ControlPlane, binary_dir, free_port
from localdev.processes import stop_all
from localdev.registry import NotificationEndpoint, Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(
        workdir=tmp_path_factory.mktemp("controlplane"), bin_dir=binary_dir(build=True)
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes() -> Iterator[None]:
    yield
    stop_all()


@pytest.fixture(scope="session")
async def kube(controlplane: ControlPlane) -> AsyncIterator[Kube]:
    handle = await connect(controlplane.kubeconfig_path)
    try:
        yield handle
    finally:
        await handle.close()


@dataclass
class CapturedRequest:
    headers: dict[str, str]
    body: dict[str, object]


@dataclass
class NotificationReceiver:
    """A plain HTTP endpoint that records what a registry sends it."""

    url: str
    requests: list[CapturedRequest] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate: object, *, timeout_s: float = 30.0) -> CapturedRequest:
        assert callable(predicate)
        async with asyncio.timeout(timeout_s):
            while True:
                for request in self.requests:
                    if predicate(request):
                        return request
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def notification_receiver() -> AsyncIterator[NotificationReceiver]:
    port = free_port()
    receiver = NotificationReceiver(url=f"http://127.0.0.1:{port}/events")

    async def record(request: web.Request) -> web.Response:
        receiver.requests.append(
            CapturedRequest(headers=dict(request.headers), body=json.loads(await request.read()))
        )
        receiver.arrived.set()
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/events", record)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
def registry_to_receiver(
    tmp_path: Path, notification_receiver: NotificationReceiver
) -> Iterator[Registry]:
    registry = Registry(
        workdir=tmp_path / "registry",
        notify=NotificationEndpoint(url=notification_receiver.url, token="test-token-123"),
    ).start()
    try:
        yield registry
    finally:
        registry.stop()
