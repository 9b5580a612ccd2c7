"""The operator's registry with the cluster's token auth, end to end on the real node.

Issue 16's access tests (behaviours 33 and 34) against the registry as the chart and
`imagestream dev` run it, not one configured by hand: our controller with
`--registry-operator`, `--service-account-pull-secrets` and `--registry-token-realm`, and our
webhook with `--registry-token-signing-secret`, on one node with ServiceAccount admission on.

- The operator runs Debian's docker-registry at the fixed Service IP `imagestream dev` uses,
  with `auth.token` (realm: the webhook's `/v1/registry/token` on the node's host-only
  address, an IP the host's skopeo and the node's containerd both reach) and the signing
  Secret's certificate as its rootcertbundle; its notifications go to the same webhook.
- Pods name the image by the hostname the operator publishes
  (`image-registry.openshift-image-registry.svc:5000`), which containerd reaches through a
  hosts.toml mirror to the Service IP, as in dev: the kubelet's credentials for that name
  are the ones containerd presents to the mirror and to the realm.

Then: an anonymous skopeo push is refused; `imagestream registry login` with the `builder`
account's token (bound to `system:image-builder`) writes an authfile and a push with it
succeeds and moves the ImageStream's tag; a Deployment of a fresh ServiceAccount runs the
pushed digest with the pull Secret the controller wrote; a fresh account of another
namespace (its own Secret written too) is refused by the registry until a RoleBinding of
`system:image-puller` for that namespace's accounts exists, then its pod runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import app as controller_app
from imagestream.cli.dev import INTERNAL_REGISTRY, REGISTRY_SERVICE_IP
from imagestream.kube.client import Kube, connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import (
    IMAGESTREAMS,
    REGISTRY_CONFIGS,
    ROLEBINDINGS,
    SECRETS,
    SERVICEACCOUNTS,
)
from imagestream.kube.roles import install_image_roles, load_image_roles
from imagestream.registry_tokens import TOKEN_PATH
from imagestream.settings import HostPort
from localdev import debian_images
from localdev.controlplane import free_port
from localdev.images import APP_PORT, PUSH_TIMEOUT_S, make_app_image, skopeo_push
from localdev.node import HOST_ADDRESS
from localdev.private import private_dir, write_private
from localdev.system import local_settings, run_system
from tests.integration.conftest import eventually, new_namespace
from tests.integration.nodecluster import (
    ROLLOUT_TIMEOUT_S,
    NodeCluster,
    http_get,
    node_cluster,
    skip_unless_node_can_run,
)
from tests.integration.pullsecretpods import account_deployment, fresh_account, pull_refused
from tests.node.pods import delete_namespace
from webhook import app as webhook_app

pytestmark = pytest.mark.integration

REGISTRY_NS = "openshift-image-registry"
SERVICE_ADDRESS = f"{REGISTRY_SERVICE_IP}:5000"
SIGNING_SECRET = "kube-system/registry-token-signing"
NOTIFICATION_SECRET = "kube-system/registry-notification"
REGISTRY_BUDGET_S = 300.0
"""The registry's image is pulled from the host registry and its pod started on the node."""
REFUSED_TIMEOUT_S = 120.0
"""The kubelet reports a refused pull (ErrImagePull) within seconds; a busy host is slower."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    skip_unless_node_can_run()
    with node_cluster(
        tmp_path_factory.mktemp("managed-auth-node"),
        plain_http_registries=(SERVICE_ADDRESS,),
        registry_mirrors={INTERNAL_REGISTRY: SERVICE_ADDRESS},
        service_account_tokens=True,
    ) as running:
        yield running


def _skopeo_push(source: str, destination: str, authfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            f"--dest-authfile={authfile}",
            source,
            destination,
        ],
        capture_output=True,
        text=True,
        timeout=PUSH_TIMEOUT_S,
        check=False,
    )


async def _bind(kube: Kube, namespace: str, name: str, role: str, subject: dict[str, str]) -> None:
    await kube.create(
        ROLEBINDINGS,
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [subject],
        },
    )


def _diagnosis(cluster: NodeCluster, *namespaces: str) -> str:
    return "\n".join(
        [
            *(cluster.kubectl("describe", "pods", "-n", ns, check=False) for ns in namespaces),
            cluster.kubectl(
                "-n", REGISTRY_NS, "logs", "deploy/image-registry", "--tail=40", check=False
            ),
        ]
    )


async def _apply_app(cluster: NodeCluster, namespace: str, image: str, account: str) -> None:
    await asyncio.to_thread(
        cluster.kubectl, "-n", namespace, "apply", "-f", "-",
        stdin=json.dumps(account_deployment("app", image, account)),
    )  # fmt: skip


async def _runs(cluster: NodeCluster, namespace: str, image: str, marker: str) -> dict[str, Any]:
    done = await asyncio.to_thread(
        subprocess.run,
        [str(cluster.node.kubectl), "--kubeconfig", str(cluster.plane.kubeconfig_path),
         "-n", namespace, "rollout", "status", "deployment/app", f"--timeout={ROLLOUT_TIMEOUT_S}s"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(
            f"rollout in {namespace}: {done.stderr}\n{_diagnosis(cluster, namespace)}"
        )
    (pod,) = [
        p
        for p in cluster.get("-n", namespace, "pods", "-l", "app=app")["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert pod["status"]["containerStatuses"][0]["imageID"].endswith(image.split("@", 1)[1])
    page = await asyncio.to_thread(http_get, f"http://{pod['status']['podIP']}:{APP_PORT}/")
    assert f"marker={marker}" in page
    return dict(pod)


@pytest.mark.timeout(1800)
async def test_the_operators_registry_takes_cluster_tokens_and_rbac_on_the_node(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    built = await asyncio.to_thread(debian_images.build, debian_images.REGISTRY)
    tag = built.digest.removeprefix("sha256:")[:16]
    await asyncio.to_thread(
        skopeo_push, built.image, f"{cluster.registry.host}/localdev/registry:{tag}"
    )
    kube = await connect(cluster.plane.kubeconfig_path)
    try:
        await install_crds(kube, load_crds())
        await install_image_roles(kube, load_image_roles())
        app_ns = await new_namespace(kube, "regauth-app")
        other_ns = await new_namespace(kube, "regauth-other")
        receiver_token = uuid.uuid4().hex
        token_file = write_private(tmp_path / "receiver-token", receiver_token)
        ns, name = NOTIFICATION_SECRET.split("/")
        await kube.create(
            SECRETS, ns, {"metadata": {"name": name}, "stringData": {"token": receiver_token}}
        )
        webhook_addr = HostPort(HOST_ADDRESS, free_port())  # containerd and the pod reach it
        webhook_config = write_private(
            tmp_path / "webhook-config.json",
            json.dumps(
                {
                    "receivers": [
                        {
                            "name": "distribution",
                            "type": "distribution",
                            "integrated": True,
                            # The host skopeo pushes to, a name of the integrated registry.
                            "registry": SERVICE_ADDRESS,
                            "auth": {"type": "bearer", "secretFiles": [str(token_file)]},
                        }
                    ]
                }
            ),
        )
        settings = local_settings(
            kubeconfig=cluster.plane.kubeconfig_path,
            webhook_addr=webhook_addr,
            webhook_token_file=token_file,
            webhook_config=webhook_config,
            integrated_registry=INTERNAL_REGISTRY,
            allowed_registries=(cluster.registry.host, INTERNAL_REGISTRY, SERVICE_ADDRESS),
            registry_operator=True,
            registry_namespace=REGISTRY_NS,
            registry_image=f"{cluster.registry.host}/localdev/registry@{built.digest}",
            registry_cluster_ip=REGISTRY_SERVICE_IP,
            registry_bootstrap_management_state="Managed",
            registry_bootstrap_spec=json.dumps({"storage": {"emptyDir": {}}, "replicas": 1}),
            registry_notification_url=f"http://{webhook_addr}/v1/events/distribution",
            registry_notification_secret=f"{NOTIFICATION_SECRET}:token",
            registry_token_signing_secret=SIGNING_SECRET,
            registry_token_realm=f"http://{webhook_addr}{TOKEN_PATH}",
            service_account_pull_secrets=True,
        )
        try:
            async with run_system(settings, [webhook_app.start, controller_app.start]):
                await _scenario(kube, cluster, tmp_path, app_ns, other_ns)
        finally:
            for namespace in (app_ns, other_ns):
                await delete_namespace(kube, namespace)
            with contextlib.suppress(NotFound):
                await kube.delete(REGISTRY_CONFIGS, None, "cluster")
            await delete_namespace(kube, REGISTRY_NS)
    finally:
        await kube.close()


async def _scenario(
    kube: Kube, cluster: NodeCluster, tmp_path: Path, app_ns: str, other_ns: str
) -> None:
    # The registry up and answering at its Service IP from the host (kube-proxy).
    async def answers() -> bool:
        try:
            await asyncio.to_thread(http_get, f"http://{SERVICE_ADDRESS}/v2/", timeout_s=2.0)
        except OSError as error:
            # 401 is an answer: token auth is on.
            return "401" in str(error)
        return False

    try:
        await eventually(answers, timeout_s=REGISTRY_BUDGET_S, interval_s=1.0, what="registry 401")
    except TimeoutError:
        raise AssertionError(
            f"registry not answering 401:\n{_diagnosis(cluster, REGISTRY_NS)}"
        ) from None

    marker = f"m-{uuid.uuid4().hex[:12]}"
    image = make_app_image(tmp_path / marker, marker)
    source = f"oci:{image.layout_dir}"
    destination = f"docker://{SERVICE_ADDRESS}/{app_ns}/app:v1"
    await kube.create(
        IMAGESTREAMS,
        app_ns,
        {
            "apiVersion": IMAGESTREAMS.api_version,
            "kind": IMAGESTREAMS.kind,
            "metadata": {"name": "app"},
        },
    )

    # Anonymous: the token service decides as system:anonymous; RBAC grants it nothing.
    empty = write_private(private_dir(tmp_path / "anon") / "auth.json", '{"auths": {}}')
    refused = await asyncio.to_thread(_skopeo_push, source, destination, empty)
    assert refused.returncode != 0, "an anonymous push was accepted"
    assert "unauthorized" in refused.stderr.lower() or "denied" in refused.stderr.lower(), (
        refused.stderr
    )

    # The builder account (system:image-builder), logged in with `imagestream registry login`.
    # The controller makes `builder` in every namespace (as OpenShift does); or the test.
    with contextlib.suppress(Conflict):
        await kube.create(SERVICEACCOUNTS, app_ns, {"metadata": {"name": "builder"}})
    await _bind(kube, app_ns, "system:image-builders", "system:image-builder",
                {"kind": "ServiceAccount", "name": "builder", "namespace": app_ns})  # fmt: skip
    builder_token = cluster.kubectl("-n", app_ns, "create", "token", "builder").strip()
    authfile = private_dir(tmp_path / "login") / "auth.json"
    # As a user runs it (its own process: the command configures logging its own way).
    login = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "imagestream.cli", "registry", "login",
         "--kubeconfig", str(cluster.plane.kubeconfig_path),
         "--registry", SERVICE_ADDRESS, "--token", builder_token, "--to", str(authfile)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    pushed = await asyncio.to_thread(_skopeo_push, source, destination, authfile)
    assert pushed.returncode == 0, f"{pushed.stderr}\n{_diagnosis(cluster, REGISTRY_NS)}"

    async def tagged() -> bool:
        stream = await kube.get(IMAGESTREAMS, app_ns, "app")
        for entry in (stream.get("status") or {}).get("tags") or []:
            if entry["tag"] == "v1" and (entry.get("items") or [{}])[0].get("image") == (
                image.manifest_digest
            ):
                return True
        return False

    await eventually(tagged, timeout_s=120, what="the push moved app:v1")

    # OpenShift's per-namespace `system:image-pullers`: its accounts may pull from it.
    await _bind(kube, app_ns, "system:image-pullers", "system:image-puller",
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                 "name": f"system:serviceaccounts:{app_ns}"})  # fmt: skip
    # A fresh account of the namespace: the controller's pull Secret, none by hand.
    by_digest = f"{INTERNAL_REGISTRY}/{app_ns}/app@{image.manifest_digest}"
    ref = await fresh_account(kube, app_ns, "fresh")
    await _apply_app(cluster, app_ns, by_digest, "fresh")
    pod = await _runs(cluster, app_ns, by_digest, marker)
    assert [s["name"] for s in pod["spec"]["imagePullSecrets"]] == [ref]

    # Another namespace's fresh account has a Secret too, but no puller role in app_ns.
    await fresh_account(kube, other_ns, "fresh")
    await _apply_app(cluster, other_ns, by_digest, "fresh")
    try:
        message = await eventually(
            lambda: asyncio.to_thread(pull_refused, cluster, other_ns, "app"),
            timeout_s=REFUSED_TIMEOUT_S,
            interval_s=1.0,
            what="the pull without the puller role refused",
        )
    except TimeoutError:
        raise AssertionError(f"not refused:\n{_diagnosis(cluster, other_ns)}") from None
    assert "401" in message or "nauthorized" in message or "denied" in message, message

    # `oc policy add-role-to-group system:image-puller system:serviceaccounts:OTHER -n APP`.
    await _bind(kube, app_ns, f"pullers-{other_ns}", "system:image-puller",
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                 "name": f"system:serviceaccounts:{other_ns}"})  # fmt: skip
    # A new pod, so the kubelet's back-off for the refused one does not delay the retry.
    cluster.kubectl("-n", other_ns, "delete", "pods", "-l", "app=app", "--wait=false")
    await _runs(cluster, other_ns, by_digest, marker)
