"""The integrated registry's access is the cluster's: our token service, the real registry, RBAC.

A webhook (ours, in this process) serves `GET /v1/registry/token` against the session control
plane; a real Debian `docker-registry` 2.8.2 on loopback is configured with `auth.token`
pointing at it, trusting the certificate of the key the webhook made in its signing Secret.
Every pull is our registry client's real token flow, every push a real skopeo push with a
docker config file; every credential is a real cluster token (TokenRequest for a
ServiceAccount), every decision the API server's RBAC answering SubjectAccessReviews
(docs/openshift-behaviours.md#behaviour-33). Nothing is faked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import structlog
import yaml
from cryptography.hazmat.primitives import serialization

from imagestream.certificates import self_signed_ca
from imagestream.cli.registry import login_entry, save
from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import (
    IMAGE_CONFIGS,
    IMAGESTREAMS,
    ROLEBINDINGS,
    SECRETS,
    Resource,
)
from imagestream.logs import configure_logging
from imagestream.registry_client import (
    RegistryCredentials,
    ResolveError,
    ResolveReason,
    TokenCache,
    resolve_digest,
)
from imagestream.registry_tokens import ISSUER, SERVICE, TOKEN_PATH
from localdev.controlplane import ControlPlane, free_port
from localdev.images import PUSH_TIMEOUT_S, make_oci_image, skopeo_push
from localdev.private import write_private
from localdev.registry import Registry, TokenAuth
from localdev.system import local_settings, run_system
from tests.integration.cli import assert_one_error_line
from tests.integration.cli import imagestream as command
from tests.integration.conftest import eventually, new_namespace
from webhook import app as webhook_app
from webhook.config import ConfigError
from webhook.registry_token import SigningSecretError, ensure_signing_key

pytestmark = pytest.mark.integration

SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SIGNING_SECRET = "registry-token-signing"
RESOLVE_TIMEOUT_S = 10.0
RBAC_TIMEOUT_S = 30.0
"""A new RoleBinding reaches the authorizer's cache within this."""


@dataclass
class AuthSystem:
    kube: Kube
    registry: Registry
    token_url: str
    metrics_url: str
    key_namespace: str
    workdir: Path
    controlplane: ControlPlane
    receiver_token_file: Path


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    # Other tests may leave structlog writing to a stream pytest has closed since.
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="module")
async def auth_system(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AuthSystem]:
    workdir = tmp_path_factory.mktemp("regauth")
    key_namespace = await new_namespace(kube, "regauth-key")
    token_file = write_private(workdir / "receiver-token", "receiver-" + uuid.uuid4().hex)
    registry_port = free_port()
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=token_file,
        integrated_registry=f"127.0.0.1:{registry_port}",
        registry_token_signing_secret=f"{key_namespace}/{SIGNING_SECRET}",
    )
    async with run_system(settings, [webhook_app.start]):
        secret = await kube.get(SECRETS, key_namespace, SIGNING_SECRET)
        bundle = workdir / "rootcertbundle.crt"
        bundle.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
        token_url = f"http://{settings.webhook_addr}{TOKEN_PATH}"
        registry = Registry(
            workdir=workdir / "registry",
            port=registry_port,
            auth=TokenAuth(
                realm=token_url, service=SERVICE, issuer=ISSUER, root_cert_bundle=bundle
            ),
        ).start()
        try:
            yield AuthSystem(
                kube=kube,
                registry=registry,
                token_url=token_url,
                metrics_url=f"http://{settings.metrics_addr}/metrics",
                key_namespace=key_namespace,
                workdir=workdir,
                controlplane=controlplane,
                receiver_token_file=token_file,
            )
        finally:
            registry.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def service_account_token(kube: Kube, namespace: str, name: str) -> str:
    """A bound token for a new ServiceAccount (TokenRequest), as a kubelet or the dockercfg
    controller gets one."""
    await kube.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": name}})
    answer = await kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])


