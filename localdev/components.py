"""The controller and the webhook as real processes (`python -m imagestream.cli ...`).

Benchmarks and fault tests need what production has: one process per
component, its own event loop, its own API connections, a PID to pause,
kill or measure. `start_component()` starts one on free loopback ports with
its log in a file; it is a `ManagedProcess`, so it is stopped by its PID and
never outlives the caller.

`peak_rss_kib()` reads VmHWM (the peak resident set) from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from localdev.controlplane import REPO_ROOT, free_port
from localdev.processes import ManagedProcess

READY_TIMEOUT_S = 120.0


@dataclass
class ComponentProcess:
    """One `imagestream controller|webhook|run` process on loopback."""

    command: str
    process: ManagedProcess
    webhook_addr: str
    health_addr: str
    metrics_addr: str
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def webhook_url(self) -> str:
        return f"http://{self.webhook_addr}"

    @property
    def health_url(self) -> str:
        return f"http://{self.health_addr}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_addr}"

    async def ready(self, session: aiohttp.ClientSession) -> bool:
        self.process.check_running()  # fail at once, with its log, if it died
        try:
            async with session.get(
                f"{self.health_url}/readyz", timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_ready(self, *, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait for /readyz; returns seconds since the process started."""
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + timeout_s
            while not await self.ready(session):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.command} not ready within {timeout_s}s:\n{self.process.tail()}"
                    )
                await asyncio.sleep(0.05)
        return time.monotonic() - self.started_at

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples with these labels, from /metrics."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.metrics_url}/metrics") as response,
        ):
            text = await response.text()
        return metric_sum(text, name, **labels)

    async def api_requests(self) -> dict[str, float]:
        """API requests made so far, as `"VERB code": count` (imagestream_api_requests)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.metrics_url}/metrics") as response,
        ):
            text = await response.text()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("imagestream_api_requests_total{"):
                continue
            labels, _, value = line.rpartition(" ")
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            code = labels.split('code="', 1)[1].split('"', 1)[0]
            counts[f"{verb} {code}"] = counts.get(f"{verb} {code}", 0.0) + float(value)
        return counts

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.pid)

    def log_events(self, event: str) -> list[dict[str, object]]:
        """The JSON log lines whose `event` is `event` (needs --log-format json)."""
        found = []
        try:
            lines = self.process.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            if f'"{event}"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
        return found

    def stop(self, *, timeout_s: float = 30.0) -> None:
        self.process.stop(timeout_s=timeout_s)


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base = metric.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in metric for k, v in labels.items()):
            total += float(value)
    return total


def peak_rss_kib(pid: int) -> int:
    """VmHWM of `pid` in KiB (0 if the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def start_component(
    command: str,
    *,
    kubeconfig: Path,
    log_path: Path,
    args: list[str] | tuple[str, ...] = (),
    webhook_addr: str | None = None,
    name: str | None = None,
    python_prefix: list[str] | tuple[str, ...] = (),
) -> ComponentProcess:
    """Start `python -m imagestream.cli <command>` on free loopback ports.

    `python_prefix` goes between the interpreter and `-m imagestream.cli`
    (e.g. a profiler: `-m pyinstrument -o out.html -m`).
    """
    webhook_addr = webhook_addr or f"127.0.0.1:{free_port()}"
    health_addr = f"127.0.0.1:{free_port()}"
    metrics_addr = f"127.0.0.1:{free_port()}"
    process = ManagedProcess(
        name=name or command,
        argv=[
            sys.executable,
            *python_prefix,
            "-m",
            "imagestream.cli",
            command,
            "--kubeconfig",
            str(kubeconfig),
            "--webhook-addr",
            webhook_addr,
            "--health-addr",
            health_addr,
            "--metrics-addr",
            metrics_addr,
            "--log-format",
            "json",
            *args,
        ],
        log_path=log_path,
        cwd=REPO_ROOT,
    )
    started_at = time.monotonic()
    process.start()
    return ComponentProcess(
        command=command,
        process=process,
        webhook_addr=webhook_addr,
        health_addr=health_addr,
        metrics_addr=metrics_addr,
        started_at=started_at,
    )
