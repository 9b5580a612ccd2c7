"""The Image Registry Operator's loop against a real control plane (behaviour 32).

A control plane of this module's own (the operator owns two cluster singletons,
`configs.imageregistry.operator.openshift.io/cluster` and the integrated hostname in
`images.config.openshift.io/cluster`, which the session controller reads), our CRDs, and the
controller started with `--registry-operator`. kube-controller-manager turns the operator's
Deployment into ReplicaSets and pods (which stay Pending: this tier has no node; the node
tier runs them), so what is asserted is what the API server holds:

- first start without a default StorageClass: `cluster` is created `Removed`, StorageExists
  says what to configure, and no registry object exists;
- first start with one: `Managed` with the claim `image-registry-storage` provisioned (and
  recorded in the spec), the Deployment, the Service on 5000, the hostname in
  images.config status; a configuration change rolls the pod template (a new ReplicaSet);
  Unmanaged ignores a change; Removed deletes the registry and the claim; Managed again
  brings both back;
- the hostname reaches an ImageStream's `status.dockerImageRepository`, and with
  `defaultRoute` an Ingress with TLS is made and its host reaches
  `status.publicDockerImageRepository`;
- with the token service's realm and signing Secret: no registry (Degraded
  TokenAuthNotReady) until the webhook, started later, makes the Secret; then the registry's
  configuration has the `auth.token` section and the Secret's certificate as its rootcertbundle.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import app as controller_app
from controller.registryoperator.plan import (
    CHECKSUM_ANNOTATION,
    DEFAULT_CLAIM,
    PVC_OWNER_ANNOTATION,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    IMAGE_CONFIGS,
    IMAGESTREAMS,
    INGRESSES,
    NAMESPACES,
    PERSISTENTVOLUMECLAIMS,
    REGISTRY_CONFIGS,
    REPLICASETS,
    SECRETS,
    SERVICES,
    STORAGECLASSES,
    Resource,
)
from imagestream.objects import Obj
from imagestream.registry_tokens import ISSUER, SERVICE
from localdev.controlplane import ControlPlane
from localdev.private import write_private
from localdev.system import local_settings, run_system
from tests.integration.conftest import eventually, kube_with_crds, new_namespace, own_control_plane
from tests.integration.registryconfig import replace_registry_config
from webhook import app as webhook_app

NS = "openshift-image-registry"
HOST = f"image-registry.{NS}.svc:5000"
ROUTE_DOMAIN = "apps.registry-operator.test"
ROUTE_HOST = f"default-route-{NS}.{ROUTE_DOMAIN}"
IMAGE = "registry.local/registry:operator-test"
TOKEN_NAMESPACE = "imagestream-system"
TOKEN_SECRET = "notification"
WEBHOOK_URL = f"http://imagestream-webhook.{TOKEN_NAMESPACE}.svc:8080/v1/events/distribution"
STEP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory, "registry-operator-plane") as own:
        yield own


@pytest.fixture(scope="module")
async def kube(plane: ControlPlane) -> AsyncIterator[Kube]:
    async with kube_with_crds(plane) as handle:
        await handle.create(NAMESPACES, None, {"metadata": {"name": TOKEN_NAMESPACE}})
        await handle.create(
            SECRETS,
            TOKEN_NAMESPACE,
            {"metadata": {"name": TOKEN_SECRET}, "stringData": {"token": uuid.uuid4().hex}},
        )
        yield handle


@contextlib.asynccontextmanager
async def operator(plane: ControlPlane, **overrides: object) -> AsyncIterator[None]:
    settings = local_settings(
        kubeconfig=plane.kubeconfig_path,
        registry_operator=True,
        registry_image=IMAGE,
        registry_notification_url=WEBHOOK_URL,
        registry_notification_secret=f"{TOKEN_NAMESPACE}/{TOKEN_SECRET}:token",
        registry_route_domain=ROUTE_DOMAIN,
        allowed_registries=("127.0.0.1:*",),
        **overrides,
    )
    async with run_system(settings, [controller_app.start]):
        yield


async def get(kube: Kube, resource: Resource, name: str, namespace: str | None = NS) -> Obj | None:
    try:
        return await kube.get(resource, namespace if resource.namespaced else None, name)
    except NotFound:
        return None


def conditions(config: Obj | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((config or {}).get("status") or {}).get("conditions") or []}


async def registry_config(kube: Kube) -> Obj | None:
    return await get(kube, REGISTRY_CONFIGS, "cluster", None)


async def processed(kube: Kube, reason: str, type_: str = "Available") -> Obj:
    """The Config once the operator has planned its latest generation to `reason`."""

    async def check() -> Obj | None:
        config = await registry_config(kube)
        if config is None:
            return None
        status = config.get("status") or {}
        if status.get("observedGeneration") != config["metadata"]["generation"]:
            return None
        return config if conditions(config).get(type_, {}).get("reason") == reason else None

    return await eventually(check, timeout_s=STEP_TIMEOUT_S, what=f"{type_} reason {reason}")


async def internal_hostname(kube: Kube) -> str:
    image_config = await get(kube, IMAGE_CONFIGS, "cluster", None)
    return str(((image_config or {}).get("status") or {}).get("internalRegistryHostname") or "")


async def set_spec(kube: Kube, spec: dict[str, Any]) -> None:
    for _ in range(10):
        with contextlib.suppress(Conflict):
            await kube.patch(REGISTRY_CONFIGS, None, "cluster", {"spec": spec})
            return
    raise AssertionError("configs.imageregistry.operator.openshift.io/cluster: too many conflicts")


async def delete_config(kube: Kube) -> None:
    with contextlib.suppress(NotFound):
        await kube.delete(REGISTRY_CONFIGS, None, "cluster")

    async def gone() -> bool:
        return await registry_config(kube) is None

    await eventually(gone, timeout_s=STEP_TIMEOUT_S, what="the Config deleted")


async def absent(kube: Kube, resource: Resource, name: str) -> bool:
    return await get(kube, resource, name) is None


async def remove_registry(kube: Kube) -> None:
    """Removed, and waited for (deleting the Config alone leaves the registry, as OpenShift's
    finalizer would not: there is none here)."""
    await set_spec(kube, {"managementState": "Removed"})

    async def gone() -> bool:
        return await absent(kube, DEPLOYMENTS, "image-registry")

    await eventually(gone, timeout_s=STEP_TIMEOUT_S, what="the registry removed")


async def test_first_start_without_a_default_storage_class_is_removed(
    plane: ControlPlane, kube: Kube
) -> None:
    classes, _ = await kube.list(STORAGECLASSES)
    assert classes == []  # a fresh control plane: no storage at all
    async with operator(plane):
        config = await processed(kube, "Removed")

        # Published after the Config's status is written: wait for it while the operator runs.
        async def image_config() -> Obj | None:
            return await get(kube, IMAGE_CONFIGS, "cluster", None)

        await eventually(image_config, timeout_s=STEP_TIMEOUT_S, what="images.config cluster")
    assert config["spec"]["managementState"] == "Removed"
    storage = conditions(config)["StorageExists"]
    assert (storage["status"], storage["reason"]) == ("False", "StorageNotConfigured")
    assert "spec.storage" in storage["message"] and "managementState: Managed" in storage["message"]
    assert conditions(config)["Removed"]["status"] == "True"
    assert await absent(kube, DEPLOYMENTS, "image-registry")

    # images.config.openshift.io/cluster exists (waited for above), as on OpenShift, with no
    # internal hostname.
    assert await internal_hostname(kube) == ""
    await delete_config(kube)


async def test_managed_unmanaged_removed_managed(plane: ControlPlane, kube: Kube) -> None:
    await kube.create(
        STORAGECLASSES,
        None,
        {
            "metadata": {
                "name": "local-default",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
    )
    try:
        async with operator(plane):
            await _lifecycle(kube)
    finally:
        await kube.delete(STORAGECLASSES, None, "local-default")
        await delete_config(kube)


async def _lifecycle(kube: Kube) -> None:
    # First start with a default StorageClass: Managed, on a claim the operator provisions.
    config = await processed(kube, "NoReplicasAvailable")
    assert config["spec"]["managementState"] == "Managed"
    assert config["spec"]["storage"]["pvc"] == {"claim": DEFAULT_CLAIM}
    assert config["spec"]["storage"]["managementState"] == "Managed"
    assert conditions(config)["StorageExists"]["status"] == "True"
    claim = await get(kube, PERSISTENTVOLUMECLAIMS, DEFAULT_CLAIM)
    assert claim is not None and PVC_OWNER_ANNOTATION in claim["metadata"]["annotations"]
    deployment = await get(kube, DEPLOYMENTS, "image-registry")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == IMAGE
    assert {"name": "registry-storage", "persistentVolumeClaim": {"claimName": DEFAULT_CLAIM}} in (
        pod["volumes"]
    )
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    service = await get(kube, SERVICES, "image-registry")
    assert service is not None and service["spec"]["ports"][0]["port"] == 5000
    assert await get(kube, CONFIGMAPS, "image-registry-config") is not None
    private = await get(kube, SECRETS, "image-registry-private-configuration")
    assert private is not None
    assert {"REGISTRY_HTTP_SECRET", "NOTIFICATION_TOKEN"} <= set(private["data"])

    async def hostname_published() -> bool:
        return await internal_hostname(kube) == HOST

    await eventually(hostname_published, timeout_s=STEP_TIMEOUT_S, what="internal hostname")

    # A configuration change rolls the pods: a new checksum, a new ReplicaSet.
    before = deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]
    await set_spec(kube, {"readOnly": True})
    await processed(kube, "NoReplicasAvailable")

    async def rolled() -> Obj | None:
        current = await get(kube, DEPLOYMENTS, "image-registry")
        annotations = (current or {})["spec"]["template"]["metadata"]["annotations"]
        return current if annotations[CHECKSUM_ANNOTATION] != before else None

    rolled_deployment = await eventually(rolled, timeout_s=STEP_TIMEOUT_S, what="new checksum")
    configmap = await get(kube, CONFIGMAPS, "image-registry-config")
    assert configmap is not None and "readonly" in configmap["data"]["config.yml"]

    async def two_replicasets() -> bool:
        sets, _ = await kube.list(REPLICASETS, NS)
        hashes = {
            s["spec"]["template"]["metadata"]["annotations"].get(CHECKSUM_ANNOTATION) for s in sets
        }
        return {before, _checksum(rolled_deployment)} <= hashes

    await eventually(two_replicasets, timeout_s=STEP_TIMEOUT_S, what="a ReplicaSet per config")

    # Unmanaged: a change of the spec is not followed.
    await set_spec(kube, {"managementState": "Unmanaged", "replicas": 3})
    config = await processed(kube, "Unmanaged")
    assert conditions(config)["Progressing"]["reason"] == "Unmanaged"
    deployment = await get(kube, DEPLOYMENTS, "image-registry")
    assert deployment is not None and deployment["spec"]["replicas"] == 1

    # Removed: the registry and the claim the operator provisioned are deleted.
    await set_spec(kube, {"managementState": "Removed", "replicas": 1})
    for resource, name in (
        (DEPLOYMENTS, "image-registry"),
        (SERVICES, "image-registry"),
        (CONFIGMAPS, "image-registry-config"),
        (SECRETS, "image-registry-private-configuration"),
        (PERSISTENTVOLUMECLAIMS, DEFAULT_CLAIM),
    ):

        async def gone(resource: Resource = resource, name: str = name) -> bool:
            return await absent(kube, resource, name)

        await eventually(gone, timeout_s=STEP_TIMEOUT_S, what=f"{resource.kind} {name} deleted")
    config = await processed(kube, "Removed", "Progressing")
    assert conditions(config)["Removed"]["status"] == "True"

    async def hostname_withdrawn() -> bool:
        return await internal_hostname(kube) == ""

    await eventually(hostname_withdrawn, timeout_s=STEP_TIMEOUT_S, what="hostname withdrawn")

    # Managed again: the registry and its claim come back.
    await set_spec(kube, {"managementState": "Managed"})
    await processed(kube, "NoReplicasAvailable")

    async def back() -> bool:
        return not await absent(kube, DEPLOYMENTS, "image-registry") and not await absent(
            kube, PERSISTENTVOLUMECLAIMS, DEFAULT_CLAIM
        )

    await eventually(back, timeout_s=STEP_TIMEOUT_S, what="the registry and its claim back")
    await eventually(hostname_published, timeout_s=STEP_TIMEOUT_S, what="internal hostname")


def _checksum(deployment: Obj) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])


async def test_hostnames_reach_imagestreams(plane: ControlPlane, kube: Kube) -> None:
    namespace = await new_namespace(kube, "regop")
    await kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": IMAGESTREAMS.api_version,
            "kind": IMAGESTREAMS.kind,
            "metadata": {"name": "app"},
        },
    )
    await delete_config(kube)
    await replace_registry_config(
        kube,
        {
            "managementState": "Managed",
            "replicas": 1,
            "storage": {"emptyDir": {}},
            "defaultRoute": True,
        },
    )
    try:
        async with operator(plane):
            await processed(kube, "NoReplicasAvailable")
            ingress = await get(kube, INGRESSES, "default-route")
            assert ingress is not None
            assert ingress["spec"]["tls"] == [{"hosts": [ROUTE_HOST]}]
            backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
            assert backend == {"name": "image-registry", "port": {"number": 5000}}

            async def repositories() -> dict[str, str] | None:
                stream = await get(kube, IMAGESTREAMS, "app", namespace)
                status = (stream or {}).get("status") or {}
                wanted = {
                    "dockerImageRepository": f"{HOST}/{namespace}/app",
                    "publicDockerImageRepository": f"{ROUTE_HOST}/{namespace}/app",
                }
                return wanted if all(status.get(k) == v for k, v in wanted.items()) else None

            await eventually(repositories, timeout_s=STEP_TIMEOUT_S, what="stream repositories")
            image_config = await get(kube, IMAGE_CONFIGS, "cluster", None)
            assert (image_config or {})["status"]["externalRegistryHostnames"] == [ROUTE_HOST]

            # defaultRoute off: the Ingress and the external hostname go.
            await set_spec(kube, {"defaultRoute": False})

            async def route_withdrawn() -> bool:
                config = await get(kube, IMAGE_CONFIGS, "cluster", None)
                hosts = ((config or {}).get("status") or {}).get("externalRegistryHostnames")
                return not hosts and await absent(kube, INGRESSES, "default-route")

            await eventually(route_withdrawn, timeout_s=STEP_TIMEOUT_S, what="route withdrawn")

            # RollingUpdate (emptyDir's default) to Recreate: the API server takes the change.
            await set_spec(kube, {"rolloutStrategy": "Recreate"})

            async def recreate() -> bool:
                deployment = await get(kube, DEPLOYMENTS, "image-registry")
                strategy = ((deployment or {}).get("spec") or {}).get("strategy")
                return bool(strategy == {"type": "Recreate"})

            await eventually(recreate, timeout_s=STEP_TIMEOUT_S, what="Recreate strategy")
            await remove_registry(kube)
    finally:
        await delete_config(kube)


SIGNING_SECRET = "registry-token-signing"
REALM = "http://192.0.2.10:8080/v1/registry/token"


async def test_token_auth_waits_for_the_signing_secret_then_configures_the_registry(
    plane: ControlPlane, kube: Kube, tmp_path: Path
) -> None:
    """`--registry-token-realm` and `--registry-token-signing-secret`: the registry takes
    cluster tokens only. Until the webhook has made the signing Secret no registry runs
    (Degraded TokenAuthNotReady: one without it would let anyone in); once the webhook
    starts and makes it, the registry is configured with the realm, the token service's
    names and the Secret's certificate as its rootcertbundle."""
    await delete_config(kube)
    await replace_registry_config(
        kube, {"managementState": "Removed", "replicas": 1, "storage": {"emptyDir": {}}}
    )
    signing = {"registry_token_signing_secret": f"{TOKEN_NAMESPACE}/{SIGNING_SECRET}"}
    try:
        async with operator(plane, registry_token_realm=REALM, **signing):
            # Removed first: what earlier tests left in the registry namespace is gone.
            await processed(kube, "Removed", "Progressing")
            await set_spec(kube, {"managementState": "Managed"})
            config = await processed(kube, "TokenAuthNotReady", "Degraded")
            assert conditions(config)["Degraded"]["status"] == "True"
            assert "signing certificate" in conditions(config)["Degraded"]["message"]
            assert await absent(kube, DEPLOYMENTS, "image-registry")
            assert await absent(kube, CONFIGMAPS, "image-registry-config")

            # The webhook starts and makes the Secret (its fresh key); nobody tells the operator.
            webhook_settings = local_settings(
                kubeconfig=plane.kubeconfig_path,
                webhook_token_file=write_private(tmp_path / "receiver-token", uuid.uuid4().hex),
                integrated_registry=HOST,
                **signing,
            )
            async with run_system(webhook_settings, [webhook_app.start]):
                secret = await get(kube, SECRETS, SIGNING_SECRET, TOKEN_NAMESPACE)
                assert secret is not None
                certificate = base64.b64decode(secret["data"]["tls.crt"]).decode()
                config = await processed(kube, "NoReplicasAvailable")
                assert conditions(config)["Degraded"]["status"] == "False"
                await _assert_token_auth(kube, certificate)
            # Removed, so the next start of this module's plane finds no registry.
            await set_spec(kube, {"managementState": "Removed"})
            await processed(kube, "Removed", "Progressing")
    finally:
        await delete_config(kube)


