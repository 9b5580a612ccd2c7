"""Whatever our parsers accept as a name or digest, the API server and a registry take (issue 14).

Names and digests enter through two doors: the webhook's payload parsers
(webhook/parsers/common.py, here through the real distribution parser) and
the reference parser (imagestream/references.py, for spec tags). Both must
follow distribution's reference grammar and the OCI digest grammar exactly:
ASCII only, the registered algorithms with lower-case hex of their length,
ports in range. Hypothesis generates hosts, repositories, tags and digests at
the grammar's edges: letters and digits that Python's Unicode `\\w` takes and
Go's does not, upper-case hex, unregistered algorithms, wrong lengths, ports
out of range or spelt with leading zeros. For every one a parser accepts:

* the real API server takes it in an ImageStream: as a spec tag's name and
  `from.name` (a dry-run create), and as a status tag with its history item
  (a dry-run status patch), so no push can end in a 422;
* the real distribution registry's router takes it: `GET /v2/<name>/manifests/<tag>`
  and `GET /v2/<name>/blobs/<digest>` answer MANIFEST_UNKNOWN and BLOB_UNKNOWN,
  not a route miss ("404 page not found"), DIGEST_INVALID or a 500;
* a client can address the host: `urlsplit` reads its port, in range.

Nothing is stored: the API writes are dry runs, the registry is asked for
what it does not have, on loopback.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from imagestream.kube.client import Kube
from imagestream.kube.errors import Invalid
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from imagestream.references import parse_image_reference
from imagestream.timestamps import rfc3339_micro
from localdev.registry import Registry
from tests.integration.conftest import new_namespace
from webhook.events import BadPayload
from webhook.parsers import parse_notification

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STREAM = "grammar"
# What a registry answers for a well-formed name, tag or digest it does not hold.
UNKNOWN = {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}

# Letters and digits Python's `\w` (and str.isdigit) accept and Go's `\w` does not.
UNICODE = ["é", "ß", "٣", "K", "ｱ", "ǅ", "İ"]
TAG_CHARS = [*"aZ09_.-", *UNICODE]
PATH_CHARS = [*"ab0z_.-", "A", "é"]
HEX_LOWER = "0123456789abcdef"
DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
HEX_ANY = HEX_LOWER + "ABCDEF" + "٣"

# Each part is well-formed about half of the time, and at an edge otherwise, so that
# about one name in ten passes whole and the properties below check something.
tags = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    st.text(alphabet=TAG_CHARS, min_size=1, max_size=10),
    st.sampled_from(["a" * 128, "a" * 129, "-a", ".a"]),
)
components = st.one_of(
    st.from_regex(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*", fullmatch=True).filter(
        lambda c: len(c) <= 20
    ),
    st.text(alphabet=PATH_CHARS, min_size=1, max_size=6),
)
repositories = st.lists(components, min_size=1, max_size=3).map("/".join)
lower_hex = st.sampled_from(sorted(DIGEST_LENGTHS.items())).flatmap(
    lambda item: st.text(alphabet=HEX_LOWER, min_size=item[1], max_size=item[1]).map(
        lambda encoded: f"{item[0]}:{encoded}"
    )
)
digests = st.one_of(
    lower_hex,
    st.builds(
        lambda algorithm, encoded: f"{algorithm}:{encoded}",
        st.sampled_from(["sha256", "sha512", "sha384", "SHA256", "blake3", "sha256+b64", "md5"]),
        st.sampled_from([32, 40, 63, 64, 65, 96, 128]).flatmap(
            lambda size: st.text(alphabet=HEX_ANY, min_size=size, max_size=size)
        ),
    ),
)
domains = st.sampled_from(
    ["registry.example.com", "localhost", "127.0.0.1", "[::1]", "Reg-1.example", "é.example"]
)
ports = st.one_of(
    st.none(),
    st.integers(min_value=1, max_value=65535).map(str),
    st.integers(min_value=0, max_value=99999).map(str),
    st.sampled_from(["05000", "0", "65535", "65536", "٣٣"]),
)
hosts = st.builds(
    lambda domain, port: domain if port is None else f"{domain}:{port}", domains, ports
)


@dataclass(frozen=True)
class Name:
    """One accepted name: where it is hosted, and what it names."""

    host: str
    repository: str
    tag: str
    digest: str


@dataclass
class GrammarEnv:
    kube: Kube
    registry: Registry
    namespace: str
    http: aiohttp.ClientSession


@pytest.fixture(scope="module")
async def grammar_env(
    kube: Kube, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GrammarEnv]:
    registry = Registry(workdir=tmp_path_factory.mktemp("grammar") / "registry").start()
    namespace = await new_namespace(kube, "grammar")
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
    try:
        async with aiohttp.ClientSession() as http:
            yield GrammarEnv(kube=kube, registry=registry, namespace=namespace, http=http)
    finally:
        registry.stop()
        with contextlib.suppress(Exception):
            await kube.delete(NAMESPACES, None, namespace)


async def api_server_refusal(env: GrammarEnv, name: Name) -> str | None:
    """Why the API server would refuse `name` in an ImageStream, or None (dry runs)."""
    spec_tag = {
        "name": name.tag,
        "from": {"kind": "DockerImage", "name": f"{name.host}/{name.repository}:{name.tag}"},
    }
    status_tag = {
        "tag": name.tag,
        "items": [
            {
                "created": rfc3339_micro(datetime.now(UTC)),
                "dockerImageReference": f"{name.host}/{name.repository}@{name.digest}",
                "image": name.digest,
                "generation": 1,
            }
        ],
    }
    try:
        await env.kube.request(
            "POST",
            IMAGESTREAMS.path(namespace=env.namespace),
            params={"dryRun": "All"},
            body={
                "apiVersion": IMAGESTREAMS.api_version,
                "kind": IMAGESTREAMS.kind,
                "metadata": {"name": "dry-run"},
                "spec": {"tags": [spec_tag]},
            },
        )
        await env.kube.request(
            "PATCH",
            IMAGESTREAMS.path(namespace=env.namespace, name=STREAM, subresource="status"),
            params={"dryRun": "All"},
            body={"status": {"tags": [status_tag]}},
            content_type="application/merge-patch+json",
        )
    except Invalid as error:
        return str(error)
    return None


async def registry_refusal(env: GrammarEnv, name: Name) -> str | None:
    """Why distribution's router would refuse the repository, tag or digest, or None."""
    base = f"http://{env.registry.host}/v2/{urllib.parse.quote(name.repository)}"
    for path in (
        f"/manifests/{urllib.parse.quote(name.tag)}",
        f"/blobs/{urllib.parse.quote(name.digest)}",
    ):
        async with env.http.get(base + path) as response:
            text = await response.text()
        try:
            codes = {error["code"] for error in json.loads(text)["errors"]}
        except (ValueError, KeyError, TypeError):
            codes = set()
        if response.status != 404 or not codes <= UNKNOWN or not codes:
            return f"{path}: {response.status} {text[:200]}"
    return None


