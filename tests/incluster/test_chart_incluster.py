"""The chart installed and running on the real node: the promise, with nothing in the test process.

`helm install` of the chart into a namespace that enforces the restricted
Pod Security Standard: the controller (two replicas, one leader), the
webhook (two replicas behind its Service) and the integrated registry, which
the chart does not render: the controller's registry operator makes it from
the first `cluster` Config the chart's values describe (`registry.enabled`:
Managed, emptyDir; its Service at the fixed `registry.service.clusterIP`; its
notifications to the webhook Service by DNS name), each from an image made on
this machine. Then, from outside the cluster,
skopeo pushes to the registry's Service address; the registry notifies the
webhook, which records the tag; the controller rolls a Deployment whose new
pod runs the pushed digest, pulled by containerd from that same registry.
The leader pod is deleted: the other replica takes the Lease and the next
push still rolls. `helm test` runs its test pod, which posts a notification
to the webhook with the receiver's token, and passes.

The tests of this module run in order on one release (a module fixture):
each one's state is the previous one's result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localdev.images import APP_PORT, make_app_image, skopeo_push
from tests.incluster.conftest import (
    IMAGES_BUDGET_S,
    IN_CLUSTER_REGISTRY,
    IN_CLUSTER_REGISTRY_IP,
    Images,
    create_namespace,
    delete_namespace,
)
from tests.integration.helm import CHART, Helm
from tests.integration.nodecluster import NodeCluster, app_deployment, http_get, wait_for
from tests.integration.workloads import trigger

# The first test also waits for the images (minutes when cold) and the install.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(IMAGES_BUDGET_S + 600)]

INSTALL_BUDGET_S = 300
ROLLOUT_BUDGET_S = 120.0
TAKEOVER_BUDGET_S = 60.0
LEASE = "imagestream-controller"  # controller.app.LEASE_NAME, in the release's namespace


@dataclass
class Release:
    name: str
    namespace: str
    apps: str  # where the app Deployment runs (no restricted label: the app runs as root)
    cluster: NodeCluster
    helm: Helm

    def pods(self, component: str) -> list[dict[str, Any]]:
        # The registry's pods are the operator's (OpenShift's label), not the release's.
        selector = (
            "docker-registry=default"
            if component == "registry"
            else f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        )
        listed: dict[str, Any] = self.cluster.get("-n", self.namespace, "pods", "-l", selector)
        return [p for p in listed["items"] if p["metadata"].get("deletionTimestamp") is None]

    def lease_holder(self) -> str:
        """The pod whose controller holds the Lease (identity `<hostname>_<pid>`)."""
        lease: dict[str, Any] = self.cluster.get("-n", self.namespace, "lease", LEASE)
        holder = str(lease["spec"].get("holderIdentity") or "")
        return holder.rpartition("_")[0] or holder


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@pytest.fixture(scope="module")
def release(cluster: NodeCluster, images: Images, helm: Helm) -> Iterator[Release]:
    namespace = create_namespace(cluster, "chart", restricted=True)
    apps = create_namespace(cluster, "apps", restricted=False)
    installed = Release("isc", namespace, apps, cluster, helm)
    kubeconfig = cluster.plane.kubeconfig_path
    try:
        helm.run(
            "install",
            installed.name,
            str(CHART),
            "--namespace",
            namespace,
            *images.helm_values(),
            "--set",
            "controller.replicaCount=2",
            "--set",
            "webhook.replicaCount=2",
            "--set",
            "registry.enabled=true",
            "--set",
            f"registry.service.clusterIP={IN_CLUSTER_REGISTRY_IP}",
            "--set",
            f"integratedRegistryHost={IN_CLUSTER_REGISTRY}",
            "--wait",
            f"--timeout={INSTALL_BUDGET_S}s",
            kubeconfig=kubeconfig,
            timeout_s=INSTALL_BUDGET_S + 30,
        )
        # `--wait` knows the release's objects only: the operator's registry comes after.
        wait_for(
            lambda: _registry_available(installed),
            timeout_s=INSTALL_BUDGET_S,
            what="the operator's registry Available",
        )
        yield installed
    finally:
        try:
            helm.run(
                "uninstall",
                installed.name,
                "--namespace",
                namespace,
                "--wait",
                kubeconfig=kubeconfig,
                check=False,
            )
        finally:
            # helm leaves the operator's Config (a cluster singleton, as on OpenShift).
            cluster.kubectl(
                "delete",
                "configs.imageregistry.operator.openshift.io",
                "cluster",
                "--ignore-not-found",
            )
            delete_namespace(cluster, apps)
            delete_namespace(cluster, namespace)


def _registry_available(release: Release) -> bool:
    """The operator's `cluster` Config says Available and its one pod is Ready."""
    listed: dict[str, Any] = release.cluster.get("configs.imageregistry.operator.openshift.io")
    for config in listed["items"]:
        for condition in (config.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Available" and condition["status"] == "True":
                return len(release.pods("registry")) == 1 and _ready(release.pods("registry")[0])
    return False


def test_every_pod_is_ready_under_the_restricted_pod_security_standard(release: Release) -> None:
    labels = release.cluster.get("namespace", release.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    counts = {}
    for component in ("controller", "webhook", "registry"):
        pods = release.pods(component)
        assert pods and all(_ready(pod) for pod in pods), [
            (p["metadata"]["name"], p.get("status", {}).get("conditions")) for p in pods
        ]
        counts[component] = len(pods)
        for pod in pods:  # what restricted demands, as admitted (not only as rendered)
            spec = pod["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
    assert counts == {"controller": 2, "webhook": 2, "registry": 1}
    # The registry is the operator's: made from the first Config the values describe, its
    # Deployment not the release's (helm never wrote it).
    config = release.cluster.get("configs.imageregistry.operator.openshift.io", "cluster")
    assert config["spec"]["managementState"] == "Managed"
    assert config["spec"]["storage"] == {"emptyDir": {}}
    deployment = release.cluster.get("-n", release.namespace, "deployment", "image-registry")
    assert "meta.helm.sh/release-name" not in (deployment["metadata"].get("annotations") or {})
    service = release.cluster.get("-n", release.namespace, "service", "image-registry")
    assert service["spec"]["clusterIP"] == IN_CLUSTER_REGISTRY_IP
    # Both controller replicas run, one leads.
    holder = release.lease_holder()
    assert holder in {pod["metadata"]["name"] for pod in release.pods("controller")}, holder
    # The webhook's two replicas are both behind its Service.
    [service] = [
        s
        for s in release.cluster.get("-n", release.namespace, "endpoints")["items"]
        if s["metadata"]["name"].endswith("-webhook")
    ]
    addresses = [a["ip"] for subset in service.get("subsets") or [] for a in subset["addresses"]]
    assert sorted(addresses) == sorted(p["status"]["podIP"] for p in release.pods("webhook"))


def test_the_admission_webhook_answers_through_the_service_with_its_own_ca(
    release: Release,
) -> None:
    """The API server calls the chart's webhook pods through the Service, trusting the CA
    the pods made (kept in one Secret) and patched into both configurations' caBundle."""
    fullname = f"{release.name}-imagestream-controller"
    secret = release.cluster.get("-n", release.namespace, "secret", f"{fullname}-admission-tls")
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        config = release.cluster.get(kind, fullname)
        bundles = {w["clientConfig"].get("caBundle") for w in config["webhooks"]}
        assert bundles == {secret["data"]["ca.crt"]}, kind
    legacy = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 0,
            "template": {"spec": {"containers": [{"name": "web", "image": " "}]}},
            "triggers": [
                {
                    "type": "ImageChange",
                    "imageChangeParams": {
                        "containerNames": ["web"],
                        "from": {"kind": "ImageStream", "name": "app"},
                    },
                }
            ],
        },
    }
    # Fail-closed kind: stored only if the webhook answered (and converted it).
    release.cluster.kubectl("-n", release.apps, "apply", "-f", "-", stdin=json.dumps(legacy))
    stored = release.cluster.get("-n", release.apps, "deploymentconfig", "legacy")
    assert stored["spec"]["triggers"][0]["imageChangeParams"]["from"] == {
        "kind": "ImageStreamTag",
        "name": "app:latest",
        "namespace": release.apps,
    }
    assert stored["spec"]["strategy"]["rollingParams"]["timeoutSeconds"] == 600


def _follow(release: Release) -> None:
    body = app_deployment("web", " ")
    body["metadata"]["annotations"] = {
        "image.openshift.io/triggers": json.dumps([trigger("app:latest", "app")])
    }
    release.cluster.kubectl("-n", release.apps, "apply", "-f", "-", stdin=json.dumps(body))


def _push_and_wait_running(release: Release, workdir: Path, marker: str) -> dict[str, Any]:
    """skopeo push from the host to the in-cluster registry; the one Ready pod of `web` then
    runs that digest, pulled from there, and serves the marker."""
    image = make_app_image(workdir / marker, marker)
    repository = f"{IN_CLUSTER_REGISTRY}/{release.apps}/app"
    skopeo_push(image, f"{repository}:latest")
    expected = f"{repository}@{image.manifest_digest}"

    def running() -> dict[str, Any] | None:
        listed = release.cluster.get("-n", release.apps, "pods", "-l", "app=web")["items"]
        live = [p for p in listed if p["metadata"].get("deletionTimestamp") is None]
        if len(live) != 1 or not _ready(live[0]):
            return None
        statuses = live[0]["status"].get("containerStatuses") or []
        return live[0] if [s.get("imageID") for s in statuses] == [expected] else None

    pod: dict[str, Any] = wait_for(running, timeout_s=ROLLOUT_BUDGET_S, what=f"web runs {expected}")
    stream = release.cluster.get("-n", release.apps, "imagestream", "app")
    [tag] = [t for t in stream["status"]["tags"] if t["tag"] == "latest"]
    assert tag["items"][0]["dockerImageReference"] == expected
    page = http_get(f"http://{pod['status']['podIP']}:{APP_PORT}/")
    assert f"marker={marker}" in page
    return pod


def test_a_push_from_outside_rolls_a_deployment_to_a_pod_of_that_digest(
    release: Release, workdir: Path
) -> None:
    _follow(release)
    _push_and_wait_running(release, workdir, "incluster-first")


def test_the_other_replica_takes_over_when_the_leader_goes_and_the_next_push_rolls(
    release: Release, workdir: Path
) -> None:
    before = release.lease_holder()
    names = {pod["metadata"]["name"] for pod in release.pods("controller")}
    assert before in names, (before, names)
    release.cluster.kubectl("-n", release.namespace, "delete", "pod", before, "--wait=false")
    (other,) = names - {before}

    def taken_over() -> str | None:
        holder = release.lease_holder()
        return holder if holder and holder != before else None

    holder = wait_for(taken_over, timeout_s=TAKEOVER_BUDGET_S, what="another controller leads")
    assert holder == other
    _push_and_wait_running(release, workdir, "incluster-after-failover")


def test_helm_test_runs_its_pod_and_passes(release: Release) -> None:
    result = release.helm.run(
        "test",
        release.name,
        "--namespace",
        release.namespace,
        "--timeout=120s",
        kubeconfig=release.cluster.plane.kubeconfig_path,
        timeout_s=150,
    )
    assert "Phase:          Succeeded" in result.stdout, result.stdout
