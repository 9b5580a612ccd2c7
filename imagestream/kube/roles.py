"""Installing OpenShift's image ClusterRoles from the chart's `files/openshift-image-roles.yaml`.

One source for the roles (`system:image-puller`, `system:image-pusher`,
`system:image-builder`, with OpenShift's rules): the chart renders that file,
and `imagestream dev` and the tests apply it unchanged, so what is tested is
what ships. Server-side apply, so applying twice is a no-op and a role edited
by hand is put back.

Failure it prevents: a local cluster (or test) on which the image-puller rule
(docs/openshift-behaviours.md#behaviour-16) can never allow anything because
the role OpenShift's RoleBindings name does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from imagestream.kube.client import APPLY_PATCH, FIELD_MANAGER, Kube
from imagestream.kube.resources import CLUSTERROLES

ROLES_FILE: Final = (
    Path(__file__).resolve().parents[2]
    / "charts"
    / "imagestream-controller"
    / "files"
    / "openshift-image-roles.yaml"
)


def load_image_roles(path: Path = ROLES_FILE) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


async def install_image_roles(kube: Kube, roles: list[dict[str, Any]]) -> list[str]:
    """Server-side apply each ClusterRole; returns the names applied."""
    applied: list[str] = []
    for role in roles:
        name = role["metadata"]["name"]
        await kube.patch(
            CLUSTERROLES,
            None,
            name,
            role,
            patch_type=APPLY_PATCH,
            field_manager=FIELD_MANAGER,
            force=True,
        )
        applied.append(name)
    return applied
