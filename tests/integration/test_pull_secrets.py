"""Pull secrets for the integrated registry, per ServiceAccount (behaviour 34).

A controller of this module's own, with `--service-account-pull-secrets`, watching one
fresh namespace of a control plane of this module's own (real kube-apiserver, etcd, and
kube-controller-manager with its garbage collector; not the session's, whose controller
would race ours for Builds), with our CRDs:

- a new ServiceAccount gets its `kubernetes.io/dockerconfigjson` Secret, owned by it,
  named in its annotation and listed once in its `imagePullSecrets`; the auth decodes to
  the integrated registry's host and a token the API server's TokenReview accepts as
  that account; the namespace gets the `builder` and `deployer` accounts;
- a pull secret listed by hand stays listed, before and after ours;
- `status.internalRegistryHostname` set on the cluster image configuration: the Secret
  is rewritten for the new host (and back when it is cleared);
- an expired token, and one with less than 40 % of its life left, are replaced by fresh
  ones the API server accepts;
- the account deleted: the garbage collector removes its Secret, and the token (bound
  to the Secret) is refused from then on.

- our Secret stripped of our label (the controller's cache selects it) is found by its
  name and labelled again, not replaced;
- an admission policy refusing one account's Secret: one attempt (the API server's own
  count), no retry loop, no list entry, and the next account still gets its Secret;
- a Build to an ImageStreamTag, with no pushSecret, gets a Job that pushes with the
  `builder` account's pull secret.

No pod pulls here: that is the node test (tests/node/test_pull_secrets.py).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from controller import app as controller_app
from controller.serviceaccounts.plan import (
    MANAGED_LABEL,
    SECRET_KEY,
    SECRET_REF_ANNOTATION,
    SECRET_TYPE,
    SERVICE_ACCOUNT_ANNOTATION,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Invalid, NotFound
from imagestream.kube.resources import (
    BUILDS,
    IMAGE_CONFIGS,
    IMAGESTREAMS,
    JOBS,
    SECRETS,
    SERVICEACCOUNTS,
    Resource,
)
from localdev.components import metric_sum
from localdev.controlplane import ControlPlane
from localdev.system import local_settings, run_system
from tests.integration.admission import refuse_in_namespace, remove_policy
from tests.integration.conftest import (
    eventually,
    kube_with_crds,
    new_namespace,
    own_control_plane,
)
from tests.integration.workloads import imagestream

FLAG_HOST = "10.0.0.97:5000"
CONFIG_HOST = "10.0.0.98:5000"
TOKENREVIEWS = Resource(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False
)
GC_TIMEOUT_S = 90.0
"""kube-controller-manager's garbage collector acts within seconds; allow for a busy host."""


@pytest.fixture(scope="module")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: the session's runs a controller of its own
    (another integrated registry, no pull-secret loop) whose build loop would race ours
    for the same Builds' Jobs."""
    with own_control_plane(tmp_path_factory, "pull-secrets-plane") as own:
        yield own


@pytest.fixture(scope="module")
async def kube(controlplane: ControlPlane) -> AsyncIterator[Kube]:
    async with kube_with_crds(controlplane) as handle:
        yield handle


@pytest.fixture
async def namespace(kube: Kube, controlplane: ControlPlane) -> AsyncIterator[str]:
    """A fresh namespace and a controller that keeps its accounts' pull secrets."""
    name = await new_namespace(kube, "pullsecrets")
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        watch_namespaces=(name,),
        integrated_registry=FLAG_HOST,
        service_account_pull_secrets=True,
        allowed_registries=("127.0.0.1:*",),
    )
    async with run_system(settings, [controller_app.start]):
        yield name


