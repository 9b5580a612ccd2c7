"""The in-cluster tier: our image, the chart's own pods and Tilt, on the real node.

Here nothing of the system runs in the test process: the controller and the
webhook run as the chart's pods, from our image built with buildah
(`localdev.project_image`), beside the integrated registry that the
controller's registry operator runs for the chart (Debian's docker-registry,
`localdev.debian_images.REGISTRY`). The node (`localdev.
node`) is told to pull from that registry over plain HTTP at the fixed
Service address `IN_CLUSTER_REGISTRY`, which the host reaches through
kube-proxy, so skopeo pushes there from outside the cluster and containerd
pulls from there, all on this machine.

A tier of its own, in its own pytest process (`make test` runs it after the
node tier): a machine has one node at a time, and the node tier's session
runs a controller and a webhook in its process, which would act on this
tier's ImageStreams too.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localdev import debian_images, project_image
from localdev.images import skopeo_push
from localdev.processes import stop_all
from tests.integration.helm import Helm, helm_dir
from tests.integration.nodecluster import NodeCluster, node_cluster, wait_for

# A fixed address in the Service CIDR (10.0.0.0/24), so the node can be told
# before the Service exists; port 5000 is the chart's default. In the low
# band (the first 16 addresses) that the API server hands out to Services
# without a clusterIP only when the rest is full, so no Service made earlier
# holds it (10.0.0.50 did once: "provided IP is already allocated").
IN_CLUSTER_REGISTRY_IP = "10.0.0.12"
IN_CLUSTER_REGISTRY = f"{IN_CLUSTER_REGISTRY_IP}:5000"
IMAGES_BUDGET_S = 1800  # cold: three Debian images and our build, on two shared cores
GONE_BUDGET_S = 120.0


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes() -> Iterator[None]:
    yield
    stop_all()


def _skip_unless_images_can_be_made() -> None:
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap's root mode and buildah on the host need root")
    for tool in (debian_images.MMDEBSTRAP, project_image.BUILDAH, "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (scripts/install-system-deps.sh)")


@dataclass(frozen=True)
class Images:
    """Every image the chart's pods run, pushed to the node's registry, by digest or tag."""

    controller_repository: str
    controller_digest: str
    registry_repository: str
    registry_tag: str
    curl_repository: str
    curl_tag: str

    def helm_values(self) -> list[str]:
        return [
            "--set",
            f"image.repository={self.controller_repository}",
            "--set",
            f"image.digest={self.controller_digest}",
            "--set",
            f"registry.image.repository={self.registry_repository}",
            "--set-string",
            f"registry.image.tag={self.registry_tag}",
            "--set",
            f"tests.image.repository={self.curl_repository}",
            "--set-string",
            f"tests.image.tag={self.curl_tag}",
        ]


@dataclass(frozen=True)
class BuiltImages:
    controller: project_image.ProjectImage
    registry: debian_images.BuiltImage
    curl: debian_images.BuiltImage


@pytest.fixture(scope="session")
def built() -> BuiltImages:
    """Made here (cached), before the node starts: a cold build takes minutes."""
    _skip_unless_images_can_be_made()
    return BuiltImages(
        controller=project_image.build("runtime"),
        registry=debian_images.build(debian_images.REGISTRY),
        curl=debian_images.build(debian_images.CURL),
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, built: BuiltImages) -> Iterator[NodeCluster]:
    with node_cluster(
        tmp_path_factory.mktemp("incluster"),
        plain_http_registries=(IN_CLUSTER_REGISTRY,),
        service_account_tokens=True,
    ) as running:
        yield running


@pytest.fixture(scope="session")
def images(cluster: NodeCluster, built: BuiltImages) -> Images:
    """The images in the node's registry, where the chart's pods pull them from."""
    host = cluster.registry.host
    skopeo_push(built.controller.image, f"{host}/localdev/imagestream-controller:build")
    tags = {}
    for name, image in (("registry", built.registry), ("curl", built.curl)):
        tags[name] = image.digest.removeprefix("sha256:")[:16]
        skopeo_push(image.image, f"{host}/localdev/{name}:{tags[name]}")
    return Images(
        controller_repository=f"{host}/localdev/imagestream-controller",
        controller_digest=built.controller.digest,
        registry_repository=f"{host}/localdev/registry",
        registry_tag=tags["registry"],
        curl_repository=f"{host}/localdev/curl",
        curl_tag=tags["curl"],
    )


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binary=helm_dir() / "helm", home=tmp_path_factory.mktemp("helm-home"))


def create_namespace(cluster: NodeCluster, prefix: str, *, restricted: bool) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = (
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        if restricted
        else {}
    )
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    return name


def delete_namespace(cluster: NodeCluster, name: str) -> None:
    """Delete `name` and wait until it, and so its pods, are gone."""
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")

    def gone() -> bool:
        listed: dict[str, Any] = cluster.get("namespaces")
        return all(item["metadata"]["name"] != name for item in listed["items"])

    wait_for(gone, timeout_s=GONE_BUDGET_S, what=f"namespace {name} gone")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
