"""What the controller does on spec changes, as OpenShift's API server would (behaviours 4-11).

See docs/openshift-behaviours.md#behaviour-4 to #behaviour-11.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS
from localdev.images import make_oci_image, skopeo_push
from localdev.registry import Registry
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.workloads import imagestream


def status_tag(stream: dict[str, Any], tag: str) -> dict[str, Any]:
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry["tag"] == tag:
            return dict(entry)
    return {}


async def wait_tag(
    system: System, namespace: str, name: str, tag: str, predicate: Any, what: str
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        try:
            stream = await system.kube.get(IMAGESTREAMS, namespace, name)
        except NotFound:
            return None
        return stream if predicate(status_tag(stream, tag)) else None

    return await eventually(check, what=what)


def head_image(entry: dict[str, Any]) -> str | None:
    items = entry.get("items") or []
    return items[0]["image"] if items else None


async def test_behaviour_8_reference_tags_record_from_name_and_are_never_imported(
    system: System,
) -> None:
    namespace = await new_namespace(system.kube, "ref")
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "app",
            [
                {
                    "name": "ext",
                    "reference": True,
                    "from": {"kind": "DockerImage", "name": "quay.io/example/app:1.25"},
                },
            ],
        ),
    )
    stream = await wait_tag(
        system, namespace, "app", "ext", lambda e: e.get("items"), "reference event"
    )
    (item,) = status_tag(stream, "ext")["items"]
    assert item["dockerImageReference"] == "quay.io/example/app:1.25"
    assert item["image"] == ""
    assert item["generation"] == stream["metadata"]["generation"] == 1
    assert not status_tag(stream, "ext").get("conditions")


async def test_behaviour_9_same_stream_tags_follow_their_source(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "follow")
    first = push(system, tmp_path, f"{namespace}/app:v1")
    await wait_tag(system, namespace, "app", "v1", lambda e: head_image(e) == first, "v1 pushed")
    await system.kube.patch(
        IMAGESTREAMS,
        namespace,
        "app",
        {
            "spec": {
                "tags": [
                    {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "v1"}},
                ]
            }
        },
    )
    await wait_tag(
        system,
        namespace,
        "app",
        "stable",
        lambda e: head_image(e) == first,
        "stable copies v1's head",
    )
    second = push(system, tmp_path, f"{namespace}/app:v1")
    stream = await wait_tag(
        system, namespace, "app", "stable", lambda e: head_image(e) == second, "stable follows v1"
    )
    assert head_image(status_tag(stream, "v1")) == second


async def test_behaviour_10_and_11_a_tag_from_another_stream_is_copied_once_and_rewritten(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "copy")
    first = push(system, tmp_path, f"{namespace}/source:v1")
    await wait_tag(system, namespace, "source", "v1", lambda e: head_image(e) == first, "pushed")
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "target",
            [
                {"name": "copy", "from": {"kind": "ImageStreamTag", "name": "source:v1"}},
            ],
        ),
    )
    stream = await wait_tag(
        system, namespace, "target", "copy", lambda e: head_image(e) == first, "copied once"
    )
    (item,) = status_tag(stream, "copy")["items"]
    # Behaviour 11: an integrated-registry image points at this stream's repository.
    assert item["dockerImageReference"] == f"{system.registry.host}/{namespace}/target@{first}"
    second = push(system, tmp_path, f"{namespace}/source:v1")
    await wait_tag(system, namespace, "source", "v1", lambda e: head_image(e) == second, "moved")
    # Behaviour 10: the copy does not follow (give the controller a moment to misbehave).
    for _ in range(20):
        stream = await system.kube.get(IMAGESTREAMS, namespace, "target")
        assert head_image(status_tag(stream, "copy")) == first
        await asyncio.sleep(0.05)


async def test_docker_image_tags_are_imported_from_the_registry(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "import")
    upstream = f"{system.registry.host}/up-{namespace}/base"
    digest = push(system, tmp_path, f"up-{namespace}/base:1")
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "base",
            [
                {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": f"{upstream}:1"},
                    "importPolicy": {"insecure": True},
                },
            ],
        ),
    )
    stream = await wait_tag(
        system, namespace, "base", "1", lambda e: head_image(e) == digest, "imported"
    )
    (item,) = status_tag(stream, "1")["items"]
    assert item["dockerImageReference"] == f"{upstream}@{digest}"
    assert item["generation"] == stream["metadata"]["generation"]

    # The tag may have moved through the webhook first (the push's own notification
    # names a DockerImage tag's source); the controller's bookkeeping follows.
    async def observed() -> bool:
        stream = await system.kube.get(IMAGESTREAMS, namespace, "base")
        generation = stream["metadata"]["generation"]
        return bool((stream.get("status") or {}).get("observedGeneration") == generation)

    await eventually(observed, what="observedGeneration recorded")


async def test_behaviour_7_a_missing_tag_records_import_success_false_once(system: System) -> None:
    namespace = await new_namespace(system.kube, "missing")
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "app",
            [
                {
                    "name": "1",
                    "from": {
                        "kind": "DockerImage",
                        "name": f"{system.registry.host}/nowhere/app:1",
                    },
                    "importPolicy": {"insecure": True},
                },
            ],
        ),
    )

    def failed(entry: dict[str, Any]) -> bool:
        return any(c["type"] == "ImportSuccess" for c in entry.get("conditions") or [])

    stream = await wait_tag(system, namespace, "app", "1", failed, "ImportSuccess=False")
    (condition,) = status_tag(stream, "1")["conditions"]
    assert condition["status"] == "False"
    assert condition["reason"] == "NotFound"
    assert condition["generation"] == stream["metadata"]["generation"]
    resource_version = stream["metadata"]["resourceVersion"]
    await asyncio.sleep(1.0)
    again = await system.kube.get(IMAGESTREAMS, namespace, "app")
    assert again["metadata"]["resourceVersion"] == resource_version, "the failure was rewritten"


async def test_behaviour_5_generation_zero_asks_for_a_new_import(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "regen")
    upstream = f"{system.registry.host}/up-{namespace}/base"
    await system.kube.create(
        IMAGESTREAMS,
        namespace,
        imagestream(
            "base",
            [
                {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": f"{upstream}:1"},
                    "importPolicy": {"insecure": True},
                },
            ],
        ),
    )
    await wait_tag(
        system,
        namespace,
        "base",
        "1",
        lambda e: bool(e.get("conditions")),
        "first import fails: nothing pushed",
    )
    digest = push(system, tmp_path, f"up-{namespace}/base:1")
    await system.kube.patch(
        IMAGESTREAMS,
        namespace,
        "base",
        {
            "spec": {
                "tags": [
                    {
                        "name": "1",
                        "generation": 0,
                        "from": {"kind": "DockerImage", "name": f"{upstream}:1"},
                        "importPolicy": {"insecure": True},
                    }
                ]
            }
        },
    )
    stream = await wait_tag(
        system,
        namespace,
        "base",
        "1",
        lambda e: head_image(e) == digest,
        "re-imported after generation: 0",
    )
    assert status_tag(stream, "1").get("conditions") == []


async def test_scheduled_import_picks_up_a_push_whose_notification_was_lost(
    system: System, tmp_path: Path
) -> None:
    """The safety net: the session controller imports scheduled tags every 5 s.

    The upstream registry here sends no notifications at all, as if every one
    were lost (distribution keeps its queue in memory only).
    """
    namespace = await new_namespace(system.kube, "sched")
    silent = Registry(workdir=tmp_path / "silent-registry").start()
    try:

        def push_silently() -> str:
            image = make_oci_image(tmp_path / uuid.uuid4().hex, uuid.uuid4().hex)
            skopeo_push(image, f"{silent.host}/upstream/base:1")
            return image.manifest_digest

        first = push_silently()
        await system.kube.create(
            IMAGESTREAMS,
            namespace,
            imagestream(
                "base",
                [
                    {
                        "name": "1",
                        "from": {"kind": "DockerImage", "name": f"{silent.host}/upstream/base:1"},
                        "importPolicy": {"insecure": True, "scheduled": True},
                    },
                ],
            ),
        )
        await wait_tag(
            system, namespace, "base", "1", lambda e: head_image(e) == first, "imported on creation"
        )
        second = push_silently()
        stream = await wait_tag(
            system,
            namespace,
            "base",
            "1",
            lambda e: head_image(e) == second,
            "the next scheduled import",
        )
        assert [i["image"] for i in status_tag(stream, "1")["items"]] == [second, first]
    finally:
        silent.stop()
