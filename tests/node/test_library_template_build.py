"""An openshift/library template builds for real from the shared `openshift/httpd` stream,
and its Deployment runs what it built (issue 15's first test, on the node).

As a user migrating from OpenShift does it, with the files kept byte for byte
(tests/fixtures/openshift-library/README.md):

* the library's `httpd` image stream is applied to the namespace `openshift`, adapted in
  memory as tests/integration/test_image_puller.py adapts it (its registry.redhat.io
  tags imported from our registry instead, here the node's). What "registry.redhat.io"
  serves there is the S2I builder made here (`make_s2i_builder_image`: busybox httpd
  serving /opt/app-root/src on 8080, scripts through `io.openshift.s2i.scripts-url`),
  the role of Red Hat's httpd builder. The tag has `referencePolicy: Local`, so a build
  pulls it as `<registry>/openshift/httpd@<digest>`; OpenShift's integrated registry
  serves that by pulling through, ours serves what was pushed to it, so the same image
  is pushed there too;
* `openshift` is made readable by all authenticated users, as the chart's
  `rbac.publicImageNamespaces` does (what happens without it is tests/integration's);
* the httpd-example template is processed with its own parameters only: the source
  repository is a Git server pod in the app namespace (the role of sclorg/httpd-ex),
  `NAMESPACE=openshift` and `HTTPD_VERSION` as shipped; its served objects are created
  as processed (`oc process | oc create -f -`; the Service and Route are not ours).

Then the BuildConfig's first Build runs in a pod on the node, on the shared stream's
digest, and completes; its output tag moves to the pushed digest; the Deployment follows
that tag and its pod, Ready by the template's own probe, serves the repository's page.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import (
    BUILDCONFIGS,
    DEPLOYMENTS,
    IMAGESTREAMS,
    NAMESPACES,
    ROLEBINDINGS,
    Resource,
)
from localdev.images import APP_PORT, make_s2i_builder_image, skopeo_push
from tests.integration.conftest import eventually
from tests.integration.nodecluster import http_get
from tests.integration.openshift_library import (
    load,
    mirrored,
    process,
    public_images_binding,
    served,
    upstream_repository,
)
from tests.node.conftest import NodeSystem
from tests.node.pods import delete_namespace, wait_pods_running
from tests.node.test_build_sources import (  # noqa: F401 (fixtures used by name)
    GitServer,
    git_server,
    git_server_image,
    image_config,
    page,
    push,
)
from tests.node.test_builds import builds_of, ended, phase, tag_items

Obj = dict[str, Any]

SHARED = "openshift"
STREAM = "httpd"
TEMPLATE = "httpd-example"
KINDS: dict[str, Resource] = {
    "ImageStream": IMAGESTREAMS,
    "BuildConfig": BUILDCONFIGS,
    "Deployment": DEPLOYMENTS,
}


def template_default(template: Obj, name: str) -> str:
    """A template parameter's shipped value."""
    for parameter in template["parameters"]:
        if parameter["name"] == name:
            return str(parameter["value"])
    raise KeyError(name)


@pytest.fixture
async def shared_namespace(system: NodeSystem) -> AsyncIterator[str]:
    """`openshift`, made here if no one else made it (deleted only then)."""
    made = False
    with contextlib.suppress(Conflict):
        await system.kube.create(NAMESPACES, None, {"metadata": {"name": SHARED}})
        made = True
    binding = public_images_binding(SHARED)
    try:
        await system.kube.create(ROLEBINDINGS, SHARED, binding)
        yield SHARED
    finally:
        if made:
            await delete_namespace(system.kube, SHARED)
        else:
            with contextlib.suppress(NotFound):
                await system.kube.delete(ROLEBINDINGS, SHARED, binding["metadata"]["name"])
            with contextlib.suppress(NotFound):
                await system.kube.delete(IMAGESTREAMS, SHARED, STREAM)


