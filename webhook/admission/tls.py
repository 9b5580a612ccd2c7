"""Keeping the admission webhook's TLS certificate: in a shared Secret, or from files.

Two sources (docs/admission.md#certificates):

* Self-made (`--admission-secret`): the CA and serving certificate live in one Secret so
  every replica serves a certificate the same `caBundle` trusts. The Secret is created only
  if absent (409: another replica won; its Secret is read and used) and replaced only
  conditionally on the resourceVersion read (409: re-read; the winner's renewal is used).
  Each replica then makes the `caBundle` of our Mutating- and ValidatingWebhookConfiguration
  equal to the Secret's `ca.crt`, also by conditional writes.
* Files (`--admission-cert-dir`, e.g. cert-manager's Certificate Secret mounted): `tls.crt`
  and `tls.key` are re-read when they change; cert-manager's CA injector keeps the
  `caBundle`.

Invariant: the SSLContext the server uses is only ever loaded with a matching certificate
and key; a failed check keeps the last good certificate and is retried at the next interval.
The failure it prevents: replicas serving certificates from two CAs with one `caBundle`
(half the admission calls failing TLS), and an expired certificate failing every call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, KubeError, NotFound
from imagestream.kube.resources import (
    MUTATING_WEBHOOK_CONFIGURATIONS,
    SECRETS,
    VALIDATING_WEBHOOK_CONFIGURATIONS,
)
from webhook.admission.certs import Material, renewed, serial

log = structlog.get_logger(__name__)

ATTEMPTS = 5
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key")
LABELS = {
    "app.kubernetes.io/part-of": "imagestream-controller",
    "app.kubernetes.io/managed-by": "imagestream-webhook",
}


def _decode(secret: dict[str, Any]) -> Material | None:
    data = secret.get("data") or {}
    if not all(isinstance(data.get(k), str) for k in KEYS):
        return None
    raw = {k: base64.b64decode(data[k]) for k in KEYS}
    return Material(
        ca_bundle=raw["ca.crt"], ca_key=raw["ca.key"], cert=raw["tls.crt"], key=raw["tls.key"]
    )


def _encode(material: Material) -> dict[str, str]:
    values = (material.ca_bundle, material.ca_key, material.cert, material.key)
    return {k: base64.b64encode(v).decode() for k, v in zip(KEYS, values, strict=True)}


@dataclass
class ServingContext:
    """The server's SSLContext, reloaded in place (new handshakes get the new certificate)."""

    context: ssl.SSLContext = field(
        default_factory=lambda: ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    )
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="admission-")))
    serial: int | None = None

    def load(self, cert: bytes, key: bytes) -> None:
        # The TLS library reads files: written 0600 in a 0700 directory, removed at once.
        cert_path, key_path = self.directory / "tls.crt", self.directory / "tls.key"
        for path, content in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        try:
            self.context.load_cert_chain(cert_path, key_path)
        finally:
            for path in (cert_path, key_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.serial = serial(cert)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.directory.rmdir()


@dataclass
class SecretCertificates:
    """Self-made certificates kept in `namespace/name`, and the caBundle kept in step."""

    kube: Kube
    namespace: str
    name: str
    hosts: Sequence[str]
    webhook_configuration: str
    validity: datetime.timedelta
    serving: ServingContext

    async def check(self) -> bool:
        """Returns whether everything is in place (False: a configuration is missing)."""
        material = await self._ensure_secret()
        if serial(material.cert) != self.serving.serial:
            self.serving.load(material.cert, material.key)
            log.info("admission_certificate_loaded", serial=self.serving.serial)
        return await self._ensure_ca_bundle(material.ca_bundle)

    async def _ensure_secret(self) -> Material:
        for _ in range(ATTEMPTS):
            now = datetime.datetime.now(datetime.UTC)
            try:
                secret = await self.kube.get(SECRETS, self.namespace, self.name)
            except NotFound:
                material = renewed(None, self.hosts, now=now, validity=self.validity)
                assert material is not None
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {"name": self.name, "namespace": self.namespace, "labels": LABELS},
                    "data": _encode(material),
                }
                try:
                    await self.kube.create(SECRETS, self.namespace, body)
                except Conflict:
                    continue  # another replica created it first: use theirs
                log.info("admission_secret_created", secret=f"{self.namespace}/{self.name}")
                return material
            current = _decode(secret)
            material = renewed(current, self.hosts, now=now, validity=self.validity)
            if material is None:
                assert current is not None
                return current
            secret["data"] = {**(secret.get("data") or {}), **_encode(material)}
            try:
                await self.kube.replace(SECRETS, self.namespace, self.name, secret)
            except Conflict:
                continue  # another replica renewed it: read theirs
            log.info("admission_certificate_renewed", secret=f"{self.namespace}/{self.name}")
            return material
        raise KubeError(f"Secret {self.namespace}/{self.name}: contended past {ATTEMPTS} attempts")

    async def _ensure_ca_bundle(self, bundle: bytes) -> bool:
        encoded = base64.b64encode(bundle).decode()
        settled = True
        for resource in (MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS):
            for _ in range(ATTEMPTS):
                try:
                    config = await self.kube.get(resource, None, self.webhook_configuration)
                except NotFound:
                    # Not registered yet (Helm may create it after the pods start).
                    settled = False
                    break
                webhooks = config.get("webhooks") or []
                if all((w.get("clientConfig") or {}).get("caBundle") == encoded for w in webhooks):
                    break
                for webhook in webhooks:
                    webhook.setdefault("clientConfig", {})["caBundle"] = encoded
                try:
                    await self.kube.replace(resource, None, self.webhook_configuration, config)
                except Conflict:
                    continue
                log.info(
                    "admission_ca_bundle_patched",
                    configuration=f"{resource.kind}/{self.webhook_configuration}",
                )
                break
            else:
                settled = False
        return settled


@dataclass
class FileCertificates:
    """`tls.crt` and `tls.key` in a directory, reloaded when either changes."""

    directory: Path
    serving: ServingContext
    _signature: tuple[int, ...] | None = None

    async def check(self) -> bool:
        cert_path, key_path = self.directory / "tls.crt", self.directory / "tls.key"
        stats = [cert_path.stat(), key_path.stat()]
        signature = tuple(v for s in stats for v in (s.st_ino, s.st_mtime_ns, s.st_size))
        if signature != self._signature:
            self.serving.load(cert_path.read_bytes(), key_path.read_bytes())
            self._signature = signature
            log.info("admission_certificate_loaded", serial=self.serving.serial, source="files")
        return True


UNSETTLED_RECHECK_S = 5.0
"""How soon to look again while a configuration is missing or a check failed."""


async def keep(
    certificates: SecretCertificates | FileCertificates,
    interval_s: float,
    stop: asyncio.Event,
    *,
    settled: bool = True,
) -> None:
    """Check every `interval_s` until `stop` (every few seconds while not settled: a
    caBundle left empty for an hour would fail every call); a failed check keeps the last
    certificate."""
    while not stop.is_set():
        wait = interval_s if settled else min(interval_s, UNSETTLED_RECHECK_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return
        try:
            settled = await certificates.check()
        except (KubeError, OSError, ValueError, ssl.SSLError) as error:
            settled = False
            log.warning("admission_certificate_check_failed", error=str(error)[:256])
