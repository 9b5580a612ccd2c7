"""The registry operator's `cluster` Config, made afresh for one test.

Why one helper: a test that deletes the Config and creates its own races a running
operator, which bootstraps a Config of its own as soon as it sees none. Whichever wins,
the test must end up with exactly the spec it asked for, not the bootstrap's storage.
"""

from __future__ import annotations

import contextlib
from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.resources import REGISTRY_CONFIGS

STORAGE_KINDS = ("emptyDir", "pvc", "s3")


async def replace_registry_config(kube: Kube, spec: dict[str, Any]) -> None:
    """`configs.imageregistry.operator.openshift.io/cluster` with `spec`: any Config there is
    deleted and a new one created; when the operator bootstrapped one in between, that one
    is given `spec`, its other storage kinds cleared."""
    with contextlib.suppress(NotFound):
        await kube.delete(REGISTRY_CONFIGS, None, "cluster")
    try:
        await kube.create(
            REGISTRY_CONFIGS,
            None,
            {
                "apiVersion": REGISTRY_CONFIGS.api_version,
                "kind": REGISTRY_CONFIGS.kind,
                "metadata": {"name": "cluster"},
                "spec": spec,
            },
        )
    except Conflict:
        storage = {kind: None for kind in STORAGE_KINDS} | dict(spec.get("storage") or {})
        await kube.patch(REGISTRY_CONFIGS, None, "cluster", {"spec": {**spec, "storage": storage}})
