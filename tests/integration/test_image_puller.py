"""OpenShift's image-puller rule for cross-namespace references (issue 15, part 2;
docs/openshift-behaviours.md#behaviour-16), against the real control plane and its RBAC.

The official openshift/library image streams (python, httpd, redis) are applied to the
namespace `openshift`, their images pushed with skopeo to the loopback registry they are
imported from (tests/fixtures/openshift-library/README.md says how the fixtures are
adapted), and three library templates' objects are applied to an application namespace
as `oc new-app` would: httpd-example and django-example (a BuildConfig building on
`openshift/httpd` and `openshift/python`) and redis-ephemeral (a Deployment following
`openshift/redis`). Until `openshift` is readable by all authenticated users (the chart's
`rbac.publicImageNamespaces`), each says with a Warning which RoleBinding would allow it,
and nothing changes; once it is, the BuildConfigs start Builds on the streams' digests
and the Deployment follows its stream, as on OpenShift, without restarting anything;
a new upstream image imported into the shared streams (`imagestream import-image`, as an
admin updates `openshift` on OpenShift) is followed and built on in turn.

Builds are not run here (real builds run on the node, tests/node): a Build object with
the right `from` and cause is the honest limit of this tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller.triggers.outcomes import Reason
from controller.triggers.pullaccess import PullAccess
from imagestream.cli.explain import explain
from imagestream.kube.client import APPLY_PATCH
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    EVENTS,
    IMAGESTREAMS,
    NAMESPACES,
    ROLEBINDINGS,
    Resource,
)
from tests.integration.cli import imagestream as command
from tests.integration.cli import kubeconfig_of
from tests.integration.conftest import (
    PULL_ACCESS_TTL_S,
    System,
    eventually,
    new_namespace,
    push,
)
from tests.integration.openshift_library import (
    load,
    mirrored,
    process,
    public_images_binding,
    served,
    upstream_repository,
)
from tests.integration.workloads import images, imagestream, trigger, workload

pytestmark = pytest.mark.integration

SHARED = "openshift"
SHARED_TAGS = {"python": "3.9-ubi8", "httpd": "2.4-el8", "redis": "7-el9"}
"""The tag each template follows by default (its *_VERSION parameter)."""
STREAM_FILES = {
    "python": "python-rhel.json",
    "httpd": "httpd-rhel.json",
    "redis": "redis-rhel.json",
}
KINDS: dict[str, Resource] = {
    "ImageStream": IMAGESTREAMS,
    "BuildConfig": BUILDCONFIGS,
    "Deployment": DEPLOYMENTS,
    "DeploymentConfig": DEPLOYMENTCONFIGS,
}
DENIED = "TriggerNamespaceNotAllowed"


async def apply(system: System, namespace: str, obj: dict[str, Any]) -> None:
    """`kubectl apply --server-side` of one object, unchanged."""
    await system.kube.patch(
        KINDS.get(obj["kind"], ROLEBINDINGS),
        namespace,
        obj["metadata"]["name"],
        obj,
        patch_type=APPLY_PATCH,
        field_manager="kubectl",
        force=True,
    )


async def warnings_on(system: System, namespace: str, name: str) -> list[str]:
    listed, _ = await system.kube.list(EVENTS, namespace)
    return [
        str(e.get("note", ""))
        for e in listed
        if (e.get("regarding") or {}).get("name") == name and e.get("reason") == DENIED
    ]


async def denial_occurrences(system: System, namespace: str, name: str) -> int:
    """How often the denial was said: the Events' counts (events.k8s.io series)."""
    listed, _ = await system.kube.list(EVENTS, namespace)
    return sum(
        (e.get("series") or {}).get("count", 1)
        for e in listed
        if (e.get("regarding") or {}).get("name") == name and e.get("reason") == DENIED
    )


async def warned(system: System, namespace: str, name: str) -> list[str] | None:
    return await warnings_on(system, namespace, name) or None


def tag_head(stream: dict[str, Any], tag: str) -> dict[str, Any] | None:
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry.get("tag") == tag and entry.get("items"):
            head: dict[str, Any] = entry["items"][0]
            return head
    return None


