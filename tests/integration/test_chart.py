"""The Helm chart, with a real helm (built from Go modules) and the real control plane.

Rendering: `helm lint --strict` and `helm template` pass for the default values and every
value set in the chart's `ci/`; the schema refuses a misspelt key; every pod runs with the
restricted security context; no secret ends up in a ConfigMap; the rendered receiver config
is one the webhook's own loader accepts.

Installing: `helm install` into the session control plane creates every object, in a
namespace that enforces the `restricted` Pod Security Standard (pods are created by
kube-controller-manager and admitted, though no kubelet runs them); the ServiceAccounts may
do what each process does and a sample of what it must not do is denied (asked with
SubjectAccessReviews, as `kubectl auth can-i --as` does); then `helm uninstall` removes it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagestream.kube.client import Kube
from imagestream.kube.crds import load_crds
from imagestream.kube.errors import NotFound, TooManyRequests
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES, PODS, Resource
from imagestream.kube.roles import load_image_roles
from localdev.controlplane import ControlPlane, free_port
from localdev.images import make_oci_image, skopeo_push
from localdev.private import private_dir, write_private
from localdev.processes import ManagedProcess, wait_until
from localdev.registry import NotificationEndpoint, Registry
from tests.integration.conftest import (
    eventually,
    kube_with_crds,
    own_control_plane,
)
from tests.integration.helm import CHART, REPO_ROOT, Helm, helm_dir
from tests.integration.openshift_library import public_images_binding
from webhook.config import parse_config

PODS_BUDGET_S = 60.0
GONE_BUDGET_S = 60.0

VALUE_SETS: dict[str, Path | None] = {
    "default": None,
    **{
        path.name.removesuffix("-values.yaml"): path
        for path in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}

SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
# The kinds the chart renders, to read each installed object back.
KINDS = {
    resource.kind: resource
    for resource in (
        Resource("", "v1", "serviceaccounts", "ServiceAccount"),
        Resource("", "v1", "secrets", "Secret"),
        Resource("", "v1", "configmaps", "ConfigMap"),
        Resource("", "v1", "services", "Service"),
        Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
        Resource("apps", "v1", "deployments", "Deployment"),
        Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
        Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
        Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
        Resource(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            namespaced=False,
        ),
        Resource(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            namespaced=False,
        ),
        Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        Resource(
            "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
        ),
        Resource(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
        ),
    )
}


# --- helm --------------------------------------------------------------------------------------


def values_args(name: str) -> list[str]:
    path = VALUE_SETS[name]
    return ["--values", str(path)] if path else []


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binary=helm_dir() / "helm", home=tmp_path_factory.mktemp("helm-home"))


def by_kind(objects: list[Any], kind: str) -> list[Any]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[Any], kind: str, suffix: str) -> Any:
    matches = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"].endswith(suffix)]
    assert len(matches) == 1, f"{kind} *{suffix}: {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def pod_specs(objects: list[Any]) -> Iterator[tuple[str, Any]]:
    for obj in objects:
        if obj["kind"] == "Deployment":
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj["metadata"]["name"], obj["spec"]


def env_of(deployment: Any) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def secret_values(objects: list[Any]) -> set[str]:
    values: set[str] = set()
    for secret in by_kind(objects, "Secret"):
        values |= {base64.b64decode(v).decode() for v in (secret.get("data") or {}).values()}
        values |= set((secret.get("stringData") or {}).values())
    return values


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm: Helm, value_set: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), *values_args(value_set))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_template_renders_restricted_pods_and_no_secret_in_configmaps(
    helm: Helm, value_set: str
) -> None:
    # No --kube-version: helm was built knowing Kubernetes 1.37, and the chart needs >= 1.30.
    objects = helm.template(*values_args(value_set))
    assert by_kind(objects, "Deployment"), "nothing rendered"
    for name, spec in pod_specs(objects):
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
    secrets = secret_values(objects)
    for config_map in by_kind(objects, "ConfigMap"):
        text = json.dumps(config_map["data"])
        assert not [s for s in secrets if s and s in text], config_map["metadata"]["name"]
    for deployment in by_kind(objects, "Deployment"):
        assert not set(env_of(deployment).values()) & secrets
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "rel", obj["metadata"]["name"]
        assert labels["app.kubernetes.io/part-of"] == "imagestream-controller"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_webhook_loads_the_rendered_receivers(helm: Helm, value_set: str) -> None:
    objects = helm.template(*values_args(value_set))
    config_map = named(objects, "ConfigMap", "-webhook")
    receivers = parse_config(
        yaml.safe_load(config_map["data"]["receivers.yaml"]), source="chart", base_dir=Path("/")
    )
    webhook = named(objects, "Deployment", "-webhook")
    container = webhook["spec"]["template"]["spec"]["containers"][0]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env_of(webhook)["IMAGESTREAM_WEBHOOK_CONFIG"] == "/etc/imagestream/config/receivers.yaml"
    for receiver in receivers:
        for path in receiver.auth.secret_files:
            assert str(path.parent) in mounts, (receiver.name, path)
    # Every key a receiver names is in the projected directory: from existingSecret, from
    # the chart's Secret (values given), or generated at run time by the webhook.
    (volume,) = [
        v for v in webhook["spec"]["template"]["spec"]["volumes"] if v["name"] == "receiver-secrets"
    ]
    chart_secrets = {s["metadata"]["name"]: s for s in by_kind(objects, "Secret")}
    generated = set(
        filter(None, env_of(webhook).get("IMAGESTREAM_GENERATED_SECRET_KEYS", "").split(","))
    )
    provided: set[str] = set()
    for source in volume["projected"]["sources"]:
        name = source["secret"]["name"]
        if items := source["secret"].get("items"):
            assert name.endswith("-webhook-generated"), source
            assert source["secret"]["optional"] is True  # it appears after the pod starts
            assert {i["key"] for i in items} <= generated
            provided |= {i["path"] for i in items}
        elif name in chart_secrets:
            provided |= set(chart_secrets[name]["data"])
        else:  # existingSecret: the user's, holding every key
            path = VALUE_SETS[value_set]
            values = yaml.safe_load(path.read_text()) if path else {}
            assert name == values["webhook"]["secret"]["existingSecret"], source
            provided |= {"*"}
    for receiver in receivers:
        for path in receiver.auth.secret_files:
            if path.parent == Path("/etc/imagestream/receivers"):
                assert path.name in provided or "*" in provided, (receiver.name, path)


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("crds", ["crds.enabled=false", "crds.enabled=true"])
def test_template_renders_the_same_bytes_twice(helm: Helm, value_set: str, crds: str) -> None:
    """GitOps: nothing is made up at render time (no random token), so a sync is a no-op."""
    first, second = (
        helm.run("template", "rel", str(CHART), "--set", crds, *values_args(value_set)).stdout
        for _ in range(2)
    )
    assert first == second
    assert len(first) > 1000, first


# Template functions whose output is not a function of the values (or that ask the cluster).
UNREPRODUCIBLE = re.compile(
    r"\b(rand(AlphaNum|Alpha|Numeric|Ascii|Bytes|Int)|uuidv4|now|genCA|genPrivateKey"
    # `lookup` the function, not a word in a path such as /admission/image-lookup.
    r"|genSelfSignedCert|genSignedCert|(?<![-/])lookup)\b"
)
ACTION = re.compile(r"\{\{-?\s*(?!/\*)(.*?)-?\}\}", re.DOTALL)


def test_no_template_makes_anything_up_at_render_time() -> None:
    found = [
        f"{path.name}: {action.group(1).strip()}"
        for path in sorted((CHART / "templates").rglob("*"))
        if path.is_file()
        for action in ACTION.finditer(path.read_text())
        if UNREPRODUCIBLE.search(action.group(1))
    ]
    assert not found, found


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("controler.replicaCount=2", "additional properties 'controler' not allowed"),
        ("webhook.ingress.enable=true", "additional properties 'enable' not allowed"),
        ("registry.storage.type=hostPath", "registry/storage/type"),
        ("webhook.receivers[0].type=dockerhubb", "webhook/receivers/0"),
    ],
)
def test_the_schema_rejects_misspelt_values(helm: Helm, setting: str, complaint: str) -> None:
    for command in (["lint", "--strict", str(CHART)], ["template", "rel", str(CHART)]):
        result = helm.run(*command, "--set", setting, check=False)
        assert result.returncode != 0, (command, setting)
        assert complaint in result.stdout + result.stderr, result.stdout + result.stderr


def test_namespaced_mode_grants_nothing_cluster_wide(helm: Helm) -> None:
    objects = helm.template(*values_args("namespaced"))
    assert not by_kind(objects, "ClusterRole")
    assert not by_kind(objects, "ClusterRoleBinding")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(objects, "Role")}
    for namespace in ("team-a", "team-b"):
        assert (namespace, "rel-imagestream-controller-controller") in roles
        assert (namespace, "rel-imagestream-controller-webhook") in roles
    assert ("ns", "rel-imagestream-controller-leader-election") in roles
    # The registry operator asked for in namespaced mode: its ClusterRole, and no other.
    with_operator = helm.template(*values_args("namespaced"), "--set", "registry.operator=true")
    assert [r["metadata"]["name"] for r in by_kind(with_operator, "ClusterRole")] == [
        "rel-imagestream-controller-registry-operator"
    ]
    # Secrets only where asked (team-a), for both processes (a `verify: registry` receiver),
    # and, in every watched namespace, the controller's own grant for the accounts' pull
    # secrets (controller.serviceAccountPullSecrets).
    secret_roles = [r for r in by_kind(objects, "Role") if "secrets" in json.dumps(r["rules"])]
    assert {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in secret_roles} == {
        ("team-a", "rel-imagestream-controller-registry-secrets"),
        ("team-a", "rel-imagestream-controller-pull-secrets"),
        ("team-b", "rel-imagestream-controller-pull-secrets"),
        # The webhook's own generated tokens, in the release namespace, by name.
        ("ns", "rel-imagestream-controller-webhook-generated-secret"),
    }
    pull = [
        b
        for b in by_kind(objects, "RoleBinding")
        if b["metadata"]["name"].endswith("-pull-secrets")
    ]
    assert {s["name"] for b in pull for s in b["subjects"]} == {
        "rel-imagestream-controller-controller"
    }
    binding = named(objects, "RoleBinding", "-registry-secrets")
    assert {s["name"] for s in binding["subjects"]} == {
        "rel-imagestream-controller-controller",
        "rel-imagestream-controller-webhook",
    }
    for deployment in by_kind(objects, "Deployment"):
        assert env_of(deployment)["IMAGESTREAM_WATCH_NAMESPACES"] == "team-a,team-b"


def test_the_registry_token_service_grants_only_what_it_asks(helm: Helm) -> None:
    """webhook.registryTokens: TokenReviews (cluster-scoped, the one ClusterRole in namespaced
    mode), LocalSubjectAccessReviews where it watches, its signing Secret; off by default."""
    assert not [o for o in helm.template() if "registry-token" in o["metadata"]["name"]], (
        "nothing of the token service without webhook.registryTokens.enabled"
    )
    objects = helm.template(
        *values_args("namespaced"), "--set", "webhook.registryTokens.enabled=true"
    )
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    (cluster_binding,) = by_kind(objects, "ClusterRoleBinding")
    assert [s["name"] for s in cluster_binding["subjects"]] == [
        "rel-imagestream-controller-webhook"
    ]
    reviews = [
        (r["metadata"]["namespace"], r["metadata"]["name"])
        for r in by_kind(objects, "Role")
        if "localsubjectaccessreviews" in json.dumps(r["rules"])
    ]
    assert sorted(reviews) == [
        ("team-a", "rel-imagestream-controller-controller"),
        ("team-a", "rel-imagestream-controller-webhook-registry-access"),
        ("team-b", "rel-imagestream-controller-controller"),
        ("team-b", "rel-imagestream-controller-webhook-registry-access"),
    ]
    key = named(objects, "Role", "-webhook-registry-token-key")
    assert key["metadata"]["namespace"] == "ns"
    assert key["rules"][1]["resourceNames"] == ["rel-imagestream-controller-registry-token-signing"]
    assert key["rules"][1]["verbs"] == ["get"]
    webhook = named(objects, "Deployment", "-webhook")
    assert env_of(webhook)["IMAGESTREAM_REGISTRY_TOKEN_SIGNING_SECRET"] == (
        "ns/rel-imagestream-controller-registry-token-signing"
    )


def test_openshifts_image_roles_and_public_image_namespaces(helm: Helm) -> None:
    """OpenShift's ClusterRoles as the one file has them (the file `imagestream dev` and
    the tests apply), and each public namespace readable by every authenticated user."""
    objects = helm.template("--set-json", 'rbac.publicImageNamespaces=["openshift","shared"]')
    shipped = {role["metadata"]["name"]: role for role in load_image_roles()}
    assert set(shipped) == {"system:image-puller", "system:image-pusher", "system:image-builder"}
    rendered = {r["metadata"]["name"]: r for r in by_kind(objects, "ClusterRole")}
    for name, role in shipped.items():
        assert {**rendered[name], "metadata": {**rendered[name]["metadata"], "labels": {}}} == {
            **role,
            "metadata": {**role["metadata"], "labels": {}},
        }
    assert shipped["system:image-puller"]["rules"] == [
        {
            "apiGroups": ["image.openshift.io", ""],
            "resources": ["imagestreams/layers"],
            "verbs": ["get"],
        }
    ]
    bindings = [
        b for b in by_kind(objects, "RoleBinding") if b["roleRef"]["name"] == "system:image-puller"
    ]
    assert len(bindings) == 2
    for binding in bindings:
        expected = public_images_binding(binding["metadata"]["namespace"])
        assert {**binding, "metadata": {**binding["metadata"], "labels": {}}} == {
            **expected,
            "metadata": {**expected["metadata"], "labels": {}},
        }
    # Namespaced mode makes nothing cluster-wide, these roles included; the bindings stay.
    namespaced = helm.template(
        *values_args("namespaced"), "--set-json", 'rbac.publicImageNamespaces=["team-b"]'
    )
    assert not by_kind(namespaced, "ClusterRole")
    (binding,) = [
        b
        for b in by_kind(namespaced, "RoleBinding")
        if b["roleRef"]["name"] == "system:image-puller"
    ]
    assert binding["metadata"]["namespace"] == "team-b"
    # No check at all: the controller is not even allowed to ask.
    unchecked = helm.template("--set", "controller.allowCrossNamespaceTriggers=true")
    assert "localsubjectaccessreviews" not in json.dumps(by_kind(unchecked, "ClusterRole"))
    assert "localsubjectaccessreviews" in json.dumps(by_kind(objects, "ClusterRole"))


@pytest.mark.parametrize("value_set", ["registry", "s3"])
def test_the_operator_is_given_the_registry_its_receiver_and_its_first_config(
    helm: Helm, value_set: str
) -> None:
    """The chart renders no registry: the controller runs the operator, told where the
    webhook's integrated receiver is and which Secret key holds the token that receiver
    reads, and what the first Config is (registry.enabled, registry.storage)."""
    objects = helm.template(*values_args(value_set))
    assert not [o for o in by_kind(objects, "Deployment") if "registry" in o["metadata"]["name"]]
    assert not by_kind(objects, "PersistentVolumeClaim")
    controller = env_of(named(objects, "Deployment", "-controller"))
    assert controller["IMAGESTREAM_REGISTRY_OPERATOR"] == "true"
    assert controller["IMAGESTREAM_REGISTRY_NAMESPACE"] == "ns"
    assert controller["IMAGESTREAM_REGISTRY_IMAGE"] == "docker.io/library/registry:3.0.0"
    assert controller["IMAGESTREAM_REGISTRY_NOTIFICATION_URL"] == (
        "http://rel-imagestream-controller-webhook.ns.svc:80/v1/events/integrated"
    )
    assert controller["IMAGESTREAM_REGISTRY_BOOTSTRAP_MANAGEMENT_STATE"] == "Managed"
    spec = json.loads(controller["IMAGESTREAM_REGISTRY_BOOTSTRAP_SPEC"])
    if value_set == "s3":
        assert spec["storage"] == {
            "s3": {
                "bucket": "images",
                "region": "us-east-1",
                "regionEndpoint": "http://minio.minio.svc:9000",
            }
        }
        assert spec["replicas"] == 2
    else:
        assert spec["storage"] == {"pvc": {"claim": ""}}  # the operator provisions it
    # The token: the Secret key the operator copies is the one the webhook's receiver reads.
    namespace, _, reference = controller["IMAGESTREAM_REGISTRY_NOTIFICATION_SECRET"].partition("/")
    assert namespace == "ns"
    secret_name, _, key = reference.partition(":")
    webhook = named(objects, "Deployment", "-webhook")
    (volume,) = [
        v
        for v in webhook["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "registry-notifications"
    ]
    assert volume["secret"]["secretName"] == secret_name
    assert volume["secret"]["items"] == [{"key": key, "path": key}]
    if value_set == "s3":  # registry.notificationToken: a Secret of the chart holds it
        token_secret = named(objects, "Secret", "-registry-notifications")
        assert base64.b64decode(token_secret["data"][key]).decode() == "fixed-token-for-tests"
    else:  # generated by the webhook at run time
        assert secret_name.endswith("-webhook-generated")
        generated = env_of(webhook)["IMAGESTREAM_GENERATED_SECRET_KEYS"].split(",")
        assert key in generated and "registry-http-secret" not in generated
    receivers = parse_config(
        yaml.safe_load(named(objects, "ConfigMap", "-webhook")["data"]["receivers.yaml"]),
        source="chart",
        base_dir=Path("/"),
    )
    integrated = {r.name: r for r in receivers}["integrated"]
    assert integrated.integrated is True
    assert integrated.auth.secret_files == (Path(f"/etc/imagestream/integrated-registry/{key}"),)
    for deployment in (webhook, named(objects, "Deployment", "-controller")):
        assert env_of(deployment)["IMAGESTREAM_INTEGRATED_REGISTRY"] == (
            "registry.example.com" if value_set == "s3" else "image-registry.ns.svc:5000"
        )


def test_the_registry_values_only_make_the_first_config(helm: Helm) -> None:
    """registry.enabled false is Removed; a fixed Service IP is the integrated host; with
    the token service the operator's registry is given its realm and signing Secret."""
    controller = env_of(named(helm.template(), "Deployment", "-controller"))
    assert controller["IMAGESTREAM_REGISTRY_BOOTSTRAP_MANAGEMENT_STATE"] == "Removed"
    assert json.loads(controller["IMAGESTREAM_REGISTRY_BOOTSTRAP_SPEC"])["storage"] == {
        "emptyDir": {}
    }
    assert "IMAGESTREAM_REGISTRY_TOKEN_REALM" not in controller
    objects = helm.template(
        "--set",
        "registry.service.clusterIP=10.0.0.12",
        "--set",
        "webhook.service.clusterIP=10.0.0.13",
        "--set",
        "webhook.registryTokens.enabled=true",
        "--set",
        "registry.namespace=registry",
    )
    controller = env_of(named(objects, "Deployment", "-controller"))
    assert controller["IMAGESTREAM_REGISTRY_CLUSTER_IP"] == "10.0.0.12"
    assert controller["IMAGESTREAM_INTEGRATED_REGISTRY"] == "10.0.0.12:5000"
    assert controller["IMAGESTREAM_REGISTRY_NAMESPACE"] == "registry"
    assert controller["IMAGESTREAM_REGISTRY_TOKEN_REALM"] == (
        "http://10.0.0.13:80/v1/registry/token"
    )
    assert controller["IMAGESTREAM_REGISTRY_TOKEN_SIGNING_SECRET"] == (
        "ns/rel-imagestream-controller-registry-token-signing"
    )
    assert named(objects, "Service", "-webhook")["spec"]["clusterIP"] == "10.0.0.13"
    role = named(objects, "Role", "-registry-operator")
    assert role["metadata"]["namespace"] == "registry"
    secrets = named(objects, "Role", "-registry-operator-secrets")
    assert secrets["rules"][0]["resourceNames"] == [
        "rel-imagestream-controller-webhook-generated",
        "rel-imagestream-controller-registry-token-signing",
    ]
    # registry.operator off (OpenShift runs its own): no operator, no grant, no receiver.
    objects = helm.template("--set", "registry.operator=false")
    assert "IMAGESTREAM_REGISTRY_OPERATOR" not in env_of(
        named(objects, "Deployment", "-controller")
    )
    assert not [o for o in objects if "registry-operator" in o["metadata"]["name"]]


