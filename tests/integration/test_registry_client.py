"""Resolving tags against the real distribution registry: plain HTTP, token auth, basic auth, TLS.

Every registry here is the real `docker-registry`, every image a real
skopeo push. The token server is the test's (it grants everything to one
user, so the client's token flow is tested alone), but its tokens are the
product's (imagestream/registry_tokens.py): ES256, `kid` = the libtrust
key ID of a key whose certificate is the registry's `rootcertbundle`. The
cluster-backed token service itself is tests/integration/test_registry_auth.py.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web

from imagestream.logs import configure_logging
from imagestream.registry_client import (
    RegistryCredentials,
    ResolveError,
    ResolveReason,
    TokenCache,
    resolve_digest,
)
from imagestream.registry_tokens import (
    ISSUER,
    SERVICE,
    SigningKey,
    claims,
    granted,
    load_signing_key,
    new_signing_material,
    parse_scopes,
    sign,
)
from localdev.certs import make_serving_certificate
from localdev.controlplane import free_port
from localdev.images import OCI_MANIFEST, PUSH_TIMEOUT_S, OciImage, make_oci_image
from localdev.registry import HtpasswdAuth, Registry, TokenAuth

pytestmark = pytest.mark.integration

RESOLVE_TIMEOUT_S = 10.0
USER, PASSWORD = "alice", "alice-password-" + secrets.token_hex(4)


def push(
    image: OciImage, destination: str, *, creds: str | None = None, cert_dir: Path | None = None
) -> None:
    """skopeo copy with credentials and a CA directory, which `skopeo_push` does not take."""
    argv = ["skopeo", "copy", "--quiet", "--preserve-digests"]
    argv.append(f"--dest-cert-dir={cert_dir}" if cert_dir else "--dest-tls-verify=false")
    if creds:
        argv.append(f"--dest-creds={creds}")
    argv += [f"oci:{image.layout_dir}", f"docker://{destination}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=PUSH_TIMEOUT_S)


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    # A test elsewhere may have left structlog printing to a capture stream
    # that pytest has closed since; start from a configuration of our own.
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# --- (a) plain HTTP ---------------------------------------------------------------------------


@pytest.fixture
def open_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(workdir=tmp_path / "registry").start()
    try:
        yield registry
    finally:
        registry.stop()


async def test_plain_http_resolves_the_pushed_digest(
    tmp_path: Path, open_registry: Registry, session: aiohttp.ClientSession
) -> None:
    image = make_oci_image(tmp_path / "image", "registry client, plain http")
    await asyncio.to_thread(push, image, f"{open_registry.host}/demo/app:v1")

    resolved = await resolve_digest(
        session=session,
        registry=open_registry.host,
        repository="demo/app",
        tag="v1",
        credentials=None,
        insecure=True,
        ca_bundle=None,
        timeout_s=RESOLVE_TIMEOUT_S,
    )
    assert resolved.digest == image.manifest_digest
    assert resolved.media_type == OCI_MANIFEST

    for repository, tag in [("demo/app", "missing"), ("demo/nothing-here", "v1")]:
        with pytest.raises(ResolveError) as raised:
            await resolve_digest(
                session=session,
                registry=open_registry.host,
                repository=repository,
                tag=tag,
                credentials=None,
                insecure=True,
                ca_bundle=None,
                timeout_s=RESOLVE_TIMEOUT_S,
            )
        assert raised.value.reason == ResolveReason.NOT_FOUND


async def test_retagging_is_seen_at_once(
    tmp_path: Path, open_registry: Registry, session: aiohttp.ClientSession
) -> None:
    first = make_oci_image(tmp_path / "one", "registry client, first")
    second = make_oci_image(tmp_path / "two", "registry client, second")
    digests = []
    for image in (first, second):
        await asyncio.to_thread(push, image, f"{open_registry.host}/demo/moving:latest")
        resolved = await resolve_digest(
            session=session,
            registry=open_registry.host,
            repository="demo/moving",
            tag="latest",
            credentials=None,
            insecure=True,
            ca_bundle=None,
            timeout_s=RESOLVE_TIMEOUT_S,
        )
        digests.append(resolved.digest)
    assert digests == [first.manifest_digest, second.manifest_digest]


# --- (b) token auth ---------------------------------------------------------------------------


@dataclass
class TokenServer:
    """Issues registry tokens: every requested action to USER, nothing to anyone else.

    The claims, signature and scope grammar are the product's (imagestream/registry_tokens.py,
    what the webhook's token service signs); only the policy here is the test's own.
    """

    url: str
    signing: SigningKey
    """Its key, and the certificate its registry's rootcertbundle holds."""
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def issue(self, *, subject: str, access: list[dict[str, object]], lifetime_s: int) -> str:
        token = sign(
            self.signing.key,
            claims(subject=subject, access=access, now=int(time.time()), lifetime_s=lifetime_s),
        )
        self.issued.append(token)
        return token