@pytest.fixture(scope="module")
async def shared_streams(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The library streams in `openshift`, each followed tag imported: stream -> pull spec
    a trigger resolves it to (`referencePolicy: Local`: through the integrated registry)."""
    with_images = tmp_path_factory.mktemp("library-images")
    with contextlib.suppress(Conflict):  # another test of the session made it
        await system.kube.create(NAMESPACES, None, {"metadata": {"name": SHARED}})
    digests: dict[str, str] = {}
    for name, tag in SHARED_TAGS.items():
        stream = load(STREAM_FILES[name])
        # What registry.redhat.io would serve, pushed where the adapted tag imports from.
        digests[name] = push(system, with_images, upstream_repository(stream, tag))
        await apply(system, SHARED, mirrored(stream, system.registry.host))
    resolved: dict[str, str] = {}
    for name, tag in SHARED_TAGS.items():

        async def imported(name: str = name, tag: str = tag) -> dict[str, Any] | None:
            stream = await system.kube.get(IMAGESTREAMS, SHARED, name)
            head = tag_head(stream, tag)
            repository = (stream.get("status") or {}).get("dockerImageRepository")
            return stream if repository and head and head.get("image") == digests[name] else None

        stream = await eventually(imported, what=f"{SHARED}/{name}:{tag} imported")
        repository = stream["status"]["dockerImageRepository"]
        resolved[name] = f"{repository}@{digests[name]}"
    return resolved


def app_objects(namespace: str) -> list[dict[str, Any]]:
    """The served objects of three library templates, processed with their defaults."""
    objects = []
    for template in ("httpd-example.json", "django-example.json", "redis-ephemeral.json"):
        for obj in served(process(load(template))):
            obj["metadata"]["namespace"] = namespace
            objects.append(obj)
    return objects


def build_of(builds: list[dict[str, Any]], config: str) -> dict[str, Any] | None:
    for build in builds:
        if (build["metadata"].get("annotations") or {}).get(
            "openshift.io/build-config.name"
        ) == config:
            return build
    return None


async def test_library_templates_follow_openshift_streams_once_it_is_readable_by_all(
    system: System, shared_streams: dict[str, str], tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "library-app")
    binding = public_images_binding(SHARED)
    for obj in app_objects(namespace):
        # As `oc process ... | oc create -f -`: created as processed. The API server drops
        # the redis template's stray `containers[].capabilities` (field validation Warn,
        # its default), as OpenShift's does.
        await system.kube.create(KINDS[obj["kind"]], namespace, obj)

    # Not readable yet: each follower says why, naming the RoleBinding that would allow it.
    for name in ("httpd-example", "django-example", "redis"):
        notes = await eventually(
            lambda name=name: warned(system, namespace, name), what=f"{DENIED} on {name}"
        )
        assert any(
            f"--clusterrole=system:image-puller --group=system:serviceaccounts:{namespace}"
            f" -n {SHARED}" in note
            for note in notes
        ), notes
    # ... and nothing changes, however often it is looked at again (a negative check has
    # to wait: two rechecks), and it is said once: no Build, the placeholder image stays.
    await asyncio.sleep(2 * PULL_ACCESS_TTL_S + 1)
    builds, _ = await system.kube.list(BUILDS, namespace)
    assert builds == []
    redis = await system.kube.get(DEPLOYMENTS, namespace, "redis")
    assert images(redis) == {"redis": " "}

    # `openshift` made readable by all authenticated users, as the chart's
    # rbac.publicImageNamespaces does and as OpenShift ships it. No restart, no edit of
    # the objects: the denials are looked at again when their answers expire.
    await apply(system, SHARED, binding)
    try:

        async def followed() -> dict[str, Any] | None:
            obj = await system.kube.get(DEPLOYMENTS, namespace, "redis")
            return obj if images(obj)["redis"] == shared_streams["redis"] else None

        await eventually(followed, what="redis follows openshift/redis:7-el9")

        for config, stream in (("httpd-example", "httpd"), ("django-example", "python")):

            async def started(config: str = config) -> dict[str, Any] | None:
                listed, _ = await system.kube.list(BUILDS, namespace)
                return build_of(listed, config)

            build = await eventually(started, what=f"a Build of {config}")
            assert build["metadata"]["name"] == f"{config}-1"
            assert build["spec"]["strategy"]["sourceStrategy"]["from"] == {
                "kind": "DockerImage",
                "name": shared_streams[stream],
            }
            (cause,) = build["spec"]["triggeredBy"]
            assert cause["imageChangeBuild"] == {
                "imageID": shared_streams[stream],
                "fromRef": {
                    "kind": "ImageStreamTag",
                    "namespace": SHARED,
                    "name": f"{stream}:{SHARED_TAGS[stream]}",
                },
            }
        # A new upstream image, imported into the shared streams as an admin does on
        # OpenShift (`oc import-image`): the Deployment follows it and the BuildConfig
        # builds on it.
        for stream in ("redis", "httpd"):
            upstream = upstream_repository(load(STREAM_FILES[stream]), SHARED_TAGS[stream])
            digest = push(system, tmp_path, upstream)
            ran = await command(
                "import-image",
                f"{stream}:{SHARED_TAGS[stream]}",
                "-n",
                SHARED,
                kubeconfig=kubeconfig_of(system),
                home=tmp_path,
            )
            assert ran.ok, ran.stderr
            repository = shared_streams[stream].rpartition("@")[0]
            shared_streams = {**shared_streams, stream: f"{repository}@{digest}"}
        await eventually(followed, what="redis follows the newly imported image")

        async def rebuilt() -> dict[str, Any] | None:
            listed, _ = await system.kube.list(BUILDS, namespace)
            return next((b for b in listed if b["metadata"]["name"] == "httpd-example-2"), None)

        second = await eventually(rebuilt, what="a second Build of httpd-example")
        assert (
            second["spec"]["strategy"]["sourceStrategy"]["from"]["name"]
            == (shared_streams["httpd"])
        )

        # Refused through several rechecks until one saw the grant: said once each.
        for name in ("httpd-example", "django-example", "redis"):
            assert await denial_occurrences(system, namespace, name) == 1, name
    finally:
        await system.kube.delete(ROLEBINDINGS, SHARED, binding["metadata"]["name"])


async def test_the_rolebinding_the_warning_names_allows_that_namespace_only(
    system: System, tmp_path: Path
) -> None:
    source = await new_namespace(system.kube, "puller-src")
    allowed = await new_namespace(system.kube, "puller-app")
    other = await new_namespace(system.kube, "puller-other")
    await system.kube.create(IMAGESTREAMS, source, imagestream("base"))
    digest = push(system, tmp_path, f"{source}/base:v1", uuid.uuid4().hex)
    for namespace in (allowed, other):
        await system.kube.create(
            DEPLOYMENTS,
            namespace,
            workload("Deployment", "web", [trigger("base:v1", "main", namespace=source)], ["main"]),
        )
    notes = await eventually(lambda: warned(system, allowed, "web"), what="the denial")
    hint = f"kubectl create rolebinding {allowed}-image-puller"
    assert any(hint in note for note in notes), notes
    assert images(await system.kube.get(DEPLOYMENTS, allowed, "web")) == {"main": " "}

    # Exactly what the hint says: ClusterRole system:image-puller to the group of the
    # namespace's service accounts, in the stream's namespace.
    await system.kube.create(
        ROLEBINDINGS,
        source,
        {
            "metadata": {"name": f"{allowed}-image-puller"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:image-puller",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": f"system:serviceaccounts:{allowed}",
                }
            ],
        },
    )

    async def followed() -> dict[str, Any] | None:
        obj = await system.kube.get(DEPLOYMENTS, allowed, "web")
        return obj if images(obj)["main"].endswith(f"@{digest}") else None

    await eventually(followed, what="the granted namespace follows the stream")
    # The grant names one namespace's service accounts; the other is still refused.
    assert await warnings_on(system, other, "web")
    assert images(await system.kube.get(DEPLOYMENTS, other, "web")) == {"main": " "}
    # `imagestream explain` asks the same question and gets the same answers.
    reviewing = PullAccess.reviewing(system.kube)
    (refused,) = await explain(
        system.kube, namespace=other, target="deployment/web", pull_access=reviewing
    )
    assert refused.reason is Reason.NAMESPACE_NOT_ALLOWED
    assert f"--group=system:serviceaccounts:{other} -n {source}" in refused.message
    (granted,) = await explain(
        system.kube, namespace=allowed, target="deployment/web", pull_access=reviewing
    )
    assert granted.reason is Reason.UP_TO_DATE
    for namespace in (source, allowed, other):
        with contextlib.suppress(NotFound):
            await system.kube.delete(NAMESPACES, None, namespace)