async def bind(kube: Kube, namespace: str, role: str, subject: dict[str, str]) -> None:
    """`oc policy add-role-to-{user,group} ROLE SUBJECT -n NAMESPACE`."""
    await kube.create(
        ROLEBINDINGS,
        namespace,
        {
            "metadata": {"name": f"{role.replace(':', '-')}-{uuid.uuid4().hex[:6]}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [subject],
        },
    )


def service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


async def resolve(
    system: AuthSystem, session: aiohttp.ClientSession, repository: str, token: str | None
) -> str:
    """The digest of `repository:v1`, by the registry's token flow (a fresh token every time)."""
    resolved = await resolve_digest(
        session=session,
        registry=system.registry.host,
        repository=repository,
        tag="v1",
        credentials=RegistryCredentials("user", token) if token else None,
        insecure=True,
        ca_bundle=None,
        timeout_s=RESOLVE_TIMEOUT_S,
        token_cache=TokenCache(),
    )
    return resolved.digest


async def refused(
    system: AuthSystem, session: aiohttp.ClientSession, repository: str, token: str | None
) -> ResolveError:
    with pytest.raises(ResolveError) as raised:
        await resolve(system, session, repository, token)
    assert raised.value.reason == ResolveReason.UNAUTHORIZED, raised.value
    return raised.value


async def pull_allowed(
    system: AuthSystem, session: aiohttp.ClientSession, repository: str, token: str | None
) -> str | None:
    try:
        return await resolve(system, session, repository, token)
    except ResolveError as error:
        if error.reason != ResolveReason.UNAUTHORIZED:
            raise
        return None


def auth_file(system: AuthSystem, token: str) -> Path:
    path = system.workdir / f"auth-{uuid.uuid4().hex[:8]}.json"
    save(path, system.registry.host, login_entry(token))
    return path


async def push(system: AuthSystem, repository: str, token: str, content: str) -> str:
    image = make_oci_image(system.workdir / uuid.uuid4().hex, content)
    destination = f"{system.registry.host}/{repository}:v1"
    await asyncio.to_thread(skopeo_push, image, destination, authfile=auth_file(system, token))
    return image.manifest_digest


async def push_refused(system: AuthSystem, repository: str, token: str) -> str:
    with pytest.raises(subprocess.CalledProcessError) as raised:
        await push(system, repository, token, "refused " + uuid.uuid4().hex)
    return str(raised.value.stderr.decode())


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- the signing key ---------------------------------------------------------------------------


async def test_the_signing_key_is_made_once_and_then_only_read(auth_system: AuthSystem) -> None:
    kube, namespace = auth_system.kube, auth_system.key_namespace
    secret = await kube.get(SECRETS, namespace, SIGNING_SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    assert sorted(secret["data"]) == ["tls.crt", "tls.key"]
    again = await ensure_signing_key(kube, namespace, SIGNING_SECRET)
    assert again.certificate == base64.b64decode(secret["data"]["tls.crt"])
    after = await kube.get(SECRETS, namespace, SIGNING_SECRET)
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]

    # A Secret that holds no usable key is refused and left as it is (the registry may trust it).
    broken = {"metadata": {"name": "broken"}, "type": "Opaque", "data": {"tls.crt": "bm9wZQ=="}}
    created = await kube.create(SECRETS, namespace, broken)
    with pytest.raises(SigningSecretError, match=r"missing key 'tls\.key'"):
        await ensure_signing_key(kube, namespace, "broken")
    # A webhook told to sign with it does not start, and says which Secret and why.
    settings = local_settings(
        kubeconfig=auth_system.controlplane.kubeconfig_path,
        webhook_token_file=auth_system.receiver_token_file,
        integrated_registry=auth_system.registry.host,
        registry_token_signing_secret=f"{namespace}/broken",
    )
    with pytest.raises(ConfigError) as raised:
        async with run_system(settings, [webhook_app.start]):
            pass
    assert str(raised.value) == (
        f"--registry-token-signing-secret: Secret {namespace}/broken: missing key 'tls.key'"
    )
    unchanged = await kube.get(SECRETS, namespace, "broken")
    assert unchanged["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


# --- pulls -------------------------------------------------------------------------------------


async def test_anonymous_pulls_only_where_system_unauthenticated_may_pull(
    auth_system: AuthSystem, session: aiohttp.ClientSession
) -> None:
    kube = auth_system.kube
    source = await new_namespace(kube, "regauth-anon")
    builder = await service_account_token(kube, source, "builder")
    await bind(kube, source, "system:image-builder", service_account(source, "builder"))
    digest = await eventually(
        lambda: _pushed(auth_system, f"{source}/app", builder),
        timeout_s=RBAC_TIMEOUT_S,
        what="the builder's push",
    )

    error = await refused(auth_system, session, f"{source}/app", None)
    assert "insufficient_scope" in error.message

    await bind(
        kube,
        source,
        "system:image-puller",
        {
            "kind": "Group",
            "name": "system:unauthenticated",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    )
    pulled = await eventually(
        lambda: pull_allowed(auth_system, session, f"{source}/app", None),
        timeout_s=RBAC_TIMEOUT_S,
        what="an anonymous pull once system:unauthenticated is a puller",
    )
    assert pulled == digest
    # Only there: anonymous is no puller in any other namespace.
    other = await new_namespace(kube, "regauth-anon-other")
    await refused(auth_system, session, f"{other}/app", None)


async def test_a_service_account_pulls_across_namespaces_once_it_is_a_puller(
    auth_system: AuthSystem, session: aiohttp.ClientSession
) -> None:
    kube = auth_system.kube
    source = await new_namespace(kube, "regauth-src")
    consumer = await new_namespace(kube, "regauth-app")
    builder = await service_account_token(kube, source, "builder")
    await bind(kube, source, "system:image-builder", service_account(source, "builder"))
    digest = await eventually(
        lambda: _pushed(auth_system, f"{source}/base", builder),
        timeout_s=RBAC_TIMEOUT_S,
        what="the builder's push",
    )
    app = await service_account_token(kube, consumer, "app")

    # The ServiceAccount of another namespace is authenticated, but no puller in `source`.
    error = await refused(auth_system, session, f"{source}/base", app)
    assert "insufficient_scope" in error.message
    # The builder pulls what it pushed (image-builder includes pulling).
    assert await resolve(auth_system, session, f"{source}/base", builder) == digest

    await bind(kube, source, "system:image-puller", service_account(consumer, "app"))
    pulled = await eventually(
        lambda: pull_allowed(auth_system, session, f"{source}/base", app),
        timeout_s=RBAC_TIMEOUT_S,
        what="the pull once the RoleBinding exists",
    )
    assert pulled == digest
    # The puller role is for pulling: the same ServiceAccount still cannot push there.
    stderr = await push_refused(auth_system, f"{source}/base", app)
    assert "unauthorized" in stderr.lower() or "denied" in stderr.lower(), stderr
    assert await resolve(auth_system, session, f"{source}/base", builder) == digest


# --- pushes ------------------------------------------------------------------------------------


async def _pushed(system: AuthSystem, repository: str, token: str) -> str | None:
    try:
        return await push(system, repository, token, "pushed " + uuid.uuid4().hex)
    except subprocess.CalledProcessError:
        return None


async def test_pushes_need_update_and_a_new_stream_needs_create_too(
    auth_system: AuthSystem, session: aiohttp.ClientSession
) -> None:
    kube = auth_system.kube
    namespace = await new_namespace(kube, "regauth-push")
    nobody = await service_account_token(kube, namespace, "nobody")
    pusher = await service_account_token(kube, namespace, "pusher")
    await bind(kube, namespace, "system:image-pusher", service_account(namespace, "pusher"))
    builder = await service_account_token(kube, namespace, "builder")
    await bind(kube, namespace, "system:image-builder", service_account(namespace, "builder"))
    await kube.create(
        IMAGESTREAMS,
        namespace,
        {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "existing"},
        },
    )

    # No role: refused, and nothing reached the registry.
    stderr = await push_refused(auth_system, f"{namespace}/app", nobody)
    assert "unauthorized" in stderr.lower() or "denied" in stderr.lower(), stderr

    # system:image-pusher updates streams that exist; it may not create one.
    await eventually(
        lambda: _pushed(auth_system, f"{namespace}/existing", pusher),
        timeout_s=RBAC_TIMEOUT_S,
        what="the pusher's push to an existing stream",
    )
    await push_refused(auth_system, f"{namespace}/brand-new", pusher)

    # system:image-builder may create it (the push then creates the stream).
    digest = await eventually(
        lambda: _pushed(auth_system, f"{namespace}/brand-new", builder),
        timeout_s=RBAC_TIMEOUT_S,
        what="the builder's push to a new stream",
    )
    assert await resolve(auth_system, session, f"{namespace}/brand-new", builder) == digest
    with pytest.raises(ResolveError) as raised:
        await resolve(auth_system, session, f"{namespace}/app", builder)
    assert raised.value.reason == ResolveReason.NOT_FOUND  # the refused push left nothing


# --- bad input ---------------------------------------------------------------------------------


async def test_bad_requests_get_a_clear_refusal_and_change_nothing(
    auth_system: AuthSystem,
    session: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(log_format="json", log_level="debug")  # onto capsys's stderr
    kube = auth_system.kube
    namespace = await new_namespace(kube, "regauth-bad")
    token = await service_account_token(kube, namespace, "builder")
    await bind(kube, namespace, "system:image-builder", service_account(namespace, "builder"))
    garbage = "garbage-" + uuid.uuid4().hex
    basic = _basic("user", token)

    async def ask(
        scope: str, auth: str | None, service: str = SERVICE
    ) -> tuple[int, dict[str, object]]:
        params = {"service": service, "scope": scope}
        headers = {"Authorization": auth} if auth else {}
        async with session.get(auth_system.token_url, params=params, headers=headers) as response:
            return response.status, await response.json()

    status, body = await ask("repository:no-namespace:pull", basic)
    assert (status, body) == (
        400,
        {"details": "repository name 'no-namespace': it must be of the format <namespace>/<name>"},
    )
    status, body = await ask(f"repository:{namespace}/app:push", _basic("u", garbage))
    assert (status, body) == (401, {"details": "the token is not a valid cluster token"})
    status, body = await ask(f"repository:{namespace}/app:pull", basic, service="elsewhere")
    assert status == 400 and "elsewhere" in str(body["details"])
    many = " ".join(f"repository:{namespace}/app{i}:pull" for i in range(17))
    status, body = await ask(many, basic)
    assert status == 400
    assert body["details"] == (
        "17 resources in one request: at most 16 (each is a question to the API server)"
    )
    status, body = await ask(f"repository:{namespace}/app:pull", _basic("u", ""))
    assert status == 401 and "no password" in str(body["details"])
    for refused_request in range(2):  # garbage twice: still refused, still nothing written
        status, _ = await ask(f"repository:{namespace}/app:push", _basic("u", garbage))
        assert status == 401, refused_request
    with pytest.raises(NotFound):
        await kube.get(IMAGESTREAMS, namespace, "app")

    # The good request beside them is answered, with only what RBAC allows.
    async def granted() -> list[object] | None:
        status, body = await ask(f"repository:{namespace}/app:pull,push,delete", basic)
        assert status == 200
        claims = json.loads(base64.urlsafe_b64decode(str(body["token"]).split(".")[1] + "=="))
        return list(claims["access"]) or None

    access = await eventually(granted, timeout_s=RBAC_TIMEOUT_S, what="the builder's grant")
    assert access == [
        {"type": "repository", "name": f"{namespace}/app", "actions": ["pull", "push"]}
    ]

    async with session.get(auth_system.metrics_url) as response:
        metrics = await response.text()
    counts = {
        outcome: float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        for outcome in ("bad_request", "unauthorized", "issued")
        if line.startswith(f'imagestream_registry_tokens_total{{outcome="{outcome}"}}')
    }
    assert counts["bad_request"] >= 3 and counts["unauthorized"] >= 4 and counts["issued"] >= 1

    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "registry_token_refused" in text and "registry_token_issued" in text
    assert garbage not in text and token not in text


# --- imagestream registry login ----------------------------------------------------------------


def _kubeconfig_for(controlplane: ControlPlane, token: str, path: Path) -> Path:
    config = yaml.safe_load(controlplane.kubeconfig_path.read_text())
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "sa"
    return write_private(path, yaml.safe_dump(config))


async def _builder_session(
    auth_system: AuthSystem, controlplane: ControlPlane, prefix: str
) -> tuple[str, str, Path, Path]:
    """A fresh namespace whose `builder` may push (system:image-builder), and a home
    directory holding a kubeconfig of that ServiceAccount's token: what a person logging
    in as that account has. Returns the namespace, the token, the home and the kubeconfig."""
    kube = auth_system.kube
    namespace = await new_namespace(kube, prefix)
    token = await service_account_token(kube, namespace, "builder")
    await bind(kube, namespace, "system:image-builder", service_account(namespace, "builder"))
    home = auth_system.workdir / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    return namespace, token, home, _kubeconfig_for(controlplane, token, home / "kubeconfig")


async def test_registry_login_then_a_skopeo_push_with_that_file(
    auth_system: AuthSystem, controlplane: ControlPlane, session: aiohttp.ClientSession
) -> None:
    namespace, token, home, kubeconfig = await _builder_session(
        auth_system, controlplane, "regauth-login"
    )
    host = auth_system.registry.host

    ran = await command("registry", "login", "--registry", host, kubeconfig=kubeconfig, home=home)
    assert ran.ok, ran.stderr
    written = home / ".docker" / "config.json"
    assert ran.stdout == f"Saved credentials for {host} into {written}\n"
    assert token not in ran.stdout + ran.stderr
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert json.loads(written.read_text()) == {"auths": {host: login_entry(token)}}

    image = make_oci_image(home / "image", "registry login " + uuid.uuid4().hex)

    # skopeo as a user runs it: no --authfile, it finds the entry in the default file.
    runtime_dir = home / "run"
    runtime_dir.mkdir(mode=0o700)
    environment = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("REGISTRY_AUTH_FILE", "XDG_CONFIG_HOME")
        },
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime_dir),
    }
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    argv += [f"oci:{image.layout_dir}", f"docker://{host}/{namespace}/app:v1"]

    async def pushed() -> bool:
        done = await asyncio.to_thread(
            subprocess.run, argv, env=environment, capture_output=True, timeout=PUSH_TIMEOUT_S
        )
        return done.returncode == 0

    await eventually(pushed, timeout_s=RBAC_TIMEOUT_S, what="the push with the login's file")
    assert await resolve(auth_system, session, f"{namespace}/app", token) == image.manifest_digest

    # --to another file; a file that is not a docker config is refused and kept as it was.
    other = home / "auth.json"
    ran = await command(
        "registry",
        "login",
        "--registry",
        host,
        "--to",
        str(other),
        kubeconfig=kubeconfig,
        home=home,
    )
    assert ran.ok and json.loads(other.read_text())["auths"][host] == login_entry(token)
    other.write_text("[not a config]")
    ran = await command(
        "registry",
        "login",
        "--registry",
        host,
        "--to",
        str(other),
        kubeconfig=kubeconfig,
        home=home,
    )
    assert (
        ran.code == 1
        and ran.stderr == f"error: {other} is not a docker config file (not valid JSON)\n"
    )
    assert other.read_text() == "[not a config]"


