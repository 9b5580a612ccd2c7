"""Every receiver type end to end: a real payload moves exactly the tag it names (issue 3).

One webhook (the webhook component alone: no controller, so nothing is
imported) runs with one receiver of each type, configured as
`--webhook-config` with secret files. Each test posts a real payload from
tests/data/payloads/ (SOURCES.md) with the headers its sender really sends,
to an ImageStream whose `DockerImage` spec tag follows the image the payload
names (the non-integrated path, webhook/targets.py), and asserts the exact
`status.tags` written. Around that push: wrong or missing credentials get
401 and write nothing; an event the webhook must ignore (a pull, a delete, a
test notification) gets 200 and writes nothing; a redelivery of the push gets
200 and writes nothing.

Quay, Docker Hub and Nexus send no digest, so the webhook asks the registry:
those payloads name a real local registry that a real image was pushed to
with skopeo, and the digest recorded must be the pushed manifest's.

Nothing here may reach a registry off this machine. The spec tags that name
the vendors' hosts (hub.harbor.com, ghcr.io, ...) are only ever matched
against payloads carrying a digest (`verify: payload`), and `seed_stream`
marks their import as already attempted, so a controller running in the same
session (the `system` fixture of other modules) does not import them either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from imagestream.timestamps import parse_rfc3339
from localdev.controlplane import ControlPlane
from localdev.images import make_oci_image, skopeo_push
from localdev.registry import Registry
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.conftest import eventually, new_namespace
from webhook import app as webhook_app
from webhook.intake import PUSH_TIME_MAX_AGE

PAYLOADS = Path(__file__).resolve().parents[1] / "data" / "payloads"
STREAM = "app"
# A well-formed stand-in for the redacted or shortened digests of vendor samples.
SUBSTITUTE_DIGEST = "sha256:" + "ab" * 32
# The host clients pull the JFrog repositories from (the sample's `jpd_origin`).
JFROG_REGISTRY = "example.jfrog.io"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
SETTLE_BUDGET_S = 15.0

JSON = {"Content-Type": "application/json"}

# receiver name (= type) -> (auth type, secret). The harbor secret is the whole
# Authorization value Harbor's policy sends; basic auth files hold user:password.
AUTH: dict[str, tuple[str, str]] = {
    "distribution": ("bearer", "distribution-token-0123456789"),
    "cloudevents": ("bearer", "cloudevents-token-0123456789"),
    "harbor": ("harbor", "Basic aGFyYm9yOmhhcmJvci1zZWNyZXQtMDEyMw=="),
    "quay": ("path-secret", "quay-path-secret-0123456789"),
    "dockerhub": ("path-secret", "dockerhub-path-secret-0123456789"),
    "acr": ("basic", "acr-user:acr-password-0123456789"),
    "gcr": ("bearer", "gcr-token-0123456789"),
    "ecr": ("bearer", "ecr-token-0123456789"),
    "github": ("hmac-sha256", "github-hmac-secret-0123456789"),
    "jfrog": ("hmac-sha256", "jfrog-hmac-secret-0123456789"),
    # Nexus signs with HMAC-SHA1 only, which no auth type reads: a bearer token.
    "nexus": ("bearer", "nexus-token-0123456789"),
}
HMAC_HEADERS = {"github": ("X-Hub-Signature-256", "sha256="), "jfrog": ("X-JFrog-Event-Auth", "")}
RECEIVER_NAMES = tuple(AUTH)


# --- configuration and credentials (also used by test_webhook_fuzz) ---------------------------


def write_config(directory: Path, *, local_registry: str) -> Path:
    """The `--webhook-config` with one receiver of each type, and its secret files."""
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    receivers: list[dict[str, Any]] = []
    for name, (auth_type, secret) in AUTH.items():
        (secrets / name).write_text(secret + "\n")
        auth: dict[str, Any] = {"type": auth_type, "secretFiles": [f"secrets/{name}"]}
        if name == "jfrog":
            auth |= {"header": "X-JFrog-Event-Auth", "prefix": ""}
        receiver: dict[str, Any] = {"name": name, "type": name, "auth": auth}
        if name in ("dockerhub", "nexus"):
            receiver["registry"] = local_registry
        if name == "jfrog":
            receiver["registry"] = JFROG_REGISTRY
        receivers.append(receiver)
    path = directory / "receivers.yaml"
    path.write_text(yaml.safe_dump({"receivers": receivers}, sort_keys=False))
    return path


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def credentials(receiver: str, body: bytes) -> tuple[dict[str, str], str | None]:
    """The headers (and path secret) a correctly configured sender adds to `body`."""
    auth_type, secret = AUTH[receiver]
    if auth_type == "bearer":
        return {"Authorization": f"Bearer {secret}"}, None
    if auth_type == "harbor":
        return {"Authorization": secret}, None
    if auth_type == "basic":
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}, None
    if auth_type == "path-secret":
        return {}, secret
    header, prefix = HMAC_HEADERS[receiver]
    return {header: prefix + signature(secret, body)}, None


def wrong_credentials(receiver: str, body: bytes) -> list[tuple[str, dict[str, str], str | None]]:
    """(what, headers, path secret) of requests that must be refused with 401."""
    auth_type, secret = AUTH[receiver]
    wrong = "x" + secret[1:]
    cases: list[tuple[str, dict[str, str], str | None]] = [("no credentials", {}, None)]
    if auth_type == "bearer":
        cases += [
            ("wrong token", {"Authorization": f"Bearer {wrong}"}, None),
            ("the token as basic", {"Authorization": f"Basic {secret}"}, None),
        ]
    elif auth_type == "harbor":
        cases += [
            ("wrong value", {"Authorization": wrong}, None),
            ("a prefix of the value", {"Authorization": secret[:-2]}, None),
        ]
    elif auth_type == "basic":
        encoded = base64.b64encode(wrong.encode()).decode()
        cases += [
            ("wrong password", {"Authorization": f"Basic {encoded}"}, None),
            ("bearer instead of basic", {"Authorization": f"Bearer {secret}"}, None),
        ]
    elif auth_type == "path-secret":
        cases += [
            ("wrong path secret", {}, wrong),
            ("the secret as a bearer token", {"Authorization": f"Bearer {secret}"}, None),
        ]
    else:
        header, prefix = HMAC_HEADERS[receiver]
        cases += [
            ("signed with another secret", {header: prefix + signature(wrong, body)}, None),
            ("signature of another body", {header: prefix + signature(secret, body + b" ")}, None),
            ("the secret itself", {header: prefix + secret}, None),
        ]
    return cases


async def post(
    session: aiohttp.ClientSession,
    webhook_url: str,
    receiver: str,
    body: bytes,
    headers: Mapping[str, str],
    path_secret: str | None = None,
) -> tuple[int, Any]:
    url = f"{webhook_url}/v1/events/{receiver}"
    if path_secret is not None:
        url += f"/{path_secret}"
    async with session.post(
        url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=30)
    ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def status_writes(webhook_url: str) -> float:
    """The webhook's own count of ImageStream status writes (`imagestream_status_writes`)."""
    async with aiohttp.ClientSession() as session, session.get(f"{webhook_url}/metrics") as reply:
        text = await reply.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("imagestream_status_writes_total")
    )


