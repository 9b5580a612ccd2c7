"""Fuzzed requests over real HTTP never break the webhook and never write (issue 3).

The webhook of test_receivers (one receiver of each type, secret files) runs
alone against a namespace whose ImageStreams follow images on a loopback
host. Hypothesis sends it bodies (random bytes, random JSON, real payloads
with parts replaced or cut off), Content-Types and headers, with and without
valid credentials. Whatever it sends:

* the answer is never a 5xx other than 503, and the server keeps answering;
* authenticated garbage is 200 (distribution: a 4xx would wedge its queue),
  400 or 415; unauthenticated requests are 401;
* nothing is written: the resourceVersions of every ImageStream in the
  namespace are those of before, and the webhook counted no status write.

Requests that would write if they were authenticated, sent with wrong or
missing credentials, get 401 and cause no API call; a 2 MiB body gets 413,
with a Content-Length and chunked.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from localdev.controlplane import ControlPlane, free_port
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.conftest import new_namespace
from tests.integration.test_receivers import (
    AUTH,
    PAYLOADS,
    RECEIVER_NAMES,
    SUBSTITUTE_DIGEST,
    credentials,
    post,
    seed_stream,
    settle,
    status_writes,
    write_config,
    wrong_credentials,
)
from webhook import app as webhook_app

MAX_EXAMPLES = 60
TWO_MIB = 2 * 1024 * 1024
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    # The fixtures are per test on purpose: one HTTP session, one baseline
    # that every example is compared with.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# What the fuzz namespace's streams follow: `<loopback host>/fuzz/<stream>:<tag>`.
FOLLOWED = {"app": ("v1", "v2"), "web": ("latest",)}


@dataclass
class FuzzEnv:
    kube: Kube
    running: RunningSystem
    namespace: str
    host: str
    """The loopback registry host the followed images are named on (nothing listens)."""

    @property
    def webhook_url(self) -> str:
        return self.running.webhook_url

    async def resource_versions(self) -> dict[str, str]:
        streams, _ = await self.kube.list(IMAGESTREAMS, self.namespace)
        return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in streams}


@pytest.fixture(scope="module")
async def fuzz_env(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FuzzEnv]:
    workdir = tmp_path_factory.mktemp("fuzz")
    host = f"127.0.0.1:{free_port()}"
    namespace = await new_namespace(kube, "fuzz")
    try:
        for stream, tags in FOLLOWED.items():
            follows = {tag: f"{host}/fuzz/{stream}:{tag}" for tag in tags}
            await seed_stream(kube, namespace, stream, follows, insecure=True)
        await settle(kube, namespace, FOLLOWED)
        settings_ = local_settings(
            kubeconfig=controlplane.kubeconfig_path,
            webhook_config=write_config(workdir, local_registry=host),
            watch_namespaces=(namespace,),
        )
        async with run_system(settings_, [webhook_app.start]) as running:
            yield FuzzEnv(kube=kube, running=running, namespace=namespace, host=host)
    finally:
        await kube.delete(NAMESPACES, None, namespace)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A connection per request: the server closes one after a body it could not read.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


@dataclass(frozen=True)
class Baseline:
    env: FuzzEnv
    resource_versions: dict[str, str]
    writes: float

    async def check(self) -> None:
        """No ImageStream in the namespace was written, by anyone."""
        assert await self.env.resource_versions() == self.resource_versions
        assert await status_writes(self.env.webhook_url) == self.writes


@pytest.fixture
async def unchanged(fuzz_env: FuzzEnv) -> AsyncIterator[Baseline]:
    """Whatever the test sends, no ImageStream is written and the server stays up."""
    baseline = Baseline(
        env=fuzz_env,
        resource_versions=await fuzz_env.resource_versions(),
        writes=await status_writes(fuzz_env.webhook_url),
    )
    assert len(baseline.resource_versions) == len(FOLLOWED)
    yield baseline
    await baseline.check()
    await assert_healthy(fuzz_env)


async def assert_healthy(env: FuzzEnv) -> None:
    async with aiohttp.ClientSession() as session:
        for url in (f"{env.webhook_url}/healthz", f"{env.running.health_url}/readyz"):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                assert response.status == 200, url


# --- strategies ------------------------------------------------------------------------------

SAMPLES: list[Any] = [json.loads(p.read_bytes()) for p in sorted(PAYLOADS.glob("*.json"))]
SAMPLE_BYTES: list[bytes] = [p.read_bytes() for p in sorted(PAYLOADS.glob("*.json"))]

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "push",
            "pushed",
            "PUSH_ARTIFACT",
            "INSERT",
            "CREATED",
            "docker",
            "latest",
            "sha256:",
            SUBSTITUTE_DIGEST,
            "sha256:" + "g" * 64,
            "a" * 300,
            "../../etc",
            "UPPER/Case",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999+14:00",
            "not a time",
            "pkg:oci/x@sha256%3Azz",
            "\u0000",
            "\udcff",
        ]
    ),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _slots(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) inside a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield value, key
            yield from _slots(child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield value, index
            yield from _slots(child)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A real payload with up to three values replaced by random JSON, or removed."""
    document = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        slots = list(_slots(document))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if draw(st.booleans()):
            container[key] = draw(JSON_VALUES)
        elif isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def truncated_samples(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from(SAMPLE_BYTES))
    return body[: draw(st.integers(min_value=0, max_value=len(body)))]


BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    mutated_samples(),
    truncated_samples(),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=UTF-8",
            "Application/JSON",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/vnd.docker.distribution.events.v1+json",
            "application/vnd.docker.distribution.events.v2+json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "",
            ";",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    st.sampled_from(["1.0", "package", "ping", "gzip", "deflate", "br", "identity", "0", ""]),
)
HEADER_NAMES = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-datacontenttype",
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-Hub-Signature-256",
        "X-JFrog-Event-Auth",
        "X-Nexus-Webhook-Delivery",
        "X-Nexus-Webhook-Id",
        "x-goog-pubsub-message-id",
        "x-goog-pubsub-publish-time",
        "aeg-event-type",
        "Authorization",
        "Content-Encoding",
        "Accept",
        "X-Forwarded-For",
    ]
)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4)


# --- properties --------------------------------------------------------------------------


@FUZZ
@given(
    receiver=st.sampled_from(RECEIVER_NAMES),
    body=BODIES,
    content_type=CONTENT_TYPES,
    headers=HEADERS,
    authenticated=st.booleans(),
)
async def test_fuzzed_requests_get_a_deliberate_answer_and_write_nothing(
    fuzz_env: FuzzEnv,
    http: aiohttp.ClientSession,
    unchanged: Baseline,
    receiver: str,
    body: bytes,
    content_type: str | None,
    headers: dict[str, str],
    authenticated: bool,
) -> None:
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    path_secret = None
    if authenticated:
        auth_headers, path_secret = credentials(receiver, body)
        sent |= auth_headers
    status, answer = await post(http, fuzz_env.webhook_url, receiver, body, sent, path_secret)
    assert status < 500 or status == 503, (status, answer)
    if "Content-Encoding" in sent and status == 400:
        pass  # a body that is not what its Content-Encoding says is refused unread
    elif not authenticated:
        assert status == 401, (status, answer)
    elif receiver == "distribution":
        assert status in (200, 503), (status, answer)
    else:
        assert status in (200, 400, 415, 503), (status, answer)
    if status == 200:
        assert answer["applied"] == [], answer
    await unchanged.check()


def would_write(receiver: str, host: str) -> tuple[bytes, dict[str, str]]:
    """A payload of `receiver`'s format pushing `<host>/fuzz/app:v1`, which a stream follows."""
    name, tag = "fuzz/app", "v1"
    json_type = {"Content-Type": "application/json"}
    if receiver == "distribution":
        doc = json.loads(
            (PAYLOADS / "distribution-push-manifest-tag-captured-maiev-2017.json").read_bytes()
        )
        event = doc["events"][0]
        event["id"] = "would-write-distribution"
        event["request"]["host"] = host
        event["target"] |= {"repository": name, "tag": tag}
        return json.dumps(doc).encode(), {
            "Content-Type": "application/vnd.docker.distribution.events.v2+json"
        }
    if receiver == "cloudevents":
        event = {
            "specversion": "1.0",
            "type": "io.imagestream.push.v1",
            "source": "/ci/fuzz",
            "id": "would-write-1",
            "time": "2026-01-15T10:00:02Z",
            "data": {"registry": host, "repository": name, "tag": tag, "digest": SUBSTITUTE_DIGEST},
        }
        return json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}
    if receiver == "harbor":
        doc = json.loads((PAYLOADS / "harbor-push-default-v2-flux-recv.json").read_bytes())
        doc["event_data"]["repository"]["repo_full_name"] = name
        doc["event_data"]["resources"][0] |= {"resource_url": f"{host}/{name}:{tag}", "tag": tag}
        return json.dumps(doc).encode(), json_type
    if receiver == "quay":
        doc = json.loads((PAYLOADS / "quay-repo-push-docs.json").read_bytes())
        doc |= {"repository": name, "docker_url": f"{host}/{name}", "updated_tags": [tag]}
        return json.dumps(doc).encode(), json_type
    if receiver == "dockerhub":
        doc = json.loads((PAYLOADS / "dockerhub-push-docs.json").read_bytes())
        doc["repository"]["repo_name"] = name
        doc["push_data"]["tag"] = tag
        return json.dumps(doc).encode(), json_type
    if receiver == "acr":
        doc = json.loads((PAYLOADS / "acr-webhook-push-docs.json").read_bytes())
        doc["id"] = "would-write-acr"
        doc["request"]["host"] = host
        doc["target"] |= {"repository": name, "tag": tag, "digest": SUBSTITUTE_DIGEST}
        return json.dumps(doc).encode(), json_type
    if receiver == "gcr":
        message = {
            "action": "INSERT",
            "digest": f"{host}/{name}@{SUBSTITUTE_DIGEST}",
            "tag": f"{host}/{name}:{tag}",
        }
        return json.dumps(message).encode(), json_type
    if receiver == "github":
        doc = json.loads((PAYLOADS / "ghcr-package-create-captured-keel-2020.json").read_bytes())
        version = doc["package"]["package_version"]
        version["package_url"] = f"{host}/{name}:{tag}"
        version["container_metadata"]["tag"]["name"] = tag
        return json.dumps(doc).encode(), json_type | {
            "X-GitHub-Event": "package",
            "X-GitHub-Delivery": "would-write-github",
        }
    if receiver == "nexus":
        doc = json.loads((PAYLOADS / "nexus-component-created-docker-flux-recv.json").read_bytes())
        doc["component"] |= {"name": name, "version": tag}
        return json.dumps(doc).encode(), json_type | {
            "X-Nexus-Webhook-Delivery": "would-write-nexus"
        }
    raise AssertionError(f"no payload of {receiver} can name {host}")  # ecr and jfrog