def test_an_integrated_receiver_of_ones_own_needs_the_integrated_registry_host(
    helm: Helm,
) -> None:
    """It records pushes to that host only (issue 14, point 1), so the chart must name it
    (with the registry operator on, its Service is that host)."""
    receiver = {
        "name": "distribution",
        "type": "distribution",
        "integrated": True,
        "auth": {"type": "bearer", "secretKeys": ["distribution-token"]},
    }
    given = (
        "--set-json",
        f"webhook.receivers={json.dumps([receiver])}",
        "--set",
        "registry.operator=false",
    )
    refused = helm.run("template", "rel", str(CHART), *given, check=False)
    assert refused.returncode != 0
    assert '"distribution" is integrated' in refused.stderr, refused.stderr
    assert "integratedRegistryHost" in refused.stderr, refused.stderr
    objects = helm.template(*given, "--set", "integratedRegistryHost=registry.example.com:5000")
    webhook = named(objects, "Deployment", "-webhook")
    assert env_of(webhook)["IMAGESTREAM_INTEGRATED_REGISTRY"] == "registry.example.com:5000"


def test_the_controller_elects_a_leader_and_the_webhook_drains(helm: Helm) -> None:
    objects = helm.template()
    controller = env_of(named(objects, "Deployment", "-controller"))
    assert controller["IMAGESTREAM_LEADER_ELECT"] == "true"
    assert controller["IMAGESTREAM_LEADER_ELECTION_NAMESPACE"] == "ns"
    webhook = named(objects, "Deployment", "-webhook")
    assert webhook["spec"]["replicas"] == 2
    container = webhook["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["webhook"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
    assert named(objects, "PodDisruptionBudget", "-webhook")["spec"]["minAvailable"] == 1
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = container["image"]
    assert image.endswith(":" + chart["appVersion"]), image


def test_the_default_image_tag_is_the_version_the_dockerfile_builds() -> None:
    """The chart README says image.tag defaults to appVersion = pyproject = Dockerfile."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    (version,) = re.findall(r'(?m)^version = "([^"]+)"$', pyproject)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert chart["appVersion"] == version
    assert f"ARG VERSION={version}" in dockerfile
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    assert f"`{values['image']['repository']}`" in readme
    assert f"`appVersion` (`{version}`)" in readme


# --- installing into the real control plane ------------------------------------------------------


@dataclass
class Installed:
    release: str
    namespace: str
    kubeconfig: Path
    objects: list[Any] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.release}-imagestream-controller"

    def service_account(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}-{component}"


async def _restricted_namespace(kube: Kube, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await kube.create(
        NAMESPACES,
        None,
        {
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        },
    )
    return name


async def _install(
    helm: Helm, controlplane: ControlPlane, kube: Kube, *args: str, prefix: str
) -> Installed:
    namespace = await _restricted_namespace(kube, prefix)
    installed = Installed(
        release=f"{prefix}{uuid.uuid4().hex[:6]}",
        namespace=namespace,
        kubeconfig=controlplane.kubeconfig_path,
    )
    await asyncio.to_thread(
        helm.run,
        "install",
        installed.release,
        str(CHART),
        "--namespace",
        namespace,
        # The chart's webhook pods never run on this control plane (no node), and its
        # webhook configurations are cluster-wide: a Fail policy would refuse every other
        # test's BuildConfigs while the release is installed.
        "--set",
        "admission.failurePolicy.buildsAndDeploymentConfigs=Ignore",
        *args,
        kubeconfig=installed.kubeconfig,
    )
    manifest = await asyncio.to_thread(
        helm.run, "get", "manifest", installed.release, "--namespace", namespace,
        kubeconfig=installed.kubeconfig,
    )  # fmt: skip
    installed.objects = [doc for doc in yaml.safe_load_all(manifest.stdout) if doc]
    return installed


async def _uninstall(helm: Helm, kube: Kube, installed: Installed) -> None:
    await asyncio.to_thread(
        helm.run,
        "uninstall",
        installed.release,
        "--namespace",
        installed.namespace,
        "--wait",
        kubeconfig=installed.kubeconfig,
    )
    kept = [o for o in installed.objects if _keep(o)]
    async with asyncio.timeout(GONE_BUDGET_S):
        remaining = [o for o in installed.objects if not _keep(o)]
        while remaining:
            remaining = [o for o in remaining if await _exists(kube, o, installed.namespace)]
            await asyncio.sleep(0.2 if remaining else 0)
    for obj in kept:
        assert await _exists(kube, obj, installed.namespace), obj["metadata"]["name"]
        await kube.delete(KINDS[obj["kind"]], installed.namespace, obj["metadata"]["name"])


def _keep(obj: Any) -> bool:
    """Objects `helm uninstall` leaves on purpose (the registry's storage)."""
    annotations = obj["metadata"].get("annotations") or {}
    return bool(annotations.get("helm.sh/resource-policy") == "keep")


async def _exists(kube: Kube, obj: Any, namespace: str) -> bool:
    resource = KINDS[obj["kind"]]
    try:
        await kube.get(
            resource,
            obj["metadata"].get("namespace", namespace) if resource.namespaced else None,
            obj["metadata"]["name"],
        )
    except NotFound:
        return False
    return True


@pytest.fixture(scope="module")
async def cluster_install(
    helm: Helm, controlplane: ControlPlane, kube: Kube
) -> AsyncIterator[Installed]:
    # The session cluster has OpenShift's image ClusterRoles already (the crds fixture
    # applies them, as `imagestream dev` does), and helm adopts nothing it did not make:
    # this release leaves them to that owner, as one on OpenShift would.
    installed = await _install(
        helm,
        controlplane,
        kube,
        "--set",
        "rbac.openshiftImageRoles=false",
        "--set",
        "webhook.registryTokens.enabled=true",
        prefix="chart",
    )
    yield installed
    await _uninstall(helm, kube, installed)


@pytest.fixture(scope="module")
async def namespaced_install(
    helm: Helm, controlplane: ControlPlane, kube: Kube
) -> AsyncIterator[Installed]:
    team_a = await _restricted_namespace(kube, "team-a")
    team_b = await _restricted_namespace(kube, "team-b")
    installed = await _install(
        helm,
        controlplane,
        kube,
        *values_args("namespaced"),
        *values_args("registry"),
        "--set-json",
        f"watchNamespaces={json.dumps([team_a, team_b])}",
        "--set-json",
        f"rbac.registrySecretNamespaces={json.dumps([team_a])}",
        prefix="nsd",
    )
    installed.watched = [team_a, team_b]
    yield installed
    await _uninstall(helm, kube, installed)


async def test_every_object_is_created(kube: Kube, cluster_install: Installed) -> None:
    kinds = {obj["kind"] for obj in cluster_install.objects}
    assert {"Deployment", "Service", "ConfigMap", "ClusterRole", "Role"} <= kinds
    assert "Secret" not in kinds  # no value given: the webhook generates its tokens
    for obj in cluster_install.objects:
        assert await _exists(kube, obj, cluster_install.namespace), obj["metadata"]["name"]
    # The CRDs (crds/) exist, whether helm or an earlier test installed them.
    for name in ("imagestreams.image.openshift.io", "deploymentconfigs.apps.openshift.io"):
        await kube.get(
            Resource(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                namespaced=False,
            ),
            None,
            name,
        )


async def _wait_for_pods(kube: Kube, installed: Installed, expected: dict[str, int]) -> None:
    """kube-controller-manager creates the pods; Pod Security admission lets them in."""
    selector = f"app.kubernetes.io/instance={installed.release}"
    counts: dict[str, int] = {}
    async with asyncio.timeout(PODS_BUDGET_S):
        while counts != expected:
            pods, _ = await kube.list(PODS, installed.namespace, label_selector=selector)
            counts = {}
            for pod in pods:
                component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
                counts[component] = counts.get(component, 0) + 1
            if counts != expected:
                await asyncio.sleep(0.2)


async def test_pods_pass_restricted_pod_security(kube: Kube, cluster_install: Installed) -> None:
    await _wait_for_pods(kube, cluster_install, {"controller": 1, "webhook": 2})
    # The namespace does enforce it: a pod that may escalate is refused.
    bad = {
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {}}]},
    }
    with pytest.raises(Exception, match="violates PodSecurity"):
        await kube.create(PODS, cluster_install.namespace, bad)


