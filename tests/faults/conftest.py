"""The fault-injection tier: real processes, faults made on purpose (issue 7).

Run with `make test-faults` (or `pytest tests/faults`); plain `make test`
leaves this directory out (tests/conftest.py): these tests wait out leases,
watch timeouts and outages, minutes in all.

Every test starts its controller and webhook as real processes
(`localdev.components`), stopped by PID at the end, pass or fail, and
checked gone. Faults come from stopping, pausing (SIGSTOP) or restarting
processes, or from `localdev.faultproxy.FaultProxy` in front of the API
server. Each test prints its figure on a line starting with `FIGURE`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from localdev.components import ComponentProcess, start_component
from localdev.controlplane import ControlPlane
from localdev.faultproxy import FaultProxy, proxied_kubeconfig

# The session's control plane, API client and CRDs, as the integration tier has them.
from tests.integration.conftest import (  # noqa: F401 - fixtures, used by name
    _stop_leftover_processes,
    controlplane,
    crds,
    kube,
)
from tests.integration.proctree import wait_all_gone

pytestmark = pytest.mark.integration

TOKEN = "fault-token-0123456789abcdef"
INTEGRATED_REGISTRY = "127.0.0.1:5999"
"""The host the fault tests' notifications name (nothing listens there), unless a test
runs a real registry and names its host."""
GONE_BUDGET_S = 15.0


def figure(name: str, **values: object) -> None:
    """One line a reader (or CI log) can find: `FIGURE <scenario>: key=value, ...`."""
    print(f"\nFIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


class Processes:
    """Component processes one test started; all stopped by PID and checked gone."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ComponentProcess] = []
        self.token_file = directory / "token"
        self.token_file.write_text(TOKEN)

    def start(
        self,
        command: str,
        kubeconfig: Path,
        *args: str,
        name: str | None = None,
        webhook_addr: str | None = None,
    ) -> ComponentProcess:
        name = name or f"{command}-{len(self.started)}"
        extra = list(args)
        if command in ("webhook", "run") and "--webhook-config" not in extra:
            extra += ["--webhook-token-file", str(self.token_file)]
        if command in ("webhook", "run") and "--integrated-registry" not in extra:
            # Integrated receivers record only the integrated registry.
            extra += ["--integrated-registry", INTEGRATED_REGISTRY]
        process = start_component(
            command,
            kubeconfig=kubeconfig,
            log_path=self.directory / f"{name}.log",
            args=extra,
            name=name,
            webhook_addr=webhook_addr,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop(timeout_s=30)
        left = wait_all_gone({p.pid for p in self.started}, timeout_s=GONE_BUDGET_S)
        assert left == set(), f"processes still alive: {left}"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


ProxyFactory = Callable[[ControlPlane, str], Awaitable[tuple[FaultProxy, Path]]]


@pytest.fixture
async def proxies(tmp_path: Path) -> AsyncIterator[ProxyFactory]:
    """Make a FaultProxy in front of a plane's API server, and a kubeconfig through it."""
    made: list[FaultProxy] = []

    async def make(plane: ControlPlane, name: str) -> tuple[FaultProxy, Path]:
        proxy = await FaultProxy("127.0.0.1", plane.apiserver_port).start()
        made.append(proxy)
        config = proxied_kubeconfig(plane.kubeconfig_path, proxy, tmp_path / f"kubeconfig-{name}")
        return proxy, config

    try:
        yield make
    finally:
        for proxy in made:
            await proxy.aclose()
