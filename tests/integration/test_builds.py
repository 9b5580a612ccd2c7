"""BuildConfigs and Builds on the real control plane (issue 6; behaviours 24 and 25).

The behaviours are docs/openshift-behaviours.md#behaviour-24 and
docs/openshift-behaviours.md#behaviour-25.

These tests stop where a build pod would run: which Builds are made, from what, with
which Job, and what the run policies decide while Builds wait. No pod runs here and no
test completes a Build: builds that run, complete, fail or are cancelled are
tests/node/test_builds.py, on the real node with the builder image made here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imagestream.cli.startbuild import StartBuildError, start_build
from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    IMAGESTREAMS,
    JOBS,
)
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.workloads import imagestream, move_tag

SETTLE_S = 1.5
Obj = dict[str, Any]


def buildconfig(
    name: str,
    *,
    base: Obj | None = None,
    triggers: list[Obj] | None = None,
    output: Obj | None = None,
    run_policy: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    body: Obj = {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "triggers": triggers
            if triggers is not None
            else [{"type": "ImageChange", "imageChange": {}}],
            "source": {
                "type": "Git",
                "git": {"uri": "https://git.example.invalid/team/app.git", "ref": "main"},
                "contextDir": "service",
                "dockerfile": "FROM scratch\nCOPY . /app\n",
            },
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {
                    "from": base or {"kind": "ImageStreamTag", "name": "base:latest"},
                    "buildArgs": [{"name": "VERSION", "value": "1.2"}],
                    "env": [{"name": "GREETING", "value": "hello"}],
                },
            },
            "output": {"to": output or {"kind": "ImageStreamTag", "name": "app:latest"}},
        },
    }
    if run_policy:
        body["spec"]["runPolicy"] = run_policy
    return body


async def builds_of(kube: Kube, namespace: str, config: str) -> dict[str, Obj]:
    items, _ = await kube.list(
        BUILDS, namespace, label_selector=f"openshift.io/build-config.name={config}"
    )
    return {b["metadata"]["name"]: b for b in items}


async def build_phase(kube: Kube, namespace: str, name: str, wanted: str) -> Obj:
    async def check() -> Obj | None:
        try:
            build = await kube.get(BUILDS, namespace, name)
        except NotFound:
            return None
        return build if build.get("status", {}).get("phase") == wanted else None

    return await eventually(check, what=f"build {name} {wanted}")


async def output_stream(kube: Kube, namespace: str, name: str) -> str:
    """Create an ImageStream and wait for its integrated-registry repository."""
    await kube.create(IMAGESTREAMS, namespace, imagestream(name))

    async def repository() -> str | None:
        stream = await kube.get(IMAGESTREAMS, namespace, name)
        value = stream.get("status", {}).get("dockerImageRepository")
        return str(value) if value else None

    return await eventually(repository, what=f"{name} has a repository")


def tag_items(stream: Obj, tag: str) -> list[Obj]:
    entry: Obj = next(
        (t for t in stream.get("status", {}).get("tags") or [] if t["tag"] == tag), {}
    )
    return list(entry.get("items") or [])


def env_of(job: Obj) -> dict[str, str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


async def webhook_duplicates(system: System) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{system.webhook_url}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("imagestream_webhook_events_total{") and 'outcome="duplicate"' in line
    )


# --- behaviour 25 -------------------------------------------------------------------------------


async def test_behaviour_25_a_base_image_push_starts_exactly_one_build(
    system: System, tmp_path: Path
) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "bc25")
    repository = await output_stream(kube, namespace, "app")
    await kube.create(BUILDCONFIGS, namespace, buildconfig("web"))
    digest = push(system, tmp_path, f"{namespace}/base:latest", "base one")
    base = f"{system.registry.host}/{namespace}/base@{digest}"

    async def one_build() -> dict[str, Obj] | None:
        found = await builds_of(kube, namespace, "web")
        return found or None

    await eventually(one_build, what="a build for the new base image")
    await asyncio.sleep(SETTLE_S)
    builds = await builds_of(kube, namespace, "web")
    assert set(builds) == {"web-1"}, "exactly one build per new image"
    bc = await kube.get(BUILDCONFIGS, namespace, "web")
    assert bc["status"]["lastVersion"] == 1
    (recorded,) = bc["status"]["imageChangeTriggers"]
    assert recorded["from"] == {"namespace": namespace, "name": "base:latest"}
    assert recorded["lastTriggeredImageID"] == base
    assert "lastTriggeredImageID" not in bc["spec"]["triggers"][0]["imageChange"], (
        "status, not spec"
    )

    build = builds["web-1"]
    assert build["metadata"]["labels"]["buildconfig"] == "web"
    assert build["metadata"]["labels"]["openshift.io/build-config.name"] == "web"
    assert build["metadata"]["annotations"] == {
        "openshift.io/build-config.name": "web",
        "openshift.io/build.number": "1",
    }
    assert build["spec"]["triggeredBy"] == [
        {
            "message": "Image change",
            "imageChangeBuild": {
                "imageID": base,
                "fromRef": {
                    "kind": "ImageStreamTag",
                    "namespace": namespace,
                    "name": "base:latest",
                },
            },
        }
    ]
    assert build["spec"]["strategy"]["dockerStrategy"]["from"] == {
        "kind": "DockerImage",
        "name": base,
    }
    assert build["spec"]["output"]["to"] == {"kind": "ImageStreamTag", "name": "app:latest"}

    # The Job runs what the strategy asks for.
    build = await build_phase(kube, namespace, "web-1", "Pending")
    assert build["status"]["outputDockerImageReference"] == f"{repository}:latest"
    job = await kube.get(JOBS, namespace, "web-1-build")
    assert job["metadata"]["ownerReferences"][0]["kind"] == "Build"
    assert job["metadata"]["ownerReferences"][0]["uid"] == build["metadata"]["uid"]
    assert job["metadata"]["labels"]["openshift.io/build.name"] == "web-1"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("build", "quay.io/buildah/stable:v1.38.0")
    env = env_of(job)
    assert {
        key: env[key] for key in env if key not in ("STORAGE_DRIVER", "BUILDAH_ISOLATION", "HOME")
    } == {
        "BUILD_NAME": "web-1",
        "BUILD_NAMESPACE": namespace,
        "BUILD_STRATEGY": "Docker",
        "SOURCE_URI": "https://git.example.invalid/team/app.git",
        "SOURCE_REF": "main",
        "SOURCE_CONTEXT_DIR": "service",
        "DOCKERFILE": "FROM scratch\nCOPY . /app\n",
        "FROM_IMAGE": base,
        "OUTPUT_IMAGE": f"{repository}:latest",
        "BUILD_ARGS": "VERSION=1.2",
        "GREETING": "hello",
        # The strategy's env, by name: the builder sets it after every FROM, as OpenShift.
        "BUILD_ENV_NAMES": "GREETING",
    }

    # A new base image: one more build, no more.
    digest = push(system, tmp_path, f"{namespace}/base:latest", "base two")

    async def second() -> dict[str, Obj] | None:
        found = await builds_of(kube, namespace, "web")
        return found if "web-2" in found else None

    await eventually(second, what="a build for the second base image")
    await asyncio.sleep(SETTLE_S)
    assert set(await builds_of(kube, namespace, "web")) == {"web-1", "web-2"}
    bc = await kube.get(BUILDCONFIGS, namespace, "web")
    assert bc["status"]["imageChangeTriggers"][0]["lastTriggeredImageID"].endswith(digest)


# --- behaviour 24 (BuildConfig side), ConfigChange, start-build, run policies -------------------


async def test_behaviour_24_paused_buildconfigs_and_triggers_start_nothing(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "bc24")
    await output_stream(kube, namespace, "app")
    await kube.create(IMAGESTREAMS, namespace, imagestream("base"))
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig("paused-config", annotations={"openshift.io/build-config.paused": "true"}),
    )
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig(
            "paused-trigger", triggers=[{"type": "ImageChange", "imageChange": {"paused": True}}]
        ),
    )
    await move_tag(
        kube,
        namespace,
        "base",
        "latest",
        f"registry.invalid/{namespace}/base",
        "sha256:" + "b" * 64,
    )
    await asyncio.sleep(SETTLE_S)
    for name in ("paused-config", "paused-trigger"):
        assert await builds_of(kube, namespace, name) == {}
        assert not (await kube.get(BUILDCONFIGS, namespace, name)).get("status")

    assert await start_build(kube, namespace, "paused-trigger") == (
        "build.build.openshift.io/paused-trigger-1 started\n"
    )
    build = await kube.get(BUILDS, namespace, "paused-trigger-1")
    assert build["spec"]["triggeredBy"] == [{"message": "Manually triggered"}]
    with pytest.raises(StartBuildError, match="paused"):
        await start_build(kube, namespace, "paused-config")


async def test_a_config_change_trigger_starts_only_the_first_build(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "bccfg")
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig(
            "web",
            base={"kind": "DockerImage", "name": "registry.invalid/base:1"},
            triggers=[{"type": "ConfigChange"}],
            output={"kind": "DockerImage", "name": "registry.invalid/team/web:latest"},
        ),
    )
    build = await build_phase(kube, namespace, "web-1", "Pending")
    assert build["spec"]["triggeredBy"] == [{"message": "Build configuration change"}]
    assert build["status"]["outputDockerImageReference"] == "registry.invalid/team/web:latest"
    await kube.patch(BUILDCONFIGS, namespace, "web", {"spec": {"source": {"contextDir": "other"}}})
    await asyncio.sleep(SETTLE_S)
    assert set(await builds_of(kube, namespace, "web")) == {"web-1"}


async def test_run_policies_serial_and_serial_latest_only(system: System) -> None:
    kube = system.kube
    namespace = await new_namespace(kube, "policy")
    for name, policy in (("serial", "Serial"), ("latest", "SerialLatestOnly")):
        await kube.create(
            BUILDCONFIGS,
            namespace,
            buildconfig(
                name,
                base={"kind": "DockerImage", "name": "registry.invalid/base:1"},
                triggers=[],
                output={"kind": "DockerImage", "name": f"registry.invalid/team/{name}:latest"},
                run_policy=policy,
            ),
        )
    for name in ("serial", "latest"):
        await start_build(kube, namespace, name)
        await build_phase(kube, namespace, f"{name}-1", "Pending")
        await start_build(kube, namespace, name)
        await start_build(kube, namespace, name)

    await build_phase(kube, namespace, "latest-2", "Cancelled")  # a newer one was queued
    await asyncio.sleep(SETTLE_S)
    phases = {
        name: build.get("status", {}).get("phase")
        for config in ("serial", "latest")
        for name, build in (await builds_of(kube, namespace, config)).items()
    }
    assert phases == {
        "serial-1": "Pending",
        "serial-2": "New",
        "serial-3": "New",
        "latest-1": "Pending",
        "latest-2": "Cancelled",
        "latest-3": "New",
    }
    # What happens when the running ones end is tests/node/test_builds.py, with real builds.