async def _account(kube: Kube, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return await kube.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": name}, **spec})


async def _listed(kube: Kube, namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The account and its pull secret's name, once it exists, is annotated and listed
    (`builder` is the controller's to create: a first look can come before it)."""
    try:
        account = await kube.get(SERVICEACCOUNTS, namespace, name)
    except NotFound:
        return None
    ref = (account["metadata"].get("annotations") or {}).get(SECRET_REF_ANNOTATION)
    listed = [e.get("name") for e in account.get("imagePullSecrets") or []]
    return (account, ref) if ref and ref in listed else None


def _auths(secret: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """host -> (username, password) of a dockerconfigjson Secret."""
    document = json.loads(base64.b64decode(secret["data"][SECRET_KEY]))
    result = {}
    for host, entry in document["auths"].items():
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        result[host] = (user, password)
    return result


async def _reviewed_as(kube: Kube, token: str) -> str:
    """The user the API server authenticates `token` as, or "" if it refuses it."""
    answer = await kube.create(
        TOKENREVIEWS,
        None,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
    )
    status = answer.get("status") or {}
    return (
        str((status.get("user") or {}).get("username", "")) if status.get("authenticated") else ""
    )


async def _secret_with(
    kube: Kube, namespace: str, name: str, hosts: set[str]
) -> dict[str, Any] | None:
    try:
        secret = await kube.get(SECRETS, namespace, name)
    except NotFound:
        return None
    return secret if set(_auths(secret)) == hosts else None


def _jwt(claims: dict[str, Any]) -> str:
    """A token-shaped JWT (not signed by the cluster) stating only `claims`."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.bm90LXNpZ25lZA"


async def test_a_new_account_gets_a_pull_secret_with_a_token_the_api_server_accepts(
    kube: Kube, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    created = await _account(kube, namespace, "app")
    account, ref = await eventually(
        lambda: _listed(kube, namespace, "app"), timeout_s=30, what="app's pull secret listed"
    )
    assert [e["name"] for e in account["imagePullSecrets"]] == [ref]
    secret = await eventually(
        lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="the Secret's token"
    )
    assert secret["type"] == SECRET_TYPE
    assert secret["metadata"]["annotations"][SERVICE_ACCOUNT_ANNOTATION] == "app"
    owners = secret["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
        ("ServiceAccount", "app", created["metadata"]["uid"])
    ]
    user, token = _auths(secret)[FLAG_HOST]
    assert user == "<token>"
    assert await _reviewed_as(kube, token) == f"system:serviceaccount:{namespace}:app"
    # OpenShift's accounts, each with its own pull secret, as kube's `default` has.
    for name in ("builder", "deployer", "default"):
        await eventually(
            functools.partial(_listed, kube, namespace, name), what=f"{name}'s pull secret"
        )
    logged = capfd.readouterr()
    assert "pull_secret_written" in logged.out + logged.err  # the controller's log is here
    assert token not in logged.out + logged.err


async def test_a_pull_secret_listed_by_hand_stays_listed(kube: Kube, namespace: str) -> None:
    await _account(kube, namespace, "mixed", imagePullSecrets=[{"name": "by-hand"}])
    account, ref = await eventually(
        lambda: _listed(kube, namespace, "mixed"), what="mixed's pull secret listed"
    )
    assert [e["name"] for e in account["imagePullSecrets"]] == ["by-hand", ref]
    # Another added by hand after ours: all three stay, ours once.
    await kube.patch(
        SERVICEACCOUNTS,
        namespace,
        "mixed",
        {"imagePullSecrets": [{"name": "by-hand"}, {"name": ref}, {"name": "later"}]},
    )
    probe = await _account(kube, namespace, "probe")  # a later change the loop handles
    await eventually(lambda: _listed(kube, namespace, "probe"), what="probe's pull secret")
    account = await kube.get(SERVICEACCOUNTS, namespace, "mixed")
    assert [e["name"] for e in account["imagePullSecrets"]] == ["by-hand", ref, "later"]
    assert probe["metadata"]["uid"]


async def test_a_new_registry_host_rewrites_the_secret(kube: Kube, namespace: str) -> None:
    await _account(kube, namespace, "mover")
    _, ref = await eventually(lambda: _listed(kube, namespace, "mover"), what="listed")
    await eventually(lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="flag host")
    created = await _set_internal_hostname(kube, CONFIG_HOST)
    try:
        secret = await eventually(
            lambda: _secret_with(kube, namespace, ref, {CONFIG_HOST}), what="the new host"
        )
        _, token = _auths(secret)[CONFIG_HOST]
        assert await _reviewed_as(kube, token) == f"system:serviceaccount:{namespace}:mover"
    finally:
        await _set_internal_hostname(kube, "", delete=created)
    await eventually(
        lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="back to the flag's host"
    )


async def _set_internal_hostname(kube: Kube, host: str, *, delete: bool = False) -> bool:
    """Set (or clear) the cluster image configuration's internal host; True if it made it."""
    made = False
    try:
        await kube.get(IMAGE_CONFIGS, None, "cluster")
    except NotFound:
        if not host:
            return False
        body = {"apiVersion": IMAGE_CONFIGS.api_version, "kind": IMAGE_CONFIGS.kind}
        await kube.create(
            IMAGE_CONFIGS, None, {**body, "metadata": {"name": "cluster"}, "spec": {}}
        )
        made = True
    if delete:
        await kube.delete(IMAGE_CONFIGS, None, "cluster")
        return made
    await kube.patch(
        IMAGE_CONFIGS,
        None,
        "cluster",
        {"status": {"internalRegistryHostname": host or None}},
        subresource="status",
    )
    return made


async def test_expired_and_expiring_tokens_are_replaced(kube: Kube, namespace: str) -> None:
    created = await _account(kube, namespace, "aging")
    _, ref = await eventually(lambda: _listed(kube, namespace, "aging"), what="listed")
    await eventually(lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="a token")
    now = time.time()
    claims = {
        "iss": "elsewhere",
        "sub": f"system:serviceaccount:{namespace}:aging",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "aging"}},
    }
    # Expired a minute ago; then 95 s into a 100 s life: 40 % would be 40 s, at least 5 s
    # from now (the loop must requeue it, not only react to the write).
    for nbf, exp in ((now - 1000, now - 60), (now - 55, now + 45)):
        stale = _jwt({**claims, "nbf": int(nbf), "iat": int(nbf), "exp": int(exp)})
        assert await _reviewed_as(kube, stale) == ""
        secret = await kube.get(SECRETS, namespace, ref)
        secret["data"] = {
            SECRET_KEY: base64.b64encode(
                json.dumps(
                    {
                        "auths": {
                            FLAG_HOST: {
                                "auth": base64.b64encode(f"<token>:{stale}".encode()).decode()
                            }
                        }
                    }
                ).encode()
            ).decode()
        }
        await kube.replace(SECRETS, namespace, ref, secret)

        async def replaced(stale: str = stale) -> str | None:
            current = await _secret_with(kube, namespace, ref, {FLAG_HOST})
            token = _auths(current)[FLAG_HOST][1] if current else stale
            return token if token != stale else None

        fresh = await eventually(replaced, timeout_s=60, what="the stale token replaced")
        assert await _reviewed_as(kube, fresh) == f"system:serviceaccount:{namespace}:aging"
    assert created["metadata"]["uid"]


async def test_a_deleted_accounts_secret_and_token_go(kube: Kube, namespace: str) -> None:
    await _account(kube, namespace, "leaving")
    _, ref = await eventually(lambda: _listed(kube, namespace, "leaving"), what="listed")
    secret = await eventually(
        lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="a token"
    )
    _, token = _auths(secret)[FLAG_HOST]
    assert await _reviewed_as(kube, token) == f"system:serviceaccount:{namespace}:leaving"
    await kube.delete(SERVICEACCOUNTS, namespace, "leaving")

    async def gone() -> bool:
        try:
            await kube.get(SECRETS, namespace, ref)
        except NotFound:
            return True
        return False

    await eventually(gone, timeout_s=GC_TIMEOUT_S, interval_s=0.5, what="the garbage collector")

    async def refused() -> bool:
        return await _reviewed_as(kube, token) == ""

    # The API server caches a successful review for 10 s.
    await eventually(refused, timeout_s=30, interval_s=1, what="the token refused")


async def test_a_build_to_the_integrated_registry_pushes_with_the_builders_secret(
    kube: Kube, namespace: str
) -> None:
    """No pushSecret, output an ImageStreamTag: the Job mounts `builder`'s pull secret."""
    _, ref = await eventually(lambda: _listed(kube, namespace, "builder"), what="builder's")
    await kube.create(IMAGESTREAMS, namespace, imagestream("app"))

    async def repository() -> str | None:
        stream = await kube.get(IMAGESTREAMS, namespace, "app")
        return (stream.get("status") or {}).get("dockerImageRepository")

    assert (await eventually(repository, what="the stream's repository")).startswith(FLAG_HOST)
    build = {
        "apiVersion": BUILDS.api_version,
        "kind": BUILDS.kind,
        "metadata": {"name": "app-1"},
        "spec": {
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
        },
    }
    await kube.create(BUILDS, namespace, build)

    async def job() -> dict[str, Any] | None:
        try:
            return await kube.get(JOBS, namespace, "app-1-build")
        except NotFound:
            return None

    pod = (await eventually(job, what="the build's Job"))["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod.get("volumes") or []] == [ref]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PUSH_DOCKERCFG_PATH"] == "/var/run/secrets/openshift.io/push/.dockerconfigjson"
    assert env["OUTPUT_IMAGE"].startswith(f"{FLAG_HOST}/{namespace}/app:")


async def test_a_secret_whose_label_was_removed_is_taken_back(kube: Kube, namespace: str) -> None:
    """Our cache selects our label: a Secret that lost it is found by its name and kept."""
    await _account(kube, namespace, "relabel")
    _, ref = await eventually(lambda: _listed(kube, namespace, "relabel"), what="listed")
    before = await eventually(lambda: _secret_with(kube, namespace, ref, {FLAG_HOST}), what="it")
    await kube.patch(SECRETS, namespace, ref, {"metadata": {"labels": {MANAGED_LABEL: None}}})

    async def labelled() -> dict[str, Any] | None:
        secret = await kube.get(SECRETS, namespace, ref)
        return secret if (secret["metadata"].get("labels") or {}).get(MANAGED_LABEL) else None

    after = await eventually(labelled, what="the label back")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same Secret, not a new one
    account = await kube.get(SERVICEACCOUNTS, namespace, "relabel")
    assert [e["name"] for e in account["imagePullSecrets"]] == [ref]


REFUSAL = "no pull secret for this account"
SETTLE_S = 10.0
"""How long a refused account is watched for retries (a loop without a give-up makes
dozens of attempts in this time)."""


async def test_a_refused_secret_gives_that_account_up_and_not_the_others(
    kube: Kube, namespace: str, controlplane: ControlPlane
) -> None:
    """An admission policy refuses the Secret of one account: one attempt, no loop, and
    the next account still gets its own."""
    account = SERVICE_ACCOUNT_ANNOTATION
    await refuse_in_namespace(
        kube,
        name=f"no-pull-secret-{namespace}",
        namespace=namespace,
        rule={"apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]},
        expression=(
            f"!(has(object.metadata.annotations) && '{account}' in object.metadata.annotations"
            f" && object.metadata.annotations['{account}'] == 'refused')"
        ),
        message=REFUSAL,
        operations=("CREATE",),
    )
    try:
        probe = {"metadata": {"generateName": "probe-", "annotations": {account: "refused"}}}

        async def in_force() -> bool:
            try:
                await kube.request(
                    "POST",
                    SECRETS.path(namespace=namespace),
                    params={"dryRun": "All"},
                    body=probe,
                )
            except Invalid:
                return True
            return False

        await eventually(in_force, timeout_s=30, interval_s=0.5, what="the policy in force")

        def refused_creates() -> float:
            return metric_sum(
                controlplane.get_raw("/metrics"),
                "apiserver_request_total",
                verb="POST",
                resource="secrets",
                code="422",
                dry_run="",
            )

        before = refused_creates()
        await _account(kube, namespace, "refused")
        await eventually(lambda: _refused_once(refused_creates, before), what="one refusal")
        await _account(kube, namespace, "fine")
        await eventually(lambda: _listed(kube, namespace, "fine"), what="fine's pull secret")
        await asyncio.sleep(SETTLE_S)
        assert refused_creates() - before == 1
        refused = await kube.get(SERVICEACCOUNTS, namespace, "refused")
        assert not refused.get("imagePullSecrets")
    finally:
        await remove_policy(kube, f"no-pull-secret-{namespace}")


async def _refused_once(count: Any, before: float) -> bool:
    return bool(count() - before >= 1)
