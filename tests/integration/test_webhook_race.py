"""Two webhook processes and the controller racing on the same ImageStreams (issue 3).

Two `imagestream webhook` processes (the default `distribution` receiver,
`integrated`, bearer token, watching one namespace) and the session's
controller (the `system` fixture, whose integrated registry the events name)
write the same five ImageStreams at once: 200 distinct push events for five
streams x four tags, each POSTed to one of the two webhooks at random,
several at a time, in an order unrelated to their timestamps, some of them
delivered twice (to the same webhook later, or to both at once). Halfway
through, reference tags are added to the streams' specs, so the controller
writes their status too. The streams are created by the pushes themselves,
by whichever webhook gets there first.

The end state must equal a sequential model: per tag, every distinct digest
exactly once, in timestamp order, newest at the head; nothing lost, nothing
duplicated, and the controller's reference tags there as well.

The events name the session's loopback registry as the host pushed to; their
digests are in the payload (`verify: payload`), so no registry is asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from localdev.controlplane import ControlPlane, free_port
from localdev.processes import ManagedProcess
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.proctree import is_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAMS = tuple(f"app-{i}" for i in range(5))
TAGS = ("v1", "v2", "v3", "v4")
PER_TAG = 10  # 5 streams x 4 tags x 10 = 200 distinct events
REDELIVERED_LATER = 30
REDELIVERED_TO_BOTH = 20
CONCURRENCY = 8
ATTEMPTS = 30  # per delivery, on 503 (conflict budget spent, or not ready)
RETRY_DELAY_S = 0.1
READY_BUDGET_S = 60.0
SETTLE_BUDGET_S = 30.0
STOP_BUDGET_S = 10.0
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Push:
    event_id: str
    stream: str
    tag: str
    digest: str
    created: str

    def body(self, host: str, namespace: str) -> bytes:
        repository = f"{namespace}/{self.stream}"
        return json.dumps(
            {
                "events": [
                    {
                        "id": self.event_id,
                        "timestamp": self.created,
                        "action": "push",
                        "target": {
                            "mediaType": MEDIA_TYPE,
                            "size": 528,
                            "digest": self.digest,
                            "length": 528,
                            "repository": repository,
                            "url": f"http://{host}/v2/{repository}/manifests/{self.digest}",
                            "tag": self.tag,
                        },
                        "request": {
                            "id": f"request-{self.event_id}",
                            "addr": "127.0.0.1:40000",
                            "host": host,
                            "method": "PUT",
                            "useragent": "skopeo/1.18.0",
                        },
                        "actor": {},
                        "source": {"addr": host, "instanceID": "race-registry"},
                    }
                ]
            }
        ).encode()


def pushes(rng: random.Random) -> list[Push]:
    """Every distinct event, with timestamps shuffled against the stream/tag/index order."""
    # Recent push times: the webhook believes a payload's time only within a week
    # before receipt (webhook/intake.py), and ordering by it is what is tested here.
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    keys = [(s, t, k) for s in STREAMS for t in TAGS for k in range(PER_TAG)]
    offsets = list(range(len(keys)))
    rng.shuffle(offsets)
    return [
        Push(
            event_id=f"race-{stream}-{tag}-{k}",
            stream=stream,
            tag=tag,
            digest="sha256:" + hashlib.sha256(f"{stream}/{tag}/{k}".encode()).hexdigest(),
            created=(base + timedelta(seconds=offset, microseconds=offset)).strftime(TIME_FORMAT),
        )
        for (stream, tag, k), offset in zip(keys, offsets, strict=True)
    ]


@dataclass
class WebhookProcess:
    process: ManagedProcess
    url: str
    health_url: str


async def ready(webhook: WebhookProcess, session: aiohttp.ClientSession) -> bool:
    webhook.process.check_running()  # fail at once, with its log, if it died
    try:
        async with session.get(
            f"{webhook.health_url}/readyz", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@pytest.fixture
async def webhooks(
    controlplane: ControlPlane, kube: Kube, crds: list[str], system: System, tmp_path: Path
) -> AsyncIterator[tuple[str, str, list[WebhookProcess]]]:
    """(namespace, token, two webhook processes watching it); stopped by PID, then gone.

    Their integrated registry is the session system's, the host the events name.
    """
    system_registry_host = system.registry.host
    namespace = await new_namespace(kube, "race")
    token = "race-token-" + tmp_path.name
    token_file = tmp_path / "token"
    token_file.write_text(token)
    started: list[WebhookProcess] = []
    try:
        for index in range(2):
            addr, health, metrics = (f"127.0.0.1:{free_port()}" for _ in range(3))
            process = ManagedProcess(
                name=f"webhook-{index}",
                argv=[
                    sys.executable,
                    "-m",
                    "imagestream.cli",
                    "webhook",
                    "--kubeconfig",
                    str(controlplane.kubeconfig_path),
                    "--webhook-addr",
                    addr,
                    "--health-addr",
                    health,
                    "--metrics-addr",
                    metrics,
                    "--webhook-token-file",
                    str(token_file),
                    "--integrated-registry",
                    system_registry_host,
                    "--watch-namespaces",
                    namespace,
                    "--log-format",
                    "json",
                ],
                log_path=tmp_path / f"webhook-{index}.log",
                cwd=REPO_ROOT,
            )
            started.append(
                WebhookProcess(
                    process=process.start(), url=f"http://{addr}", health_url=f"http://{health}"
                )
            )
        async with aiohttp.ClientSession() as session:
            for webhook in started:

                async def up(webhook: WebhookProcess = webhook) -> bool:
                    return await ready(webhook, session)

                await eventually(
                    up,
                    timeout_s=READY_BUDGET_S,
                    interval_s=0.2,
                    what=f"{webhook.process.name} ready",
                )
        yield namespace, token, started
    finally:
        pids = [w.process.pid for w in started]
        for webhook in started:
            webhook.process.stop(timeout_s=STOP_BUDGET_S)
        assert not [pid for pid in pids if is_alive(pid)]
        await kube.delete(NAMESPACES, None, namespace)


async def test_two_webhooks_and_the_controller_lose_and_duplicate_nothing(
    system: System,
    kube: Kube,
    webhooks: tuple[str, str, list[WebhookProcess]],
) -> None:
    namespace, token, processes = webhooks
    # The host pushed to is the controller's integrated registry, so the
    # controller and the webhooks agree on status.dockerImageRepository.
    host = system.registry.host
    rng = random.Random(20260301)
    events = pushes(rng)
    # The sending plan: every event once, some again later, some to both at once.
    plan: list[tuple[Push, list[int]]] = [(e, [rng.randrange(2)]) for e in events]
    for event in rng.sample(events, REDELIVERED_LATER):
        plan.append((event, [rng.randrange(2)]))
    for event in rng.sample(events, REDELIVERED_TO_BOTH):
        plan.append((event, [0, 1]))
    rng.shuffle(plan)

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/vnd.docker.distribution.events.v2+json",
    }
    answers: dict[str, list[dict[str, Any]]] = {e.event_id: [] for e in events}
    sent = 0
    halfway = asyncio.Event()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def deliver(session: aiohttp.ClientSession, push: Push, target: int) -> None:
        """One delivery, retried on 503 as distribution would, within a bounded budget."""
        body = push.body(host, namespace)
        url = f"{processes[target].url}/v1/events/distribution"
        for _ in range(ATTEMPTS):
            async with (
                gate,
                session.post(
                    url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
                ) as response,
            ):
                status, answer = response.status, await response.json()
            if status != 503:
                break
            await asyncio.sleep(RETRY_DELAY_S)
        assert status == 200, (push.event_id, status, answer)
        answers[push.event_id].append(answer)

    async def deliver_all(session: aiohttp.ClientSession, item: tuple[Push, list[int]]) -> None:
        nonlocal sent
        push, targets = item
        await asyncio.gather(*(deliver(session, push, target) for target in targets))
        sent += 1
        if sent >= len(plan) // 2:
            halfway.set()

    async def add_reference_tags() -> None:
        """Halfway through, give every stream a spec tag the controller records."""
        await halfway.wait()
        for stream in STREAMS:

            async def exists(stream: str = stream) -> bool:
                try:
                    await kube.get(IMAGESTREAMS, namespace, stream)
                except NotFound:
                    return False
                return True

            await eventually(exists, timeout_s=SETTLE_BUDGET_S, what=f"{stream} created")
            await kube.patch(
                IMAGESTREAMS,
                namespace,
                stream,
                {"spec": {"tags": [reference_tag(host, namespace, stream)]}},
            )

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2 * CONCURRENCY)
    ) as session:
        await asyncio.gather(
            add_reference_tags(),
            *(deliver_all(session, item) for item in plan),
        )

    # Every delivery was acknowledged as applied, or as already recorded.
    for event in events:
        for answer in answers[event.event_id]:
            applied = [a for a in answer["applied"] if a["eventId"] == event.event_id]
            ignored = [i["reason"] for i in answer["ignored"]]
            assert applied or ignored == ["duplicate_event"], (event.event_id, answer)
            assert all(a["digest"] == event.digest for a in applied)

    async def settled() -> list[dict[str, Any]] | None:
        streams, _ = await kube.list(IMAGESTREAMS, namespace)
        done = [
            s
            for s in streams
            if (s.get("status") or {}).get("observedGeneration") == 2
            and "ref" in {t["tag"] for t in s["status"].get("tags") or []}
        ]
        return streams if len(done) == len(STREAMS) else None

    streams = await eventually(
        settled, timeout_s=SETTLE_BUDGET_S, what="the controller recorded every reference tag"
    )

    assert sorted(s["metadata"]["name"] for s in streams) == list(STREAMS)
    for stream in streams:
        name = stream["metadata"]["name"]
        status = stream["status"]
        assert status["dockerImageRepository"] == f"{host}/{namespace}/{name}"
        tags = {entry["tag"]: entry for entry in status["tags"]}
        assert sorted(tags) == sorted([*TAGS, "ref"]), name
        for tag in TAGS:
            model = sorted(
                (e for e in events if (e.stream, e.tag) == (name, tag)),
                key=lambda e: e.created,
                reverse=True,
            )
            items = tags[tag]["items"]
            assert [(i["created"], i["dockerImageReference"], i["image"]) for i in items] == [
                (e.created, f"{host}/{namespace}/{name}@{e.digest}", e.digest) for e in model
            ], f"{name}:{tag}"
            assert all(i["generation"] in (1, 2) for i in items)
            assert not tags[tag].get("conditions")
        reference = reference_tag(host, namespace, name)["from"]["name"]
        (item,) = tags["ref"]["items"]
        assert (item["dockerImageReference"], item["image"], item["generation"]) == (
            reference,
            "",
            2,
        )


def reference_tag(host: str, namespace: str, stream: str) -> dict[str, Any]:
    """A tag the controller records as it is (`reference: true`): nothing is imported."""
    return {
        "name": "ref",
        "reference": True,
        "from": {"kind": "DockerImage", "name": f"{host}/{namespace}/{stream}:ref"},
    }
