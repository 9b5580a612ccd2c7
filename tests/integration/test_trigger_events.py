"""Every write leaves an Event; every trigger that cannot act says why (issue 14, point 8).

Against the real control plane: Events are counted the way Kubernetes counts them
(events.k8s.io/v1: one Event per series, `series.count` occurrences, 1 without a series),
so the occurrences of an Event are what a user sees as `x4` in `kubectl get events`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from imagestream.imagestreams import copy_for_write
from imagestream.kube.errors import Conflict
from imagestream.kube.resources import DEPLOYMENTS, EVENTS, IMAGESTREAMS
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.workloads import TRIGGERS, images, imagestream, move_tag, trigger, workload

REGISTRY = "registry.invalid:5000"
SETTLE_S = 1.5
"""How long to watch for an Event that must not come (a negative check has to wait)."""


def digest(n: int) -> str:
    return "sha256:" + str(n) * 64


async def occurrences(system: System, namespace: str, name: str, reason: str) -> int:
    """How often Events of `reason` on `name` say it happened: the sum of their counts."""
    listed, _ = await system.kube.list(EVENTS, namespace)
    return sum(
        (event.get("series") or {}).get("count", 1)
        for event in listed
        if (event.get("regarding") or {}).get("name") == name and event.get("reason") == reason
    )


async def count_reaches(
    system: System, namespace: str, name: str, reason: str, expected: int
) -> None:
    async def reached() -> bool:
        return await occurrences(system, namespace, name, reason) >= expected

    try:
        await eventually(reached, timeout_s=15, what=f"{expected} occurrences of {reason}")
    except TimeoutError:
        seen = await occurrences(system, namespace, name, reason)
        raise AssertionError(f"{reason} on {name}: {seen} occurrences, not {expected}") from None
    await asyncio.sleep(SETTLE_S)  # and no more
    assert await occurrences(system, namespace, name, reason) == expected


async def image_is(system: System, namespace: str, expected: str) -> dict[str, Any] | None:
    obj = await system.kube.get(DEPLOYMENTS, namespace, "web")
    return obj if images(obj)["main"] == expected else None


async def test_every_revert_of_a_hand_edit_is_counted_in_events(system: System) -> None:
    namespace = await new_namespace(system.kube, "reverts")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(1))
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    expected = f"{REGISTRY}/{namespace}/app@{digest(1)}"
    await eventually(lambda: image_is(system, namespace, expected), what="first image applied")
    reverts = 4
    for n in range(reverts):
        await system.kube.patch(
            DEPLOYMENTS,
            namespace,
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": f"x:{n}"}]}}}},
            patch_type="application/strategic-merge-patch+json",
        )
        await eventually(lambda: image_is(system, namespace, expected), what=f"revert {n + 1}")
    # Each of the 1 + 4 writes set the same image from the same tag: one Event, counted 5 times.
    await count_reaches(system, namespace, "web", "ImageTriggered", 1 + reverts)


async def drop_tag(system: System, namespace: str, stream: str, tag: str) -> None:
    """Remove `tag` from the stream's status, as if its history had been deleted."""
    for _ in range(10):
        current = await system.kube.get(IMAGESTREAMS, namespace, stream)
        body = copy_for_write(current)
        body["status"]["tags"] = [t for t in body["status"].get("tags") or [] if t["tag"] != tag]
        try:
            await system.kube.replace(IMAGESTREAMS, namespace, stream, body, subresource="status")
            return
        except Conflict:
            continue


async def test_a_missing_tag_is_one_warning_per_change_of_that_state(system: System) -> None:
    namespace = await new_namespace(system.kube, "notag")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await move_tag(system.kube, namespace, "app", "other", f"{REGISTRY}/{namespace}/app", digest(1))
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    await count_reaches(system, namespace, "web", "TriggerTagNotFound", 1)
    # More reconciles in the same state: the stream changes (another tag moves) and the
    # Deployment is edited; neither is news.
    for n in range(2, 5):
        await move_tag(
            system.kube, namespace, "app", "other", f"{REGISTRY}/{namespace}/app", digest(n)
        )
        await system.kube.patch(
            DEPLOYMENTS, namespace, "web", {"metadata": {"annotations": {"touched": str(n)}}}
        )
    await count_reaches(system, namespace, "web", "TriggerTagNotFound", 1)

    # The tag appears: the trigger acts. It disappears again: a second Warning.
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(7))
    expected = f"{REGISTRY}/{namespace}/app@{digest(7)}"
    await eventually(lambda: image_is(system, namespace, expected), what="the tag's image")
    await drop_tag(system, namespace, "app", "v1")
    await count_reaches(system, namespace, "web", "TriggerTagNotFound", 2)
    (warning, *_) = [
        e
        for e in (await system.kube.list(EVENTS, namespace))[0]
        if e.get("reason") == "TriggerTagNotFound"
    ]
    assert warning["type"] == "Warning"
    assert "app:v1" in warning["note"]


async def test_a_trigger_removed_and_added_again_is_news_again(system: System) -> None:
    """Without the annotation the workload leaves the trigger loop's cache and memory: put
    back, it is a new trigger, warned about once more and followed from then on."""
    namespace = await new_namespace(system.kube, "readd")
    await system.kube.create(IMAGESTREAMS, namespace, imagestream("app"))
    await move_tag(system.kube, namespace, "app", "other", f"{REGISTRY}/{namespace}/app", digest(1))
    created = await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "main")], ["main"])
    )
    annotation = created["metadata"]["annotations"][TRIGGERS]
    await count_reaches(system, namespace, "web", "TriggerTagNotFound", 1)

    await system.kube.patch(
        DEPLOYMENTS, namespace, "web", {"metadata": {"annotations": {TRIGGERS: None}}}
    )
    # Untriggered, it follows nothing: a move of its old tag leaves it alone.
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(2))
    await asyncio.sleep(SETTLE_S)
    assert images(await system.kube.get(DEPLOYMENTS, namespace, "web"))["main"] == " "
    await drop_tag(system, namespace, "app", "v1")

    await system.kube.patch(
        DEPLOYMENTS, namespace, "web", {"metadata": {"annotations": {TRIGGERS: annotation}}}
    )
    await count_reaches(system, namespace, "web", "TriggerTagNotFound", 2)
    await move_tag(system.kube, namespace, "app", "v1", f"{REGISTRY}/{namespace}/app", digest(3))
    expected = f"{REGISTRY}/{namespace}/app@{digest(3)}"
    await eventually(lambda: image_is(system, namespace, expected), what="the re-added trigger")
