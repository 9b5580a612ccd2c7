"""Reading Kubernetes objects as plain JSON mappings, the one way we do it.

Every object we handle is a decoded JSON dict (`Obj`), as the API server sent
it or as an informer trimmed it. Its fields may be missing or, in an object
written by hand, of the wrong type; these accessors never raise for that:
a missing or wrongly typed field reads as empty. Planners built on them are
total functions, so one malformed object can never crash a loop that also
serves well-formed ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object as decoded JSON."""


def mapping(value: object) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def string(value: object) -> str:
    """`value` if it is a string, else the empty string."""
    return value if isinstance(value, str) else ""


def integer(value: object, default: int = 0) -> int:
    """`value` if it is an integer (a JSON bool is not), else `default`."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(obj.get("metadata"))


def name_of(obj: Mapping[str, Any]) -> str:
    return string(metadata_of(obj).get("name"))


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The namespace; empty for cluster-scoped objects."""
    return string(metadata_of(obj).get("namespace"))


def uid_of(obj: Mapping[str, Any]) -> str:
    return string(metadata_of(obj).get("uid"))


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """The annotations; an empty mapping when there are none."""
    return mapping(metadata_of(obj).get("annotations"))


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return mapping(metadata_of(obj).get("labels"))


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(obj.get("spec"))


def status_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(obj.get("status"))


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` (`name` for cluster-scoped objects), as caches and queues key objects."""
    namespace, name = namespace_of(obj), name_of(obj)
    return f"{namespace}/{name}" if namespace else name
