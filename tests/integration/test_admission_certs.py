"""The admission webhook's certificates against the real API server: made once for all
replicas, renewed before they expire, the caBundle following, and cert-manager's files.

Every call the API server makes here goes over TLS to the webhook on loopback and checks
its certificate against the caBundle of the registration, so "the DeploymentConfig got its
defaults" is the API server saying it trusted the certificate being served.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
import uuid
from pathlib import Path

from cryptography import x509

from imagestream.kube.client import Kube
from imagestream.kube.resources import (
    DEPLOYMENTCONFIGS,
    MUTATING_WEBHOOK_CONFIGURATIONS,
    NAMESPACES,
    SECRETS,
    VALIDATING_WEBHOOK_CONFIGURATIONS,
)
from imagestream.settings import HostPort
from localdev.admission import register_admission, unregister_admission
from localdev.controlplane import ControlPlane, free_port
from localdev.private import private_dir, write_private
from localdev.system import local_settings, run_system
from tests.integration.conftest import eventually, new_namespace
from tests.integration.test_admission import LABEL, admission_server
from webhook import app as webhook_app
from webhook.admission.certs import issue, new_ca
from webhook.admission.tls import SecretCertificates, ServingContext


async def served_serial(port: int) -> int:
    """The serial of the certificate the server on `port` presents (no verification)."""
    pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port), timeout=5)
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


async def defaults_applied(kube: Kube, name: str) -> bool:
    """Create a DeploymentConfig in a namespace `name` selects; True if it got the defaults."""
    namespace = await new_namespace(kube, "adm-cert")
    await kube.patch(NAMESPACES, None, namespace, {"metadata": {"labels": {LABEL: name}}})
    dc = await kube.create(
        DEPLOYMENTCONFIGS,
        namespace,
        {
            "apiVersion": "apps.openshift.io/v1",
            "kind": "DeploymentConfig",
            "metadata": {"name": "probe"},
            "spec": {"replicas": 0, "template": {"spec": {"containers": []}}},
        },
    )
    return "rollingParams" in dc["spec"]["strategy"]


async def ca_bundles(kube: Kube, name: str) -> set[str]:
    found = set()
    for resource in (MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS):
        config = await kube.get(resource, None, name)
        found |= {w["clientConfig"].get("caBundle", "") for w in config["webhooks"]}
    return found


async def test_replicas_starting_together_share_one_ca(kube: Kube, crds: list[str]) -> None:
    name = f"admission-{uuid.uuid4().hex[:8]}"
    namespace = await new_namespace(kube, "admission-tls")
    await register_admission(kube, name, "https://127.0.0.1:1")
    replicas = [
        SecretCertificates(
            kube=kube,
            namespace=namespace,
            name="shared",
            hosts=("127.0.0.1",),
            webhook_configuration=name,
            validity=datetime.timedelta(days=1),
            serving=ServingContext(),
        )
        for _ in range(3)
    ]
    try:
        await asyncio.gather(*(replica.check() for replica in replicas))
        serials = {replica.serving.serial for replica in replicas}
        assert len(serials) == 1, "every replica serves the certificate in the one Secret"
        secret = await kube.get(SECRETS, namespace, "shared")
        assert (
            x509.load_pem_x509_certificate(
                base64.b64decode(secret["data"]["tls.crt"])
            ).serial_number
            in serials
        )
        assert await ca_bundles(kube, name) == {secret["data"]["ca.crt"]}
    finally:
        for replica in replicas:
            replica.serving.close()
        await unregister_admission(kube, name)


async def test_serving_certificate_is_renewed_and_still_trusted(
    controlplane: ControlPlane, kube: Kube, crds: list[str], tmp_path: Path
) -> None:
    async with admission_server(
        controlplane,
        kube,
        tmp_path,
        admission_cert_validity_s=6.0,
        admission_cert_check_interval_s=0.3,
    ) as (name, running):
        port = running.settings.admission_addr.port  # type: ignore[union-attr]
        first = await served_serial(port)
        assert await defaults_applied(kube, name)

        async def renewed() -> int | None:
            serial = await served_serial(port)
            return serial if serial != first else None

        # Renewed with a third of its six seconds left: within about four seconds.
        await eventually(renewed, timeout_s=30, interval_s=0.2, what="a renewed certificate")
        assert await defaults_applied(kube, name), "the API server trusts the renewed one"
        secret_namespace, _, secret_name = running.settings.admission_secret.partition("/")
        secret = await kube.get(SECRETS, secret_namespace, secret_name)
        assert await ca_bundles(kube, name) == {secret["data"]["ca.crt"]}


async def test_certificate_from_files_as_cert_manager_mounts_it(
    controlplane: ControlPlane, kube: Kube, crds: list[str], tmp_path: Path
) -> None:
    """cert-manager's Secret mounted as a directory; its CA injector fills the caBundle."""
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, ca_key = new_ca(now)
    directory = private_dir(tmp_path / "tls")

    def write_certificate() -> None:
        cert, key = issue(ca_cert, ca_key, ["127.0.0.1"], now=now, validity=datetime.timedelta(1))
        write_private(directory / "tls.crt", cert)
        write_private(directory / "tls.key", key)

    write_certificate()
    name = f"admission-{uuid.uuid4().hex[:8]}"
    port = free_port()
    await register_admission(
        kube, name, f"https://127.0.0.1:{port}", namespace_selector={"matchLabels": {LABEL: name}}
    )
    encoded = base64.b64encode(ca_cert).decode()
    for resource in (MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS):
        config = await kube.get(resource, None, name)
        for webhook in config["webhooks"]:
            webhook["clientConfig"]["caBundle"] = encoded  # what cainjector does
        await kube.replace(resource, None, name, config)
    token_file = tmp_path / "token"
    write_private(token_file, "unused-receiver-token-0123456789")
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=token_file,
        integrated_registry="registry.invalid:5000",
        admission_addr=HostPort("127.0.0.1", port),
        admission_cert_dir=directory,
        admission_cert_check_interval_s=0.3,
    )
    try:
        async with run_system(settings, [webhook_app.start]):
            first = await served_serial(port)
            assert await defaults_applied(kube, name)
            write_certificate()  # cert-manager renewed it

            async def reloaded() -> int | None:
                serial = await served_serial(port)
                return serial if serial != first else None

            await eventually(reloaded, timeout_s=30, interval_s=0.2, what="the new files served")
            assert await defaults_applied(kube, name)
            # The process never wrote a caBundle of its own in this mode.
            assert await ca_bundles(kube, name) == {encoded}
    finally:
        await unregister_admission(kube, name)