def host_refusal(host: str) -> str | None:
    """Why a client could not address `host`, or None."""
    try:
        port = urllib.parse.urlsplit(f"https://{host}/").port
    except ValueError as error:
        return str(error)
    if port == 0:
        return "port 0"
    if not host.isascii():
        return "not ASCII"
    return None


async def assert_taken_everywhere(env: GrammarEnv, name: Name) -> None:
    note(f"accepted: {name}")
    assert await api_server_refusal(env, name) is None, name
    assert await registry_refusal(env, name) is None, name
    assert host_refusal(name.host) is None, name


def distribution_event(host: str, repository: str, tag: str, digest: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "id": "grammar",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "repository": repository,
                        "tag": tag,
                        "digest": digest,
                    },
                    "request": {"host": host},
                }
            ]
        }
    ).encode()


@PROPERTY
@given(host=hosts, repository=repositories, tag=tags, digest=digests)
@example(host="registry.example.com", repository="a/b", tag="vé1", digest="sha256:" + "a" * 64)
@example(host="registry.example.com", repository="a/b", tag="v1", digest="sha256:" + "A" * 64)
@example(host="registry.example.com", repository="a/b", tag="v1", digest="blake3:" + "a" * 64)
@example(host="registry.example.com:99999", repository="a/b", tag="v1", digest="sha256:" + "a" * 64)
async def test_what_the_payload_parser_accepts_the_api_server_and_a_registry_take(
    grammar_env: GrammarEnv, host: str, repository: str, tag: str, digest: str
) -> None:
    try:
        parsed = parse_notification(
            "distribution",
            headers={"Content-Type": "application/vnd.docker.distribution.events.v2+json"},
            body=distribution_event(host, repository, tag, digest),
            receiver="grammar",
        )
    except BadPayload:
        event("refused by the parser")
        return  # refused at the edge: nothing to check
    event("accepted by the parser")
    (record,) = parsed.records
    await assert_taken_everywhere(
        grammar_env,
        Name(host=record.registry, repository=record.repository, tag=record.tag, digest=digest),
    )


@PROPERTY
@given(host=hosts, repository=repositories, tag=tags, digest=digests)
@example(host="quay.io", repository="a/b", tag="٣", digest="sha256:" + "a" * 64)
@example(host="quay.io", repository="a/b", tag="v1", digest="sha256:" + "a" * 32 + "B" * 32)
@example(host="quay.io:0", repository="a/b", tag="v1", digest="sha256:" + "a" * 64)
async def test_what_the_reference_parser_accepts_the_api_server_and_a_registry_take(
    grammar_env: GrammarEnv, host: str, repository: str, tag: str, digest: str
) -> None:
    try:
        reference = parse_image_reference(f"{host}/{repository}:{tag}@{digest}")
    except ValueError:
        event("refused by the parser")
        return
    event("accepted by the parser")
    await assert_taken_everywhere(
        grammar_env,
        Name(
            host=reference.registry,
            repository=reference.repository,
            tag=reference.tag,
            digest=reference.digest,
        ),
    )
