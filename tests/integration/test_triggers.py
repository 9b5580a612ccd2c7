"""Image change triggers against the real control plane and registry (issue 4, behaviours 14-22).

See docs/openshift-behaviours.md#behaviour-14 to #behaviour-22.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from imagestream.kube.errors import NotFound
from imagestream.kube.resources import EVENTS, IMAGESTREAMS, REPLICASETS, REPLICATIONCONTROLLERS
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.workloads import RESOURCES, images, imagestream, trigger, workload

SETTLE_S = 1.5
"""How long to watch for a write that must not happen (a negative check has to wait)."""


async def create(system: System, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return await system.kube.create(RESOURCES[kind], namespace, body)


async def read(system: System, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return await system.kube.get(RESOURCES[kind], namespace, name)


async def wait_image(
    system: System,
    kind: str,
    namespace: str,
    name: str,
    container: str,
    expected: str,
    *,
    init: bool = False,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await read(system, kind, namespace, name)
        return obj if images(obj, init=init).get(container) == expected else None

    return await eventually(check, what=f"{kind} {name} {container} = {expected}")


async def rolled_out(system: System, tmp_path: Path, namespace: str, name: str = "app") -> str:
    """A Deployment `name` following `app:v1`, after a push to it: its pull spec."""
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", name, [trigger("app:v1", "main")], ["main"]),
    )
    expected = (
        f"{system.registry.host}/{namespace}/app@{push(system, tmp_path, f'{namespace}/app:v1')}"
    )
    await wait_image(system, "Deployment", namespace, name, "main", expected)
    return expected


async def warnings_for(system: System, namespace: str, name: str) -> list[str]:
    events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
    return [
        f"{e['reason']}: {e.get('note', '')}"
        for e in events.get("items") or []
        if e["regarding"]["name"] == name and e["type"] == "Warning"
    ]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "CronJob"])
async def test_push_patches_every_workload_kind_with_the_digest(
    system: System, tmp_path: Path, kind: str
) -> None:
    namespace = await new_namespace(system.kube, kind.lower())
    await create(
        system,
        kind,
        namespace,
        workload(kind, "app", [trigger("app:v1", "main", kind=kind)], ["main"]),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    expected = f"{system.registry.host}/{namespace}/app@{digest}"
    await wait_image(system, kind, namespace, "app", "main", expected)


async def test_push_to_rollout_makes_a_new_replicaset(system: System, tmp_path: Path) -> None:
    """The whole loop: skopeo push, webhook, ImageStream, trigger, kube-controller-manager."""
    namespace = await new_namespace(system.kube, "rollout")
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "web", [trigger("app:v1", "web")], ["web"]),
    )
    first = push(system, tmp_path, f"{namespace}/app:v1")
    repository = f"{system.registry.host}/{namespace}/app"
    await wait_image(system, "Deployment", namespace, "web", "web", f"{repository}@{first}")
    second = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_image(system, "Deployment", namespace, "web", "web", f"{repository}@{second}")

    async def replica_set_with_second() -> bool:
        sets, _ = await system.kube.list(REPLICASETS, namespace)
        return any(
            rs["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}@{second}"
            for rs in sets
        )

    await eventually(replica_set_with_second, what="a ReplicaSet carrying the second digest")

    async def explained() -> bool:  # Events are posted in the background, after the patch
        events = await system.kube.request("GET", EVENTS.path(namespace=namespace))
        notes = [e.get("note", "") for e in events["items"] if e["reason"] == "ImageTriggered"]
        return any(second in note and f"{namespace}/app:v1" in note for note in notes)

    await eventually(explained, what="an ImageTriggered Event naming the tag and digest")


async def test_init_containers_are_triggered(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "init")
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "app", [trigger("app:v1", "setup", init=True)], ["main"], ["setup"]),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "setup",
        f"{system.registry.host}/{namespace}/app@{digest}",
        init=True,
    )


async def test_behaviour_14_local_reference_policy_resolves_through_the_stream_repository(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "b14")
    upstream = f"{system.registry.host}/upstream-{namespace}/base"
    digest = push(system, tmp_path, f"upstream-{namespace}/base:1")
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "local",
            [
                {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": f"{upstream}:1"},
                    "importPolicy": {"insecure": True},
                    "referencePolicy": {"type": "Local"},
                },
            ],
        ),
    )
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "source",
            [
                {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": f"{upstream}:1"},
                    "importPolicy": {"insecure": True},
                },
            ],
        ),
    )
    await create(
        system,
        "Deployment",
        namespace,
        workload(
            "Deployment", "app", [trigger("local:1", "a"), trigger("source:1", "b")], ["a", "b"]
        ),
    )
    await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "a",
        f"{system.registry.host}/{namespace}/local@{digest}",
    )
    await wait_image(system, "Deployment", namespace, "app", "b", f"{upstream}@{digest}")


async def test_behaviour_15_only_the_four_workload_kinds_are_triggered(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "b15")
    replica_set = workload("Deployment", "rs", [trigger("app:v1", "main")], ["main"])
    replica_set["kind"] = "ReplicaSet"
    replica_set["spec"]["replicas"] = 0
    await system.kube.create(REPLICASETS, namespace, replica_set)
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "dep", [trigger("app:v1", "main")], ["main"]),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_image(
        system,
        "Deployment",
        namespace,
        "dep",
        "main",
        f"{system.registry.host}/{namespace}/app@{digest}",
    )
    untouched = await system.kube.get(REPLICASETS, namespace, "rs")
    assert untouched["spec"]["template"]["spec"]["containers"][0]["image"] == " "


async def test_behaviour_16_inactive_triggers_do_nothing(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "b16")
    triggers = [
        trigger("app:v1", "paused", paused=True),
        {
            "from": {"kind": "ImageStreamTag", "name": "app"},  # no ":tag": never resolves
            "fieldPath": 'spec.template.spec.containers[?(@.name=="notag")].image',
        },
        {
            "from": {"kind": "DockerImage", "name": "app:v1"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="docker")].image',
        },
        trigger("app:v1", "active"),  # empty namespace: the object's
    ]
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "app", triggers, ["paused", "notag", "docker", "active"]),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    obj = await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "active",
        f"{system.registry.host}/{namespace}/app@{digest}",
    )
    assert images(obj) | {"active": ""} == {
        "paused": " ",
        "notag": " ",
        "docker": " ",
        "active": "",
    }


async def test_behaviour_17_field_path_forms_and_errors(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "b17")
    triggers = [
        {
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "fieldPath": "spec.template.spec.containers[1].image",
        },  # by index
        {
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "fieldPath": "spec.template.spec.containers[@.name=bad].image",
        },  # malformed
        {
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="missing")].image',
        },
        {
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "fieldPath": 'metadata.annotations[?(@.name=="x")].image',
        },  # outside: ignored
    ]
    await create(
        system, "Deployment", namespace, workload("Deployment", "app", triggers, ["zero", "one"])
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    obj = await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "one",
        f"{system.registry.host}/{namespace}/app@{digest}",
    )
    assert images(obj)["zero"] == " "

    async def explained() -> list[str] | None:
        # Before the push every trigger warned StreamNotFound; these come once it resolves.
        found = await warnings_for(system, namespace, "app")
        invalid = any("InvalidFieldPath" in w for w in found)
        missing = any("ContainerNotFound" in w and "missing" in w for w in found)
        return found if invalid and missing else None

    await eventually(explained, what="warnings for the malformed and missing paths")


async def test_behaviour_18_unresolved_triggers_do_not_block_the_others(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "b18")
    await create(
        system,
        "Deployment",
        namespace,
        workload(
            "Deployment", "app", [trigger("nothere:v1", "a"), trigger("app:v1", "b")], ["a", "b"]
        ),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    obj = await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "b",
        f"{system.registry.host}/{namespace}/app@{digest}",
    )
    assert images(obj)["a"] == " "


async def test_behaviour_19_a_manual_change_is_reverted_and_our_write_causes_no_other(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "b19")
    expected = await rolled_out(system, tmp_path, namespace)
    for _ in range(5):  # OpenShift's e2e patches it back to " " repeatedly
        await system.kube.patch(
            RESOURCES["Deployment"],
            namespace,
            "app",
            {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": " "}]}}}},
            patch_type="application/strategic-merge-patch+json",
        )
        await wait_image(system, "Deployment", namespace, "app", "main", expected)
    # Spec writes bump the generation; kube-controller-manager's status writes do not.
    settled = await read(system, "Deployment", namespace, "app")
    await asyncio.sleep(SETTLE_S)
    again = await read(system, "Deployment", namespace, "app")
    assert again["metadata"]["generation"] == settled["metadata"]["generation"]


async def test_behaviour_20_stream_changes_re_evaluate_and_unrelated_edits_do_not(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "b20")
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "app", [trigger("app:v1", "main")], ["main"]),
    )
    repository = f"{system.registry.host}/{namespace}/app"
    await wait_image(
        system,
        "Deployment",
        namespace,
        "app",
        "main",
        f"{repository}@{push(system, tmp_path, f'{namespace}/app:v1')}",
    )
    # A push to another tag of the same stream re-evaluates (and changes nothing).
    push(system, tmp_path, f"{namespace}/app:other")
    # An edit that touches no trigger and no image: scale.
    await system.kube.patch(RESOURCES["Deployment"], namespace, "app", {"spec": {"replicas": 2}})
    scaled = await read(system, "Deployment", namespace, "app")
    await asyncio.sleep(SETTLE_S)
    after = await read(system, "Deployment", namespace, "app")
    assert after["metadata"]["generation"] == scaled["metadata"]["generation"]
    moved = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_image(system, "Deployment", namespace, "app", "main", f"{repository}@{moved}")


@pytest.mark.parametrize(
    "annotation",
    [
        "not json",
        json.dumps([trigger("app:v1", "main"), trigger("app:v1", "main")]),  # duplicate fieldPath
    ],
)
async def test_behaviour_21_an_invalid_annotation_disables_every_trigger(
    system: System, tmp_path: Path, annotation: str
) -> None:
    namespace = await new_namespace(system.kube, "b21")
    await create(
        system, "Deployment", namespace, workload("Deployment", "bad", annotation, ["main"])
    )
    await create(
        system,
        "Deployment",
        namespace,
        workload("Deployment", "good", [trigger("app:v1", "main")], ["main"]),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_image(
        system,
        "Deployment",
        namespace,
        "good",
        "main",
        f"{system.registry.host}/{namespace}/app@{digest}",
    )
    await asyncio.sleep(SETTLE_S)
    assert images(await read(system, "Deployment", namespace, "bad")) == {"main": " "}

    async def explained() -> list[str] | None:
        found = await warnings_for(system, namespace, "bad")
        return found or None

    found = await eventually(explained, what="a warning explaining the invalid annotation")
    assert any("InvalidAnnotation" in w for w in found), found


async def test_a_converged_world_reconciled_again_makes_no_writes(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "quiet")
    for index in range(3):
        await create(
            system,
            "Deployment",
            namespace,
            workload("Deployment", f"app{index}", [trigger("app:v1", "main")], ["main"]),
        )
    expected = (
        f"{system.registry.host}/{namespace}/app@{push(system, tmp_path, f'{namespace}/app:v1')}"
    )
    for index in range(3):
        await wait_image(system, "Deployment", namespace, f"app{index}", "main", expected)
    await asyncio.sleep(SETTLE_S)
    # Spec writes bump the generation; kube-controller-manager's status writes do not.
    before = {
        f"app{i}": (await read(system, "Deployment", namespace, f"app{i}"))["metadata"][
            "generation"
        ]
        for i in range(3)
    }
    stream_before = await system.kube.get(IMAGESTREAMS, namespace, "app")
    # Wake every dependent: any change to the stream re-evaluates them all (behaviour 20).
    await system.kube.patch(
        IMAGESTREAMS, namespace, "app", {"metadata": {"annotations": {"touched": "yes"}}}
    )
    await asyncio.sleep(SETTLE_S)
    after = {
        f"app{i}": (await read(system, "Deployment", namespace, f"app{i}"))["metadata"][
            "generation"
        ]
        for i in range(3)
    }
    assert after == before
    stream_after = await system.kube.get(IMAGESTREAMS, namespace, "app")
    assert stream_after["status"] == stream_before["status"]


async def test_a_stream_that_vanishes_leaves_workloads_as_they_are(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "gone")
    expected = await rolled_out(system, tmp_path, namespace)
    await system.kube.delete(IMAGESTREAMS, namespace, "app")
    await asyncio.sleep(SETTLE_S)
    assert images(await read(system, "Deployment", namespace, "app"))["main"] == expected
    with pytest.raises(NotFound):
        await system.kube.get(REPLICATIONCONTROLLERS, namespace, "none")


async def test_explain_tells_for_every_trigger_what_it_resolves_to_and_why(
    system: System, tmp_path: Path, controlplane: Any
) -> None:
    namespace = await new_namespace(system.kube, "explain")
    await create(
        system,
        "Deployment",
        namespace,
        workload(
            "Deployment",
            "web",
            [
                trigger("app:v1", "web"),
                trigger("nothere:v1", "side"),
                trigger("app:v1", "old", paused=True),
            ],
            ["web", "side", "old"],
        ),
    )
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    expected = f"{system.registry.host}/{namespace}/app@{digest}"
    await wait_image(system, "Deployment", namespace, "web", "web", expected)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imagestream.cli",
        "explain",
        "-n",
        namespace,
        "deployment/web",
        "--kubeconfig",
        str(controlplane.kubeconfig_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    text = stdout.decode()
    blocks = text.split('spec.template.spec.containers[?(@.name=="')[1:]
    by_container = {block.split('"', 1)[0]: block for block in blocks}
    assert f"resolves:  {expected}" in by_container["web"]
    assert "UpToDate" in by_container["web"]
    assert "StreamNotFound" in by_container["side"]
    assert "Paused" in by_container["old"]
