"""The real registry's notifications across outages of the webhook and of the registry.

- The webhook is down while pushes happen: distribution keeps retrying,
  and once the webhook is back every push lands, each exactly once.
- The registry is restarted with notifications still undelivered (its
  queue is in memory and lost): the scheduled import restores the tag
  within one import interval.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS
from localdev.controlplane import ControlPlane, free_port
from localdev.images import make_oci_image, skopeo_push
from localdev.registry import NotificationEndpoint, Registry
from tests.faults.conftest import TOKEN, Processes, figure
from tests.integration.conftest import eventually, new_namespace

PUSHES = 10
IMPORT_INTERVAL_S = 5.0
SLACK_S = 10.0
"""Process scheduling and a registry HEAD on a loaded two-core machine."""


def push(registry: Registry, directory: Path, destination: str) -> str:
    image = make_oci_image(directory / uuid.uuid4().hex, f"{destination}-{uuid.uuid4()}")
    skopeo_push(image, f"{registry.host}/{destination}")
    return image.manifest_digest


async def tag_items(kube: Kube, namespace: str, stream: str, tag: str) -> list[dict[str, Any]]:
    try:
        obj = await kube.get(IMAGESTREAMS, namespace, stream)
    except NotFound:
        return []
    for entry in (obj.get("status") or {}).get("tags") or []:
        if entry.get("tag") == tag:
            return list(entry.get("items") or [])
    return []


async def test_webhook_down_while_pushes_happen_every_push_lands_once(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
    tmp_path: Path,
) -> None:
    namespace = await new_namespace(kube, "whdown")
    webhook_addr = f"127.0.0.1:{free_port()}"
    registry = Registry(
        workdir=tmp_path / "registry",
        notify=NotificationEndpoint(
            url=f"http://{webhook_addr}/v1/events/distribution",
            token=TOKEN,
            timeout="1s",
            threshold=3,
            backoff="500ms",
        ),
    ).start()
    try:
        args = ("--watch-namespaces", namespace, "--integrated-registry", registry.host)
        webhook = processes.start(
            "webhook", controlplane.kubeconfig_path, *args, webhook_addr=webhook_addr
        )
        await webhook.wait_ready()
        first = await asyncio.to_thread(push, registry, tmp_path, f"{namespace}/app:before")

        async def landed_before() -> bool:
            items = await tag_items(kube, namespace, "app", "before")
            return bool(items) and items[0]["image"] == first

        await eventually(landed_before, what="a push while the webhook is up")

        webhook.stop()
        digests = {}
        for k in range(PUSHES):
            digests[f"t{k}"] = await asyncio.to_thread(
                push, registry, tmp_path, f"{namespace}/app:t{k}"
            )
        await asyncio.sleep(2.0)  # the registry has tried, failed and backed off by now
        back = processes.start(
            "webhook", controlplane.kubeconfig_path, *args, webhook_addr=webhook_addr
        )
        await back.wait_ready()
        returned = time.monotonic()

        async def all_landed() -> bool:
            for tag, digest in digests.items():
                items = await tag_items(kube, namespace, "app", tag)
                if not items or items[0]["image"] != digest:
                    return False
            return True

        await eventually(all_landed, timeout_s=60, interval_s=0.2, what="every push landed")
        took = time.monotonic() - returned
        await asyncio.sleep(2.0)  # a late redelivery would have written by now
        for tag, digest in digests.items():
            items = await tag_items(kube, namespace, "app", tag)
            assert [i["image"] for i in items] == [digest], f"{tag} recorded exactly once"
        applied = await back.metric("imagestream_webhook_events_total", outcome="applied")
        assert applied == PUSHES, f"{applied} applied for {PUSHES} pushes"
        figure(
            "webhook-down",
            pushes=PUSHES,
            landed=PUSHES,
            seconds_after_webhook_back=round(took, 2),
            duplicates_recorded=0,
        )
    finally:
        registry.stop()


async def test_registry_restarted_with_undelivered_notifications_import_restores(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
    tmp_path: Path,
) -> None:
    namespace = await new_namespace(kube, "regrestart")
    # Notifications go where nothing listens: every one stays queued, undelivered.
    registry = Registry(
        workdir=tmp_path / "registry",
        notify=NotificationEndpoint(
            url=f"http://127.0.0.1:{free_port()}/v1/events/distribution",
            token=TOKEN,
            timeout="1s",
            threshold=3,
            backoff="500ms",
        ),
    ).start()
    try:
        upstream = f"{registry.host}/mirror/app"
        v1 = await asyncio.to_thread(push, registry, tmp_path, "mirror/app:latest")
        controller = processes.start(
            "controller",
            controlplane.kubeconfig_path,
            "--watch-namespaces",
            namespace,
            "--import-interval",
            str(IMPORT_INTERVAL_S),
        )
        await controller.wait_ready()
        await kube.create(
            IMAGESTREAMS,
            namespace,
            {
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStream",
                "metadata": {"name": "app"},
                "spec": {
                    "tags": [
                        {
                            "name": "latest",
                            "from": {"kind": "DockerImage", "name": f"{upstream}:latest"},
                            "importPolicy": {"scheduled": True, "insecure": True},
                        }
                    ]
                },
            },
        )

        async def head_is(digest: str) -> bool:
            items = await tag_items(kube, namespace, "app", "latest")
            return bool(items) and items[0]["image"] == digest

        await eventually(lambda: head_is(v1), timeout_s=30, what="the first import")

        v2 = await asyncio.to_thread(push, registry, tmp_path, "mirror/app:latest")
        pushed = time.monotonic()
        await asyncio.to_thread(registry.stop)  # its notification queue is lost
        await asyncio.to_thread(registry.start)
        await eventually(
            lambda: head_is(v2),
            timeout_s=IMPORT_INTERVAL_S + SLACK_S,
            interval_s=0.2,
            what="the scheduled import restores the tag",
        )
        took = time.monotonic() - pushed
        figure(
            "registry-restart",
            import_interval_s=IMPORT_INTERVAL_S,
            seconds_from_push_to_restored=round(took, 2),
            within_interval=took <= IMPORT_INTERVAL_S + SLACK_S,
        )
    finally:
        registry.stop()