async def _assert_token_auth(kube: Kube, certificate: str) -> None:
    """What the registry is given, as the API server holds it."""
    configmap = await get(kube, CONFIGMAPS, "image-registry-config")
    assert configmap is not None
    registry_yaml = yaml.safe_load(configmap["data"]["config.yml"])
    assert registry_yaml["auth"] == {
        "token": {
            "realm": REALM,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": "/etc/registry-token-ca/ca.crt",
        }
    }
    ca = await get(kube, CONFIGMAPS, "image-registry-token-ca")
    assert ca is not None and ca["data"]["ca.crt"] == certificate
    deployment = await get(kube, DEPLOYMENTS, "image-registry")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["token-ca"]["configMap"]["name"] == "image-registry-token-ca"
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "token-ca", "mountPath": "/etc/registry-token-ca", "readOnly": True} in mounts


async def test_the_installers_bootstrap_makes_the_first_config_and_never_changes_it(
    plane: ControlPlane, kube: Kube
) -> None:
    """The chart's `registry.enabled` and `registry.storage`: the first Config only. Started
    again with other bootstrap settings (a `helm upgrade`), the operator keeps the Config."""
    await delete_config(kube)
    bootstrap = {
        "registry_bootstrap_management_state": "Managed",
        "registry_bootstrap_spec": '{"storage": {"emptyDir": {}}, "replicas": 1}',
        "registry_cluster_ip": "10.0.0.13",
    }
    try:
        async with operator(plane, **bootstrap):
            config = await processed(kube, "NoReplicasAvailable")
            assert config["spec"]["managementState"] == "Managed"
            assert config["spec"]["storage"] == {"emptyDir": {}}
            service = await get(kube, SERVICES, "image-registry")
            assert service is not None and service["spec"]["clusterIP"] == "10.0.0.13"
        upgraded = {
            **bootstrap,
            "registry_bootstrap_management_state": "Removed",
            "registry_bootstrap_spec": '{"storage": {"pvc": {"claim": "other"}}}',
        }
        async with operator(plane, **upgraded):
            again = await processed(kube, "NoReplicasAvailable")
            assert again["metadata"]["uid"] == config["metadata"]["uid"]
            assert again["spec"]["managementState"] == "Managed"
            assert again["spec"]["storage"] == {"emptyDir": {}}
            await set_spec(kube, {"managementState": "Removed"})
            await processed(kube, "Removed", "Progressing")
    finally:
        await delete_config(kube)