# ECR builds the host from an AWS account and region; JFrog's is the receiver's
# `registry`: neither can name the loopback host the streams follow.
WOULD_WRITE_RECEIVERS = tuple(r for r in RECEIVER_NAMES if r not in ("ecr", "jfrog"))


@FUZZ
@given(
    receiver=st.sampled_from(WOULD_WRITE_RECEIVERS),
    choice=st.integers(min_value=0, max_value=10),
    garbage=HEADERS,
)
async def test_unauthenticated_requests_get_401_and_cause_no_api_call(
    fuzz_env: FuzzEnv,
    http: aiohttp.ClientSession,
    unchanged: Baseline,
    receiver: str,
    choice: int,
    garbage: dict[str, str],
) -> None:
    body, headers = would_write(receiver, fuzz_env.host)
    variants = wrong_credentials(receiver, body)
    _, wrong, path_secret = variants[choice % len(variants)]
    # Garbage headers, then the wrong credential (which no garbage header may
    # replace). No Content-Encoding: a body that does not match one is refused
    # (400) before its credentials are looked at.
    garbage.pop("Content-Encoding", None)
    sent = garbage | headers | wrong
    status, answer = await post(http, fuzz_env.webhook_url, receiver, body, sent, path_secret)
    assert status == 401, (status, answer)
    await unchanged.check()


@pytest.mark.parametrize("receiver", WOULD_WRITE_RECEIVERS)
async def test_the_refused_requests_would_have_written(
    fuzz_env: FuzzEnv, http: aiohttp.ClientSession, receiver: str
) -> None:
    """The control for the test above: the same payloads, authenticated, do write.

    Only the parsing and matching are checked here (the answer names the
    followed tag); quay, dockerhub and nexus would resolve the tag at the
    loopback host, where nothing listens, so they record a failed import.
    """
    body, headers = would_write(receiver, fuzz_env.host)
    auth, path_secret = credentials(receiver, body)
    status, answer = await post(
        http, fuzz_env.webhook_url, receiver, body, headers | auth, path_secret
    )
    assert status == 200, answer
    assert [(a["imagestream"], a["tag"]) for a in answer["applied"]] == [
        (f"{fuzz_env.namespace}/app", "v1")
    ], answer


async def _chunks(size: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        yield b"x" * min(chunk, size - sent)
        sent += chunk


@pytest.mark.parametrize("authenticated", [True, False])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_2_mib_body_gets_413(
    fuzz_env: FuzzEnv, unchanged: Baseline, framing: str, authenticated: bool
) -> None:
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers |= credentials("distribution", b"")[0]
    body: Any = io.BytesIO(b"x" * TWO_MIB) if framing == "content-length" else _chunks(TWO_MIB)
    # One connection per request: the server may close it without reading the rest.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fuzz_env.webhook_url}/v1/events/distribution",
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        assert response.status == 413, await response.text()
        if framing == "chunked":
            assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        else:
            assert response.request_info.headers.get("Content-Length") == str(TWO_MIB)


async def test_after_all_that_the_webhook_still_answers(fuzz_env: FuzzEnv) -> None:
    await assert_healthy(fuzz_env)
    assert sorted(AUTH) == sorted(RECEIVER_NAMES)
