"""Session fixtures for the integration tier: real processes, started once.

One control plane per pytest session (starting one costs seconds on two
cores), stopped when the session ends, pass or fail. Tests that need their
own processes start them through `localdev` too, whose atexit hook and
parent-death signal make sure nothing outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web

from controller import app as controller_app
from imagestream.health import ReadinessCheck
from imagestream.kube.client import Kube, connect
from imagestream.kube.resources import NAMESPACES
from imagestream.process import Collaborators, ComponentStarter
from localdev.controlplane import ControlPlane, binary_dir, free_port
from localdev.private import write_private
from localdev.processes import stop_all
from localdev.registry import NotificationEndpoint, Registry
from localdev.system import RunningSystem, local_settings, run_system
from webhook import app as webhook_app

T = TypeVar("T")

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


# --- the running system -------------------------------------------------------------------

PULL_ACCESS_TTL_S = 2.0
"""The session controller's image-puller answers expire this soon (default 30 s)."""
RECEIVER_SECRET = "receiver-secret-0123456789"
RECEIVER_BASIC = "acr-user:acr-password-0123"


@pytest.fixture(scope="session")
async def crds(kube: Kube) -> list[str]:
    """Our CRDs, and OpenShift's image ClusterRoles (as `imagestream dev` installs them)."""
    from imagestream.kube.crds import install_crds, load_crds
    from imagestream.kube.roles import install_image_roles, load_image_roles

    installed = await install_crds(kube, load_crds())
    await install_image_roles(kube, load_image_roles())
    return installed


@dataclass
class Probe:
    """A component that does nothing but keep what the process gave its components (a test
    hands an object over through them as the webhook does: tests/integration/test_handoff.py)."""

    collaborators: Collaborators
    name: str = "probe"
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    async def aclose(self) -> None:
        return None


@dataclass
class System:
    """The controller and webhook running against the session control plane and a registry."""

    kube: Kube
    registry: Registry
    running: RunningSystem
    token: str
    collaborators: Collaborators
    """What the process gave its components (the written ImageStreams, the shared caches)."""

    @property
    def webhook_url(self) -> str:
        return self.running.webhook_url


@pytest.fixture(scope="session")
async def system(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[System]:
    """One controller + webhook for the session, and a registry that notifies it."""
    workdir = tmp_path_factory.mktemp("system")
    token = "system-token-" + workdir.name
    token_file = workdir / "token"
    write_private(token_file, token)
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=token_file,
        import_interval_s=5.0,
        # A RoleBinding granted in a test takes effect within this (plus one requeue).
        pull_access_ttl_s=PULL_ACCESS_TTL_S,
        # Tests may name registries elsewhere (OpenShift manifests do); the
        # controller must never contact them from here.
        allowed_registries=("127.0.0.1:*", "localhost:*"),
    )
    registry = Registry(
        workdir=workdir / "registry",
        notify=NotificationEndpoint(
            url=f"http://{settings.webhook_addr}/v1/events/distribution", token=token
        ),
    ).start()
    settings = dataclasses.replace(settings, integrated_registry=registry.host)
    probes: list[Probe] = []

    async def probe(collaborators: Collaborators) -> Probe:
        probes.append(Probe(collaborators))
        return probes[-1]

    try:
        # The composition of `imagestream run`, and the probe.
        starters: list[ComponentStarter] = [controller_app.start, webhook_app.start, probe]
        async with run_system(settings, starters) as running:
            yield System(
                kube=kube,
                registry=registry,
                running=running,
                token=token,
                collaborators=probes[0].collaborators,
            )
    finally:
        registry.stop()


async def new_namespace(
    kube: Kube, prefix: str = "t", *, labels: Mapping[str, str] | None = None
) -> str:
    """A fresh namespace, with its `labels` from the start.

    Labels matter at creation: the API server matches webhook namespace selectors against
    its own cache of namespaces, so a label patched on just after the create may not be
    seen by the next request (it would skip the webhook).
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    metadata: dict[str, object] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    await kube.create(NAMESPACES, None, {"metadata": metadata})
    return name


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after the budget."""
    last: T | None = None
    async with asyncio.timeout(timeout_s):
        while True:
            last = await check()
            if last:
                return last
            await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} not reached")  # pragma: no cover - timeout raises first


def push(system: System, tmp_path: Path, destination: str, content: str | None = None) -> str:
    """Push a fresh image (or one made of `content`) to `<registry>/<destination>` with skopeo."""
    from localdev.images import make_oci_image, skopeo_push

    image = make_oci_image(tmp_path / uuid.uuid4().hex, content or uuid.uuid4().hex)
    skopeo_push(image, f"{system.registry.host}/{destination}")
    return image.manifest_digest


@contextlib.contextmanager
def own_control_plane(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[ControlPlane]:
    """A control plane for tests that own their processes (the session one has a controller)."""
    plane = ControlPlane(workdir=tmp_path_factory.mktemp(name), bin_dir=binary_dir(build=True))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@contextlib.asynccontextmanager
async def kube_with_crds(plane: ControlPlane) -> AsyncIterator[Kube]:
    """A connection to `plane`, with our CRDs installed."""
    from imagestream.kube.crds import install_crds, load_crds

    handle = await connect(plane.kubeconfig_path)
    await install_crds(handle, load_crds())
    try:
        yield handle
    finally:
        await handle.close()
