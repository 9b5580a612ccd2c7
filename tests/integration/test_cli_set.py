"""`imagestream set triggers` and `imagestream set image-lookup` against the real system.

The triggers annotation is compared byte for byte with what `oc set triggers` writes
(openshift/oc pkg/cli/set/triggers.go: Go's encoding/json of OpenShift's
ObjectFieldTrigger), and the controller must then act on it: a push rolls the workload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS
from tests.integration.cli import Ran, assert_one_error_line, imagestream, kubeconfig_of
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.rollouts import dc_manifest
from tests.integration.workloads import RESOURCES, TRIGGERS, images, workload


async def set_cmd(system: System, tmp_path: Path, *args: str) -> Ran:
    return await imagestream("set", *args, kubeconfig=kubeconfig_of(system), home=tmp_path)


def annotation(
    container: str, stream_tag: str, *, prefix: str, paused: bool = False
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "from": {"kind": "ImageStreamTag", "name": stream_tag},
        "fieldPath": f'{prefix}.containers[?(@.name=="{container}")].image',
    }
    if paused:
        entry["paused"] = True
    return entry


@pytest.mark.parametrize(
    ("kind", "short", "prefix"),
    [
        ("Deployment", "deployment", "spec.template.spec"),
        ("StatefulSet", "sts", "spec.template.spec"),
        ("DaemonSet", "ds", "spec.template.spec"),
        ("CronJob", "cronjob", "spec.jobTemplate.spec.template.spec"),
    ],
)
async def test_set_triggers_writes_oc_annotation_and_the_controller_follows_it(
    system: System, tmp_path: Path, kind: str, short: str, prefix: str
) -> None:
    namespace = await new_namespace(system.kube, "settrig")
    resource = RESOURCES[kind]
    await system.kube.create(resource, namespace, workload(kind, "web", None, ["web", "side"]))

    ran = await set_cmd(
        system,
        tmp_path,
        "triggers",
        "-n",
        namespace,
        f"{short}/web",
        "--from-image=app:v1",
        "-c",
        "web",
    )
    assert ran.stdout == f"{kind.lower()}.{resource.group}/web triggers updated\n", ran.stderr
    obj = await system.kube.get(resource, namespace, "web")
    expected = [annotation("web", "app:v1", prefix=prefix)]
    assert obj["metadata"]["annotations"][TRIGGERS] == json.dumps(expected, separators=(",", ":"))

    digest = push(system, tmp_path, f"{namespace}/app:v1")
    wanted = f"{system.registry.host}/{namespace}/app@{digest}"

    async def rolled() -> bool:
        return images(await system.kube.get(resource, namespace, "web"))["web"] == wanted

    await eventually(rolled, what=f"{kind} follows the trigger the command wrote")

    # Unchanged: nothing written, nothing printed (as oc).
    again = await set_cmd(
        system,
        tmp_path,
        "triggers",
        "-n",
        namespace,
        f"{short}/web",
        "--from-image=app:v1",
        "-c",
        "web",
    )
    assert (again.code, again.stdout) == (0, "")

    # --manual on the trigger pauses it; the table shows it.
    ran = await set_cmd(
        system,
        tmp_path,
        "triggers",
        "-n",
        namespace,
        f"{short}/web",
        "--from-image=app:v1",
        "-c",
        "web",
        "--manual",
    )
    assert ran.ok, ran.stderr
    obj = await system.kube.get(resource, namespace, "web")
    assert json.loads(obj["metadata"]["annotations"][TRIGGERS]) == [
        annotation("web", "app:v1", prefix=prefix, paused=True)
    ]
    table = await set_cmd(system, tmp_path, "triggers", "-n", namespace, f"{short}/web")
    name = f"{resource.plural}/web"
    assert table.stdout.splitlines() == [
        f"{'NAME':<{len(name)}}  TYPE    VALUE         AUTO",
        f"{name}  config                true",
        f"{name}  image   app:v1 (web)  false",
    ]

    # --remove drops it; oc then writes Go's encoding of an empty list: null.
    ran = await set_cmd(
        system,
        tmp_path,
        "triggers",
        "-n",
        namespace,
        f"{short}/web",
        "--remove",
        "--from-image=app:v1",
    )
    assert ran.ok, ran.stderr
    obj = await system.kube.get(resource, namespace, "web")
    assert obj["metadata"]["annotations"][TRIGGERS] == "null"


async def test_set_triggers_refuses_what_oc_refuses(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "settrig")
    await system.kube.create(
        RESOURCES["Deployment"], namespace, workload("Deployment", "web", None, ["web"])
    )
    for args, text in (
        (["--from-image=app:v1"], "you must specify --containers when setting --from-image"),
        (
            ["--from-image=app:v1", "-c", "nope"],
            "not all container names exist: nope (accepts: web)",
        ),
        (["--from-image=app"], "must include the tag you wish to pull from"),
        (["--auto", "--manual"], "you must specify at most one of --auto or --manual"),
        (["--remove"], "--remove requires a flag defining a trigger type"),
    ):
        ran = await set_cmd(system, tmp_path, "triggers", "-n", namespace, "deploy/web", *args)
        assert_one_error_line(ran)
        assert text in ran.stderr, (args, ran.stderr)
    ran = await set_cmd(system, tmp_path, "triggers", "-n", namespace, "deploy/none", "--auto")
    assert ran.stderr == ('Error from server (NotFound): deployments.apps "none" not found\n')

    # --manual alone is oc's "all triggers manual": the config trigger too, which pauses.
    ran = await set_cmd(system, tmp_path, "triggers", "-n", namespace, "deploy/web", "--manual")
    assert ran.ok, ran.stderr
    deployment = await system.kube.get(RESOURCES["Deployment"], namespace, "web")
    assert deployment["spec"]["paused"] is True


async def test_set_triggers_on_a_deploymentconfig(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "settrig")
    await system.kube.create(DEPLOYMENTCONFIGS, namespace, dc_manifest("web", image=" "))

    ran = await set_cmd(
        system, tmp_path, "triggers", "-n", namespace, "dc/web", "--from-image=app:v1", "-c", "web"
    )
    assert ran.stdout == "deploymentconfig.apps.openshift.io/web triggers updated\n", ran.stderr
    dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert dc["spec"]["triggers"] == [
        {"type": "ConfigChange"},
        {
            "type": "ImageChange",
            "imageChangeParams": {
                "automatic": True,
                "from": {"kind": "ImageStreamTag", "name": "app:v1"},
                "containerNames": ["web"],
            },
        },
    ]
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    wanted = f"{system.registry.host}/{namespace}/app@{digest}"

    async def triggered() -> bool:
        dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        return dc["spec"]["template"]["spec"]["containers"][0]["image"] == wanted

    await eventually(triggered, what="the DeploymentConfig follows the trigger")

    ran = await set_cmd(
        system, tmp_path, "triggers", "-n", namespace, "dc/web", "--from-config", "--remove"
    )
    assert ran.ok, ran.stderr
    dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
    assert [t["type"] for t in dc["spec"]["triggers"]] == ["ImageChange"]
    # The image trigger was kept as it was, lastTriggeredImage and all.
    assert dc["spec"]["triggers"][0]["imageChangeParams"]["lastTriggeredImage"] == wanted


async def test_set_image_lookup(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "lookup")
    for name in ("app", "db"):
        await system.kube.create(
            IMAGESTREAMS,
            namespace,
            {
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStream",
                "metadata": {"name": name},
            },
        )
    ran = await set_cmd(system, tmp_path, "image-lookup", "-n", namespace, "app")
    assert ran.stdout == "imagestream.image.openshift.io/app image lookup updated\n", ran.stderr
    stream = await system.kube.get(IMAGESTREAMS, namespace, "app")
    assert stream["spec"]["lookupPolicy"] == {"local": True}
    again = await set_cmd(system, tmp_path, "image-lookup", "-n", namespace, "app")
    assert (again.code, again.stdout) == (0, "")

    table = await set_cmd(system, tmp_path, "image-lookup", "-n", namespace)
    assert table.stdout.splitlines() == ["NAME  LOCAL", "app   true", "db    false"]

    ran = await set_cmd(
        system, tmp_path, "image-lookup", "-n", namespace, "app", "--enabled=false", "-o", "json"
    )
    assert json.loads(ran.stdout)["spec"]["lookupPolicy"] == {"local": False}
    ran = await set_cmd(system, tmp_path, "image-lookup", "-n", namespace, "deploy/web")
    assert_one_error_line(ran)