async def test_configurations_registered_after_the_start_get_the_ca_bundle_soon(
    controlplane: ControlPlane, kube: Kube, crds: list[str], tmp_path: Path
) -> None:
    """Helm may create the webhook configurations after the pods start: the webhook looks
    again every few seconds until both carry its CA, not only at the hourly check."""
    name = f"admission-{uuid.uuid4().hex[:8]}"
    secret_namespace = await new_namespace(kube, "admission-tls")
    port = free_port()
    token_file = tmp_path / "token"
    write_private(token_file, "unused-receiver-token-0123456789")
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_token_file=token_file,
        integrated_registry="registry.invalid:5000",
        admission_addr=HostPort("127.0.0.1", port),
        admission_secret=f"{secret_namespace}/admission-tls",
        admission_hosts=("127.0.0.1",),
        admission_webhook_configuration=name,
        admission_cert_check_interval_s=3600.0,
    )
    try:
        async with run_system(settings, [webhook_app.start]):
            await register_admission(
                kube,
                name,
                f"https://127.0.0.1:{port}",
                namespace_selector={"matchLabels": {LABEL: name}},
            )
            secret = await kube.get(SECRETS, secret_namespace, "admission-tls")

            async def patched() -> bool:
                return await ca_bundles(kube, name) == {secret["data"]["ca.crt"]}

            await eventually(patched, timeout_s=60, interval_s=0.5, what="the caBundle")
            assert await defaults_applied(kube, name)
    finally:
        await unregister_admission(kube, name)
