"""A control plane, a registry and a real node, and what the host looked like before.

`node_cluster()` starts the three in the order `localdev.node` needs (host
side of the node, control plane on the node's host address, registry there
too, then the node) and stops them in reverse, pass or fail. Tests skip,
with the reason, on a machine that cannot run a node (not root, no
containerd, ...).

`HostSnapshot` is what "nothing is left" is checked against: iptables (v4
and v6, counters stripped), the sysctls a node changes, links, every mount
point, bound network namespaces, the fixed paths containerd and the kubelet
use, the `kubepods` cgroups and the node's per-run dirs.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from localdev.controlplane import ControlPlane, binary_dir
from localdev.images import APP_PORT, make_app_image, skopeo_push
from localdev.node import (
    FIXED_PATHS,
    Node,
    NodeUnavailableError,
    iptables_rules,
    node_binary_dir,
    nsfs_mounts,
    pids_mentioning,
    preflight,
    read_sysctls,
)
from localdev.registry import NotificationEndpoint, Registry

ROLLOUT_TIMEOUT_S = 90


@dataclass(frozen=True)
class HostSnapshot:
    iptables4: str
    iptables6: str
    sysctls: tuple[tuple[str, str], ...]
    links: tuple[str, ...]
    mounts: tuple[str, ...]
    nsfs: tuple[str, ...]
    netns: str
    paths: tuple[tuple[str, bool], ...]
    kubepods: tuple[str, ...]
    node_dirs: tuple[str, ...]

    @classmethod
    def take(cls) -> HostSnapshot:
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        return cls(
            iptables4=iptables_rules("4"),
            iptables6=iptables_rules("6"),
            sysctls=tuple(sorted(read_sysctls().items())),
            links=tuple(
                sorted(
                    line.split()[0].split("@")[0]
                    for line in subprocess.run(
                        ["ip", "-br", "link"], capture_output=True, text=True, check=True
                    ).stdout.splitlines()
                )
            ),
            mounts=tuple(sorted(line.split()[4] for line in mountinfo)),
            nsfs=tuple(nsfs_mounts()),
            netns=subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=True
            ).stdout,
            paths=tuple((path, os.path.lexists(path)) for path in FIXED_PATHS),
            kubepods=tuple(sorted(glob.glob("/sys/fs/cgroup/*/kubepods"))),
            node_dirs=tuple(sorted(glob.glob("/var/lib/isnode-*") + glob.glob("/run/isnode-*"))),
        )

    def differences(self, other: HostSnapshot) -> list[str]:
        return [
            f"{f.name}: before {getattr(self, f.name)!r}, after {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


def skip_unless_node_can_run() -> None:
    problems = preflight()
    if problems:
        pytest.skip("no real node on this machine: " + "; ".join(problems))


@dataclass
class NodeCluster:
    node: Node
    plane: ControlPlane
    registry: Registry

    def kubectl(self, *args: str, stdin: str = "", check: bool = True) -> str:
        return self.node.kubectl_run(self.plane, *args, stdin=stdin, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def push_app(self, workdir: Path, repo: str, marker: str) -> str:
        """Push an app image serving `marker`; returns its manifest digest."""
        image = make_app_image(workdir / marker, marker)
        skopeo_push(image, f"{self.registry.host}/{repo}:latest")
        return image.manifest_digest

    def pids(self) -> set[int]:
        """Every process of the node: its own, the reaper, shims and containers."""
        assert self.node.state is not None
        pids = {process.pid for process in self.node.processes.values()}
        pids.add(self.node.state.reaper_pid)
        pids.update(pids_mentioning(str(self.node.state.run_dir) + "/"))
        for procs in glob.glob("/sys/fs/cgroup/pids/kubepods/**/cgroup.procs", recursive=True):
            with contextlib.suppress(OSError):
                pids.update(int(pid) for pid in Path(procs).read_text().split())
        return pids


@contextlib.contextmanager
def node_cluster(
    workdir: Path,
    *,
    with_dns: bool = True,
    notify: NotificationEndpoint | None = None,
    plain_http_registries: tuple[str, ...] = (),
    service_account_tokens: bool = False,
    registry_mirrors: dict[str, str] | None = None,
) -> Iterator[NodeCluster]:
    skip_unless_node_can_run()
    node = Node(
        workdir=workdir / "node",
        bin_dir=node_binary_dir(build=True),
        with_dns=with_dns,
        plain_http_registries=plain_http_registries,
        service_account_tokens=service_account_tokens,
        registry_mirrors=dict(registry_mirrors or {}),
    )
    plane: ControlPlane | None = None
    registry: Registry | None = None
    try:
        try:
            node.prepare()
        except NodeUnavailableError as error:
            pytest.skip(f"no real node on this machine: {error}")
        plane = ControlPlane(
            workdir=workdir / "plane",
            bin_dir=binary_dir(build=True),
            **node.controlplane_options(),
        ).start()
        registry = Registry(
            workdir=workdir / "registry", address=node.registry_address, notify=notify
        ).start()
        node.start(plane, registry)
        yield NodeCluster(node=node, plane=plane, registry=registry)
    finally:
        try:
            node.stop()
        finally:
            if registry is not None:
                registry.stop()
            if plane is not None:
                plane.stop()


def app_deployment(name: str, image: str, *, replicas: int = 1) -> dict[str, Any]:
    """A Deployment of the app image, Ready once it serves its page."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": APP_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": APP_PORT},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def deploy_app(cluster: NodeCluster, namespace: str, name: str, image: str) -> dict[str, Any]:
    """Apply the app Deployment, wait until rolled out; returns its one Pod."""
    cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=json.dumps(app_deployment(name, image))
    )
    cluster.kubectl(
        "-n",
        namespace,
        "rollout",
        "status",
        f"deployment/{name}",
        f"--timeout={ROLLOUT_TIMEOUT_S}s",
    )
    pods = cluster.get("-n", namespace, "pods", "-l", f"app={name}")["items"]
    running = [p for p in pods if p["metadata"].get("deletionTimestamp") is None]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return dict(running[0])


def http_get(url: str, *, timeout_s: float = 5.0) -> str:
    """GET from a Pod or Service address of the local cluster (never anything else)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def dns_query(server: str, name: str, *, timeout_s: float = 3.0) -> tuple[int, list[str]]:
    """One A query over UDP: (rcode, addresses). A resolver of our own, so the
    test asks exactly the server it names and nothing else."""
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    question += b"\0" + struct.pack(">HH", 1, 1)
    query = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(query, (server, 53))
        answer, _ = sock.recvfrom(4096)
    rcode = answer[3] & 0x0F
    count = struct.unpack(">H", answer[6:8])[0]
    offset = 12 + len(question)
    addresses = []
    for _ in range(count):
        if answer[offset] & 0xC0 == 0xC0:
            offset += 2
        else:
            while answer[offset]:
                offset += answer[offset] + 1
            offset += 1
        rtype, _class, _ttl, length = struct.unpack(">HHIH", answer[offset : offset + 10])
        offset += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(answer[offset : offset + length]))
        offset += length
    return rcode, addresses


def wait_gone(pids: set[int], *, timeout_s: float) -> set[int]:
    from tests.integration.proctree import wait_all_gone

    return wait_all_gone(pids, timeout_s=timeout_s)


def wait_for(check: Any, *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # not there yet
            last = error
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last error: {last!r})")
