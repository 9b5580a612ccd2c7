"""Installing the project's CustomResourceDefinitions from the chart's `crds/`.

The chart's `crds/` directory is the one source of truth for our CRDs; the
tests and `imagestream dev` install from there, so what is tested is what
ships. A CRD whose API group the cluster already serves natively (OpenShift
serves `image.openshift.io` and `apps.openshift.io`) is skipped: installing a
CRD over a built-in API would shadow it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from imagestream.kube.client import APPLY_PATCH, FIELD_MANAGER, Kube
from imagestream.kube.resources import CRDS

REPO_CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "imagestream-controller" / "crds"
ESTABLISHED_TIMEOUT_S = 60.0


def load_crds(directory: Path = REPO_CRD_DIR) -> list[dict[str, Any]]:
    crds: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds


async def natively_served_groups(kube: Kube) -> set[str]:
    """API groups the server serves that are not backed by a CRD (built-in or aggregated)."""
    crds, _ = await kube.list(CRDS)
    return await kube.served_groups() - {crd["spec"]["group"] for crd in crds}


async def install_crds(kube: Kube, crds: list[dict[str, Any]]) -> list[str]:
    """Server-side apply each CRD and wait until it is Established; returns the names applied."""
    native = await natively_served_groups(kube)
    applied: list[str] = []
    for crd in crds:
        if crd["spec"]["group"] in native:
            continue
        name = crd["metadata"]["name"]
        await kube.patch(
            CRDS, None, name, crd, patch_type=APPLY_PATCH, field_manager=FIELD_MANAGER, force=True
        )
        applied.append(name)
    for name in applied:
        await _wait_established(kube, name)
    return applied


async def _wait_established(kube: Kube, name: str) -> None:
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    while time.monotonic() < deadline:
        crd = await kube.get(CRDS, None, name)
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"CRD {name} not Established within {ESTABLISHED_TIMEOUT_S}s")
