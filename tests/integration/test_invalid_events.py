"""One event the API server refuses never blocks or fails the others (issue 14, point 4).

A ValidatingAdmissionPolicy on the real control plane refuses any
ImageStream status that holds a tag named `refused`, in one namespace: an
event the parsers and the recorder's own checks accept, and that the server
still refuses (422, `imagestream.kube.errors.Invalid`). That is the
sender's error, not an outage. Before, it got 503 on every redelivery
(which wedges a distribution registry's queue, since distribution retries
one event at a time, forever), and because concurrent events to one stream
share one status write, its batch-mates got 503 too.

The webhook runs alone (no controller) with its own real distribution
registry as the integrated one, so a wedged queue cannot reach other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from imagestream.kube.client import Kube
from imagestream.kube.errors import Invalid
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from localdev.controlplane import ControlPlane
from localdev.images import make_oci_image, skopeo_push
from localdev.registry import NotificationEndpoint, Registry
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.admission import refuse_in_namespace, remove_policy
from tests.integration.conftest import eventually, new_namespace
from webhook import app as webhook_app

STREAM = "app"
REFUSED_TAG = "refused"
REFUSAL = "tag 'refused' is not allowed in this namespace"
VALID_PUSHES = 20
POLICY_BUDGET_S = 30.0


@dataclass
class Env:
    kube: Kube
    registry: Registry
    running: RunningSystem
    namespace: str
    token: str
    workdir: Path

    @property
    def webhook_url(self) -> str:
        return self.running.webhook_url


async def refuse_tag_in(kube: Kube, namespace: str) -> None:
    """A ValidatingAdmissionPolicy refusing ImageStream statuses with tag `refused`."""
    await refuse_in_namespace(
        kube,
        name=f"no-refused-tag-{namespace}",
        namespace=namespace,
        rule={
            "apiGroups": ["image.openshift.io"],
            "apiVersions": ["v1"],
            "resources": ["imagestreams/status"],
        },
        expression="!has(object.status) || !has(object.status.tags) ||"
        f" object.status.tags.all(t, t.tag != '{REFUSED_TAG}')",
        message=REFUSAL,
    )

    async def enforced() -> bool:
        probe = {"status": {"tags": [{"tag": REFUSED_TAG, "items": []}]}}
        try:
            await kube.request(
                "PATCH",
                IMAGESTREAMS.path(namespace=namespace, name=STREAM, subresource="status"),
                params={"dryRun": "All"},
                body=probe,
                content_type="application/merge-patch+json",
            )
        except Invalid:
            return True
        return False

    await eventually(enforced, timeout_s=POLICY_BUDGET_S, interval_s=0.2, what="policy enforced")


async def remove_tag_policy(kube: Kube, namespace: str) -> None:
    await remove_policy(kube, f"no-refused-tag-{namespace}")


@pytest.fixture(scope="module")
async def env(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Env]:
    workdir = tmp_path_factory.mktemp("invalid-events")
    token = "invalid-events-token-" + workdir.name
    token_file = workdir / "token"
    token_file.write_text(token)
    namespace = await new_namespace(kube, "invalid")
    await kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": IMAGESTREAMS.api_version,
            "kind": IMAGESTREAMS.kind,
            "metadata": {"name": STREAM},
            "spec": {},
        },
    )
    await refuse_tag_in(kube, namespace)
    # distribution (lenient: it acknowledges what it cannot use) and a strict
    # receiver, both speaking for the integrated registry.
    config = workdir / "receivers.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "receivers": [
                    {
                        "name": name,
                        "type": name,
                        "integrated": True,
                        "auth": {"type": "bearer", "secretFiles": [str(token_file)]},
                    }
                    for name in ("distribution", "cloudevents")
                ]
            }
        )
    )
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_config=config,
        watch_namespaces=(namespace,),
    )
    registry = Registry(
        workdir=workdir / "registry",
        notify=NotificationEndpoint(
            url=f"http://{settings.webhook_addr}/v1/events/distribution", token=token
        ),
    ).start()
    settings = dataclasses.replace(settings, integrated_registry=registry.host)
    try:
        async with run_system(settings, [webhook_app.start]) as running:
            yield Env(
                kube=kube,
                registry=registry,
                running=running,
                namespace=namespace,
                token=token,
                workdir=workdir,
            )
    finally:
        registry.stop()
        await remove_tag_policy(kube, namespace)
        with contextlib.suppress(Exception):
            await kube.delete(NAMESPACES, None, namespace)


def event(env: Env, event_id: str, tag: str, digest: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "repository": f"{env.namespace}/{STREAM}",
            "tag": tag,
        },
        "request": {"host": env.registry.host},
    }


async def post(
    env: Env, session: aiohttp.ClientSession, *events: dict[str, Any]
) -> tuple[int, Any]:
    async with session.post(
        f"{env.webhook_url}/v1/events/distribution",
        data=json.dumps({"events": list(events)}),
        headers={
            "Authorization": f"Bearer {env.token}",
            "Content-Type": "application/vnd.docker.distribution.events.v2+json",
        },
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        return response.status, await response.json()


async def metric(env: Env, name: str, **labels: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{env.webhook_url}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


async def recorded_tags(env: Env) -> dict[str, list[str]]:
    stream = await env.kube.get(IMAGESTREAMS, env.namespace, STREAM)
    return {
        entry["tag"]: [item["image"] for item in entry.get("items") or []]
        for entry in (stream.get("status") or {}).get("tags") or []
    }


def digest_of(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "a")


async def test_one_refused_event_among_twenty_concurrent_pushes_fails_none_of_them(
    env: Env,
) -> None:
    refused_before = await metric(env, "imagestream_webhook_events_total", outcome="invalid_event")
    valid = [event(env, f"valid-{n}", f"t{n}", digest_of(n)) for n in range(VALID_PUSHES)]
    bad = event(env, "refused-1", REFUSED_TAG, digest_of(999))
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(post(env, session, e) for e in valid[:10]),
            post(env, session, bad),
            *(post(env, session, e) for e in valid[10:]),
        )
        for (status, answer), sent in zip([*answers[:10], *answers[11:]], valid, strict=True):
            assert status == 200, (sent["id"], status, answer)
            assert [(a["tag"], a["digest"]) for a in answer["applied"]] == [
                (sent["target"]["tag"], sent["target"]["digest"])
            ], answer
        status, answer = answers[10]
        assert status == 200, answer  # distribution: acknowledged, or its queue is wedged
        assert answer["applied"] == []
        assert [(i["reason"], i["eventId"]) for i in answer["ignored"]] == [
            ("invalid_event", "refused-1")
        ]
        assert REFUSAL in answer["ignored"][0]["detail"]

        tags = await recorded_tags(env)
        assert REFUSED_TAG not in tags
        assert {f"t{n}": [digest_of(n)] for n in range(VALID_PUSHES)}.items() <= tags.items()

        # Redelivered, it is refused again and acknowledged again: never a 503.
        for _ in range(2):
            status, answer = await post(env, session, bad)
            assert status == 200, answer
            assert [i["reason"] for i in answer["ignored"]] == ["invalid_event"]
    assert (
        await metric(env, "imagestream_webhook_events_total", outcome="invalid_event")
        == refused_before + 3
    )


async def test_a_refused_push_does_not_wedge_the_registrys_queue(env: Env) -> None:
    """distribution sends one event at a time and retries it forever: a 503 stops every push."""

    def push(tag: str, content: str) -> str:
        image = make_oci_image(env.workdir / "images" / f"{tag}-{content}", content)
        skopeo_push(image, f"{env.registry.host}/{env.namespace}/{STREAM}:{tag}")
        return image.manifest_digest

    await asyncio.to_thread(push, REFUSED_TAG, "refused by policy")
    after = await asyncio.to_thread(push, "after", "pushed after the refused one")

    async def landed() -> bool:
        return (await recorded_tags(env)).get("after") == [after]

    await eventually(landed, timeout_s=30, what="the push after the refused one recorded")
    assert REFUSED_TAG not in await recorded_tags(env)


async def test_a_strict_receiver_refuses_the_invalid_event_and_applies_the_rest(
    env: Env,
) -> None:
    """Not distribution: 422 (the sender's error, in its delivery log), never 503."""

    def cloudevent(event_id: str, tag: str, digest: str) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "/ci/invalid-events",
            "type": "io.imagestream.push.v1",
            "data": {
                "registry": env.registry.host,
                "repository": f"{env.namespace}/{STREAM}",
                "tag": tag,
                "digest": digest,
            },
        }

    batch = [
        cloudevent("ce-good", "ce-good", digest_of(7)),
        cloudevent("ce-bad", REFUSED_TAG, digest_of(8)),
    ]
    async with aiohttp.ClientSession() as session:
        answers = []
        for _ in range(2):  # and again, as a sender retrying it would
            async with session.post(
                f"{env.webhook_url}/v1/events/cloudevents",
                data=json.dumps(batch),
                headers={
                    "Authorization": f"Bearer {env.token}",
                    "Content-Type": "application/cloudevents-batch+json",
                },
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                answers.append((response.status, await response.json()))
    (first_status, first), (again_status, again) = answers
    assert first_status == 422, first
    assert [(a["tag"], a["digest"]) for a in first["applied"]] == [("ce-good", digest_of(7))]
    assert [(i["reason"], i["eventId"]) for i in first["ignored"]] == [
        ("invalid_event", "/ci/invalid-events#ce-bad")
    ]
    assert REFUSAL in first["ignored"][0]["detail"]
    # The retry: the good event is known, the bad one refused again.
    assert again_status == 422, again
    assert sorted(i["reason"] for i in again["ignored"]) == ["duplicate_event", "invalid_event"]
    tags = await recorded_tags(env)
    assert tags["ce-good"] == [digest_of(7)]
    assert REFUSED_TAG not in tags