async def _allowed(
    kube: Kube,
    user: str,
    verb: str,
    resource: str,
    *,
    namespace: str = "",
    name: str = "",
) -> bool:
    resource, _, subresource = resource.partition(":")
    plural, _, group = resource.partition(".")
    if plural == "namespaces" and name:
        namespace = name  # GET /api/v1/namespaces/<name> is a request in that namespace
    review = await kube.create(
        SUBJECT_ACCESS_REVIEWS,
        None,
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": plural,
                    "subresource": subresource,
                    "namespace": namespace,
                    "name": name,
                },
            },
        },
    )
    return bool(review["status"].get("allowed"))


# (verb, resource): resource is `plural[.group][:subresource]`, the core group without a dot.
CONTROLLER_ALLOWED = [
    *[(v, "imagestreams.image.openshift.io") for v in ("get", "list", "watch", "update", "patch")],
    *[(v, "imagestreams.image.openshift.io:status") for v in ("update", "patch")],
    *[
        (v, f"{plural}.apps")
        for plural in ("deployments", "statefulsets", "daemonsets")
        for v in ("get", "list", "watch", "update", "patch")
    ],
    *[(v, "cronjobs.batch") for v in ("get", "list", "watch", "update", "patch")],
    *[(v, "jobs.batch") for v in ("get", "list", "watch", "create", "delete")],
    *[(v, "deploymentconfigs.apps.openshift.io") for v in ("get", "watch", "update", "patch")],
    ("update", "deploymentconfigs.apps.openshift.io:status"),
    *[(v, "replicationcontrollers") for v in ("list", "create", "patch", "delete")],
    *[(v, "buildconfigs.build.openshift.io") for v in ("get", "list", "create", "patch")],
    ("create", "builds.build.openshift.io"),
    ("update", "builds.build.openshift.io:status"),
    *[(v, "events.events.k8s.io") for v in ("create", "patch")],  # patch: an Event's series
    ("create", "events"),
    *[(v, "secrets") for v in ("get", "list", "watch")],  # rbac.readRegistrySecrets
    ("create", "localsubjectaccessreviews.authorization.k8s.io"),  # the image-puller rule
    # controller.serviceAccountPullSecrets: the accounts' pull secrets and bound tokens.
    *[(v, "serviceaccounts") for v in ("get", "list", "watch", "create", "patch")],
    ("create", "serviceaccounts:token"),
    *[(v, "secrets") for v in ("create", "update")],
]
CONTROLLER_DENIED = [
    ("create", "imagestreams.image.openshift.io"),
    ("delete", "imagestreams.image.openshift.io"),
    ("get", "configmaps"),
    ("create", "deployments.apps"),
    ("delete", "deployments.apps"),
    ("delete", "secrets"),
    ("delete", "serviceaccounts"),
    ("update", "serviceaccounts"),
    ("create", "pods"),
    ("delete", "deploymentconfigs.apps.openshift.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "leases.coordination.k8s.io"),  # only in the release namespace
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),  # list only, cluster mode
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
]
WEBHOOK_ALLOWED = [
    *[(v, "imagestreams.image.openshift.io") for v in ("get", "list", "watch", "create")],
    *[(v, "imagestreams.image.openshift.io:status") for v in ("get", "update", "patch")],
]
WEBHOOK_DENIED = [
    ("update", "imagestreams.image.openshift.io"),
    ("delete", "imagestreams.image.openshift.io"),
    ("patch", "deployments.apps"),
    ("get", "deployments.apps"),
    ("get", "secrets"),  # no `verify: registry` receiver by default
    ("list", "secrets"),
    ("get", "configmaps"),
    ("create", "events"),
    ("create", "namespaces"),
    ("list", "namespaces"),
]


