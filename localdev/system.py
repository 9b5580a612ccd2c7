"""Running the controller and the webhook in this process, for tests and benchmarks.

`run_system()` is the same composition `imagestream run` uses
(`imagestream.process.run_components`), started as a task on the caller's
event loop, so a test can drive pushes and read the API while the real
components react, and stop them at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from imagestream.health import StopSignal
from imagestream.process import ComponentStarter, run_components
from imagestream.settings import HostPort, Settings
from localdev.controlplane import free_port

READY_TIMEOUT_S = 60.0


@dataclass
class RunningSystem:
    settings: Settings
    stop: StopSignal
    task: asyncio.Task[None]

    @property
    def webhook_url(self) -> str:
        return f"http://{self.settings.webhook_addr}"

    @property
    def health_url(self) -> str:
        return f"http://{self.settings.health_addr}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.health_url}/readyz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False


def local_settings(*, kubeconfig: Path, **overrides: object) -> Settings:
    """Settings for a process on loopback with free ports."""
    values: dict[str, object] = {
        "kubeconfig": kubeconfig,
        "webhook_addr": HostPort("127.0.0.1", free_port()),
        "health_addr": HostPort("127.0.0.1", free_port()),
        "metrics_addr": HostPort("127.0.0.1", free_port()),
        "log_format": "json",
        "log_level": "info",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def run_system(
    settings: Settings, starters: list[ComponentStarter]
) -> AsyncIterator[RunningSystem]:
    stop = StopSignal()
    task = asyncio.create_task(run_components(settings, starters, stop=stop))
    system = RunningSystem(settings=settings, stop=stop, task=task)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await asyncio.to_thread(system.ready):
            if task.done():
                task.result()  # raises what failed
                raise RuntimeError("components stopped before they were ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {READY_TIMEOUT_S}s")
            await asyncio.sleep(0.1)
        yield system
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
