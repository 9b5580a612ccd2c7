"""`verify: registry` against the integrated registry the system runs itself (issue 14, point 6).

A webhook (the component alone) with `verify: registry` receivers gets real
notifications from real registries after real skopeo pushes, and must ask
the registry for the digest before recording it:

- the integrated registry (`--integrated-registry`) is plain HTTP on
  loopback, as in `imagestream dev` and these tests: verification speaks
  plain HTTP to it and records the pushed digest (it used to insist on TLS,
  fail the handshake and record only `ImportSuccess=False`);
- any other registry gets plain HTTP only when asked for in so many words
  (the receiver's `insecure: true`, or a tag's `importPolicy.insecure`):
  another loopback registry is still spoken to over verified HTTPS, and a
  push there is refused with the TLS failure as the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS
from localdev.controlplane import ControlPlane
from localdev.private import private_dir, write_private
from localdev.registry import NotificationEndpoint, Registry
from localdev.system import local_settings, run_system
from tests.integration.conftest import eventually, new_namespace
from tests.integration.test_receivers import seed_stream
from webhook import app as webhook_app

TOKEN = "verify-registry-token-0123456789"


def _receiver(name: str, *, integrated: bool = False, insecure: bool = False) -> dict[str, Any]:
    receiver: dict[str, Any] = {
        "name": name,
        "type": "distribution",
        "verify": "registry",
        "auth": {"type": "bearer", "secretFiles": ["token"]},
    }
    if integrated:
        receiver["integrated"] = True
    if insecure:
        receiver["insecure"] = True
    return receiver


@contextlib.asynccontextmanager
async def verifying_webhook(
    controlplane: ControlPlane, workdir: Path, receivers: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Registry]]:
    """A webhook with `receivers`, and one registry notifying each (by receiver name).

    The registry of the `integrated` receiver is the `--integrated-registry`.
    """
    write_private(private_dir(workdir) / "token", TOKEN + "\n")
    config = write_private(workdir / "receivers.yaml", yaml.safe_dump({"receivers": receivers}))
    settings = local_settings(
        kubeconfig=controlplane.kubeconfig_path,
        webhook_config=config,
        allowed_registries=("127.0.0.1:*",),
    )
    registries: dict[str, Registry] = {}
    try:
        for receiver in receivers:
            name = receiver["name"]
            url = f"http://{settings.webhook_addr}/v1/events/{name}"
            registries[name] = Registry(
                workdir=workdir / name, notify=NotificationEndpoint(url=url, token=TOKEN)
            ).start()
            if receiver.get("integrated"):
                settings = dataclasses.replace(settings, integrated_registry=registries[name].host)
        async with run_system(settings, [webhook_app.start]):
            yield registries
    finally:
        for started in registries.values():
            started.stop()


@pytest.fixture(scope="module")
async def verifying(
    controlplane: ControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Registry]]:
    """`integrated` (the integrated registry) and `other` (a loopback registry that is not)."""
    receivers = [_receiver("integrated", integrated=True), _receiver("other")]
    workdir = tmp_path_factory.mktemp("verify-registry")
    async with verifying_webhook(controlplane, workdir, receivers) as registries:
        yield registries


def _push(registry: Registry, tmp_path: Path, destination: str) -> str:
    from localdev.images import make_oci_image, skopeo_push

    image = make_oci_image(tmp_path / uuid.uuid4().hex, destination)
    skopeo_push(image, f"{registry.host}/{destination}")
    return image.manifest_digest


async def _tag_status(kube: Kube, namespace: str, stream: str, tag: str) -> dict[str, Any] | None:
    """The tag's status once it has an item or a condition."""

    async def check() -> dict[str, Any] | None:
        try:
            found = await kube.get(IMAGESTREAMS, namespace, stream)
        except Exception:  # not created yet
            return None
        for status in (found.get("status") or {}).get("tags") or []:
            if status.get("tag") != tag:
                continue
            conditions = [
                c
                for c in status.get("conditions") or []
                if c.get("reason") != "NotImportedByTests"  # seed_stream's own
            ]
            if status.get("items") or conditions:
                return dict(status)
        return None

    return await eventually(check, timeout_s=45, what=f"{stream}:{tag} written")


async def test_a_push_to_the_integrated_registry_is_verified_over_plain_http_on_loopback(
    verifying: dict[str, Registry], kube: Kube, tmp_path: Path
) -> None:
    namespace = await new_namespace(kube, "verify")
    digest = _push(verifying["integrated"], tmp_path, f"{namespace}/app:v1")
    status = await _tag_status(kube, namespace, "app", "v1")
    assert status is not None
    assert [c.get("message") for c in status.get("conditions") or []] == []
    (item,) = status["items"]
    assert item["image"] == digest
    assert (
        item["dockerImageReference"] == f"{verifying['integrated'].host}/{namespace}/app@{digest}"
    )


async def test_another_loopback_registry_is_not_spoken_to_over_plain_http_unasked(
    verifying: dict[str, Registry], kube: Kube, tmp_path: Path
) -> None:
    namespace = await new_namespace(kube, "verify")
    source = f"{verifying['other'].host}/{namespace}/app:v1"
    await seed_stream(kube, namespace, "follower", {"v1": source})
    _push(verifying["other"], tmp_path, f"{namespace}/app:v1")
    status = await _tag_status(kube, namespace, "follower", "v1")
    assert status is not None
    assert status.get("items") in (None, [])
    (condition,) = [c for c in status["conditions"] if c["type"] == "ImportSuccess"]
    assert condition["status"] == "False"
    assert "TLS" in condition["message"], condition


async def test_a_receiver_marked_insecure_verifies_over_plain_http(
    controlplane: ControlPlane, crds: list[str], kube: Kube, tmp_path: Path
) -> None:
    receivers = [_receiver("other-insecure", insecure=True)]
    async with verifying_webhook(controlplane, tmp_path / "webhook", receivers) as registries:
        registry = registries["other-insecure"]
        namespace = await new_namespace(kube, "verify")
        source = f"{registry.host}/{namespace}/app:v1"
        await seed_stream(kube, namespace, "follower", {"v1": source})
        digest = _push(registry, tmp_path, f"{namespace}/app:v1")
        status = await _tag_status(kube, namespace, "follower", "v1")
    assert status is not None
    (item,) = status["items"]
    assert item["image"] == digest