async def _check(
    kube: Kube, user: str, cases: list[tuple[str, str]], *, namespace: str, expected: bool
) -> None:
    wrong = [
        (verb, resource)
        for verb, resource in cases
        if await _allowed(kube, user, verb, resource, namespace=namespace) != expected
    ]
    assert not wrong, f"{user} in {namespace!r}: expected allowed={expected} for {wrong}"


async def test_rbac_cluster_mode(kube: Kube, cluster_install: Installed) -> None:
    controller = cluster_install.service_account("controller")
    webhook = cluster_install.service_account("webhook")
    elsewhere = f"any-{uuid.uuid4().hex[:6]}"  # cluster mode: every namespace, existing or not
    await _check(kube, controller, CONTROLLER_ALLOWED, namespace=elsewhere, expected=True)
    await _check(kube, controller, CONTROLLER_DENIED, namespace=elsewhere, expected=False)
    await _check(kube, webhook, WEBHOOK_ALLOWED, namespace=elsewhere, expected=True)
    await _check(kube, webhook, WEBHOOK_DENIED, namespace=elsewhere, expected=False)
    assert await _allowed(kube, webhook, "get", "namespaces", name=elsewhere)
    crds = "customresourcedefinitions.apiextensions.k8s.io"
    assert await _allowed(kube, controller, "list", crds)
    assert not await _allowed(kube, webhook, "list", crds)

    # The leader election Lease: in the release namespace, under its one name.
    lease = "leases.coordination.k8s.io"
    namespace = cluster_install.namespace
    assert await _allowed(kube, controller, "create", lease, namespace=namespace)
    for verb in ("get", "update"):
        assert await _allowed(
            kube, controller, verb, lease, namespace=namespace, name="imagestream-controller"
        )
        assert not await _allowed(kube, controller, verb, lease, namespace=namespace, name="other")
    assert not await _allowed(kube, webhook, "create", lease, namespace=namespace)

    # The Secret of generated tokens: the webhook may create Secrets in the release
    # namespace only, and read or update that one Secret only.
    generated = f"{cluster_install.fullname}-webhook-generated"
    assert await _allowed(kube, webhook, "create", "secrets", namespace=namespace)
    assert not await _allowed(kube, webhook, "create", "secrets", namespace=elsewhere)
    for verb in ("get", "update"):
        assert await _allowed(kube, webhook, verb, "secrets", namespace=namespace, name=generated)
        assert not await _allowed(kube, webhook, verb, "secrets", namespace=namespace, name="x")
    for verb in ("list", "watch", "delete"):
        assert not await _allowed(kube, webhook, verb, "secrets", namespace=namespace)

    # The registry's token service (webhook.registryTokens.enabled in this install): who a
    # token is, what they may do anywhere, and its one signing Secret, read only.
    tokenreviews = "tokenreviews.authentication.k8s.io"
    reviews = "localsubjectaccessreviews.authorization.k8s.io"
    assert await _allowed(kube, webhook, "create", tokenreviews)
    assert await _allowed(kube, webhook, "create", reviews, namespace=elsewhere)
    assert not await _allowed(kube, controller, "create", tokenreviews)
    signing = f"{cluster_install.fullname}-registry-token-signing"
    assert await _allowed(kube, webhook, "get", "secrets", namespace=namespace, name=signing)
    for verb in ("update", "delete"):
        assert not await _allowed(kube, webhook, verb, "secrets", namespace=namespace, name=signing)

    # The registry operator (registry.operator, its registry in the release namespace here).
    await _check_registry_operator(kube, cluster_install, controller, elsewhere)


