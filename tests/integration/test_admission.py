"""The admission webhook against the real API server: what `kubectl apply` of an OpenShift
manifest stores, the missing-source refusal, `generation: 0`, and image lookup.

Each test namespace carries the label our webhook configurations select, so these
webhooks (one admission server for the module, registered under its own name) never see
another test's objects. The legacy manifests are in tests/data/openshift-legacy/ (see its
SOURCES.md); what they read back as follows OpenShift's code, cited in docs/admission.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.client import Kube
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    CRONJOBS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    IMAGESTREAMS,
    NAMESPACES,
    PODS,
)
from imagestream.settings import HostPort
from localdev.admission import register_admission, unregister_admission
from localdev.controlplane import ControlPlane, free_port
from localdev.images import make_oci_image, skopeo_push
from localdev.private import write_private
from localdev.registry import Registry
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.kubectl import kubectl_binary
from webhook import app as webhook_app

LEGACY = Path(__file__).resolve().parents[1] / "data" / "openshift-legacy"
LABEL = "imagestream-admission-test"


@dataclass
class Admission:
    kube: Kube
    plane: ControlPlane
    name: str
    running: RunningSystem

    async def namespace(self, prefix: str) -> str:
        name = await new_namespace(self.kube, prefix)
        await self.kube.patch(NAMESPACES, None, name, {"metadata": {"labels": {LABEL: self.name}}})
        return name

    async def kubectl(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            await kubectl_binary(),
            f"--kubeconfig={self.plane.kubeconfig_path}",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
        return int(process.returncode or 0), out.decode(), err.decode()

    async def apply(self, namespace: str, manifest: str) -> None:
        code, _, err = await self.kubectl("apply", "-n", namespace, "-f", str(LEGACY / manifest))
        assert code == 0, f"kubectl apply {manifest}: {err}"


@contextlib.asynccontextmanager
async def admission_server(
    controlplane: ControlPlane, kube: Kube, workdir: Path, **overrides: object
) -> AsyncIterator[tuple[str, RunningSystem]]:
    """A webhook process serving admission, registered (namespaces labelled `name` only)."""
    name = f"admission-{uuid.uuid4().hex[:8]}"
    secret_namespace = await new_namespace(kube, "admission-tls")
    port = free_port()
    token_file = workdir / f"{name}-token"
    write_private(token_file, "unused-receiver-token-0123456789")
    await register_admission(
        kube,
        name,
        f"https://127.0.0.1:{port}",
        namespace_selector={"matchLabels": {LABEL: name}},
    )
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=token_file,
        integrated_registry="registry.invalid:5000",
        admission_addr=HostPort("127.0.0.1", port),
        admission_secret=f"{secret_namespace}/admission-tls",
        admission_hosts=("127.0.0.1",),
        admission_webhook_configuration=name,
        **overrides,
    )
    try:
        async with run_system(settings, [webhook_app.start]) as running:
            yield name, running
    finally:
        await unregister_admission(kube, name)


@pytest.fixture(scope="module")
async def admission(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Admission]:
    async with admission_server(controlplane, kube, tmp_path_factory.mktemp("admission")) as (
        name,
        running,
    ):
        yield Admission(kube=kube, plane=controlplane, name=name, running=running)


# --- defaults and conversions, through kubectl apply ------------------------------------


async def test_deploymentconfig_legacy_trigger_and_rolling_defaults(admission: Admission) -> None:
    namespace = await admission.namespace("adm-dc")
    await admission.apply(namespace, "deploymentconfig-legacy.yaml")
    dc = await admission.kube.get(DEPLOYMENTCONFIGS, namespace, "legacy")
    spec = dc["spec"]
    # apps/v1 conversion: kind ImageStream -> ImageStreamTag with :latest; defaults: namespace.
    assert spec["triggers"][0]["imageChangeParams"]["from"] == {
        "kind": "ImageStreamTag",
        "name": "legacy-app:latest",
        "namespace": namespace,
    }
    assert spec["strategy"] == {
        "type": "Rolling",
        "rollingParams": {
            "updatePeriodSeconds": 1,
            "intervalSeconds": 1,
            "timeoutSeconds": 600,
            "maxUnavailable": "25%",
            "maxSurge": "25%",
        },
        "activeDeadlineSeconds": 21600,
    }
    assert spec["selector"] == {"app": "legacy"}
    assert spec["revisionHistoryLimit"] == 10


async def test_deploymentconfig_recreate_defaults_and_empty_tag(admission: Admission) -> None:
    namespace = await admission.namespace("adm-dcr")
    await admission.apply(namespace, "deploymentconfig-recreate.yaml")
    spec = (await admission.kube.get(DEPLOYMENTCONFIGS, namespace, "recreate"))["spec"]
    assert spec["strategy"] == {
        "type": "Recreate",
        "recreateParams": {"timeoutSeconds": 600},
        "activeDeadlineSeconds": 21600,
    }
    assert spec["triggers"][0]["imageChangeParams"]["from"]["name"] == "recreate-app:latest"
    # Applying the same manifest again changes nothing (the defaults are idempotent).
    before = (await admission.kube.get(DEPLOYMENTCONFIGS, namespace, "recreate"))["metadata"]
    await admission.apply(namespace, "deploymentconfig-recreate.yaml")
    after = (await admission.kube.get(DEPLOYMENTCONFIGS, namespace, "recreate"))["metadata"]
    assert after["generation"] == before["generation"]


async def test_buildconfig_legacy_triggers_strategy_and_output(admission: Admission) -> None:
    namespace = await admission.namespace("adm-bc")
    await admission.apply(namespace, "buildconfig-legacy.yaml")
    spec = (await admission.kube.get(BUILDCONFIGS, namespace, "legacy"))["spec"]
    assert [t["type"] for t in spec["triggers"]] == ["ImageChange", "GitHub", "Generic"]
    assert spec["triggers"][1]["github"] == {"secret": "github-secret-0123"}
    assert spec["strategy"]["type"] == "Source"
    assert "dockerStrategy" not in spec["strategy"]
    assert spec["strategy"]["sourceStrategy"]["from"] == {
        "kind": "ImageStreamTag",
        "name": "python:3.11",
    }
    assert spec["output"]["to"] == {"kind": "ImageStreamTag", "name": "legacy-out:latest"}
    assert spec["mountTrustedCA"] is True
    assert spec["runPolicy"] == "Serial"


async def test_build_defaults(admission: Admission) -> None:
    namespace = await admission.namespace("adm-build")
    await admission.apply(namespace, "build-legacy.yaml")
    spec = (await admission.kube.get(BUILDS, namespace, "legacy-1"))["spec"]
    assert spec["strategy"] == {"type": "Docker", "dockerStrategy": {}}
    assert spec["source"] == {"type": "Binary", "binary": {}}
    assert spec["output"]["to"] == {"kind": "ImageStreamTag", "name": "legacy-build-out:latest"}
    assert spec["mountTrustedCA"] is False


async def test_imagestream_tag_generations_and_empty_tag(admission: Admission) -> None:
    namespace = await admission.namespace("adm-is")
    await admission.apply(namespace, "imagestream-empty-tag.yaml")
    stream = await admission.kube.get(IMAGESTREAMS, namespace, "empty-tag")
    assert stream["metadata"]["generation"] == 1
    assert stream["spec"]["tags"] == [
        {
            "name": "stable",
            "from": {"kind": "ImageStreamTag", "name": "empty-tag:latest"},
            "generation": 1,
        }
    ]
    # A client cannot move a tag's generation (except to 0): the stored number stays.
    stream["spec"]["tags"][0]["generation"] = 7
    stored = await admission.kube.replace(IMAGESTREAMS, namespace, "empty-tag", stream)
    assert stored["spec"]["tags"][0]["generation"] == 1
    assert stored["metadata"]["generation"] == 1
    # A new tag gets the new stream generation; the old tag keeps its own.
    stored["spec"]["tags"].append(
        {"name": "next", "from": {"kind": "ImageStreamTag", "name": "empty-tag:stable"}}
    )
    stored = await admission.kube.replace(IMAGESTREAMS, namespace, "empty-tag", stored)
    assert stored["metadata"]["generation"] == 2
    assert {t["name"]: t["generation"] for t in stored["spec"]["tags"]} == {
        "stable": 1,
        "next": 2,
    }


async def test_missing_source_stream_is_refused_with_openshifts_message(
    admission: Admission,
) -> None:
    namespace = await admission.namespace("adm-missing")
    code, _, err = await admission.kubectl(
        "apply", "-n", namespace, "-f", str(LEGACY / "imagestream-missing-source.yaml")
    )
    assert code != 0
    assert (
        'The ImageStream "cart" is invalid: []: Internal error: imagestreams "cart" is invalid:'
        ' spec.tags[prod].from.name: Not found: "no-such-stream:prod"'
    ) in err
    streams, _ = await admission.kube.list(IMAGESTREAMS, namespace)
    assert streams == []
    # Once the source exists, the same manifest is accepted.
    await admission.kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "no-such-stream"},
            "spec": {},
        },
    )
    await admission.apply(namespace, "imagestream-missing-source.yaml")


async def test_generation_zero_twice_imports_twice(
    admission: Admission, system: System, tmp_path: Path
) -> None:
    """Each `generation: 0` is one more import (OpenShift's strategy stamps the tag anew).

    The upstream registry sends no notifications, so only an import can move the tag; the
    tag is not scheduled. Before admission stamped generations, the second apply was a
    no-change patch (the 0 stayed in the spec) and imported nothing.
    """
    namespace = await admission.namespace("adm-regen")
    silent = Registry(workdir=tmp_path / "silent-registry").start()
    try:

        def push_silently(content: str) -> str:
            image = make_oci_image(tmp_path / uuid.uuid4().hex, content)
            skopeo_push(image, f"{silent.host}/upstream/base:1")
            return image.manifest_digest

        first = push_silently("first")
        tag = {
            "name": "1",
            "from": {"kind": "DockerImage", "name": f"{silent.host}/upstream/base:1"},
            "importPolicy": {"insecure": True},
        }
        manifest = {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "base"},
            "spec": {"tags": [tag]},
        }
        await admission.kube.create(IMAGESTREAMS, namespace, manifest)

        async def head_is(digest: str) -> dict[str, Any] | None:
            stream = await admission.kube.get(IMAGESTREAMS, namespace, "base")
            for entry in (stream.get("status") or {}).get("tags") or []:
                items = entry.get("items") or []
                if entry["tag"] == "1" and items and items[0]["image"] == digest:
                    return stream
            return None

        await eventually(lambda: head_is(first), what="first import")
        again = {**manifest, "spec": {"tags": [{**tag, "generation": 0}]}}
        for round_ in (2, 3):
            digest = push_silently(f"round-{round_}")
            code, _, err = await admission.kubectl(
                "apply", "-n", namespace, "-f", "-", stdin=json.dumps(again)
            )
            assert code == 0, err
            stream = await admission.kube.get(IMAGESTREAMS, namespace, "base")
            assert stream["spec"]["tags"][0]["generation"] == stream["metadata"]["generation"]
            await eventually(lambda d=digest: head_is(d), what=f"import {round_}")  # type: ignore[misc]
    finally:
        silent.stop()


# --- image lookup -------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


async def lookup_stream(admission: Admission, namespace: str, *, local: bool) -> str:
    """A stream `app` whose tag v1 records a digest pull spec (a reference tag)."""
    reference = f"registry.invalid:5000/team/app@{DIGEST}"
    await admission.kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "app"},
            "spec": {
                "lookupPolicy": {"local": local},
                "tags": [
                    {
                        "name": "v1",
                        "reference": True,
                        "from": {"kind": "DockerImage", "name": reference},
                    }
                ],
            },
        },
    )
    return reference


def pod(image: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "lookup-", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


async def wait_recorded(system: System, namespace: str) -> None:
    async def recorded() -> bool:
        stream = await system.kube.get(IMAGESTREAMS, namespace, "app")
        return bool((stream.get("status") or {}).get("tags"))

    await eventually(recorded, what="the reference tag recorded by the controller")


async def test_image_lookup_rewrites_pods_and_templates(
    admission: Admission, system: System
) -> None:
    namespace = await admission.namespace("adm-lookup")
    reference = await lookup_stream(admission, namespace, local=True)
    await wait_recorded(system, namespace)
    stored = await admission.kube.create(PODS, namespace, pod("app:v1"))
    assert stored["spec"]["containers"][0]["image"] == reference
    # Names with a registry or a path, and unknown streams, are left as written.
    for image in ("registry.invalid:5000/app:v1", "team/app:v1", "other:v1"):
        untouched = await admission.kube.create(PODS, namespace, pod(image))
        assert untouched["spec"]["containers"][0]["image"] == image
    template = {"metadata": {"labels": {"app": "x"}}, "spec": pod("app:v1")["spec"]}
    deployment = await admission.kube.create(
        DEPLOYMENTS,
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "x"}},
                "template": template,
            },
        },
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == reference
    cronjob = await admission.kube.create(
        CRONJOBS,
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {**pod("app:v1")["spec"], "restartPolicy": "Never"}}
                    }
                },
            },
        },
    )
    containers = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == reference
    dc = await admission.kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        {
            "apiVersion": "apps.openshift.io/v1",
            "kind": "DeploymentConfig",
            "metadata": {"name": "dc"},
            "spec": {"replicas": 0, "triggers": [], "template": template},
        },
    )
    assert dc["spec"]["template"]["spec"]["containers"][0]["image"] == reference


async def test_resolve_names_annotation_without_local_policy(
    admission: Admission, system: System
) -> None:
    namespace = await admission.namespace("adm-resolve")
    reference = await lookup_stream(admission, namespace, local=False)
    await wait_recorded(system, namespace)
    plain = await admission.kube.create(PODS, namespace, pod("app:v1"))
    assert plain["spec"]["containers"][0]["image"] == "app:v1"
    annotated = await admission.kube.create(
        PODS, namespace, pod("app:v1", {"alpha.image.policy.openshift.io/resolve-names": "*"})
    )
    assert annotated["spec"]["containers"][0]["image"] == reference


# --- the webhook down ----------------------------------------------------------------------


async def test_webhook_down_fails_closed_for_builds_and_open_for_streams_and_pods(
    controlplane: ControlPlane, kube: Kube, crds: list[str], tmp_path: Path
) -> None:
    """Stop the admission server (its registration stays) and write each kind."""
    async with admission_server(controlplane, kube, tmp_path) as (name, running):
        admission = Admission(kube=kube, plane=controlplane, name=name, running=running)
        namespace = await admission.namespace("adm-down")
        await lookup_stream(admission, namespace, local=True)
        running.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running.task, 30)
        # Fail (closed): a BuildConfig stored without OpenShift's defaults would be wrong
        # forever; refused now, it can be sent again.
        code, _, err = await admission.kubectl(
            "apply", "-n", namespace, "-f", str(LEGACY / "buildconfig-legacy.yaml")
        )
        assert code != 0
        assert "failed calling webhook" in err
        assert (await kube.list(BUILDCONFIGS, namespace))[0] == []
        # Ignore (open): the stream is stored as sent (no generation stamped; the
        # controller's own bookkeeping covers it) ...
        stream = await kube.create(
            IMAGESTREAMS,
            namespace,
            {
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStream",
                "metadata": {"name": "while-down"},
                "spec": {
                    "tags": [{"name": "v1", "from": {"kind": "ImageStreamTag", "name": "app:v1"}}]
                },
            },
        )
        assert "generation" not in stream["spec"]["tags"][0]
        # ... and a pod keeps its name (it would fail to pull, visibly, not run elsewhere).
        stored = await kube.create(PODS, namespace, pod("app:v1"))
        assert stored["spec"]["containers"][0]["image"] == "app:v1"