def _requested_access(scopes: list[str]) -> list[dict[str, object]]:
    """Everything asked, granted (the product's parsing and token entries)."""
    entries = (granted(a, a.actions) for a in parse_scopes(scopes).requested)
    return [entry for entry in entries if entry is not None]


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    port = free_port()
    cert, key = new_signing_material(datetime.datetime.now(datetime.UTC))
    server = TokenServer(url=f"http://127.0.0.1:{port}/token", signing=load_signing_key(cert, key))

    async def token(request: web.Request) -> web.Response:
        server.requests.append(dict(request.query))
        subject, access = "", []
        if "Authorization" in request.headers:
            expected = aiohttp.encode_basic_auth(USER, PASSWORD)
            if request.headers["Authorization"] != expected:
                return web.json_response({"details": "bad credentials"}, status=401)
            subject, access = USER, _requested_access(request.query.getall("scope", []))
        issued = server.issue(subject=subject, access=access, lifetime_s=300)
        return web.json_response({"token": issued, "access_token": issued, "expires_in": 300})

    app = web.Application()
    app.add_routes([web.get("/token", token)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
def token_registry(tmp_path: Path, token_server: TokenServer) -> Iterator[Registry]:
    bundle = tmp_path / "token-signer.crt"
    bundle.write_bytes(token_server.signing.certificate)
    registry = Registry(
        workdir=tmp_path / "registry",
        auth=TokenAuth(
            realm=token_server.url, service=SERVICE, issuer=ISSUER, root_cert_bundle=bundle
        ),
    ).start()
    try:
        yield registry
    finally:
        registry.stop()


async def test_token_auth_fetches_caches_and_reuses_a_token(
    tmp_path: Path,
    token_registry: Registry,
    token_server: TokenServer,
    session: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = make_oci_image(tmp_path / "image", "registry client, token auth")
    # In a thread: skopeo asks our token server, which runs on this event loop.
    await asyncio.to_thread(
        push, image, f"{token_registry.host}/demo/app:v1", creds=f"{USER}:{PASSWORD}"
    )
    cache = TokenCache()
    credentials = RegistryCredentials(USER, PASSWORD)
    configure_logging(log_format="json", log_level="debug")

    async def resolve(tag: str, creds: RegistryCredentials | None = credentials) -> tuple[str, int]:
        before = len(token_server.requests)
        resolved = await resolve_digest(
            session=session,
            registry=token_registry.host,
            repository="demo/app",
            tag=tag,
            credentials=creds,
            insecure=True,
            ca_bundle=None,
            timeout_s=RESOLVE_TIMEOUT_S,
            token_cache=cache,
        )
        return resolved.digest, len(token_server.requests) - before

    assert await resolve("v1") == (image.manifest_digest, 1)
    assert token_server.requests[-1] == {"service": SERVICE, "scope": "repository:demo/app:pull"}
    # The cached token serves the next resolution: no second token request.
    assert await resolve("v1") == (image.manifest_digest, 0)

    with pytest.raises(ResolveError) as raised:
        await resolve("missing")
    assert raised.value.reason == ResolveReason.NOT_FOUND

    # Anonymous: the token server grants nothing and the registry refuses.
    with pytest.raises(ResolveError) as raised:
        await resolve("v1", None)
    assert raised.value.reason == ResolveReason.UNAUTHORIZED
    assert "insufficient_scope" in raised.value.message

    # A wrong password: the token server refuses; the password is in no message.
    with pytest.raises(ResolveError) as raised:
        await resolve("v1", RegistryCredentials(USER, "wrong-password"))
    assert raised.value.reason == ResolveReason.UNAUTHORIZED
    assert "wrong-password" not in str(raised.value) and PASSWORD not in str(raised.value)

    # Debug logging ran through all of that; no password or token reached it.
    output = capsys.readouterr()
    logged = output.out + output.err
    assert "registry_token_fetched" in logged and "registry_tag_resolved" in logged
    assert token_server.issued
    for secret in [PASSWORD, "wrong-password", *token_server.issued]:
        assert secret not in logged
    assert aiohttp.encode_basic_auth(USER, PASSWORD).split()[1] not in logged


# --- basic auth (htpasswd) --------------------------------------------------------------------


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(
        workdir=tmp_path / "registry", auth=HtpasswdAuth(username=USER, password=PASSWORD)
    ).start()
    try:
        yield registry
    finally:
        registry.stop()


async def test_basic_auth(
    tmp_path: Path, basic_registry: Registry, session: aiohttp.ClientSession
) -> None:
    image = make_oci_image(tmp_path / "image", "registry client, basic auth")
    await asyncio.to_thread(
        push, image, f"{basic_registry.host}/demo/app:v1", creds=f"{USER}:{PASSWORD}"
    )

    async def resolve(creds: RegistryCredentials | None) -> str:
        resolved = await resolve_digest(
            session=session,
            registry=basic_registry.host,
            repository="demo/app",
            tag="v1",
            credentials=creds,
            insecure=True,
            ca_bundle=None,
            timeout_s=RESOLVE_TIMEOUT_S,
        )
        return resolved.digest

    assert await resolve(RegistryCredentials(USER, PASSWORD)) == image.manifest_digest
    for creds in (None, RegistryCredentials(USER, "wrong-password")):
        with pytest.raises(ResolveError) as raised:
            await resolve(creds)
        assert raised.value.reason == ResolveReason.UNAUTHORIZED


# --- (c) TLS with a custom CA -----------------------------------------------------------------


async def test_tls_with_a_custom_ca_bundle(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    certificate = make_serving_certificate(tmp_path / "certs")
    registry = Registry(workdir=tmp_path / "registry", tls=certificate).start()
    try:
        # skopeo reads every *.crt in the directory as a CA, and refuses a
        # *.key without its *.cert, so the CA goes into a directory of its own.
        cert_dir = tmp_path / "skopeo-certs"
        cert_dir.mkdir()
        shutil.copy(certificate.ca_path, cert_dir / "ca.crt")
        image = make_oci_image(tmp_path / "image", "registry client, tls")
        await asyncio.to_thread(push, image, f"{registry.host}/demo/app:v1", cert_dir=cert_dir)

        async def resolve(ca_bundle: Path | None) -> str:
            resolved = await resolve_digest(
                session=session,
                registry=registry.host,
                repository="demo/app",
                tag="v1",
                credentials=None,
                insecure=False,
                ca_bundle=ca_bundle,
                timeout_s=RESOLVE_TIMEOUT_S,
            )
            return resolved.digest

        assert await resolve(certificate.ca_path) == image.manifest_digest
        with pytest.raises(ResolveError) as raised:
            await resolve(None)
        assert raised.value.reason == ResolveReason.INTERNAL_ERROR
        assert "TLS" in raised.value.message
    finally:
        registry.stop()


# --- network failures -------------------------------------------------------------------------


async def test_unreachable_and_silent_registries_are_unavailable_within_the_timeout(
    session: aiohttp.ClientSession,
) -> None:
    refused_port = free_port()  # nothing listens there
    with pytest.raises(ResolveError) as raised:
        await resolve_digest(
            session=session,
            registry=f"127.0.0.1:{refused_port}",
            repository="demo/app",
            tag="v1",
            credentials=None,
            insecure=True,
            ca_bundle=None,
            timeout_s=RESOLVE_TIMEOUT_S,
        )
    assert raised.value.reason == ResolveReason.UNAVAILABLE

    release = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                await release.wait()
        except TimeoutError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(ResolveError) as raised:
            await resolve_digest(
                session=session,
                registry=f"127.0.0.1:{port}",
                repository="demo/app",
                tag="v1",
                credentials=None,
                insecure=True,
                ca_bundle=None,
                timeout_s=0.5,
            )
        assert raised.value.reason == ResolveReason.UNAVAILABLE
        assert time.monotonic() - started < 3.0
    finally:
        release.set()
        server.close()
        await server.wait_closed()