async def _check_registry_operator(
    kube: Kube, installed: Installed, controller: str, elsewhere: str
) -> None:
    """What the operator writes and reads, and nothing more: its Config and the image
    config's status cluster-wide, by name; StorageClasses, listed; in the registry
    namespace the objects it makes, by name where RBAC can say so; the two Secrets it
    reads in the release namespace."""
    namespace = installed.namespace
    configs = "configs.imageregistry.operator.openshift.io"
    images = "images.config.openshift.io"
    for verb, resource, name in [
        ("list", configs, ""),
        ("watch", configs, ""),
        ("create", configs, ""),
        ("get", configs, "cluster"),
        ("patch", configs, "cluster"),
        ("patch", f"{configs}:status", "cluster"),
        ("list", images, ""),
        ("watch", images, ""),
        ("create", images, ""),
        ("get", images, "cluster"),
        ("patch", f"{images}:status", "cluster"),
        ("list", "storageclasses.storage.k8s.io", ""),
    ]:
        assert await _allowed(kube, controller, verb, resource, name=name), (verb, resource)
    for verb, resource, name in [
        ("patch", configs, "other"),
        ("delete", configs, "cluster"),
        ("patch", images, "cluster"),  # the spec is the admin's; only the status is written
        ("create", "storageclasses.storage.k8s.io", ""),
        ("create", "namespaces", ""),
    ]:
        assert not await _allowed(kube, controller, verb, resource, name=name), (verb, resource)
    assert await _allowed(kube, controller, "get", "namespaces", name=namespace)
    owned = [
        ("deployments.apps", "image-registry"),
        ("services", "image-registry"),
        ("configmaps", "image-registry-config"),
        ("configmaps", "image-registry-token-ca"),
        ("secrets", "image-registry-private-configuration"),
        ("ingresses.networking.k8s.io", "default-route"),
    ]
    for resource, name in owned:
        for verb in ("get", "patch", "delete"):
            assert await _allowed(
                kube, controller, verb, resource, namespace=namespace, name=name
            ), (verb, resource, name)
        # (Reading workloads and Secrets everywhere is the controller's other grants'.)
        assert not await _allowed(
            kube, controller, "delete", resource, namespace=elsewhere, name=name
        ), (resource, name, "elsewhere")
        assert await _allowed(kube, controller, "create", resource, namespace=namespace)
    for verb, resource in [
        ("delete", "services"),
        ("delete", "configmaps"),
        ("patch", "ingresses.networking.k8s.io"),
        ("delete", "secrets"),
    ]:
        assert not await _allowed(
            kube, controller, verb, resource, namespace=namespace, name="someone-elses"
        ), (verb, resource)
    for verb in ("get", "create", "delete"):
        assert await _allowed(kube, controller, verb, "persistentvolumeclaims", namespace=namespace)
        assert not await _allowed(
            kube, controller, verb, "persistentvolumeclaims", namespace=elsewhere
        )
    user = "image-registry-private-configuration-user"
    assert await _allowed(kube, controller, "get", "secrets", namespace=namespace, name=user)
    assert not await _allowed(kube, controller, "patch", "secrets", namespace=namespace, name=user)
    for secret in (
        f"{installed.fullname}-webhook-generated",  # the notification token
        f"{installed.fullname}-registry-token-signing",  # its tls.crt: the rootcertbundle
    ):
        assert await _allowed(kube, controller, "get", "secrets", namespace=namespace, name=secret)
        assert not await _allowed(
            kube, controller, "delete", "secrets", namespace=namespace, name=secret
        )


