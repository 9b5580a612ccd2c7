"""A real node: Pods run images pushed by digest to the local registry.

What this proves, against real processes (containerd, runc, kubelet,
kube-scheduler, kube-proxy, CoreDNS): the node registers and is Ready; a
Deployment whose image is a digest in the local registry becomes Ready
through its readiness probe, and the running Pod serves the marker that
image was built with (read over HTTP from the Pod IP and from the Pod's
log), with `imageID` the pushed digest; Pods reach the API server through
the `kubernetes` Service and the registry at the node's host address; the
cluster DNS answers for Service names and for nothing outside the cluster
domain. And stopping leaves the host as it was (checked at module end).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.images import APP_PORT
from localdev.node import (
    DNS_SERVICE_IP,
    GUARD_COMMENT,
    HOST_ADDRESS,
    KUBERNETES_SERVICE_IP,
    NODE_NAME,
    STATE_PATH,
    read_sysctls,
)
from tests.integration.nodecluster import (
    HostSnapshot,
    NodeCluster,
    deploy_app,
    dns_query,
    http_get,
    node_cluster,
    skip_unless_node_can_run,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.integration

GONE_BUDGET_S = 20.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    skip_unless_node_can_run()
    before = HostSnapshot.take()
    pids: set[int] = set()
    with node_cluster(tmp_path_factory.mktemp("node")) as running:
        yield running
        pids = running.pids()
    # A leak fails the module even when every test passed.
    assert wait_gone(pids, timeout_s=GONE_BUDGET_S) == set()
    assert HostSnapshot.take().differences(before) == []
    assert not STATE_PATH.exists()


@pytest.fixture
def namespace(cluster: NodeCluster) -> str:
    name = f"node-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


def test_the_node_registers_and_is_ready(cluster: NodeCluster) -> None:
    node = cluster.get("node", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    # Nothing keeps Pods off it, and it never advertises the uplink.
    assert not [t for t in node["spec"].get("taints", []) if t["effect"] == "NoSchedule"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses == {"InternalIP": HOST_ADDRESS, "Hostname": NODE_NAME}
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")


def test_a_deployment_runs_the_pushed_digest_and_serves_its_marker(
    cluster: NodeCluster, namespace: str, tmp_path: Path
) -> None:
    marker = f"m-{uuid.uuid4().hex[:12]}"
    repo = f"{namespace}/app"
    digest = cluster.push_app(tmp_path, repo, marker)
    image = f"{cluster.registry.host}/{repo}@{digest}"

    pod = deploy_app(cluster, namespace, "app", image)

    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    # containerd 1.6 reports `image` as the config digest for a digest-only
    # reference; imageID is the manifest digest we pushed.
    assert status["imageID"] == image
    page = http_get(f"http://{pod['status']['podIP']}:{APP_PORT}/")
    assert f"marker={marker}" in page
    # Through the API server to the kubelet (client certs both ways).
    logs = cluster.kubectl("-n", namespace, "logs", pod["metadata"]["name"])
    assert f"app {marker} starting" in logs


def test_a_rollout_moves_to_the_new_digest(
    cluster: NodeCluster, namespace: str, tmp_path: Path
) -> None:
    repo = f"{namespace}/app"
    first = cluster.push_app(tmp_path, repo, "first-" + uuid.uuid4().hex[:8])
    deploy_app(cluster, namespace, "roll", f"{cluster.registry.host}/{repo}@{first}")
    marker = "second-" + uuid.uuid4().hex[:8]
    second = cluster.push_app(tmp_path, repo, marker)

    pod = deploy_app(cluster, namespace, "roll", f"{cluster.registry.host}/{repo}@{second}")

    assert pod["status"]["containerStatuses"][0]["imageID"].endswith("@" + second)
    assert f"marker={marker}" in http_get(f"http://{pod['status']['podIP']}:{APP_PORT}/")


def test_pods_reach_the_api_server_and_the_registry(
    cluster: NodeCluster, namespace: str, tmp_path: Path
) -> None:
    repo = f"{namespace}/app"
    digest = cluster.push_app(tmp_path, repo, "probe")
    pod = deploy_app(cluster, namespace, "probe", f"{cluster.registry.host}/{repo}@{digest}")
    name = pod["metadata"]["name"]

    def from_pod(address: str, port: int, path: str) -> str:
        # busybox nc, plain HTTP: the API server's TLS port answers that with
        # its own 400, which proves the Service led to the API server.
        request = f"GET {path} HTTP/1.0\\r\\n\\r\\n"
        return cluster.kubectl(
            "-n", namespace, "exec", name, "--", "sh", "-c",
            f"printf '{request}' | nc -w 3 {address} {port}",
        )  # fmt: skip

    assert "Client sent an HTTP request to an HTTPS server" in from_pod(
        KUBERNETES_SERVICE_IP, 443, "/"
    )
    registry_port = int(cluster.registry.host.rsplit(":", 1)[1])
    assert from_pod(HOST_ADDRESS, registry_port, "/v2/").startswith("HTTP/1.0 200")


def test_cluster_dns_answers_for_services_and_only_the_cluster_domain(
    cluster: NodeCluster, namespace: str, tmp_path: Path
) -> None:
    # CoreDNS reads Services through the kubernetes Service: an answer also
    # proves a real TLS session from a Pod to the API server.
    assert dns_query(DNS_SERVICE_IP, "kubernetes.default.svc.cluster.local") == (
        0,
        [KUBERNETES_SERVICE_IP],
    )
    refused = 5
    assert dns_query(DNS_SERVICE_IP, "example.com")[0] == refused

    repo = f"{namespace}/app"
    marker = "svc-" + uuid.uuid4().hex[:8]
    digest = cluster.push_app(tmp_path, repo, marker)
    deploy_app(cluster, namespace, "web", f"{cluster.registry.host}/{repo}@{digest}")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": APP_PORT}]},
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(service))
    cluster_ip = cluster.get("-n", namespace, "service", "web")["spec"]["clusterIP"]

    assert wait_for(
        lambda: dns_query(DNS_SERVICE_IP, f"web.{namespace}.svc.cluster.local")[1] == [cluster_ip],
        timeout_s=30,
        what="the Service name resolves",
    )
    # kube-proxy: the ClusterIP leads to the Pod.
    page = wait_for(
        lambda: http_get(f"http://{cluster_ip}:80/"), timeout_s=30, what="the ClusterIP answers"
    )
    assert f"marker={marker}" in page


def test_pod_and_service_addresses_never_route_to_an_uplink(cluster: NodeCluster) -> None:
    state = cluster.node.state
    assert state is not None and state.uplinks
    for address in (KUBERNETES_SERVICE_IP, "10.0.0.250", "10.244.0.250", "10.244.9.9"):
        route = subprocess.run(
            ["ip", "route", "get", address], capture_output=True, text=True, check=True
        ).stdout
        assert not any(f"dev {uplink} " in route for uplink in state.uplinks), route
    # The bridge plugin turned forwarding on; the guard is what keeps Pods in.
    assert read_sysctls()["net.ipv4.ip_forward"] == "1"
    mangle = subprocess.run(
        ["iptables", "-t", "mangle", "-S"], capture_output=True, text=True, check=True
    ).stdout
    for uplink in state.uplinks:
        for match in (f"-A FORWARD -o {uplink}", f"-A FORWARD -i {uplink}"):
            assert f"{match} -m comment --comment {GUARD_COMMENT} -j DROP" in mangle