# --- ImageStreams ---------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def believable(pushed_at: str, received: str) -> bool:
    """Whether the webhook records a payload's push time as it is (webhook/intake.py)."""
    pushed, at = parse_rfc3339(pushed_at), parse_rfc3339(received)
    assert pushed is not None and at is not None
    return at - PUSH_TIME_MAX_AGE <= pushed <= at


def not_imported(generation: int) -> dict[str, Any]:
    """What a failed import at `generation` leaves: the controller then finds nothing due."""
    return {
        "type": "ImportSuccess",
        "status": "False",
        "reason": "NotImportedByTests",
        "message": "this name is not on this machine; only pushes may move the tag",
        "generation": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


async def seed_stream(
    kube: Kube,
    namespace: str,
    name: str,
    follows: Mapping[str, str],
    *,
    insecure: bool = False,
) -> dict[str, Any]:
    """An ImageStream whose `DockerImage` tags follow `follows` (tag -> image name).

    Its status is written first, so that when the tags appear (generation 2)
    their import counts as already attempted at that generation: no
    controller in this session imports names that are not on this machine.
    """
    await kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": IMAGESTREAMS.api_version,
            "kind": IMAGESTREAMS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"lookupPolicy": {"local": False}},
        },
    )
    await kube.patch(
        IMAGESTREAMS,
        namespace,
        name,
        {
            "status": {
                "tags": [{"tag": t, "items": [], "conditions": [not_imported(2)]} for t in follows]
            }
        },
        subresource="status",
    )
    import_policy = {"insecure": True} if insecure else {}
    stream = await kube.patch(
        IMAGESTREAMS,
        namespace,
        name,
        {
            "spec": {
                "tags": [
                    {
                        "name": tag,
                        "from": {"kind": "DockerImage", "name": image},
                        "importPolicy": import_policy,
                        "referencePolicy": {"type": "Source"},
                    }
                    for tag, image in follows.items()
                ]
            }
        },
    )
    assert stream["metadata"]["generation"] == 2
    return stream