async def test_the_httpd_example_template_builds_on_openshift_httpd_and_deploys_it(
    system: NodeSystem,
    namespace: str,
    workdir: Path,
    git_server: GitServer,  # noqa: F811 (the imported fixture)
    shared_namespace: str,
) -> None:
    kube = system.kube
    registry = system.cluster.registry.host
    template = load(f"{TEMPLATE}.json")
    version = template_default(template, "HTTPD_VERSION")
    stream = load("httpd-rhel.json")

    # What registry.redhat.io would serve for the tag, pushed where the adapted tag
    # imports from; the stream applied; the import recorded.
    builder = await asyncio.to_thread(make_s2i_builder_image, workdir / "httpd-builder")
    upstream = upstream_repository(stream, version)
    await asyncio.to_thread(skopeo_push, builder, f"{registry}/{upstream}")
    await kube.create(IMAGESTREAMS, shared_namespace, mirrored(stream, registry))

    async def imported() -> Obj | None:
        got = await kube.get(IMAGESTREAMS, shared_namespace, STREAM)
        items = tag_items(got, version)
        repository = (got.get("status") or {}).get("dockerImageRepository")
        return (
            got if repository and items and items[0]["image"] == builder.manifest_digest else None
        )

    shared = await eventually(imported, timeout_s=60, what=f"{SHARED}/{STREAM}:{version}")
    builder_spec = f"{shared['status']['dockerImageRepository']}@{builder.manifest_digest}"
    # The Local pull spec, served by our registry as OpenShift's serves it by pull-through.
    await asyncio.to_thread(skopeo_push, builder, f"{registry}/{SHARED}/{STREAM}:{version}")

    # The application's source: the httpd-ex repository's role, a page with a marker.
    marker = f"library-{uuid.uuid4().hex[:12]}"
    commit = await push(git_server, "main", {"index.html": page(f"marker={marker}")})

    objects = served(
        process(template, SOURCE_REPOSITORY_URL=git_server.url, NAMESPACE=shared_namespace)
    )
    assert sorted(o["kind"] for o in objects) == ["BuildConfig", "Deployment", "ImageStream"]
    for obj in objects:
        await kube.create(KINDS[obj["kind"]], namespace, obj)

    # The first Build, on the shared stream's digest (the ImageChange trigger's cause
    # names the tag in `openshift`), run on the node.
    async def started() -> Obj | None:
        return (await builds_of(kube, namespace, TEMPLATE)).get(f"{TEMPLATE}-1")

    build = await eventually(started, timeout_s=60, what=f"{TEMPLATE}-1 created")
    assert build["spec"]["strategy"]["sourceStrategy"]["from"] == {
        "kind": "DockerImage",
        "name": builder_spec,
    }
    (cause,) = build["spec"]["triggeredBy"]
    assert cause["imageChangeBuild"]["fromRef"] == {
        "kind": "ImageStreamTag",
        "namespace": SHARED,
        "name": f"{STREAM}:{version}",
    }
    build = await ended(kube, namespace, f"{TEMPLATE}-1")
    if phase(build) != "Complete":
        logs = await asyncio.to_thread(
            system.cluster.kubectl, "-n", namespace, "logs", f"job/{TEMPLATE}-1-build", check=False
        )
        raise AssertionError(f"{TEMPLATE}-1: {build.get('status')}\n{logs[-3000:]}")
    assert "reason" not in build["status"], build["status"]
    digest = build["status"]["output"]["to"]["imageDigest"]

    output = await kube.get(IMAGESTREAMS, namespace, TEMPLATE)
    built = f"{output['status']['dockerImageRepository']}@{digest}"
    assert [item["image"] for item in tag_items(output, "latest")] == [digest]
    labels = (await image_config(system, output["status"]["dockerImageRepository"], digest))[
        "Labels"
    ]
    assert labels["io.openshift.build.commit.id"] == commit  # built from the repository

    # The Deployment follows `httpd-example:latest`: one Ready pod of the built digest,
    # serving the repository's page through the builder's run script.
    [pod] = await wait_pods_running(kube, namespace, f"name={TEMPLATE}", built, count=1)
    deployment = await kube.get(DEPLOYMENTS, namespace, TEMPLATE)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == built
    served_page = await asyncio.to_thread(http_get, f"http://{pod['status']['podIP']}:{APP_PORT}/")
    assert f"marker={marker}" in served_page

    # One Build: the ConfigChange trigger and the ImageChange trigger start one between them.
    assert list(await builds_of(kube, namespace, TEMPLATE)) == [f"{TEMPLATE}-1"]
    config = await kube.get(BUILDCONFIGS, namespace, TEMPLATE)
    assert config["status"]["lastVersion"] == 1
