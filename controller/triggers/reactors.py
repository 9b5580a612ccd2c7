"""The kinds of object that follow ImageStream tags, and the index from streams to them.

A `TriggerSource` bundles what differs per kind (as OpenShift's trigger
controller does): the API resource, what to keep of each object in the
cache, which streams an object follows, whether a change to it needs a
reconcile, and how to plan for it. Adding a kind means adding a source, not
editing the loop.

`TriggerIndex` maps `namespace/stream` to the keys of the objects whose
active triggers name it, so an ImageStream change wakes exactly those
objects and no list of all workloads is ever taken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.triggers import deploymentconfigs as dc_triggers
from controller.triggers import plan as annotation_triggers
from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    TRIGGER_ANNOTATION,
)
from imagestream.kube.resources import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    STATEFULSETS,
    Resource,
)
from imagestream.objects import Obj

_KEPT_ANNOTATIONS = (
    TRIGGER_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    LAST_APPLIED_IMAGES_ANNOTATION,
)


def _pod_spec_path(resource: Resource) -> tuple[str, ...]:
    if resource is CRONJOBS:
        return ("spec", "jobTemplate", "spec", "template", "spec")
    return ("spec", "template", "spec")


def _get_path(obj: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    node: Any = obj
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _set_path(obj: Obj, path: tuple[str, ...], value: Obj) -> None:
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


@dataclass(frozen=True)
class TriggerSource:
    resource: Resource
    index_keys: Callable[[Mapping[str, Any]], set[str]]
    is_deploymentconfig: bool = False

    def key(self, namespace: str, name: str) -> str:
        """The work-queue key: `<plural>/<namespace>/<name>`."""
        return f"{self.resource.plural}/{namespace}/{name}"

    def trim(self, obj: Obj) -> Obj:
        """Keep what planning and patching read; the cache holds thousands of these."""
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        kept: Obj = {
            "apiVersion": obj.get("apiVersion", self.resource.api_version),
            "kind": obj.get("kind", self.resource.kind),
            "metadata": {
                key: metadata[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "generation")
                if key in metadata
            },
        }
        if self.is_deploymentconfig:
            kept["metadata"]["annotations"] = dict(annotations)
            spec = obj.get("spec") or {}
            kept["spec"] = {k: spec[k] for k in ("triggers", "paused") if k in spec}
        elif TRIGGER_ANNOTATION in annotations:
            kept["metadata"]["annotations"] = {
                k: annotations[k] for k in _KEPT_ANNOTATIONS if k in annotations
            }
        elif annotations:
            # Keep an empty map, so a patch adding annotations knows the map exists.
            kept["metadata"]["annotations"] = {}
        path = _pod_spec_path(self.resource)
        pod_spec = _get_path(obj, path)
        trimmed_pod_spec: Obj = {}
        for container_kind in ("containers", "initContainers"):
            containers = pod_spec.get(container_kind)
            if isinstance(containers, list):
                trimmed_pod_spec[container_kind] = [
                    {k: c[k] for k in ("name", "image") if k in c}
                    for c in containers
                    if isinstance(c, Mapping)
                ]
        _set_path(kept, path, trimmed_pod_spec)
        return kept

    def needs_reconcile(self, old: Obj | None, new: Obj) -> bool:
        """Wake the object only when its triggers or targeted images may have changed."""
        if old is None or old is new:
            return bool(self.index_keys(new)) or self._has_triggers(new)
        return (
            (old.get("metadata") or {}).get("annotations")
            != (new.get("metadata") or {}).get("annotations")
            or old.get("spec") != new.get("spec")
        ) and (self._has_triggers(new) or self._has_triggers(old))

    def _has_triggers(self, obj: Mapping[str, Any]) -> bool:
        if self.is_deploymentconfig:
            return bool(dc_triggers.image_change_triggers(obj))
        return TRIGGER_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


ANNOTATION_SOURCES = tuple(
    TriggerSource(resource=resource, index_keys=annotation_triggers.index_keys)
    for resource in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS, CRONJOBS)
)
DEPLOYMENTCONFIG_SOURCE = TriggerSource(
    resource=DEPLOYMENTCONFIGS, index_keys=dc_triggers.index_keys, is_deploymentconfig=True
)


class TriggerIndex:
    """`namespace/stream` -> keys of the objects whose active triggers follow it."""

    def __init__(self) -> None:
        self._objects: dict[str, set[str]] = defaultdict(set)
        self._streams_of: dict[str, set[str]] = {}

    def update(self, object_key: str, stream_keys: set[str]) -> None:
        for stream in self._streams_of.pop(object_key, set()) - stream_keys:
            objects = self._objects.get(stream)
            if objects is not None:
                objects.discard(object_key)
                if not objects:
                    del self._objects[stream]
        if stream_keys:
            self._streams_of[object_key] = set(stream_keys)
            for stream in stream_keys:
                self._objects[stream].add(object_key)

    def remove(self, object_key: str) -> None:
        self.update(object_key, set())

    def objects_following(self, stream_key: str) -> set[str]:
        return set(self._objects.get(stream_key, ()))

    def __len__(self) -> int:
        return len(self._streams_of)
