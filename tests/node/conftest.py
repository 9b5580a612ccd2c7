"""The node tier: the whole system on a real one-node cluster, so pods really run.

One session: a control plane, the real node (containerd, runc, CNI, kubelet,
kube-scheduler, kube-proxy, CoreDNS; `localdev.node`), a distribution
registry on the node's host-only address whose notifications go to the
webhook, and the controller and webhook in this process. Tests here prove
what a user sees: a push becomes a running pod of the pushed digest.

This tier runs in its own pytest process (`make test` runs it after the
integration tier), because a machine has one node at a time and the
integration tier starts and kills nodes of its own (tests/integration/
test_node.py, test_no_orphans.py). On a machine that cannot run a node the
whole tier skips, saying why.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller import app as controller_app
from imagestream.kube.client import Kube, connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.resources import NAMESPACES
from imagestream.kube.roles import install_image_roles, load_image_roles
from imagestream.settings import HostPort
from localdev.builder import push_builder
from localdev.controlplane import free_port
from localdev.processes import stop_all
from localdev.registry import NotificationEndpoint
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.nodecluster import NodeCluster, node_cluster
from tests.node.pods import delete_namespace
from webhook import app as webhook_app

TOKEN = "node-tier-token-0123456789"


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes() -> Iterator[None]:
    yield
    stop_all()


@pytest.fixture(scope="session")
def webhook_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, webhook_port: int) -> Iterator[NodeCluster]:
    notify = NotificationEndpoint(
        url=f"http://127.0.0.1:{webhook_port}/v1/events/distribution", token=TOKEN
    )
    with node_cluster(tmp_path_factory.mktemp("node-tier"), notify=notify) as running:
        yield running


@dataclass
class NodeSystem:
    cluster: NodeCluster
    kube: Kube
    running: RunningSystem


@pytest.fixture(scope="session")
async def system(
    cluster: NodeCluster, webhook_port: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[NodeSystem]:
    token_file = tmp_path_factory.mktemp("node-tier-token") / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    kube = await connect(cluster.plane.kubeconfig_path)
    await install_crds(kube, load_crds())
    # OpenShift's image ClusterRoles, as `imagestream dev` installs them (the image-puller rule).
    await install_image_roles(kube, load_image_roles())
    settings = local_settings(
        kubeconfig=cluster.plane.kubeconfig_path,
        webhook_addr=HostPort("127.0.0.1", webhook_port),
        webhook_token_file=token_file,
        integrated_registry=cluster.registry.host,
        allowed_registries=(cluster.registry.host,),
        # Builds run the builder made here, as `imagestream dev` runs them.
        builder_image=await asyncio.to_thread(push_builder, cluster.registry.host),
        build_insecure_registries=(cluster.registry.host,),
    )
    try:
        async with run_system(settings, [controller_app.start, webhook_app.start]) as running:
            yield NodeSystem(cluster=cluster, kube=kube, running=running)
    finally:
        await kube.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def namespace(system: NodeSystem) -> AsyncIterator[str]:
    """A namespace of the test's own, deleted (and waited for, pods and all) when it ends."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    await system.kube.create(NAMESPACES, None, {"metadata": {"name": name}})
    try:
        yield name
    finally:
        await delete_namespace(system.kube, name)
