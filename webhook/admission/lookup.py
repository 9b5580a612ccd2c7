"""Image lookup: a pod naming `stream:tag` runs that tag's image (OpenShift's `lookupPolicy.local`).

OpenShift's image policy admission resolves "local names" in Pods and in the pod templates
of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and DeploymentConfigs
(docs/openshift-behaviours.md#behaviour-30). A local name is an image with no registry and
no repository path: `app`, `app:v1`, `app@sha256:...`. It is resolved when an ImageStream of
that name in the object's namespace has `spec.lookupPolicy.local: true`, or when the object
(or its pod template) carries `alpha.image.policy.openshift.io/resolve-names: "*"`:

- `app:v1` becomes the tag's current pull spec (the head of its history, through the
  integrated registry when the tag's `referencePolicy` is Local), the same pull spec a
  trigger writes;
- a tag with no image yet becomes `<status.dockerImageRepository>:v1` when the stream has an
  integrated-registry repository (a pull from the stream, never from Docker Hub), and is
  left alone otherwise;
- `app@sha256:...` becomes the pull spec recorded for that image in the stream's history.

Invariant: only local names are touched, and only by a stream of the object's own
namespace; anything else (a name with a registry or a path, a stream that does not resolve
names, an unknown digest) is left exactly as written. The functions here are pure: the
server fetches the streams `local_names()` asks for and passes them to `rewrite()`.

The failure it prevents: `app:v1` being pulled from Docker Hub (`docker.io/library/app`)
on a cluster where the user meant the stream.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from imagestream.imagestreams import resolve_latest_tagged_image

Obj = dict[str, Any]

RESOLVE_NAMES: Final = "alpha.image.policy.openshift.io/resolve-names"
# A stream name (a DNS subdomain-ish path segment), then a tag or a digest.
_LOCAL_NAME = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>[a-z0-9]+:[a-f0-9]{32,}))?$"
)
TEMPLATE_PATHS: Final = {
    # kind -> the keys from the object to its pod template (spec.template, ...).
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "DeploymentConfig": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
CONTAINER_LISTS: Final = ("initContainers", "containers")


def _template(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    path = TEMPLATE_PATHS.get(kind)
    if path is None:
        return None
    node: object = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def _annotations(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    metadata = (obj or {}).get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}


def resolves_all_names(obj: Mapping[str, Any], kind: str) -> bool:
    """The annotation on the object itself or on its pod template."""
    template = _template(obj, kind)
    return "*" in (
        _annotations(obj).get(RESOLVE_NAMES),
        _annotations(template).get(RESOLVE_NAMES),
    )


def _containers(template: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        return
    for key in CONTAINER_LISTS:
        containers = spec.get(key)
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, Mapping) and isinstance(container.get("image"), str):
                yield container


def local_names(obj: Mapping[str, Any], kind: str) -> set[str]:
    """The stream names the object's images could resolve through (to be looked up)."""
    template = _template(obj, kind)
    if template is None:
        return set()
    names = set()
    for container in _containers(template):
        match = _LOCAL_NAME.match(container["image"])
        if match:
            names.add(match["name"])
    return names


def resolve(image: str, stream: Mapping[str, Any] | None, *, force: bool) -> str | None:
    """The pull spec `image` resolves to through `stream`, or None to leave it as written."""
    match = _LOCAL_NAME.match(image)
    if match is None or stream is None:
        return None
    spec = stream.get("spec") if isinstance(stream.get("spec"), Mapping) else {}
    lookup = spec.get("lookupPolicy") if isinstance(spec, Mapping) else None
    local = isinstance(lookup, Mapping) and lookup.get("local") is True
    if not (local or force):
        return None
    status = stream.get("status") if isinstance(stream.get("status"), Mapping) else {}
    repository = status.get("dockerImageRepository") if isinstance(status, Mapping) else None
    digest = match["digest"]
    if digest:
        for tag in (status or {}).get("tags") or []:
            for item in (tag or {}).get("items") or []:
                if isinstance(item, Mapping) and item.get("image") == digest:
                    reference = item.get("dockerImageReference")
                    if isinstance(reference, str) and reference:
                        return reference
        return f"{repository}@{digest}" if isinstance(repository, str) and repository else None
    tag_name = match["tag"] or "latest"
    resolved = resolve_latest_tagged_image(stream, tag_name)
    if resolved is not None:
        return resolved
    if isinstance(repository, str) and repository:
        return f"{repository}:{tag_name}"
    return None


def unresolved(
    obj: Mapping[str, Any], kind: str, streams: Mapping[str, Mapping[str, Any]]
) -> set[str]:
    """Names of `streams` that leave one of the object's local names unresolved.

    The server reads those again from the API server: a cached copy may predate the
    `lookupPolicy` or the tag a user set a moment ago.
    """
    template = _template(obj, kind)
    if template is None:
        return set()
    force = resolves_all_names(obj, kind)
    names = set()
    for container in _containers(template):
        match = _LOCAL_NAME.match(container["image"])
        stream = streams.get(match["name"]) if match else None
        if match and stream is not None and not resolve(container["image"], stream, force=force):
            names.add(match["name"])
    return names


def rewrite(
    obj: Mapping[str, Any], kind: str, streams: Mapping[str, Mapping[str, Any]]
) -> Obj | None:
    """The object with its local names resolved; None when nothing changes.

    `streams`: the object's namespace's ImageStreams by name (those `local_names` asked for
    that exist).
    """
    out: Obj = copy.deepcopy(dict(obj))
    template = _template(out, kind)
    if template is None:
        return None
    force = resolves_all_names(obj, kind)
    changed = False
    for container in _containers(template):
        match = _LOCAL_NAME.match(container["image"])
        if match is None:
            continue
        resolved = resolve(container["image"], streams.get(match["name"]), force=force)
        if resolved is not None and resolved != container["image"]:
            container["image"] = resolved  # type: ignore[index]
            changed = True
    return out if changed else None