def controller_running_here() -> bool:
    """Whether a controller runs in this process (the session `system` fixture's)."""
    return any(task.get_name() == "controller-workers" for task in asyncio.all_tasks())


async def settle(kube: Kube, namespace: str, names: Iterable[str]) -> None:
    """Wait until a controller running alongside has written its bookkeeping (once).

    With no controller nothing else writes these streams; with one, its only
    write is `observedGeneration` (and friends) after the spec change.
    """
    if not controller_running_here():
        return
    for name in names:

        async def processed(name: str = name) -> bool:
            stream = await kube.get(IMAGESTREAMS, namespace, name)
            status = stream.get("status") or {}
            return bool(status.get("observedGeneration") == stream["metadata"]["generation"])

        await eventually(processed, timeout_s=SETTLE_BUDGET_S, what=f"{namespace}/{name} settled")


@dataclass(frozen=True)
class Snapshot:
    resource_version: str
    tags: Any
    writes: float


async def snapshot(kube: Kube, webhook_url: str, namespace: str) -> Snapshot:
    stream = await kube.get(IMAGESTREAMS, namespace, STREAM)
    return Snapshot(
        resource_version=stream["metadata"]["resourceVersion"],
        tags=(stream.get("status") or {}).get("tags"),
        writes=await status_writes(webhook_url),
    )


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Case:
    receiver: str
    push: Delivery
    follows: str
    """`from.name` of the spec tag the push moves."""
    digest: str
    created: str | None
    """The push time the payload names; None when it names none. It is what `created`
    must be if it lies within PUSH_TIME_MAX_AGE of receipt; otherwise (no time, or every
    sample's years-old one) `created` is the time the webhook received the push."""
    ignored: Delivery
    ignored_reason: str
    ignored_follows: str | None = None
    """Another image the ignored event names; a second tag follows it, to be left alone."""
    insecure: bool = False

    def follows_map(self) -> dict[str, str]:
        follows = {"pushed": self.follows}
        if self.ignored_follows is not None:
            follows["ignored"] = self.ignored_follows
        return follows

    @property
    def reference(self) -> str:
        return f"{self.follows.rsplit(':', 1)[0]}@{self.digest}"


def payload(name: str, *replacements: tuple[str, str]) -> bytes:
    """A sample as bytes, with each (old, new) replaced; every `old` must occur."""
    body = (PAYLOADS / name).read_bytes()
    for old, new in replacements:
        assert old.encode() in body, f"{old!r} not in {name}"
        body = body.replace(old.encode(), new.encode())
    return body


