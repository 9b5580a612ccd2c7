"""The leader is cut off from the API server (docs/delivery-semantics.md#leader-election).

Two controllers elect a leader through a Lease, each reaching the API
server through its own FaultProxy. The leader's proxy turns into a
blackhole (connections accepted, nothing forwarded: renewals hang). The
leader must stop by the renew deadline, before its lease can expire; the
proxy is then opened again, 2 s after that deadline, while the lease is
still the leader's: had it kept going, its writes would reach the API
server now. None may (it has stopped; the proxy sees no new connection),
and the standby takes over once the lease expires and rolls the next tag,
exactly once.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import deployment, digest_of, image_of, imagestream
from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError
from imagestream.kube.leader import LEASE_DURATION_S, RENEW_DEADLINE_S, RETRY_PERIOD_S
from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS, LEASES
from localdev.controlplane import ControlPlane
from tests.faults.conftest import Processes, ProxyFactory, figure
from tests.integration.conftest import eventually, new_namespace
from tests.integration.proctree import is_alive, wait_all_gone
from tests.integration.workloads import move_tag

REGISTRY = "registry.invalid:5000"
MARGIN_S = 10.0
"""Process start-up and cache sync on a loaded two-core machine."""


async def test_leader_cut_off_stops_writing_and_the_standby_takes_over(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
    proxies: ProxyFactory,
) -> None:
    lease_namespace = await new_namespace(kube, "lease")
    namespace = await new_namespace(kube, "cutoff")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await kube.create(DEPLOYMENTS, namespace, deployment("web", follows="app:v1"))
    flags = (
        "--leader-elect",
        "true",
        "--leader-election-namespace",
        lease_namespace,
        "--watch-namespaces",
        namespace,
    )
    proxy_a, config_a = await proxies(controlplane, "a")
    proxy_b, config_b = await proxies(controlplane, "b")
    first = processes.start("controller", config_a, *flags, name="controller-a")
    second = processes.start("controller", config_b, *flags, name="controller-b")

    async def holder() -> str | None:
        try:
            lease = await kube.get(LEASES, lease_namespace, "imagestream-controller")
        except KubeError:
            return None
        return (lease.get("spec") or {}).get("holderIdentity") or None

    leader_identity = await eventually(holder, timeout_s=60, what="a leader")
    if leader_identity.endswith(f"_{first.pid}"):
        leader, standby, leader_proxy = first, second, proxy_a
    else:
        leader, standby, leader_proxy = second, first, proxy_b
    assert leader_identity.endswith(f"_{leader.pid}")
    await standby.wait_ready()

    reference = f"{REGISTRY}/{namespace}/app"

    async def at(digest: str) -> bool:
        return image_of(await kube.get(DEPLOYMENTS, namespace, "web")).endswith(f"@{digest}")

    one = digest_of("cutoff-1")
    await move_tag(kube, namespace, "app", "v1", reference, one)
    await eventually(lambda: at(one), timeout_s=60, what="the leader rolls the first tag")
    generation = (await kube.get(DEPLOYMENTS, namespace, "web"))["metadata"]["generation"]

    leader_proxy.set_blackhole()
    cut = time.monotonic()
    await asyncio.to_thread(wait_all_gone, {leader.pid}, timeout_s=RENEW_DEADLINE_S + MARGIN_S)
    stopped_after = time.monotonic() - cut
    assert not is_alive(leader.pid), "the cut-off leader is still running"
    assert stopped_after <= RENEW_DEADLINE_S + 2.0, f"stopped {stopped_after:.1f}s after the cut"
    lost = leader.log_events("leader_lost")
    assert lost, "the leader logged no leader_lost"

    # Open the way again before the lease can expire: a leader still running now
    # would renew, and write, through it.
    await asyncio.sleep(max(0.0, cut + RENEW_DEADLINE_S + 2.0 - time.monotonic()))
    leader_proxy.set_pass()
    opened = time.monotonic()
    assert await holder() == leader_identity, "the lease moved before it expired"

    new_holder = await eventually(
        lambda: _other(holder, leader_identity),
        timeout_s=LEASE_DURATION_S + RETRY_PERIOD_S + MARGIN_S,
        interval_s=0.2,
        what="the standby takes the lease",
    )
    took_over = time.monotonic() - cut
    assert new_holder.endswith(f"_{standby.pid}")

    two = digest_of("cutoff-2")
    await move_tag(kube, namespace, "app", "v1", reference, two)
    await eventually(lambda: at(two), timeout_s=60, what="the standby rolls the next tag")
    await asyncio.sleep(2.0)  # a second, duplicate patch would show by now
    after = await kube.get(DEPLOYMENTS, namespace, "web")
    assert after["metadata"]["generation"] == generation + 1, "exactly one rollout"
    late_connections = leader_proxy.connections_between(opened, time.monotonic())
    assert late_connections == 0, "the old leader connected after the renew deadline"
    reporters = await _reporters(kube, namespace, two)
    assert reporters == {new_holder}, reporters
    figure(
        "leader-cut-off",
        leader_stopped_after_s=round(stopped_after, 2),
        renew_deadline_s=RENEW_DEADLINE_S,
        old_leader_connections_after_deadline=late_connections,
        takeover_after_s=round(took_over, 2),
        takeover_bound_s=LEASE_DURATION_S + RETRY_PERIOD_S,
        rollouts_of_next_tag=1,
    )


async def _other(holder: object, old: str) -> str | None:
    assert callable(holder)
    current = await holder()
    return current if current and current != old else None


async def _reporters(kube: Kube, namespace: str, digest: str) -> set[str]:
    events = await kube.request("GET", EVENTS.path(namespace=namespace))
    found: set[str] = set()
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        found = {
            str(e.get("reportingInstance", ""))
            for e in events.get("items") or []
            if e.get("reason") == "ImageTriggered" and digest in str(e.get("note", ""))
        }
        if not found:
            await asyncio.sleep(0.2)
            events = await kube.request("GET", EVENTS.path(namespace=namespace))
    return found