async def test_rbac_namespaced_mode(kube: Kube, namespaced_install: Installed) -> None:
    team_a, team_b = namespaced_install.watched
    controller = namespaced_install.service_account("controller")
    webhook = namespaced_install.service_account("webhook")
    # Secrets apart: the registry credentials grant is for team-a only (below).
    not_secrets = [case for case in CONTROLLER_ALLOWED if case[1] != "secrets"]
    for namespace in (team_a, team_b):
        await _check(kube, controller, not_secrets, namespace=namespace, expected=True)
        await _check(kube, webhook, WEBHOOK_ALLOWED, namespace=namespace, expected=True)
        assert await _allowed(kube, webhook, "get", "namespaces", name=namespace)
    # Nothing outside the watched namespaces...
    other = namespaced_install.namespace
    await _check(kube, controller, not_secrets, namespace=other, expected=False)
    await _check(kube, webhook, WEBHOOK_ALLOWED, namespace=other, expected=False)
    assert not await _allowed(kube, webhook, "get", "namespaces", name=other)
    assert not await _allowed(kube, webhook, "get", "namespaces", name="kube-system")
    # ...and Secrets only in team-a for the webhook (the quay receiver verifies at the
    # registry); the controller keeps the pull secrets of every watched namespace's
    # accounts, so it has them in both, and nowhere else.
    assert await _allowed(kube, webhook, "list", "secrets", namespace=team_a)
    assert not await _allowed(kube, webhook, "list", "secrets", namespace=team_b)
    for namespace in (team_a, team_b):
        assert await _allowed(kube, controller, "create", "secrets", namespace=namespace)
    assert not await _allowed(kube, controller, "list", "secrets", namespace=other)
    # Roles only: no ClusterRole of this release.
    assert not [o for o in namespaced_install.objects if o["kind"].startswith("Cluster")]


async def test_namespaced_install_with_registry(kube: Kube, namespaced_install: Installed) -> None:
    for obj in namespaced_install.objects:
        assert await _exists(kube, obj, namespaced_install.namespace), obj["metadata"]["name"]
    kinds = {obj["kind"] for obj in namespaced_install.objects}
    assert {"NetworkPolicy", "PodDisruptionBudget"} <= kinds
    # No registry: the operator, off in namespaced mode, would make it.
    await _wait_for_pods(kube, namespaced_install, {"controller": 2, "webhook": 2})


# --- the real processes, as the chart runs them, under the chart's ServiceAccounts -------------

PROCESS_READY_S = 60.0
ROLLOUT_BUDGET_S = 60.0


@dataclass
class ChartProcesses:
    """`imagestream webhook` and `imagestream controller` with the chart's env and identity."""

    installed: Installed
    apps: str
    registry: Registry
    webhook_url: str
    token: str
    processes: list[ManagedProcess]


