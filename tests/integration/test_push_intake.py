"""Pushes to the real integrated registry become ImageStream tags (behaviours 12, 13; issue 3).

See docs/openshift-behaviours.md#behaviour-12 and docs/openshift-behaviours.md#behaviour-13.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.timestamps import parse_rfc3339, rfc3339_micro
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

    # Push times within the bound (docs/delivery-semantics.md#late-and-reordered-events).
    now = datetime.now(UTC)
    async with aiohttp.ClientSession() as session:
        for event_id, digest, timestamp in (
            ("e2", newer, rfc3339_micro(now - timedelta(minutes=1))),
            ("e1", older, rfc3339_micro(now - timedelta(minutes=2))),
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


def assert_newest_first(items: list[dict[str, Any]]) -> None:
    times = [parse_rfc3339(item["created"]) for item in items]
    assert all(t is not None for t in times), items
    assert times == sorted(times, reverse=True), [item["created"] for item in items]  # type: ignore[type-var]


async def test_a_push_time_in_the_future_does_not_pin_the_tag(
    system: System, tmp_path: Path
) -> None:
    """Push time is evidence bounded by receipt (issue 14, point 2).

    An event claiming a push in 2099 would otherwise be "newer" than every
    real push until then: each one would go into the history as a late event
    and the tag would stay where the one event put it.
    """
    namespace = await new_namespace(system.kube, "future")
    host = system.registry.host
    future = distribution_event(
        "from-the-future",
        host=host,
        repository=f"{namespace}/app",
        tag="v1",
        digest="sha256:" + "f" * 64,
        timestamp="2099-01-01T00:00:00Z",
    )
    async with aiohttp.ClientSession() as session:
        received = datetime.now(UTC)
        status, answer = await post_events(system, session, future)
        assert status == 200, answer
        assert [a["digest"] for a in answer["applied"]] == ["sha256:" + "f" * 64]
    stream = await get_stream(system, namespace, "app")
    assert stream is not None
    (item,) = tag_items(stream, "v1")
    recorded = parse_rfc3339(item["created"])
    assert recorded is not None and recorded - received < timedelta(seconds=5), item

    # A later real push, notified by the real registry, moves the tag.
    digest = push(system, tmp_path, f"{namespace}/app:v1")

    async def moved() -> list[dict[str, Any]]:
        stream = await get_stream(system, namespace, "app")
        items = tag_items(stream, "v1") if stream else []
        return items if any(i["image"] == digest for i in items) else []

    items = await eventually(moved, what="the real push recorded")
    assert [i["image"] for i in items] == [digest, "sha256:" + "f" * 64]
    assert_newest_first(items)


async def test_an_absurdly_old_push_time_counts_as_the_time_of_receipt(
    system: System, tmp_path: Path
) -> None:
    """A time older than any sender redelivers (a zero or reset clock) is not believed."""
    namespace = await new_namespace(system.kube, "epoch")
    digest = push(system, tmp_path, f"{namespace}/app:v1")

    async def recorded() -> list[dict[str, Any]]:
        stream = await get_stream(system, namespace, "app")
        return tag_items(stream, "v1") if stream else []

    await eventually(recorded, what="the real push recorded")
    zero = "sha256:" + "0" * 64
    async with aiohttp.ClientSession() as session:
        for event_id, timestamp in (("epoch", "1970-01-01T00:00:00Z"), ("go-zero", "")):
            event = distribution_event(
                event_id,
                host=system.registry.host,
                repository=f"{namespace}/app",
                tag="v1",
                digest=zero if event_id == "epoch" else "sha256:" + "1" * 64,
                timestamp=timestamp or "0001-01-01T00:00:00Z",
            )
            status, answer = await post_events(system, session, event)
            assert status == 200, answer
    items = await recorded()
    assert [i["image"] for i in items] == ["sha256:" + "1" * 64, zero, digest]
    assert_newest_first(items)


async def test_a_status_write_from_the_trimmed_cache_keeps_the_streams_metadata(
    system: System, tmp_path: Path
) -> None:
    """The caches drop managedFields and kubectl's applied copy (imagestreams.trim_for_cache);
    a status write made from such a copy must leave both as they were on the stream."""
    namespace = await new_namespace(system.kube, "trim")
    applied = json.dumps({"kind": "ImageStream", "metadata": {"name": "app"}})
    body: dict[str, Any] = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {
            "name": "app",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": applied,
                "team": "web",
            },
        },
        "spec": {},
    }
    created = await system.kube.create(IMAGESTREAMS, namespace, body)
    creator = [entry for entry in created["metadata"]["managedFields"]]
    digest = push(system, tmp_path, f"{namespace}/app:v1")

    async def recorded() -> dict[str, Any] | None:
        stream = await get_stream(system, namespace, "app")
        items = tag_items(stream, "v1") if stream else []
        return stream if items and items[0]["image"] == digest else None

    stream = await eventually(recorded, what="the pushed digest recorded")
    assert stream["metadata"]["annotations"] == body["metadata"]["annotations"]
    entries = stream["metadata"]["managedFields"]
    assert [e for e in entries if not e.get("subresource")] == creator  # the create's, intact
    assert any(e.get("subresource") == "status" for e in entries)  # and the status write's
