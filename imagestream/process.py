"""Running one or more components (controller, webhook) as one process.

A component is what `controller.app.start` or `webhook.app.start` returns:
something with readiness checks and an `aclose()`. This module owns what the
components share in a process: the API connection, the health and metrics
servers, signal handling, shutdown in reverse start order, and the caches
more than one component keeps (`SharedCaches`: in `imagestream run` one
ImageStream watch and one copy of every stream, not one per component).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)

from imagestream.health import ReadinessCheck, StopSignal, health_routes, metrics_routes, serve
from imagestream.heap import freeze_survivors
from imagestream.kube.client import Kube, connect
from imagestream.kube.informer import InformerSet
from imagestream.settings import Settings
from imagestream.version import package_version
from imagestream.written import WrittenObjects

log = structlog.get_logger(__name__)

READY_WAIT_S = 120.0


def process_metrics(metrics: CollectorRegistry) -> None:
    """What every process exports whatever it runs: its version and its resource use.

    `imagestream_build_info{version, python_version} 1` (join on it to see what runs
    where), and prometheus_client's process collector (`process_cpu_seconds_total`,
    `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`,
    ...) and platform collector (`python_info`), on this process's own registry.
    """
    Gauge(
        "imagestream_build_info",
        "Always 1; the labels say which version runs, on which Python.",
        ["version", "python_version"],
        registry=metrics,
    ).labels(package_version(), platform.python_version()).set(1)
    ProcessCollector(registry=metrics)
    PlatformCollector(registry=metrics)


def _api_request_metrics(metrics: CollectorRegistry) -> Callable[[str, str, int, float], None]:
    """Count API requests by verb and answer (`0`: no answer: connection error or timeout)."""
    requests = Counter(
        "imagestream_api_requests",
        "API server requests by verb and HTTP status.",
        ["verb", "code"],
        registry=metrics,
    )
    errors = Counter(
        "imagestream_api_errors",
        "API server requests that failed (status >= 400 or none).",
        ["verb"],
        registry=metrics,
    )

    for verb in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        errors.labels(verb)  # a series at 0 from the start, so error rates read 0, not "no data"

    def observe(verb: str, _path: str, status: int, _seconds: float) -> None:
        requests.labels(verb, str(status)).inc()
        if status == 0 or status >= 400:
            errors.labels(verb).inc()

    return observe


IMAGESTREAMS_CACHE = "imagestreams"
"""Every ImageStream in the watched namespaces, trimmed by `imagestreams.trim_for_cache`
(the controller and the webhook)."""


class SharedCaches:
    """The caches of one process, by name: the first component to ask builds one, the
    others get the same one (its handlers replay what it holds to a late subscriber, and
    its watches run once however many components run it: `InformerSet.run`).

    A name stands for one resource with one trim: components that keep different
    fields of the same resource need different names.
    """

    def __init__(self) -> None:
        self._caches: dict[str, InformerSet] = {}

    def get(self, name: str, create: Callable[[], InformerSet]) -> InformerSet:
        if name not in self._caches:
            self._caches[name] = create()
        return self._caches[name]


class Component(Protocol):
    name: str

    @property
    def readiness_checks(self) -> Mapping[str, ReadinessCheck]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Collaborators:
    """What every component is given; components build the rest themselves."""

    settings: Settings
    kube: Kube
    metrics: CollectorRegistry
    stop: StopSignal
    written_imagestreams: WrittenObjects = field(default_factory=WrittenObjects)
    """ImageStreams this process wrote; a component's cache may take them early."""
    caches: SharedCaches = field(default_factory=SharedCaches)
    """Caches the process's components share (one ImageStream cache, not one each)."""
    after_list_page: Callable[[], None] | None = None
    """What the process does after each page a cache lists: in a running process,
    `imagestream.heap.freeze_survivors` (the garbage collector leaves the cache alone)."""


ComponentStarter = Callable[[Collaborators], Awaitable[Component]]


async def run_components(
    settings: Settings,
    starters: Sequence[ComponentStarter],
    *,
    stop: StopSignal,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Start the components, serve health and metrics, and wait for `stop`.

    `on_ready` is called once every readiness check passes (caches synced).
    """
    kube = await connect(settings.kubeconfig)
    metrics = CollectorRegistry()
    process_metrics(metrics)
    kube.observers.append(_api_request_metrics(metrics))
    collaborators = Collaborators(
        settings=settings,
        kube=kube,
        metrics=metrics,
        stop=stop,
        after_list_page=freeze_survivors,
    )
    components: list[Component] = []
    runners: list[web.AppRunner] = []
    try:
        for start in starters:
            component = await start(collaborators)
            components.append(component)
            log.info("component_started", component=component.name)
        checks: dict[str, ReadinessCheck] = {"apiserver": kube.reachable}
        for component in components:
            checks.update(component.readiness_checks)
        runners.append(await serve(health_routes(checks), settings.health_addr, "health"))
        runners.append(
            await serve(metrics_routes(collaborators.metrics), settings.metrics_addr, "metrics")
        )
        if on_ready is not None:
            await _wait_ready(checks, stop)
            on_ready()
        await stop.wait()
        log.info("shutting_down")
    finally:
        for component in reversed(components):
            with contextlib.suppress(Exception):
                await component.aclose()
        for runner in reversed(runners):
            await runner.cleanup()
        await kube.close()


async def _wait_ready(checks: dict[str, ReadinessCheck], stop: StopSignal) -> None:
    """Until every check passes (or we are told to stop); bounded, then say what is missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT_S
    while not stop.is_set():
        failing = [name for name, check in checks.items() if not await check()]
        if not failing:
            return
        if loop.time() > deadline:
            log.warning("not_ready", failing=failing)
            return
        await asyncio.sleep(0.1)