async def _service_account_kubeconfig(
    kube: Kube, controlplane: ControlPlane, installed: Installed, component: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (TokenRequest)."""
    name = f"{installed.fullname}-{component}"
    request = await kube.request(
        "POST",
        f"/api/v1/namespaces/{installed.namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    config = yaml.safe_load(controlplane.kubeconfig_path.read_text())
    config["users"] = [{"name": name, "user": {"token": request["status"]["token"]}}]
    config["contexts"][0]["context"]["user"] = name
    return write_private(path, yaml.safe_dump(config))


async def _env_of_installed(kube: Kube, installed: Installed, component: str) -> dict[str, str]:
    deployment = await kube.get(
        KINDS["Deployment"], installed.namespace, f"{installed.fullname}-{component}"
    )
    return env_of(deployment)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
async def chart_processes(
    helm: Helm, controlplane: ControlPlane, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ChartProcesses]:
    workdir = tmp_path_factory.mktemp("chart-processes")
    apps = await _restricted_namespace(kube, "apps")
    registry_port, webhook_port = free_port(), free_port()
    receiver = {
        "name": "distribution",
        "type": "distribution",
        "integrated": True,
        "auth": {"type": "bearer", "secretKeys": ["distribution-token"]},
    }
    # Namespaced mode (Roles only), the registry as the integrated one, the chart's token.
    installed = await _install(
        helm,
        controlplane,
        kube,
        "--set-json",
        f"watchNamespaces={json.dumps([apps])}",
        "--set-json",
        f"webhook.receivers={json.dumps([receiver])}",
        "--set",
        f"integratedRegistryHost=127.0.0.1:{registry_port}",
        "--set",
        "logging.level=debug",
        # A registry of the test's own: no operator (it would write the session plane's
        # cluster singletons, which other modules' controllers read).
        "--set",
        "registry.operator=false",
        # Namespaced mode takes admission certificates from cert-manager only, which this
        # control plane does not run (docs/admission.md#certificates).
        "--set",
        "admission.enabled=false",
        prefix="e2e",
    )
    secrets_dir = workdir / "receivers"
    private_dir(secrets_dir)
    config_map = await kube.get(
        KINDS["ConfigMap"], installed.namespace, f"{installed.fullname}-webhook"
    )
    receivers_file = workdir / "receivers.yaml"
    receivers_file.write_text(
        config_map["data"]["receivers.yaml"].replace(
            "/etc/imagestream/receivers/", f"{secrets_dir}/"
        )
    )
    webhook_url = f"http://127.0.0.1:{webhook_port}"
    registry: Registry | None = None
    token = ""

    processes: list[ManagedProcess] = []
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "IMAGESTREAM_"))
    }
    try:
        for component in ("webhook", "controller"):
            env = {**base_env, **await _env_of_installed(kube, installed, component)}
            health = free_port()
            listen = webhook_port if component == "webhook" else free_port()
            env.update(
                IMAGESTREAM_KUBECONFIG=str(
                    await _service_account_kubeconfig(
                        kube,
                        controlplane,
                        installed,
                        component,
                        workdir / f"{component}.kubeconfig",
                    )
                ),
                IMAGESTREAM_WEBHOOK_ADDR=f"127.0.0.1:{listen}",
                IMAGESTREAM_HEALTH_ADDR=f"127.0.0.1:{health}",
                IMAGESTREAM_METRICS_ADDR=f"127.0.0.1:{free_port()}",
            )
            if component == "webhook":
                env["IMAGESTREAM_WEBHOOK_CONFIG"] = str(receivers_file)
            process = ManagedProcess(
                name=f"chart-{component}",
                argv=[str(Path(sys.executable).parent / "imagestream"), component],
                log_path=workdir / f"{component}.log",
                env=env,
            ).start()
            processes.append(process)
            if component == "webhook":
                # It makes the token Secret (no value was given) under its own
                # ServiceAccount, and is not ready until the kubelet has mounted it: mount
                # it as the kubelet would, then give the registry the token.
                generated = f"{installed.fullname}-webhook-generated"

                async def created(generated: str = generated) -> dict[str, Any] | None:
                    try:
                        return await kube.get(KINDS["Secret"], installed.namespace, generated)
                    except NotFound:
                        return None

                secret = await eventually(created, timeout_s=PROCESS_READY_S, what=generated)
                assert not _http_ok(f"http://127.0.0.1:{health}/readyz")  # files not there
                assert secret["metadata"]["labels"]["app.kubernetes.io/part-of"] == (
                    "imagestream-controller"
                )
                for key, value in secret["data"].items():
                    write_private(secrets_dir / key, base64.b64decode(value))
                token = (secrets_dir / "distribution-token").read_text()
                assert len(token) == 48 and token.isalnum()
            await asyncio.to_thread(
                wait_until,
                f"{component} under its ServiceAccount ready",
                lambda health=health: _http_ok(f"http://127.0.0.1:{health}/readyz"),
                timeout_s=PROCESS_READY_S,
                processes=[process],
            )
            if component == "webhook":
                await _until_accepted(f"{webhook_url}/v1/events/distribution", token)
                registry = Registry(
                    workdir=workdir / "registry",
                    port=registry_port,
                    notify=NotificationEndpoint(
                        url=f"{webhook_url}/v1/events/distribution", token=token
                    ),
                ).start()
        assert registry is not None
        yield ChartProcesses(
            installed=installed,
            apps=apps,
            registry=registry,
            webhook_url=webhook_url,
            token=token,
            processes=processes,
        )
    finally:
        for process in reversed(processes):
            process.stop()
        if registry is not None:
            registry.stop()
        await _uninstall(helm, kube, installed)


async def _until_accepted(url: str, token: str) -> None:
    """The webhook reads a new secret file within a second: until an empty batch is a 200."""
    request = urllib.request.Request(
        url,
        data=b'{"events": []}',
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/vnd.docker.distribution.events.v1+json",
        },
        method="POST",
    )

    async def accepted() -> bool:
        return await asyncio.to_thread(_post, request) == 200

    await eventually(accepted, timeout_s=10.0, interval_s=0.2, what="the token accepted")


# Refusals a process expects and handles in namespaced mode: Roles cannot grant these
# cluster-scoped reads, and the process falls back (logged as a warning).
EXPECTED_IN_NAMESPACED_MODE = ('"event": "crds_not_listed"',)


def _forbidden_lines(process: ManagedProcess) -> list[str]:
    text = process.log_path.read_text(errors="replace")
    return [
        line
        for line in text.splitlines()
        if ("forbidden" in line.lower() or " 403" in line)
        and not any(expected in line for expected in EXPECTED_IN_NAMESPACED_MODE)
    ]


async def test_the_helm_test_hook_is_accepted_by_the_webhook(
    helm: Helm, chart_processes: ChartProcesses
) -> None:
    """What `helm test` sends (no kubelet runs the hook here), sent to the real webhook."""
    hooks = await asyncio.to_thread(
        helm.run,
        "get",
        "hooks",
        chart_processes.installed.release,
        "--namespace",
        chart_processes.installed.namespace,
        kubeconfig=chart_processes.installed.kubeconfig,
    )
    (pod,) = [d for d in yaml.safe_load_all(hooks.stdout) if d and d["kind"] == "Pod"]
    [container] = pod["spec"]["containers"]
    args = container["args"]
    headers = dict(args[i + 1].split(": ", 1) for i, arg in enumerate(args) if arg == "--header")
    # The token reaches curl on stdin, from the mounted Secret (the node tier runs the pod).
    assert "/etc/imagestream-test/token" in container["command"][2]
    assert chart_processes.token not in json.dumps(pod)
    headers["Authorization"] = f"Bearer {chart_processes.token}"
    body = args[args.index("--data") + 1].encode()
    url = args[-1]
    assert url.endswith("/v1/events/distribution"), url
    request = urllib.request.Request(
        chart_processes.webhook_url + "/v1/events/distribution",
        data=body,
        headers=headers,
        method="POST",
    )
    status = await asyncio.to_thread(_post, request)
    assert 200 <= status < 300, status
    # And without the token, refused.
    del headers["Authorization"]
    anonymous = urllib.request.Request(request.full_url, data=body, headers=headers, method="POST")
    assert await asyncio.to_thread(_post, anonymous) == 401


def _post(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


async def test_push_to_rollout_under_the_charts_service_accounts(
    kube: Kube, chart_processes: ChartProcesses, tmp_path: Path
) -> None:
    """A push reaches the webhook, the tag moves, the Deployment rolls: every request made
    with the chart's ServiceAccounts, in namespaced mode."""
    apps = chart_processes.apps
    lease = await kube.get(
        Resource("coordination.k8s.io", "v1", "leases", "Lease"),
        chart_processes.installed.namespace,
        "imagestream-controller",
    )
    assert lease["spec"]["holderIdentity"], lease
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "image.openshift.io/triggers": json.dumps(
                    [
                        {
                            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
                            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
                        }
                    ]
                )
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": " "}]},
            },
        },
    }
    await kube.create(KINDS["Deployment"], apps, deployment)
    image = make_oci_image(tmp_path / "image", uuid.uuid4().hex)
    await asyncio.to_thread(skopeo_push, image, f"{chart_processes.registry.host}/{apps}/app:v1")
    expected = f"{chart_processes.registry.host}/{apps}/app@{image.manifest_digest}"
    async with asyncio.timeout(ROLLOUT_BUDGET_S):
        while True:
            current = await kube.get(KINDS["Deployment"], apps, "web")
            if current["spec"]["template"]["spec"]["containers"][0]["image"] == expected:
                break
            await asyncio.sleep(0.1)
    stream = await kube.get(IMAGESTREAMS, apps, "app")  # created by the integrated receiver
    assert {tag["tag"] for tag in stream["status"]["tags"]} == {"v1"}
    for process in chart_processes.processes:
        process.check_running()
        assert not _forbidden_lines(process), (process.name, _forbidden_lines(process))


