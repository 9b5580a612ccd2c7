"""The operator's registry on s3 storage: a push, a new pod, a pull of the same digest (issue 16).

The storage is SeaweedFS's S3 gateway built here from its Go module
(`localdev.seaweedfs`), listening on the node's host-only address (10.244.255.1,
where Pods reach the host, as they reach the node's own registry). The
operator (a controller of this test's own, `--registry-operator`) renders
distribution's `storage.s3` from the Config's `spec.storage.s3` and passes the
keys from the Secret `image-registry-private-configuration-user`
(`REGISTRY_STORAGE_S3_ACCESSKEY`/`SECRETKEY`), as OpenShift's operator does.

A skopeo push from the host to the Service lands in the bucket; the registry
pod is deleted, so the pod that serves the pull starts with nothing but the
bucket; the pull of the tag (every blob, through the registry's redirects to
the gateway) gets the pushed digest. `Removed` at the end deletes the
registry and the namespace (with the Secret); SeaweedFS stops, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from controller.registryoperator.plan import S3_ACCESS_KEY, S3_SECRET_KEY, USER_SECRET
from imagestream.kube.client import connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import NAMESPACES, REGISTRY_CONFIGS, SECRETS
from localdev import debian_images
from localdev.images import skopeo_push
from localdev.registry import stored_blob
from localdev.seaweedfs import SeaweedFS, weed_binary
from tests.integration.nodecluster import NodeCluster
from tests.integration.registryconfig import replace_registry_config
from tests.node.test_registry_operator import NS, _remove, operator, push_restart_pull


@pytest.mark.timeout(900)  # the session's node comes up inside the first test's budget
async def test_registry_on_s3_keeps_images_across_a_new_pod(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    built = await asyncio.to_thread(debian_images.build, debian_images.REGISTRY)
    tag = built.digest.removeprefix("sha256:")[:16]
    await asyncio.to_thread(
        skopeo_push, built.image, f"{cluster.registry.host}/localdev/registry:{tag}"
    )
    image = f"{cluster.registry.host}/localdev/registry@{built.digest}"
    seaweedfs = SeaweedFS(
        workdir=tmp_path / "seaweedfs",
        binary=weed_binary(build=True),
        bucket=f"images-{uuid.uuid4().hex[:8]}",
        address=cluster.node.host_address,
    )
    # From the main thread: its processes die with the thread that started them.
    seaweedfs.start()
    try:
        kube = await connect(cluster.plane.kubeconfig_path)
        try:
            await install_crds(kube, load_crds())
            with contextlib.suppress(Conflict):
                await kube.create(NAMESPACES, None, {"metadata": {"name": NS}})
            await kube.create(
                SECRETS,
                NS,
                {
                    "metadata": {"name": USER_SECRET},
                    "stringData": {
                        S3_ACCESS_KEY: seaweedfs.credentials.access_key,
                        S3_SECRET_KEY: seaweedfs.credentials.secret_key,
                    },
                },
            )
            s3 = {
                "bucket": seaweedfs.bucket,
                "region": seaweedfs.region,
                "regionEndpoint": seaweedfs.endpoint,
                "virtualHostedStyle": False,
            }
            async with operator(cluster, image):
                try:
                    await replace_registry_config(
                        kube, {"managementState": "Managed", "replicas": 1, "storage": {"s3": s3}}
                    )
                    pulled, pod = await push_restart_pull(kube, cluster, tmp_path, "pod")
                    # The pod that served the pull had no volume for images: the bucket held them.
                    volumes = {volume["name"] for volume in pod["spec"]["volumes"]}
                    assert "registry-storage" not in volumes
                    keys = await asyncio.to_thread(seaweedfs.object_keys)
                    assert stored_blob(pulled) in keys
                finally:
                    await _remove(kube)
            with contextlib.suppress(NotFound):
                await kube.delete(REGISTRY_CONFIGS, None, "cluster")
        finally:
            await kube.close()
    finally:
        seaweedfs.stop()
