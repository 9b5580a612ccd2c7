"""The controller as a process: killed mid-flight, restarted, and two of them electing a leader.

These tests own their controllers, so they get a control plane of their own
(the session one already has a controller acting on every namespace).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS, LEASES, REPLICASETS
from localdev.controlplane import ControlPlane, free_port
from tests.integration.conftest import (
    eventually,
    kube_with_crds,
    new_namespace,
    own_control_plane,
)
from tests.integration.proctree import wait_all_gone
from tests.integration.workloads import images, imagestream, move_tag, trigger, workload

LEASE_DURATION_S = 15.0
RETRY_PERIOD_S = 2.0
HANDOVER_MARGIN_S = 10.0
"""Slack for process start-up and cache sync on a loaded two-core machine."""

REGISTRY = "registry.invalid:5000"
"""No registry is contacted here: tags are written straight into ImageStream status."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory, "lifecycle-plane") as own:
        yield own


@pytest.fixture(scope="module")
async def plane_kube(plane: ControlPlane) -> AsyncIterator[Kube]:
    async with kube_with_crds(plane) as kube:
        yield kube


@dataclass
class ControllerProcess:
    popen: subprocess.Popen[bytes]

    @property
    def identity_suffix(self) -> str:
        return f"_{self.popen.pid}"


class Controllers:
    """Controller processes started by one test, all stopped (by PID) when it ends."""

    def __init__(self, plane: ControlPlane, logs: Path) -> None:
        self.plane, self.logs = plane, logs
        self.started: list[ControllerProcess] = []

    def start(self, *extra: str) -> ControllerProcess:
        log = open(self.logs / f"controller-{len(self.started)}.log", "wb")  # noqa: SIM115
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagestream.cli",
                "controller",
                "--kubeconfig",
                str(self.plane.kubeconfig_path),
                "--health-addr",
                f"127.0.0.1:{free_port()}",
                "--metrics-addr",
                f"127.0.0.1:{free_port()}",
                "--webhook-addr",
                f"127.0.0.1:{free_port()}",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        log.close()
        process = ControllerProcess(popen)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        assert wait_all_gone({p.popen.pid for p in self.started}, timeout_s=10) == set()


@pytest.fixture
def controllers(plane: ControlPlane, tmp_path: Path) -> Iterator[Controllers]:
    started = Controllers(plane, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


async def deployment_image(kube: Kube, namespace: str, name: str) -> str:
    return images(await kube.get(DEPLOYMENTS, namespace, name))["main"]


async def setup_workload(kube: Kube, namespace: str) -> None:
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


async def test_killed_between_the_tag_move_and_the_patch_converges_with_one_rollout(
    plane_kube: Kube, controllers: Controllers
) -> None:
    kube = plane_kube
    namespace = await new_namespace(kube, "kill9")
    await setup_workload(kube, namespace)
    controller = controllers.start()
    await move_tag(kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(1))
    first = f"{REGISTRY}/{namespace}/app@{digest(1)}"

    async def at(image: str) -> bool:
        return await deployment_image(kube, namespace, "web") == image

    await eventually(lambda: at(first), what="first image applied", timeout_s=60)
    controller.popen.send_signal(signal.SIGKILL)
    controller.popen.wait(timeout=10)
    generation = (await kube.get(DEPLOYMENTS, namespace, "web"))["metadata"]["generation"]

    await move_tag(
        kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(2)
    )  # the ImageStream moved, no patch yet
    second = f"{REGISTRY}/{namespace}/app@{digest(2)}"
    controllers.start()
    await eventually(lambda: at(second), what="second image after restart", timeout_s=60)
    await asyncio.sleep(2.0)  # any second, duplicate rollout would show by now
    after = await kube.get(DEPLOYMENTS, namespace, "web")
    assert after["metadata"]["generation"] == generation + 1, "exactly one rollout"
    replica_sets, _ = await kube.list(REPLICASETS, namespace)
    with_second = [
        rs
        for rs in replica_sets
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == second
    ]
    assert len(with_second) == 1


async def test_only_the_leader_writes_and_a_standby_takes_over(
    plane_kube: Kube, controllers: Controllers
) -> None:
    kube = plane_kube
    lease_namespace = await new_namespace(kube, "lease")
    namespace = await new_namespace(kube, "elect")
    await setup_workload(kube, namespace)
    flags = ("--leader-elect", "true", "--leader-election-namespace", lease_namespace)
    first, second = controllers.start(*flags), controllers.start(*flags)

    async def holder() -> str | None:
        try:
            lease = await kube.get(LEASES, lease_namespace, "imagestream-controller")
        except Exception:
            return None
        return (lease.get("spec") or {}).get("holderIdentity") or None

    leader_identity = await eventually(holder, what="a leader", timeout_s=60)
    leader, standby = (
        (first, second) if leader_identity.endswith(first.identity_suffix) else (second, first)
    )
    assert leader_identity.endswith(leader.identity_suffix)

    await move_tag(kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(3))
    image = f"{REGISTRY}/{namespace}/app@{digest(3)}"

    async def at(expected: str) -> bool:
        return await deployment_image(kube, namespace, "web") == expected

    await eventually(lambda: at(image), what="the leader applies the tag", timeout_s=60)
    # Events are posted in the background, after the patch: wait for them.
    reporters = await eventually(
        lambda: _trigger_event_reporters(kube, namespace), what="the ImageTriggered Event"
    )
    assert reporters == {leader_identity}, reporters

    leader.popen.send_signal(signal.SIGKILL)  # no chance to release the lease
    leader.popen.wait(timeout=10)
    killed_at = asyncio.get_running_loop().time()
    await move_tag(kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(4))
    moved = f"{REGISTRY}/{namespace}/app@{digest(4)}"
    await eventually(
        lambda: at(moved),
        what="the standby applies the next tag",
        timeout_s=LEASE_DURATION_S + RETRY_PERIOD_S + HANDOVER_MARGIN_S,
    )
    took = asyncio.get_running_loop().time() - killed_at
    new_holder = await holder()
    assert new_holder is not None and new_holder.endswith(standby.identity_suffix)
    print(f"handover took {took:.1f}s (lease {LEASE_DURATION_S}s + retry {RETRY_PERIOD_S}s)")
    assert standby.popen.poll() is None


async def _trigger_event_reporters(kube: Kube, namespace: str) -> set[str]:
    events = await kube.request("GET", EVENTS.path(namespace=namespace))
    return {
        e.get("reportingInstance", "")
        for e in events.get("items") or []
        if e.get("reason") == "ImageTriggered"
    }
