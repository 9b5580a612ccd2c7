"""A real push to the registry `imagestream dev` printed, until its notification has moved
the tag (the tests of dev and of its secrets at rest both need one)."""

from __future__ import annotations

import uuid
from pathlib import Path

from imagestream.kube.client import connect
from imagestream.kube.resources import IMAGESTREAMS, NAMESPACES
from imagestream.objects import Obj
from localdev.images import make_oci_image, skopeo_push
from tests.integration.conftest import eventually

RECORDED_BUDGET_S = 60.0


async def push_and_wait_recorded(kubeconfig: Path, registry: str, tmp_path: Path) -> Obj:
    """skopeo pushes `<new namespace>/app:v1` to `registry`; the tag's first event, once
    it names the pushed digest (the ImageStream's status as read then)."""
    kube = await connect(kubeconfig)
    try:
        namespace = f"devpush-{uuid.uuid4().hex[:8]}"
        await kube.create(NAMESPACES, None, {"metadata": {"name": namespace}})
        image = make_oci_image(tmp_path / "image", f"dev push {namespace}")
        skopeo_push(image, f"{registry}/{namespace}/app:v1")

        async def recorded() -> Obj | None:
            try:
                stream = await kube.get(IMAGESTREAMS, namespace, "app")
            except Exception:  # not created yet
                return None
            for tag in (stream.get("status") or {}).get("tags") or []:
                event = (tag.get("items") or [{}])[0]
                if tag.get("tag") == "v1" and event.get("image") == image.manifest_digest:
                    return dict(event)
            return None

        return await eventually(
            recorded, timeout_s=RECORDED_BUDGET_S, what="the push recorded through the webhook"
        )
    finally:
        await kube.close()
