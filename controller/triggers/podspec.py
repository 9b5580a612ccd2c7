"""Pod specs inside workloads, and the JSON Patch that changes a container's image.

One table says where each kind keeps its pod spec; every planner, the
trigger reactors' cache trimming and the patch builders read it, so a kind
is never looked up in two places that could disagree.

The patch helpers write RFC 6902 JSON Patches that `test` every value they
were decided from (the container's name at that index, its image as read):
if the object changed after our read, the API server refuses the whole
patch and nothing of someone else's edit is overwritten.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal

ContainerKind = Literal["containers", "initContainers"]
"""The two container lists of a pod spec that a trigger may target."""

CONTAINER_KINDS: Final[tuple[ContainerKind, ...]] = ("containers", "initContainers")

POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Deployment": ("spec", "template", "spec"),
        "StatefulSet": ("spec", "template", "spec"),
        "DaemonSet": ("spec", "template", "spec"),
        "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
        "DeploymentConfig": ("spec", "template", "spec"),
    }
)
"""Kind -> the field names leading to its pod spec."""

JsonPatch = list[dict[str, Any]]
"""An RFC 6902 JSON Patch document."""


def json_pointer(*parts: str | int) -> str:
    """An RFC 6901 pointer: `json_pointer("a", "b/c", 0)` -> `/a/b~1c/0`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def pod_spec_at(obj: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    """The mapping at `path` in `obj` (the pod spec), or an empty mapping if absent."""
    node: object = obj
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def containers_in(pod_spec: Mapping[str, Any], kind: ContainerKind) -> list[Mapping[str, Any]]:
    """The `containers` or `initContainers` list; malformed entries read as empty mappings
    so that positions stay the positions of the list on the server."""
    items = pod_spec.get(kind)
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, Mapping) else {} for item in items]


def container_label(container_kind: ContainerKind, name: str) -> str:
    """`container "web"` or `init container "web"`, for messages."""
    noun = "init container" if container_kind == "initContainers" else "container"
    return f"{noun} {quoted(name)}"


def container_image(container: Mapping[str, Any]) -> str:
    """The container's image; empty when it has none (the API allows that for templates)."""
    image = container.get("image")
    return image if isinstance(image, str) else ""


def with_container_images(
    obj: Mapping[str, Any],
    *,
    pod_spec_path: Sequence[str],
    images: Iterable[tuple[ContainerKind, int, str]],
) -> dict[str, Any]:
    """A deep copy of `obj` with `(container_kind, index, image)` set in its pod spec."""
    result: dict[str, Any] = copy.deepcopy(dict(obj))
    pod_spec = pod_spec_at(result, pod_spec_path)
    for container_kind, index, image in images:
        pod_spec[container_kind][index]["image"] = image
    return result


def container_image_patch(
    obj: Mapping[str, Any],
    *,
    pod_spec_path: Sequence[str],
    container_kind: ContainerKind,
    index: int,
    new_image: str,
) -> JsonPatch:
    """`test` name, `test` old image, `replace` image; `add` when there is no image field
    (a `test` of an absent member would always fail)."""
    container = containers_in(pod_spec_at(obj, pod_spec_path), container_kind)[index]
    base = json_pointer(*pod_spec_path, container_kind, index)
    patch: JsonPatch = []
    name = container.get("name")
    if isinstance(name, str):
        patch.append(test_op(f"{base}/name", name))
    old = container.get("image")
    if isinstance(old, str):
        patch.append(test_op(f"{base}/image", old))
        patch.append({"op": "replace", "path": f"{base}/image", "value": new_image})
    else:
        patch.append(add_op(f"{base}/image", new_image))
    return patch


def annotation_pointer(key: str) -> str:
    """The pointer of one annotation: `/metadata/annotations/<key, escaped>`."""
    return json_pointer("metadata", "annotations", key)


def test_op(path: str, value: object) -> dict[str, Any]:
    return {"op": "test", "path": path, "value": value}


def add_op(path: str, value: object) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def quoted(text: str | None) -> str:
    """JSON quoting for messages: placeholders such as " " stay visible, odd characters escaped."""
    return json.dumps(text)
