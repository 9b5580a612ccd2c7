"""openshift/library's image streams and templates, as a user migrating from OpenShift
would apply them (tests/fixtures/openshift-library/README.md says where they come from).

`process()` is a small `oc process`: parameters from the template's defaults (or given),
`generate: expression` values for the `[a-zA-Z0-9]{N}` and word-character forms the
library uses, `${NAME}` inside strings and `${{NAME}}` as a whole value. `mirrored()`
points a stream's registry.redhat.io tags at the loopback registry; nothing else changes.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openshift-library"
UPSTREAM_REGISTRY = "registry.redhat.io/"
SERVED_KINDS = frozenset({"ImageStream", "BuildConfig", "Deployment", "DeploymentConfig"})
_GENERATE = re.compile(r"^\[([^\]]+)\]\{(\d+)\}$")
_CLASSES = {
    "\\w": string.ascii_letters + string.digits + "_",
    "\\d": string.digits,
    "a-z": string.ascii_lowercase,
    "A-Z": string.ascii_uppercase,
    "0-9": string.digits,
}
_WHOLE = re.compile(r'"\$\{\{([A-Za-z0-9_]+)\}\}"')
_INSIDE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def _generated(expression: str) -> str:
    """A value for OpenShift's `[class]{N}` generator (classes of ranges, `\\w`, `\\d`)."""
    match = _GENERATE.match(expression)
    if match is None:
        raise ValueError(f"unsupported generate expression {expression!r}")
    spec, alphabet = match.group(1), ""
    for name, members in _CLASSES.items():
        if name in spec:
            alphabet += members
            spec = spec.replace(name, "")
    if spec or not alphabet:
        raise ValueError(f"unsupported generate expression {expression!r}")
    return "".join(secrets.choice(alphabet) for _ in range(int(match.group(2))))


def process(template: Mapping[str, Any], **given: str) -> list[dict[str, Any]]:
    """The template's objects with its parameters substituted (oc process)."""
    values: dict[str, str] = {}
    for parameter in template.get("parameters") or []:
        name = parameter["name"]
        if name in given:
            values[name] = given.pop(name)
        elif parameter.get("value") is not None:
            values[name] = str(parameter["value"])
        elif parameter.get("generate") == "expression":
            values[name] = _generated(str(parameter.get("from", "")))
        elif parameter.get("required"):
            raise ValueError(f"template parameter {name} is required")
        else:
            values[name] = ""
    if given:
        raise ValueError(f"not parameters of the template: {sorted(given)}")
    text = json.dumps(template["objects"])
    text = _WHOLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    text = _INSIDE.sub(
        lambda m: json.dumps(values[m.group(1)])[1:-1] if m.group(1) in values else m.group(0),
        text,
    )
    objects: list[dict[str, Any]] = json.loads(text)
    return objects


def served(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of kinds this project serves (no Service, Route or Secret)."""
    return [o for o in objects if o.get("kind") in SERVED_KINDS]


def mirrored(stream: Mapping[str, Any], registry: str) -> dict[str, Any]:
    """The stream with its registry.redhat.io tags imported from `registry` instead."""
    adapted = copy.deepcopy(dict(stream))
    for tag in (adapted.get("spec") or {}).get("tags") or []:
        source = tag.get("from") or {}
        name = source.get("name", "")
        if source.get("kind") == "DockerImage" and name.startswith(UPSTREAM_REGISTRY):
            source["name"] = f"{registry}/{name.removeprefix(UPSTREAM_REGISTRY)}"
            tag["importPolicy"] = dict(tag.get("importPolicy") or {}) | {"insecure": True}
    return adapted


def upstream_repository(stream: Mapping[str, Any], tag: str) -> str:
    """`<path>:<tag>` a stream's tag imports from at registry.redhat.io."""
    for entry in (stream.get("spec") or {}).get("tags") or []:
        if entry.get("name") == tag:
            name: str = (entry.get("from") or {}).get("name", "")
            if name.startswith(UPSTREAM_REGISTRY):
                return name.removeprefix(UPSTREAM_REGISTRY)
    raise KeyError(f"stream {stream['metadata']['name']} has no upstream tag {tag!r}")


def public_images_binding(namespace: str) -> dict[str, Any]:
    """What the chart's `rbac.publicImageNamespaces` makes in each namespace (test_chart
    checks the rendering matches): every authenticated subject may pull its images."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "system:image-puller-authenticated", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:image-puller",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": "system:authenticated",
            }
        ],
    }
