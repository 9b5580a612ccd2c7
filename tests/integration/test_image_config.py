"""The cluster image configuration, `images.config.openshift.io/cluster` (behaviour 31).

Against the session control plane, the session controller (imports) and a
webhook of this module's own (`verify: registry`), with real distribution
registries and skopeo pushes:

- `registrySources.blockedRegistries` refuses an import (`ImportSuccess=False`,
  `Forbidden`, the policy's message, no tag item) and a push verification;
  removing the block lets the next import and the next push through, with no
  restart of either process;
- `allowedRegistriesForImport` refuses an import from any other registry;
- a registry serving a certificate made by the test: the import fails with
  the TLS error, and succeeds once `additionalTrustedCA` names a ConfigMap
  holding the CA under the registry's `host..port` key.

The controller shows it has read a new version of the object by writing
`status.publicDockerImageRepository` from its `externalRegistryHostnames`:
each change here carries a fresh probe hostname, and the test waits for it
on a probe stream before it relies on the rest of that version.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagestream.image_config import DEFAULT_TRUSTED_CA_NAMESPACE
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, Invalid, NotFound
from imagestream.kube.resources import CONFIGMAPS, IMAGE_CONFIGS, IMAGESTREAMS, NAMESPACES
from localdev.certs import make_serving_certificate
from localdev.controlplane import ControlPlane, free_port
from localdev.images import make_oci_image, skopeo_push
from localdev.private import private_dir, write_private
from localdev.registry import NotificationEndpoint, Registry
from localdev.system import local_settings, run_system
from tests.integration.conftest import System, eventually, new_namespace
from tests.integration.helm import Helm, helm_dir
from tests.integration.test_receivers import seed_stream
from tests.integration.test_spec_tags import head_image, status_tag
from tests.integration.test_verify_registry import TOKEN, _receiver, _tag_status
from tests.integration.workloads import imagestream
from webhook import app as webhook_app

REIMPORT_ATTEMPTS = 20
"""A ConfigMap and the Image object are separate watches: the CA may arrive a moment later."""


def _push(registry: Registry, tmp_path: Path, destination: str) -> str:
    image = make_oci_image(tmp_path / uuid.uuid4().hex, f"{destination} {uuid.uuid4().hex}")
    skopeo_push(image, f"{registry.host}/{destination}")
    return image.manifest_digest


@contextlib.asynccontextmanager
async def _cluster_config(kube: Kube) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[str]]]:
    """Set `images.config.openshift.io/cluster`'s spec (returns its probe host); gone at the end.

    Every set adds a fresh probe hostname as `externalRegistryHostnames`.
    """

    async def put(spec: dict[str, Any]) -> str:
        probe = f"probe-{uuid.uuid4().hex[:8]}.example"
        body = {
            "apiVersion": IMAGE_CONFIGS.api_version,
            "kind": IMAGE_CONFIGS.kind,
            "metadata": {"name": "cluster"},
            "spec": {**spec, "externalRegistryHostnames": [probe]},
        }
        for _ in range(10):
            try:
                current = await kube.get(IMAGE_CONFIGS, None, "cluster")
            except NotFound:
                await kube.create(IMAGE_CONFIGS, None, body)
                return probe
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                await kube.replace(IMAGE_CONFIGS, None, "cluster", body)
            except Conflict:
                continue
            return probe
        raise AssertionError("images.config.openshift.io/cluster: too many conflicts")

    try:
        yield put
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(IMAGE_CONFIGS, None, "cluster")


async def _probe_seen(kube: Kube, namespace: str, probe: str) -> None:
    """Wait until the controller has read the object version that names `probe`."""

    async def seen() -> bool:
        stream = await kube.get(IMAGESTREAMS, namespace, "probe")
        wanted = f"{probe}/{namespace}/probe"
        return (stream.get("status") or {}).get("publicDockerImageRepository") == wanted

    await eventually(seen, timeout_s=60, what=f"the controller read {probe}")


async def _import_outcome(
    kube: Kube, namespace: str, name: str, tag: str, generation: int
) -> dict[str, Any]:
    """The tag's status once the import at `generation` is recorded (an item or a condition)."""

    async def recorded() -> dict[str, Any] | None:
        entry = status_tag(await kube.get(IMAGESTREAMS, namespace, name), tag)
        items = entry.get("items") or []
        conditions = entry.get("conditions") or []
        if (items and items[0].get("generation") == generation) or any(
            c.get("generation") == generation for c in conditions
        ):
            return entry
        return None

    return await eventually(recorded, timeout_s=60, what=f"{name}:{tag} import at {generation}")


async def _create_import(
    kube: Kube, namespace: str, name: str, source: str, *, insecure: bool
) -> dict[str, Any]:
    spec_tag = {"name": "1", "from": {"kind": "DockerImage", "name": source}}
    if insecure:
        spec_tag["importPolicy"] = {"insecure": True}
    created = await kube.create(IMAGESTREAMS, namespace, imagestream(name, [spec_tag]))
    return await _import_outcome(kube, namespace, name, "1", created["metadata"]["generation"])


