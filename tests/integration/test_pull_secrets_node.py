"""A pod of a fresh ServiceAccount pulls from a registry that requires the cluster's auth.

Issue 16's test "a pod of a fresh ServiceAccount pulls an image from the integrated
registry with no pull secret written by hand" (behaviour 34), on the real node, with
ServiceAccount admission on (it copies the account's `imagePullSecrets` into its pods):

- a real Debian `docker-registry` on the node's host-only address with distribution's
  token auth, its realm our webhook's token service (`GET /v1/registry/token`, behaviour
  33), trusting the certificate of the key the webhook made;
- our controller with `--service-account-pull-secrets` watching one namespace, whose
  service accounts hold `system:image-puller` there (OpenShift's `system:image-pullers`
  binding, made here by the test);
- an app image pushed with skopeo as the cluster admin (its token as the password).

A Deployment of a fresh account in the watched namespace runs the pushed digest and
serves its page: containerd fetched a registry token with the account's bound token
from the Secret the controller wrote. The same Deployment in a namespace the controller
does not watch (its default account has no such Secret) never pulls: the registry
refuses it. Both pods run on the node; nothing is faked.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import app as controller_app
from imagestream.kube.client import Kube, connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.resources import ROLEBINDINGS, SECRETS
from imagestream.kube.roles import install_image_roles, load_image_roles
from imagestream.registry_tokens import ISSUER, SERVICE, TOKEN_PATH
from imagestream.settings import HostPort
from localdev.controlplane import free_port
from localdev.images import APP_PORT, PUSH_TIMEOUT_S, make_app_image
from localdev.node import HOST_ADDRESS
from localdev.private import private_dir, write_private
from localdev.registry import Registry, TokenAuth
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
from webhook import app as webhook_app

pytestmark = pytest.mark.integration

SIGNING_SECRET = "registry-token-signing"
REFUSED_TIMEOUT_S = 90.0
"""The kubelet reports a refused pull (ErrImagePull) within seconds; a busy host is slower."""


@pytest.fixture(scope="module")
def auth_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, auth_port: int) -> Iterator[NodeCluster]:
    skip_unless_node_can_run()
    with node_cluster(
        tmp_path_factory.mktemp("pullsecrets-node"),
        plain_http_registries=(f"{HOST_ADDRESS}:{auth_port}",),
        service_account_tokens=True,
    ) as running:
        yield running


def _push_as_admin(cluster: NodeCluster, workdir: Path, destination: str, marker: str) -> str:
    """Push an app image with skopeo, the cluster admin's token as the password."""
    image = make_app_image(workdir / marker, marker)
    host = destination.split("/", 1)[0]
    auth = base64.b64encode(f"admin:{cluster.plane.token}".encode()).decode()
    authfile = write_private(
        private_dir(workdir / "auth") / "config.json",
        json.dumps({"auths": {host: {"auth": auth}}}),
    )
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            f"--dest-authfile={authfile}",
            f"oci:{image.layout_dir}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=PUSH_TIMEOUT_S,
    )
    return image.manifest_digest


async def _grant_pull(kube: Kube, namespace: str) -> None:
    """OpenShift's `system:image-pullers`: the namespace's accounts may pull from it."""
    await kube.create(
        ROLEBINDINGS,
        namespace,
        {
            "metadata": {"name": "system:image-pullers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:image-puller",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": f"system:serviceaccounts:{namespace}",
                }
            ],
        },
    )


async def test_a_pod_of_a_fresh_service_account_pulls_with_the_secret_the_controller_wrote(
    cluster: NodeCluster, auth_port: int, tmp_path: Path
) -> None:
    kube = await connect(cluster.plane.kubeconfig_path)
    registry: Registry | None = None
    try:
        await install_crds(kube, load_crds())
        await install_image_roles(kube, load_image_roles())
        key_namespace = await new_namespace(kube, "pull-key")
        watched = await new_namespace(kube, "pull")
        unwatched = await new_namespace(kube, "nopull")
        await _grant_pull(kube, watched)
        await _grant_pull(kube, unwatched)
        host = f"{HOST_ADDRESS}:{auth_port}"
        webhook_addr = HostPort(HOST_ADDRESS, free_port())  # containerd asks it for tokens
        settings = local_settings(
            kubeconfig=cluster.plane.kubeconfig_path,
            webhook_addr=webhook_addr,
            webhook_token_file=write_private(tmp_path / "receiver-token", uuid.uuid4().hex),
            watch_namespaces=(watched, unwatched, key_namespace),
            integrated_registry=host,
            allowed_registries=(host,),
            registry_token_signing_secret=f"{key_namespace}/{SIGNING_SECRET}",
        )
        # The controller keeps pull secrets in `watched` only; `unwatched` is the control.
        controller_settings = dataclasses.replace(
            settings,
            watch_namespaces=(watched,),
            service_account_pull_secrets=True,
            health_addr=HostPort("127.0.0.1", free_port()),
            metrics_addr=HostPort("127.0.0.1", free_port()),
            webhook_addr=HostPort("127.0.0.1", free_port()),
        )
        async with (
            run_system(settings, [webhook_app.start]),
            run_system(controller_settings, [controller_app.start]),
        ):
            secret = await kube.get(SECRETS, key_namespace, SIGNING_SECRET)
            bundle = tmp_path / "rootcertbundle.crt"
            bundle.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
            registry = Registry(
                workdir=tmp_path / "registry",
                port=auth_port,
                address=HOST_ADDRESS,
                auth=TokenAuth(
                    realm=f"http://{webhook_addr}{TOKEN_PATH}",
                    service=SERVICE,
                    issuer=ISSUER,
                    root_cert_bundle=bundle,
                ),
            ).start()
            marker = f"m-{uuid.uuid4().hex[:12]}"
            digest = await asyncio.to_thread(
                _push_as_admin, cluster, tmp_path, f"{host}/{watched}/app:v1", marker
            )
            image = f"{host}/{watched}/app@{digest}"

            # A fresh account of the watched namespace: its Secret listed before its pod.
            ref = await fresh_account(kube, watched, "fresh", timeout_s=60)
            await asyncio.to_thread(
                cluster.kubectl,
                "-n",
                watched,
                "apply",
                "-f",
                "-",
                stdin=json.dumps(account_deployment("app", image, "fresh")),
            )
            await asyncio.to_thread(
                cluster.kubectl,
                "-n",
                watched,
                "rollout",
                "status",
                "deployment/app",
                f"--timeout={ROLLOUT_TIMEOUT_S}s",
            )
            (pod,) = cluster.get("-n", watched, "pods", "-l", "app=app")["items"]
            assert [s["name"] for s in pod["spec"]["imagePullSecrets"]] == [ref]
            assert pod["status"]["containerStatuses"][0]["imageID"] == image
            page = await asyncio.to_thread(http_get, f"http://{pod['status']['podIP']}:{APP_PORT}/")
            assert f"marker={marker}" in page

            # The same image from a namespace whose accounts have no such Secret: refused.
            await asyncio.to_thread(
                cluster.kubectl,
                "-n",
                unwatched,
                "apply",
                "-f",
                "-",
                stdin=json.dumps(account_deployment("app", image, "default")),
            )
            message = await eventually(
                lambda: asyncio.to_thread(pull_refused, cluster, unwatched, "app"),
                timeout_s=REFUSED_TIMEOUT_S,
                interval_s=1.0,
                what="the pull without a secret refused",
            )
            assert "401" in message or "nauthorized" in message or "authoriz" in message, message
    finally:
        if registry is not None:
            registry.stop()
        await kube.close()
