"""Image lookup on a real node: a pod naming `app:v1` runs the stream's digest.

The stream `app` is made the way a user makes it: a push to the integrated registry
records `v1` (the webhook's integrated receiver), then `lookupPolicy.local: true` is set
(what `imagestream set image-lookup app` writes). A Pod created right after names only
`app:v1`; our admission webhook (registered for this namespace only) rewrites it to the
tag's digest pull spec, and containerd pulls and runs exactly that image (its `imageID`).
Without the rewrite the kubelet would look for `docker.io/library/app:v1`, which this
machine cannot reach: the pod would never run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES, PODS
from tests.integration.conftest import eventually
from tests.integration.test_admission import LABEL, admission_server
from tests.node.conftest import NodeSystem
from tests.node.pods import app_pod_spec, push_app, wait_pods_running


@pytest.fixture
async def admission(system: NodeSystem, tmp_path: Path) -> AsyncIterator[str]:
    async with admission_server(system.cluster.plane, system.kube, tmp_path) as (name, _):
        yield name


async def test_a_pod_naming_stream_tag_runs_the_streams_digest(
    system: NodeSystem, namespace: str, workdir: Path, admission: str
) -> None:
    await system.kube.patch(
        NAMESPACES, None, namespace, {"metadata": {"labels": {LABEL: admission}}}
    )
    digest = await push_app(system.cluster, workdir, f"{namespace}/app", "looked-up", tag="v1")
    repository = f"{system.cluster.registry.host}/{namespace}/app"

    async def recorded() -> bool:
        try:
            stream = await system.kube.get(IMAGESTREAMS, namespace, "app")
        except NotFound:  # the push has not created it yet
            return False
        tags = (stream.get("status") or {}).get("tags") or []
        return any(t["tag"] == "v1" and t["items"][0]["image"] == digest for t in tags)

    await eventually(recorded, what="the push recorded on app:v1")
    await system.kube.patch(
        IMAGESTREAMS, namespace, "app", {"spec": {"lookupPolicy": {"local": True}}}
    )
    spec = app_pod_spec("app")
    spec["containers"][0]["image"] = "app:v1"
    stored = await system.kube.create(
        PODS,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "looked-up", "labels": {"app": "looked-up"}},
            "spec": spec,
        },
    )
    assert stored["spec"]["containers"][0]["image"] == f"{repository}@{digest}"
    await wait_pods_running(
        system.kube, namespace, "app=looked-up", f"{repository}@{digest}", count=1
    )