async def _reimport(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """`generation: 0` on tag 1 (a new import, behaviour 5); its outcome."""
    stream = await kube.get(IMAGESTREAMS, namespace, name)
    (spec_tag,) = stream["spec"]["tags"]
    patched = await kube.patch(
        IMAGESTREAMS, namespace, name, {"spec": {"tags": [{**spec_tag, "generation": 0}]}}
    )
    return await _import_outcome(kube, namespace, name, "1", patched["metadata"]["generation"])


def _refusal(entry: dict[str, Any]) -> dict[str, Any]:
    (condition,) = entry["conditions"]
    assert condition["type"] == "ImportSuccess" and condition["status"] == "False"
    assert not entry.get("items"), "a refused import recorded an image"
    return dict(condition)


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Registry]:
    """A plain-HTTP loopback registry that is not the integrated one."""
    registry = Registry(workdir=tmp_path / "upstream").start()
    try:
        yield registry
    finally:
        registry.stop()


async def _probe_namespace(kube: Kube, prefix: str) -> str:
    namespace = await new_namespace(kube, prefix)
    await kube.create(IMAGESTREAMS, namespace, imagestream("probe"))
    return namespace


async def test_blocked_registries_refuse_imports_until_unblocked_without_a_restart(
    system: System, upstream: Registry, tmp_path: Path
) -> None:
    kube = system.kube
    namespace = await _probe_namespace(kube, "blocked")
    digest = _push(upstream, tmp_path, f"{namespace}/base:1")
    source = f"{upstream.host}/{namespace}/base:1"
    async with _cluster_config(kube) as put:
        probe = await put({"registrySources": {"blockedRegistries": [upstream.host]}})
        await _probe_seen(kube, namespace, probe)
        refused = _refusal(await _create_import(kube, namespace, "base", source, insecure=True))
        assert refused["reason"] == "Forbidden"
        assert f"registry {upstream.host} is blocked" in refused["message"]
        assert "spec.registrySources.blockedRegistries" in refused["message"]

        # The same processes, a new version of the object: the next import goes through.
        await _probe_seen(kube, namespace, await put({}))
        entry = await _reimport(kube, namespace, "base")
        assert head_image(entry) == digest
        assert entry.get("conditions") == []


async def test_allowed_registries_for_import_refuse_every_other_registry(
    system: System, upstream: Registry, tmp_path: Path
) -> None:
    kube = system.kube
    namespace = await _probe_namespace(kube, "allowimport")
    digest = _push(upstream, tmp_path, f"{namespace}/base:1")
    source = f"{upstream.host}/{namespace}/base:1"
    async with _cluster_config(kube) as put:
        allowed = [{"domainName": "quay.io"}, {"domainName": upstream.host}]  # TLS only
        await _probe_seen(kube, namespace, await put({"allowedRegistriesForImport": allowed}))
        refused = _refusal(await _create_import(kube, namespace, "base", source, insecure=True))
        assert refused["reason"] == "Forbidden"
        assert "spec.allowedRegistriesForImport" in refused["message"]
        assert f"{upstream.host} over plain HTTP" in refused["message"]

        allowed[1]["insecure"] = True  # the plain-HTTP import now has its entry
        await _probe_seen(kube, namespace, await put({"allowedRegistriesForImport": allowed}))
        entry = await _reimport(kube, namespace, "base")
        assert head_image(entry) == digest


async def test_a_trusted_ca_from_the_configmap_lets_an_import_over_tls_succeed(
    system: System, tmp_path: Path
) -> None:
    kube = system.kube
    certificate = make_serving_certificate(tmp_path / "certs")
    registry = Registry(workdir=tmp_path / "tls-registry", tls=certificate).start()
    with contextlib.suppress(Conflict):
        await kube.create(NAMESPACES, None, {"metadata": {"name": DEFAULT_TRUSTED_CA_NAMESPACE}})
    configmap = f"registry-cas-{uuid.uuid4().hex[:6]}"
    try:
        namespace = await _probe_namespace(kube, "trustedca")
        digest = _push(registry, tmp_path, f"{namespace}/base:1")
        source = f"{registry.host}/{namespace}/base:1"
        async with _cluster_config(kube) as put:
            await _probe_seen(kube, namespace, await put({}))
            failed = _refusal(await _create_import(kube, namespace, "base", source, insecure=False))
            assert failed["reason"] == "InternalError"
            assert "TLS handshake failed" in failed["message"]
            assert "CERTIFICATE_VERIFY_FAILED" in failed["message"]

            host, port = registry.host.rsplit(":", 1)
            await kube.create(
                CONFIGMAPS,
                DEFAULT_TRUSTED_CA_NAMESPACE,
                {
                    "metadata": {"name": configmap},
                    "data": {f"{host}..{port}": certificate.ca_path.read_text()},
                },
            )
            probe = await put({"additionalTrustedCA": {"name": configmap}})
            await _probe_seen(kube, namespace, probe)
            entry: dict[str, Any] = {}
            for _ in range(REIMPORT_ATTEMPTS):
                entry = await _reimport(kube, namespace, "base")
                if head_image(entry) == digest:
                    break
                await asyncio.sleep(0.5)
            assert head_image(entry) == digest, entry
            assert entry.get("conditions") == []
    finally:
        registry.stop()
        with contextlib.suppress(NotFound):
            await kube.delete(CONFIGMAPS, DEFAULT_TRUSTED_CA_NAMESPACE, configmap)