def cases(local_registry: str, pushed: Mapping[str, str]) -> dict[str, Case]:
    """One case per receiver type; `pushed` maps quay/dockerhub/nexus to the pushed digest."""
    distribution_v1 = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    github = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": "package",
        "X-GitHub-Hook-ID": "292430182",
    }
    nexus = {
        "Content-Type": "application/json; charset=UTF-8",
        "X-Nexus-Webhook-Id": "rm:repository:component",
    }
    jfrog_push = payload("jfrog-docker-pushed-keel.json")
    # JFrog's docker domain also fires `deleted` ("Docker Tag was Deleted"); the
    # collection has no sample of it, so this is the pushed sample with that type.
    jfrog_deleted = jfrog_push.replace(b'"event_type": "pushed"', b'"event_type": "deleted"')
    jfrog_deleted = jfrog_deleted.replace(b'"event_type":"pushed"', b'"event_type":"deleted"')
    assert jfrog_deleted.count(b"deleted") == 2
    # Quay names its own host in docker_url/homepage; here Quay is the local registry.
    quay_host = [
        ("https://quay.io/", f"http://{local_registry}/"),
        ("quay.io/", f"{local_registry}/"),
    ]
    return {
        "distribution": Case(
            receiver="distribution",
            push=Delivery(
                payload("distribution-push-manifest-tag-captured-maiev-2017.json"),
                distribution_v1,
            ),
            follows="localdocker:5000/nginx:test",
            digest="sha256:11756e3866c185aa3cc5fa77b912456da847d276e3d55c50eabc6421612a2a1f",
            created="2017-05-02T15:20:42.909063Z",
            ignored=Delivery(payload("distribution-pull-manifest-tag-docs.json"), distribution_v1),
            ignored_reason="pull",
            ignored_follows="192.168.100.227:5000/hello-world:latest",
        ),
        "cloudevents": Case(
            receiver="cloudevents",
            # ACR through Event Grid in the CloudEvents schema, delivered as the
            # array the docs show; the push time is the ACR event's own timestamp.
            push=Delivery(
                payload("acr-eventgrid-imagepushed-cloudevents-docs.json"),
                {
                    "Content-Type": "application/cloudevents-batch+json; charset=utf-8",
                    "aeg-event-type": "Notification",
                    "aeg-delivery-count": "0",
                },
            ),
            follows="demo.azurecr.io/aci-helloworld:v1",
            digest="sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5",
            created="2018-04-25T21:39:47.276585Z",
            ignored=Delivery(
                payload("harbor-delete-cloudevents-docs.json"),
                {"Content-Type": "application/cloudevents+json"},
            ),
            ignored_reason="delete",
            ignored_follows="localhost/harbor/alpine:3.8",
        ),
        "harbor": Case(
            receiver="harbor",
            push=Delivery(payload("harbor-push-default-v2-flux-recv.json"), JSON),
            follows="hub.harbor.com/test-webhook/debian:latest",
            digest="sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
            created="2020-04-15T03:45:08.000000Z",  # occur_at 1586922308
            ignored=Delivery(payload("harbor-delete-default-docs.json"), JSON),
            ignored_reason="delete",
            ignored_follows="localhost/harbor/alpine:3.8",
        ),
        "quay": Case(
            receiver="quay",
            push=Delivery(payload("quay-repo-push-docs.json", *quay_host), JSON),
            follows=f"{local_registry}/dgangaia/test:latest",
            digest=pushed["quay"],
            created=None,
            ignored=Delivery(
                payload("quay-repo-push-test-notification-constructed.json", *quay_host), JSON
            ),
            ignored_reason="test_notification",
            ignored_follows=f"{local_registry}/mynamespace/myrepo:latest",
            insecure=True,
        ),
        "dockerhub": Case(
            receiver="dockerhub",
            push=Delivery(payload("dockerhub-push-docs.json"), JSON),
            follows=f"{local_registry}/svendowideit/testhook:latest",
            digest=pushed["dockerhub"],
            created="2014-12-03T00:22:41.000000Z",  # pushed_at 1417566161
            # Docker Hub sends pushes only: what it can send that must be
            # ignored is the same delivery again.
            ignored=Delivery(payload("dockerhub-push-docs.json"), JSON),
            ignored_reason="duplicate_event",
            insecure=True,
        ),
        "acr": Case(
            receiver="acr",
            # The docs redact the digest (sha256:xxxx...): a valid one stands in.
            push=Delivery(
                payload(
                    "acr-webhook-push-docs.json",
                    (
                        "sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx",
                        SUBSTITUTE_DIGEST,
                    ),
                ),
                JSON,
            ),
            follows="myregistry.azurecr.io/hello-world:v1",
            digest=SUBSTITUTE_DIGEST,
            created="2023-11-17T16:52:01.343145Z",
            ignored=Delivery(payload("acr-webhook-delete-docs.json"), JSON),
            ignored_reason="delete",
        ),
        "gcr": Case(
            receiver="gcr",
            push=Delivery(payload("gar-pubsub-push-envelope-constructed.json"), JSON),
            follows="us-west1-docker.pkg.dev/my-project/my-repo/hello-world:1.1",
            digest="sha256:" + "a" * 64,
            created="2026-01-15T10:00:02.000000Z",
            # The same tag deleted, delivered unwrapped (no envelope).
            ignored=Delivery(payload("gar-pubsub-message-delete-tag-docs.json"), JSON),
            ignored_reason="delete",
        ),
        "ecr": Case(
            receiver="ecr",
            # The docs' digest has 60 hex digits, not 64: a valid one stands in.
            push=Delivery(
                payload(
                    "ecr-eventbridge-image-push-docs.json",
                    (
                        "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
                        SUBSTITUTE_DIGEST,
                    ),
                ),
                JSON,
            ),
            follows="123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name:latest",
            digest=SUBSTITUTE_DIGEST,
            created="2019-11-16T01:54:34.000000Z",
            ignored=Delivery(payload("ecr-eventbridge-image-delete-docs.json"), JSON),
            ignored_reason="delete",
        ),
        "github": Case(
            receiver="github",
            push=Delivery(
                payload("ghcr-package-create-captured-keel-2020.json"),
                github | {"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
            ),
            follows="ghcr.io/utaitebox/utaitebox-server:3.2.1",
            digest="sha256:7d3848ba2f2e7f69bebb4b576e5fad0379b64a0b1512aee6ad0ec9e7c6319fed",
            created=None,  # updated_at is 0001-01-01: GitHub's "no time"
            # octokit's example: package_type npm, so not an image.
            ignored=Delivery(
                payload("github-package-published-docker-octokit-example.json"),
                github | {"X-GitHub-Delivery": "d1b4a7a0-5b8c-11ee-8c99-0242ac120002"},
            ),
            ignored_reason="not_an_image",
        ),
        "jfrog": Case(
            receiver="jfrog",
            push=Delivery(jfrog_push, JSON),
            follows=f"{JFROG_REGISTRY}/docker-remote-cache/library/ubuntu:latest",
            digest="sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce",
            created=None,
            ignored=Delivery(jfrog_deleted, JSON),
            ignored_reason="delete",
        ),
        "nexus": Case(
            receiver="nexus",
            push=Delivery(
                payload("nexus-component-created-docker-flux-recv.json"),
                nexus | {"X-Nexus-Webhook-Delivery": "7f9dba67-1b2c-4f5e-9a33-5d0b0f1f6e21"},
            ),
            follows=f"{local_registry}/app1/alpine:3.4",
            digest=pushed["nexus"],
            created="2020-04-05T21:49:44.219000Z",
            # An npm asset: not an image.
            ignored=Delivery(
                payload("nexus-asset-created-docs.json"),
                nexus
                | {
                    "X-Nexus-Webhook-Id": "rm:repository:asset",
                    "X-Nexus-Webhook-Delivery": "0a5e5f6e-2f3c-4d61-9b6c-3c3f0c5e2a10",
                },
            ),
            ignored_reason="not_an_image",
            insecure=True,
        ),
    }


# --- the running webhook ---------------------------------------------------------------------


@dataclass
class Env:
    kube: Kube
    running: RunningSystem
    registry: Registry
    cases: dict[str, Case]
    namespaces: dict[str, str] = field(default_factory=dict)

    @property
    def webhook_url(self) -> str:
        return self.running.webhook_url


# Images pushed to the local registry for the senders that send no digest.
LOCAL_PUSHES = {
    "quay": "dgangaia/test:latest",
    "dockerhub": "svendowideit/testhook:latest",
    "nexus": "app1/alpine:3.4",
}


@pytest.fixture(scope="module")
async def env(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Env]:
    workdir = tmp_path_factory.mktemp("receivers")
    registry = Registry(workdir=workdir / "registry").start()
    namespaces: dict[str, str] = {}
    try:

        def push(receiver: str) -> str:
            image = make_oci_image(workdir / "images" / receiver, f"pushed through {receiver}")
            skopeo_push(image, f"{registry.host}/{LOCAL_PUSHES[receiver]}")
            return image.manifest_digest

        digests = await asyncio.gather(*(asyncio.to_thread(push, r) for r in LOCAL_PUSHES))
        all_cases = cases(registry.host, dict(zip(LOCAL_PUSHES, digests, strict=True)))

        async def prepare(case: Case) -> None:
            namespace = await new_namespace(kube, f"rcv-{case.receiver}")
            namespaces[case.receiver] = namespace
            await seed_stream(kube, namespace, STREAM, case.follows_map(), insecure=case.insecure)

        await asyncio.gather(*(prepare(case) for case in all_cases.values()))
        for namespace in namespaces.values():
            await settle(kube, namespace, [STREAM])
        settings = local_settings(
            kubeconfig=controlplane.kubeconfig_path,
            webhook_config=write_config(workdir, local_registry=registry.host),
            watch_namespaces=tuple(namespaces.values()),
        )
        async with run_system(settings, [webhook_app.start]) as running:
            yield Env(
                kube=kube,
                running=running,
                registry=registry,
                cases=all_cases,
                namespaces=namespaces,
            )
    finally:
        registry.stop()
        for namespace in namespaces.values():
            with contextlib.suppress(Exception):
                await kube.delete(NAMESPACES, None, namespace)


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("receiver", RECEIVER_NAMES)
async def test_a_real_payload_moves_exactly_the_tag_it_names(env: Env, receiver: str) -> None:
    case = env.cases[receiver]
    namespace = env.namespaces[receiver]
    seeded = await snapshot(env.kube, env.webhook_url, namespace)

    async with aiohttp.ClientSession() as session:

        async def send(
            delivery: Delivery, *, auth: tuple[dict[str, str], str | None] | None = None
        ) -> tuple[int, Any]:
            headers, secret = auth if auth is not None else credentials(receiver, delivery.body)
            return await post(
                session,
                env.webhook_url,
                receiver,
                delivery.body,
                {**delivery.headers, **headers},
                secret,
            )

        # Wrong or missing credentials: 401, and nothing is parsed or written.
        for what, headers, secret in wrong_credentials(receiver, case.push.body):
            status, answer = await send(case.push, auth=(headers, secret))
            assert status == 401, f"{what}: {status} {answer}"
            assert answer == {"error": "missing or invalid credentials"}, what
        assert await snapshot(env.kube, env.webhook_url, namespace) == seeded

        if case.ignored_reason != "duplicate_event":
            # An event the webhook acknowledges and ignores: 200, nothing written.
            status, answer = await send(case.ignored)
            assert status == 200, answer
            assert answer["applied"] == []
            assert [i["reason"] for i in answer["ignored"]] == [case.ignored_reason]
            assert await snapshot(env.kube, env.webhook_url, namespace) == seeded

        # The push itself.
        before = now_rfc3339()
        status, answer = await send(case.push)
        after = now_rfc3339()
        assert status == 200, answer
        assert [
            (a["imagestream"], a["tag"], a["digest"], a["duplicate"]) for a in answer["applied"]
        ] == [(f"{namespace}/{STREAM}", "pushed", case.digest, False)]
        assert answer["ignored"] == []

        stream = await env.kube.get(IMAGESTREAMS, namespace, STREAM)
        assert stream["metadata"]["generation"] == 2
        tags = {entry["tag"]: entry for entry in stream["status"]["tags"]}
        (item,) = tags["pushed"]["items"]
        created = item["created"]
        if case.created is not None and believable(case.created, before):
            assert created == case.created
        else:
            assert before <= created <= after, (before, created, after)
        assert tags["pushed"] == {
            "tag": "pushed",
            "items": [
                {
                    "created": created,
                    "dockerImageReference": case.reference,
                    "image": case.digest,
                    "generation": 2,
                }
            ],
            "conditions": [],
        }
        expected_tags = ["pushed"]
        if case.ignored_follows is not None:
            # The tag following the ignored event's image is as it was seeded.
            assert tags["ignored"] == {
                "tag": "ignored",
                "items": [],
                "conditions": [not_imported(2)],
            }
            expected_tags = ["ignored", "pushed"]
        assert [entry["tag"] for entry in stream["status"]["tags"]] == expected_tags
        assert await status_writes(env.webhook_url) == seeded.writes + 1

        # The sender delivers the same push again: 200, nothing written.
        pushed = await snapshot(env.kube, env.webhook_url, namespace)
        status, answer = await send(case.push)
        assert status == 200, answer
        assert answer["applied"] == []
        assert [i["reason"] for i in answer["ignored"]] == ["duplicate_event"]
        assert await snapshot(env.kube, env.webhook_url, namespace) == pushed
