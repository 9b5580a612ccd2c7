"""Which of a workload's fields this controller set last, read from the API server's record.

The API server keeps, in `metadata.managedFields`, which field manager last set each field
of an object: an update that changes a value moves that field to the updater. The trigger
loop writes under its own manager name, `TRIGGER_FIELD_MANAGER`, so "was this value
written by us, or by someone after us" has an answer that no client can roll back.

Invariant: these readers only report what managedFields say; with no managedFields at all
(someone cleared them) ownership is `known=False` and the planner keeps its older rule,
trusting our bookkeeping annotation as written.

Failure it prevents: `kubectl rollout undo` on a Deployment replaces the pod template AND
every annotation with the old ReplicaSet's copy, so our own bookkeeping annotation
(`imagestream.dev/last-applied-images`) comes back as it was then and agrees with the
rolled-back image: read alone, the undo looks like no manual change, and the trigger
reverted it. managedFields are not part of that copy; after the undo they say that
kubectl, not we, set both the image and the bookkeeping.

Pure: reads the object it is given; the cache keeps our entries of managedFields
(`trim_managed_fields`) so the reconcile path reads the same as `imagestream explain`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from controller.triggers.podspec import CONTAINER_KINDS, ContainerKind
from imagestream.objects import mapping, metadata_of, string

TRIGGER_FIELD_MANAGER: Final = "imagestream-triggers"
"""The field manager of every trigger patch: distinct from the processes' default
(`imagestream-controller`, from the User-Agent), so only the trigger loop's writes count."""


@dataclass(frozen=True, kw_only=True)
class Ownership:
    """What managedFields say the trigger loop set last on one object."""

    known: bool = False
    """Whether the object carries managedFields at all. (Whether we ever wrote it cannot be
    told: the API server drops a manager's entry once others took all of its fields.)"""
    annotations: frozenset[str] = frozenset()
    """Annotation keys whose current value the trigger loop set."""
    images: frozenset[tuple[ContainerKind, str]] = frozenset()
    """(container kind, container name) whose current image the trigger loop set."""


UNKNOWN: Final = Ownership()


def ownership(obj: Mapping[str, Any], *, pod_spec_path: Sequence[str]) -> Ownership:
    """What the trigger loop set last on `obj`, whose pod spec lives at `pod_spec_path`."""
    entries = metadata_of(obj).get("managedFields")
    if not isinstance(entries, list):
        return UNKNOWN
    ours = _our_fields(entries)
    annotations: set[str] = set()
    images: set[tuple[ContainerKind, str]] = set()
    for fields in ours:
        annotated = mapping(mapping(fields.get("f:metadata")).get("f:annotations"))
        annotations.update(key[2:] for key in annotated if key.startswith("f:"))
        pod_spec: Mapping[str, Any] = fields
        for part in pod_spec_path:
            pod_spec = mapping(pod_spec.get(f"f:{part}"))
        for container_kind in CONTAINER_KINDS:
            for key, container in mapping(pod_spec.get(f"f:{container_kind}")).items():
                name = _container_name(key)
                if name is not None and "f:image" in mapping(container):
                    images.add((container_kind, name))
    return Ownership(
        known=True,
        annotations=frozenset(annotations),
        images=frozenset(images),
    )


def trim_managed_fields(metadata: Mapping[str, Any]) -> list[Any] | None:
    """The managedFields the cache keeps: the trigger loop's entries only (a few fields each);
    an empty list says the object has managedFields, None that it has none."""
    entries = metadata.get("managedFields")
    if not isinstance(entries, list):
        return None
    return [
        entry
        for entry in entries
        if isinstance(entry, Mapping)
        and entry.get("manager") == TRIGGER_FIELD_MANAGER
        and not entry.get("subresource")
    ]


def _our_fields(entries: list[Any]) -> list[Mapping[str, Any]]:
    return [
        mapping(entry.get("fieldsV1"))
        for entry in entries
        if isinstance(entry, Mapping)
        and entry.get("manager") == TRIGGER_FIELD_MANAGER
        and not entry.get("subresource")
    ]


def _container_name(key: str) -> str | None:
    # Containers are a list keyed by name: `k:{"name":"web"}` in FieldsV1.
    if not key.startswith("k:"):
        return None
    try:
        value = json.loads(key[2:])
    except ValueError:
        return None
    name = string(mapping(value).get("name"))
    return name or None