async def test_blocked_registries_refuse_a_push_verification_until_unblocked(
    controlplane: ControlPlane, kube: Kube, crds: list[str], tmp_path: Path
) -> None:
    """A webhook with a `verify: registry` receiver, started once; the object changes under it."""
    namespace = await new_namespace(kube, "verifyblock")
    write_private(private_dir(tmp_path / "webhook") / "token", TOKEN + "\n")
    config = write_private(
        tmp_path / "webhook" / "receivers.yaml",
        yaml.safe_dump({"receivers": [_receiver("other", insecure=True)]}),
    )
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_config=config,
        allowed_registries=("127.0.0.1:*",),
    )
    registry = Registry(
        workdir=tmp_path / "registry",
        port=free_port(),
        notify=NotificationEndpoint(
            url=f"http://{settings.webhook_addr}/v1/events/other", token=TOKEN
        ),
    )
    async with _cluster_config(kube) as put:
        # Set before the webhook starts: it is not ready until it has read the object.
        await put({"registrySources": {"blockedRegistries": [registry.host]}})
        registry.start()
        try:
            async with run_system(settings, [webhook_app.start]):
                await seed_stream(
                    kube, namespace, "app", {"v1": f"{registry.host}/{namespace}/app:v1"}
                )
                _push(registry, tmp_path, f"{namespace}/app:v1")
                status = await _tag_status(kube, namespace, "app", "v1")
                assert status is not None
                refused = _refusal(status)
                assert refused["reason"] == "Forbidden"
                assert f"registry {registry.host} is blocked" in refused["message"]

                # The same webhook process, a new version of the object: pushes verify again
                # (its watch may deliver the change a moment after the write: a few pushes).
                await put({})
                recorded = ""
                for _ in range(REIMPORT_ATTEMPTS):
                    digest = _push(registry, tmp_path, f"{namespace}/app:v1")

                    async def moved(digest: str = digest) -> str | None:
                        entry = status_tag(await kube.get(IMAGESTREAMS, namespace, "app"), "v1")
                        return digest if head_image(entry) == digest else None

                    with contextlib.suppress(TimeoutError):
                        recorded = await eventually(moved, timeout_s=5, what="the push recorded")
                        break
                assert recorded, "no push was recorded after the block was lifted"
        finally:
            registry.stop()


async def test_the_api_server_refuses_another_name_and_both_registry_lists(
    kube: Kube, crds: list[str]
) -> None:
    """OpenShift's validation, by our CRD: one object named `cluster`; allowed or blocked."""
    base = {"apiVersion": IMAGE_CONFIGS.api_version, "kind": IMAGE_CONFIGS.kind}
    with pytest.raises(Invalid, match="the one object named cluster"):
        await kube.create(IMAGE_CONFIGS, None, {**base, "metadata": {"name": "other"}, "spec": {}})
    both = {"registrySources": {"allowedRegistries": ["a.io"], "blockedRegistries": ["b.io"]}}
    with pytest.raises(Invalid, match="Only one of BlockedRegistries or AllowedRegistries"):
        await kube.create(
            IMAGE_CONFIGS, None, {**base, "metadata": {"name": "cluster"}, "spec": both}
        )


def test_the_chart_grants_what_reading_the_image_config_needs(tmp_path: Path) -> None:
    helm = Helm(binary=helm_dir() / "helm", home=tmp_path / "helm-home")
    off = helm.template()
    assert not [o for o in off if "image-config" in o["metadata"]["name"]]
    on = helm.template("--set", "registryAccess.clusterImageConfig=true")
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in on}
    cluster_role = by_name[("ClusterRole", "rel-imagestream-controller-image-config")]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["config.openshift.io"],
            "resources": ["images"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    role = by_name[("Role", "rel-imagestream-controller-image-config-cas")]
    assert role["metadata"]["namespace"] == DEFAULT_TRUSTED_CA_NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        suffix = "image-config" if kind == "ClusterRoleBinding" else "image-config-cas"
        binding = by_name[(kind, f"rel-imagestream-controller-{suffix}")]
        assert sorted(s["name"] for s in binding["subjects"]) == [
            "rel-imagestream-controller-controller",
            "rel-imagestream-controller-webhook",
        ]
    for deployment in (
        o for o in on if o["kind"] == "Deployment" and "registry" not in o["metadata"]["name"]
    ):
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["IMAGESTREAM_IMAGE_CONFIG"] == "true"
        assert env["IMAGESTREAM_IMAGE_CONFIG_NAMESPACE"] == DEFAULT_TRUSTED_CA_NAMESPACE