@contextlib.asynccontextmanager
async def external_hostname(kube: Kube, host: str) -> AsyncIterator[None]:
    """`images.config.openshift.io/cluster` naming `host` its external registry hostname, as
    an admin configures it; the object is put back as it was at the end."""
    try:
        before = await kube.get(IMAGE_CONFIGS, None, "cluster")
    except NotFound:
        before = None
        await kube.create(
            IMAGE_CONFIGS,
            None,
            {
                "apiVersion": IMAGE_CONFIGS.api_version,
                "kind": IMAGE_CONFIGS.kind,
                "metadata": {"name": "cluster"},
                "spec": {"externalRegistryHostnames": [host]},
            },
        )
    else:
        await kube.patch(
            IMAGE_CONFIGS, None, "cluster", {"spec": {"externalRegistryHostnames": [host]}}
        )
    try:
        yield
    finally:
        if before is None:
            await kube.delete(IMAGE_CONFIGS, None, "cluster")
        else:
            previous = (before.get("spec") or {}).get("externalRegistryHostnames")
            await kube.patch(
                IMAGE_CONFIGS, None, "cluster", {"spec": {"externalRegistryHostnames": previous}}
            )


async def test_registry_login_finds_the_host_in_the_cluster_image_configuration(
    auth_system: AuthSystem, controlplane: ControlPlane, session: aiohttp.ClientSession
) -> None:
    kube = auth_system.kube
    namespace, token, home, sa_kubeconfig = await _builder_session(
        auth_system, controlplane, "regauth-host"
    )
    host = auth_system.registry.host

    # A ServiceAccount may not read the cluster's configuration nor list streams here: it is
    # told to name the host, and nothing is written.
    ran = await command("registry", "login", kubeconfig=sa_kubeconfig, home=home)
    assert_one_error_line(ran)
    assert "pass --registry HOST" in ran.stderr
    assert not (home / ".docker").exists()

    # The admin's session, with the cluster naming the registry: no --registry needed.
    async with external_hostname(kube, host):
        ran = await command("registry", "login", kubeconfig=controlplane.kubeconfig_path, home=home)
    assert ran.ok, ran.stderr
    written = home / ".docker" / "config.json"
    assert ran.stdout == f"Saved credentials for {host} into {written}\n"
    entry = json.loads(written.read_text())["auths"][host]
    assert base64.b64decode(entry["auth"]).decode() == f"user:{controlplane.token}"
    image = make_oci_image(home / "image", "registry login host " + uuid.uuid4().hex)
    await asyncio.to_thread(skopeo_push, image, f"{host}/{namespace}/app:v1", authfile=written)
    assert await resolve(auth_system, session, f"{namespace}/app", token) == image.manifest_digest


async def test_registry_login_with_a_client_certificate_says_there_is_no_token(
    tmp_path: Path,
) -> None:
    """oc's rule: a registry takes no client certificate, so there is nothing to write."""
    now = datetime.datetime.now(datetime.UTC)
    cert, key = self_signed_ca("alice", not_before=now, not_after=now + datetime.timedelta(days=1))
    pem_cert = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kubeconfig = write_private(
        tmp_path / "kubeconfig",
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}
                ],
                "users": [
                    {
                        "name": "alice",
                        "user": {
                            "client-certificate-data": base64.b64encode(pem_cert).decode(),
                            "client-key-data": base64.b64encode(pem_key).decode(),
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "alice"}}],
                "current-context": "c",
            }
        ),
    )
    ran = await command(
        "registry", "login", "--registry", "r.example:5000", kubeconfig=kubeconfig, home=tmp_path
    )
    assert_one_error_line(ran)
    assert "no token is currently in use for this session" in ran.stderr
    assert not (tmp_path / ".docker").exists()
