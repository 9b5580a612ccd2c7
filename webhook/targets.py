"""Which ImageStream tags a push moves.

Two ways a push reaches a tag:
- On an `integrated` receiver, `<registry>/<namespace>/<name>:<tag>` is the
  ImageStream `<name>` in `<namespace>`, created on first push, and records
  `<registry>/<namespace>/<name>@<digest>`, as OpenShift's integrated
  registry does (docs/openshift-behaviours.md#behaviour-12). `<registry>` is
  always `--integrated-registry`, never a host the payload names (the intake
  ignores a payload naming another one).
- On every receiver, each `DockerImage` spec tag (not `reference: true`)
  whose `from.name` names the same registry, repository and tag gets the new
  digest at once, as an import would, recording `from.name` with the tag
  replaced by the digest (short names stay short, as OpenShift imports them;
  docs/openshift-behaviours.md#behaviour-6).

The second needs a reverse index from `registry/repository:tag` to spec
tags. It is kept current from the ImageStream watch, so a push costs a dict
lookup, never a list of all ImageStreams.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from imagestream.kube.resources import split_key
from imagestream.references import (
    name_as_written,
    normalize_registry,
    normalize_repository,
    parse_image_reference,
)
from webhook.events import PushRecord

# Kubernetes names: a namespace is a DNS label; a stream name also has to be
# a registry path component (docs/openshift-behaviours.md#names).
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_STREAM = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")


@dataclass(frozen=True)
class Target:
    """One tag to move: where, and what reference to record."""

    namespace: str
    stream: str
    tag: str
    name: str
    """The image name to record with the digest: `<name>@<digest>`."""
    create_repository: str = ""
    """Set for integrated pushes: create the stream with this status.dockerImageRepository."""
    insecure: bool = False


@dataclass(frozen=True)
class _Follower:
    stream_key: str
    tag: str
    from_name: str
    insecure: bool


def _tracked_key(registry: str, repository: str, tag: str) -> str:
    registry = normalize_registry(registry)
    return f"{registry}/{normalize_repository(registry, repository)}:{tag}"


class DockerImageTagIndex:
    """`registry/repository:tag` -> the DockerImage spec tags that import it."""

    def __init__(self) -> None:
        self._by_source: dict[str, set[_Follower]] = defaultdict(set)
        self._by_stream: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return sum(len(followers) for followers in self._by_source.values())

    def update(self, stream_key: str, stream: dict[str, Any] | None) -> None:
        """Re-index one stream (None: it was deleted)."""
        for source in self._by_stream.pop(stream_key, set()):
            followers = self._by_source.get(source)
            if followers is not None:
                followers.difference_update({f for f in followers if f.stream_key == stream_key})
                if not followers:
                    del self._by_source[source]
        if stream is None:
            return
        sources: set[str] = set()
        for spec in (stream.get("spec") or {}).get("tags") or []:
            origin = spec.get("from") or {}
            if origin.get("kind") != "DockerImage" or spec.get("reference"):
                continue
            from_name = str(origin.get("name", ""))
            try:
                parsed = parse_image_reference(from_name)
            except ValueError:
                continue  # the controller reports an invalid from.name on the tag
            if parsed.digest:
                continue  # pinned by digest: a push of a tag cannot move it
            source = _tracked_key(parsed.registry, parsed.repository, parsed.tag)
            insecure = bool((spec.get("importPolicy") or {}).get("insecure"))
            self._by_source[source].add(
                _Follower(stream_key, str(spec.get("name", "")), from_name, insecure)
            )
            sources.add(source)
        if sources:
            self._by_stream[stream_key] = sources

    def followers(self, registry: str, repository: str, tag: str) -> list[Target]:
        found = []
        for follower in self._by_source.get(_tracked_key(registry, repository, tag), ()):
            namespace, stream = split_key(follower.stream_key)
            found.append(
                Target(
                    namespace=namespace,
                    stream=stream,
                    tag=follower.tag,
                    name=name_as_written(follower.from_name),
                    insecure=follower.insecure,
                )
            )
        return sorted(found, key=lambda t: (t.namespace, t.stream, t.tag))


def integrated_target(record: PushRecord, *, registry: str) -> Target | str:
    """The ImageStream an integrated-registry push names, or why it names none."""
    parts = record.repository.split("/")
    if len(parts) != 2:
        return "not_namespace_and_name"
    namespace, stream = parts
    if not _NAMESPACE.match(namespace) or not _STREAM.match(stream) or len(stream) > 253:
        return "invalid_imagestream_name"
    repository = f"{registry}/{namespace}/{stream}"
    return Target(
        namespace=namespace,
        stream=stream,
        tag=record.tag,
        name=repository,
        create_repository=repository,
    )
