"""Pushes to the real integrated registry become ImageStream tags (behaviours 12, 13; issue 3).

See docs/openshift-behaviours.md#behaviour-12 and docs/openshift-behaviours.md#behaviour-13.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS
from tests.integration.conftest import System, eventually, new_namespace, push


async def get_stream(system: System, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await system.kube.get(IMAGESTREAMS, namespace, name)
    except NotFound:
        return None


def tag_items(stream: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry["tag"] == tag:
            return list(entry.get("items") or [])
    return []


async def metric(system: System, name: str, **labels: str) -> float:
    """Sum of a counter's samples with these labels, read from the webhook's /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{system.webhook_url}/metrics") as response,
    ):
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_behaviour_12_a_push_creates_the_stream_and_records_the_digest(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "push")
    digest = push(system, tmp_path, f"{namespace}/app:v1", "first")

    async def recorded() -> dict[str, Any] | None:
        stream = await get_stream(system, namespace, "app")
        return stream if stream and tag_items(stream, "v1") else None

    stream = await eventually(recorded, what="tag v1 recorded")
    repository = f"{system.registry.host}/{namespace}/app"
    assert stream["status"]["dockerImageRepository"] == repository
    (item,) = tag_items(stream, "v1")
    assert item["dockerImageReference"] == f"{repository}@{digest}"
    assert item["image"] == digest
    assert item["generation"] == stream["metadata"]["generation"]


async def test_behaviour_13_pushing_the_same_digest_again_writes_nothing(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "again")
    push(system, tmp_path, f"{namespace}/app:v1", "same content")

    async def settled() -> dict[str, Any] | None:
        stream = await get_stream(system, namespace, "app")
        status = (stream or {}).get("status") or {}
        # The controller has processed the new stream (its bookkeeping is written).
        return stream if tag_items(stream or {}, "v1") and "observedGeneration" in status else None

    before = await eventually(settled, what="stream settled")
    duplicates = await metric(system, "imagestream_webhook_events_total", outcome="duplicate")
    push(system, tmp_path, f"{namespace}/app:v1", "same content")

    async def handled() -> bool:
        count = await metric(system, "imagestream_webhook_events_total", outcome="duplicate")
        return count > duplicates

    await eventually(handled, what="the second notification handled as a duplicate")
    after = await get_stream(system, namespace, "app")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(tag_items(after, "v1")) == 1


def distribution_event(
    event_id: str,
    *,
    host: str,
    repository: str,
    tag: str,
    digest: str,
    timestamp: str = "",
) -> dict[str, Any]:
    """One push event as CNCF distribution sends it (envelope v2)."""
    event: dict[str, Any] = {
        "id": event_id,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "repository": repository,
            "tag": tag,
        },
        "request": {"host": host},
    }
    if timestamp:
        event["timestamp"] = timestamp
    return event


async def post_events(
    system: System, session: aiohttp.ClientSession, *events: dict[str, Any]
) -> tuple[int, Any]:
    """POST one notification to the integrated receiver, as the registry would."""
    async with session.post(
        f"{system.webhook_url}/v1/events/distribution",
        data=json.dumps({"events": list(events)}),
        headers={
            "Authorization": f"Bearer {system.token}",
            "Content-Type": "application/vnd.docker.distribution.events.v2+json",
        },
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        return response.status, await response.json()


async def test_a_late_notification_never_moves_the_tag_back(system: System, tmp_path: Path) -> None:
    """Two pushes delivered newest first: the tag ends on the newest, history holds both."""
    namespace = await new_namespace(system.kube, "order")
    repository = f"{namespace}/app"
    older = "sha256:" + "1" * 64
    newer = "sha256:" + "2" * 64
    host = system.registry.host

    async with aiohttp.ClientSession() as session:
        for event_id, digest, timestamp in (
            ("e2", newer, "2026-01-01T00:00:02Z"),
            ("e1", older, "2026-01-01T00:00:01Z"),
        ):
            event = distribution_event(
                event_id,
                host=host,
                repository=repository,
                tag="v1",
                digest=digest,
                timestamp=timestamp,
            )
            status, answer = await post_events(system, session, event)
            assert status == 200, answer
            assert [a["digest"] for a in answer["applied"]] == [digest]
    stream = await get_stream(system, namespace, "app")
    assert stream is not None
    assert [item["image"] for item in tag_items(stream, "v1")] == [newer, older]


async def test_the_integrated_receiver_records_only_the_integrated_registry(
    system: System, tmp_path: Path
) -> None:
    """A payload naming another host is acknowledged, counted and ignored (issue 14, point 1).

    One authenticated request must not point a stream, and through it every
    workload that follows it, at a host of the sender's choosing: the
    integrated receiver speaks for the integrated registry alone.
    """
    namespace = await new_namespace(system.kube, "host")
    ignored_before = await metric(
        system, "imagestream_webhook_events_total", outcome="not_integrated_registry"
    )
    forged = distribution_event(
        "forged-host",
        host="attacker.example.com",
        repository=f"{namespace}/app",
        tag="v1",
        digest="sha256:" + "6" * 64,
    )
    async with aiohttp.ClientSession() as session:
        status, answer = await post_events(system, session, forged)
        assert status == 200, answer
        assert answer["applied"] == []
        assert [(i["reason"], i["eventId"]) for i in answer["ignored"]] == [
            ("not_integrated_registry", "forged-host")
        ]
        assert await get_stream(system, namespace, "app") is None
        assert (
            await metric(
                system, "imagestream_webhook_events_total", outcome="not_integrated_registry"
            )
            == ignored_before + 1
        )
        # A redelivery is answered the same: nothing was remembered or written.
        status, answer = await post_events(system, session, forged)
        assert (status, [i["reason"] for i in answer["ignored"]]) == (
            200,
            ["not_integrated_registry"],
        )
    assert await get_stream(system, namespace, "app") is None

    # A real push to the integrated registry is recorded under its configured name.
    digest = push(system, tmp_path, f"{namespace}/app:v1")

    async def recorded() -> list[dict[str, Any]]:
        stream = await get_stream(system, namespace, "app")
        return tag_items(stream, "v1") if stream else []

    (item,) = await eventually(recorded, what="the real push recorded")
    assert item["dockerImageReference"] == f"{system.registry.host}/{namespace}/app@{digest}"