# --- CRDs as release objects (crds.enabled, crds.keep), on a control plane of their own ------

CRD_RESOURCE = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
    namespaced=False,
)  # fmt: skip
IMAGESTREAM_CRD = "imagestreams.image.openshift.io"
CRD_FILE = "crds/imagestreams.image.openshift.io.yaml"


def _chart_copy(tmp_path: Path, name: str, column: str | None) -> Path:
    """A copy of the chart whose ImageStream CRD (in crds/, the one source) has one more
    printer column, as a chart upgrade that changes a CRD would."""
    copy = tmp_path / name
    shutil.copytree(CHART, copy)
    if column is not None:
        path = copy / CRD_FILE
        text = path.read_text()
        anchor = "      additionalPrinterColumns:\n"
        assert text.count(anchor) == 1
        path.write_text(
            text.replace(
                anchor,
                f"{anchor}        - name: {column}\n"
                "          type: string\n"
                "          jsonPath: .metadata.uid\n",
            )
        )
    return copy


def _columns(crd: Any) -> list[str]:
    (version,) = crd["spec"]["versions"]
    return [column["name"] for column in version.get("additionalPrinterColumns", [])]


async def _storage_ready(kube: Kube, crd: Any) -> bool:
    """The API server's watch cache for `crd`'s objects answers an unpaginated list.

    Deleting a CRD whose cache is still initialising can leave it Terminating for up to five
    minutes: kube-apiserver's CRD finalizer lists the objects once, meets "storage is
    (re)initializing", and its retry is dropped on a conflict with its own status write
    until the five-minute informer resync (the chart README's CRD section). A list without
    `limit` is served by that same cache (a paginated one would go to etcd), so once it
    answers, the finalizer's list does too.
    """
    (version,) = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    path = f"/apis/{crd['spec']['group']}/{version}/{crd['spec']['names']['plural']}"
    try:
        await kube.request("GET", path, attempts=1)
    except TooManyRequests:
        return False
    return True


async def _delete_chart_crds(kube: Kube) -> None:
    """Delete every chart CRD once its storage is ready (see `_storage_ready`), and wait
    until all are gone."""
    await _warm_crd_storage(kube)
    for crd in load_crds():
        await kube.delete(CRD_RESOURCE, None, crd["metadata"]["name"])
    await eventually(lambda: _crd_gone(kube), timeout_s=120.0, what="CRDs deleted")


async def _warm_crd_storage(kube: Kube) -> None:
    for crd in load_crds():
        await eventually(
            lambda crd=crd: _storage_ready(kube, crd),
            what=f"{crd['metadata']['name']}'s storage ready",
        )


async def _crd_gone(kube: Kube) -> bool:
    """Every CRD of the chart is gone (each is deleted at its own pace: the API server
    removes its objects first), not only the ImageStream one."""
    for crd in load_crds():
        try:
            await kube.get(CRD_RESOURCE, None, crd["metadata"]["name"])
        except NotFound:
            continue
        return False
    return True


async def test_crds_enabled_upgrades_the_crds_and_keep_keeps_them(
    helm: Helm, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """helm install, then helm upgrade with a changed CRD: the CRD changes in the cluster
    with crds.enabled and not without; helm uninstall keeps it with crds.keep (and the
    ImageStreams with it) and deletes it without."""
    original = _chart_copy(tmp_path, "original", None)
    upgraded = _chart_copy(tmp_path, "upgraded", "Probe")
    with own_control_plane(tmp_path_factory, "crd-plane") as plane:
        kubeconfig = plane.kubeconfig_path

        async def helm_run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(helm.run, *args, kubeconfig=kubeconfig, check=check)

        ns = ("--namespace", "crd-test", "--create-namespace")
        async with kube_with_crds(plane) as kube:
            # kube_with_crds installed crds/ the way imagestream dev does; start clean.
            await _delete_chart_crds(kube)

            # 1. Without crds.enabled, Helm installs crds/ and never upgrades (nor deletes) them.
            await helm_run("install", "b", str(original), *ns)
            await helm_run("upgrade", "b", str(_chart_copy(tmp_path, "other", "Second")), *ns)
            crd = await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD)
            assert "Second" not in _columns(crd)
            assert "meta.helm.sh/release-name" not in (crd["metadata"].get("annotations") or {})
            print(f"after helm upgrade without crds.enabled: columns {_columns(crd)}")
            await helm_run("uninstall", "b", "--namespace", "crd-test", "--wait")
            await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD)

            # 2. The README's migration: a release with crds.enabled adopts those CRDs.
            await helm_run("install", "a", str(original), *ns, "--skip-crds", "--take-ownership",
                           "--set", "crds.enabled=true")  # fmt: skip
            crd = await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD)
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "a"
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            await eventually(
                lambda: _established(kube, IMAGESTREAM_CRD), what="the CRD is Established"
            )
            await kube.create(
                IMAGESTREAMS, "crd-test", {"apiVersion": "image.openshift.io/v1",
                                           "kind": "ImageStream", "metadata": {"name": "app"}},
            )  # fmt: skip

            # 3. helm upgrade with the changed CRD: it changes in the cluster.
            await helm_run("upgrade", "a", str(upgraded), *ns, "--set", "crds.enabled=true")
            crd = await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD)
            assert "Probe" in _columns(crd), _columns(crd)
            print(f"after helm upgrade with crds.enabled: columns {_columns(crd)}")

            # 4. helm uninstall with crds.keep (the default): the CRD and the stream stay.
            await helm_run("uninstall", "a", "--namespace", "crd-test", "--wait")
            assert "Probe" in _columns(await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD))
            await kube.get(IMAGESTREAMS, "crd-test", "app")

            # 5. crds.keep=false on a fresh install: helm uninstall deletes them, as asked.
            await _delete_chart_crds(kube)
            await helm_run("install", "c", str(upgraded), *ns, "--skip-crds",
                           "--set", "crds.enabled=true", "--set", "crds.keep=false")  # fmt: skip
            crd = await kube.get(CRD_RESOURCE, None, IMAGESTREAM_CRD)
            assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
            # No --wait: the CRDs' absence is what is claimed, and is waited for here.
            await _warm_crd_storage(kube)
            await helm_run("uninstall", "c", "--namespace", "crd-test")
            await eventually(lambda: _crd_gone(kube), timeout_s=120.0, what="CRDs deleted")

            # 6. crds.enabled without --skip-crds: Helm refuses, as the README says.
            refused = await helm_run("install", "d", str(original), *ns,
                                     "--set", "crds.enabled=true", check=False)  # fmt: skip
            assert refused.returncode != 0
            assert "invalid ownership metadata" in refused.stderr, refused.stderr


async def _established(kube: Kube, name: str) -> bool:
    crd = await kube.get(CRD_RESOURCE, None, name)
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
