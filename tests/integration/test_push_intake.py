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


async def test_a_late_notification_never_moves_the_tag_back(system: System, tmp_path: Path) -> None:
    """Two pushes delivered newest first: the tag ends on the newest, history holds both."""
    namespace = await new_namespace(system.kube, "order")
    repository = f"{namespace}/app"
    older = "sha256:" + "1" * 64
    newer = "sha256:" + "2" * 64

    def envelope(event_id: str, digest: str, timestamp: str) -> dict[str, Any]:
        return {
            "events": [
                {
                    "id": event_id,
                    "timestamp": timestamp,
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "repository": repository,
                        "tag": "v1",
                    },
                    "request": {"host": system.registry.host},
                }
            ]
        }

    async with aiohttp.ClientSession() as session:
        for body in (
            envelope("e2", newer, "2026-01-01T00:00:02Z"),
            envelope("e1", older, "2026-01-01T00:00:01Z"),
        ):
            async with session.post(
                f"{system.webhook_url}/v1/events/distribution",
                data=json.dumps(body),
                headers={
                    "Authorization": f"Bearer {system.token}",
                    "Content-Type": "application/vnd.docker.distribution.events.v2+json",
                },
            ) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
                assert [a["digest"] for a in answer["applied"]] == [
                    body["events"][0]["target"]["digest"]
                ]
    stream = await get_stream(system, namespace, "app")
    assert stream is not None
    assert [item["image"] for item in tag_items(stream, "v1")] == [newer, older]
