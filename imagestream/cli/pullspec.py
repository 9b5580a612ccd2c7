"""Image references as `oc` reads them on its command line: split, never normalised.

Invariant: `parse(text)` splits a reference into registry, namespace, name, tag and
digest exactly as OpenShift's `reference.Parse` does, and `exact()` writes back only the
parts that were given (`nginx` stays `nginx`, `ns/app:v1` stays `ns/app:v1`). Text the
distribution grammar rejects raises `ValueError`.

Failure it prevents: a spec tag that differs from the one `oc tag` writes for the same
arguments. The shared `imagestream.references` module normalises (`nginx` ->
`docker.io/library/nginx:latest`), which is right for matching pushes to tags and wrong
here: `oc` records `from.name` as typed, and a first path segment is a namespace
(`openshift/ruby:2.0` is stream `ruby` in namespace `openshift`), not a registry.

Pure functions; no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from imagestream.references import NAME_TOTAL_LENGTH_MAX, is_valid_digest, is_valid_tag

# OpenShift's vendored copy of the old distribution grammar (note `[-]*` as a separator).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_NAME = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")


@dataclass(frozen=True)
class PullSpec:
    """OpenShift's `DockerImageReference`: every part as given, empty when absent."""

    registry: str = ""
    namespace: str = ""
    name: str = ""
    tag: str = ""
    id: str = ""

    def name_string(self) -> str:
        """`name@id`, else `name:tag`, else `name` (OpenShift's `NameString`)."""
        if not self.name:
            return ""
        if self.id:
            return f"{self.name}@{self.id}"
        if self.tag:
            return f"{self.name}:{self.tag}"
        return self.name

    def exact(self) -> str:
        """The parts that are set, joined (`DockerImageReferenceExact`); the id wins a tag."""
        name = self.name_string()
        if not name:
            return ""
        prefix = f"{self.registry}/" if self.registry else ""
        if self.namespace:
            prefix += f"{self.namespace}/"
        return prefix + name

    def with_id(self, image: str) -> PullSpec:
        return replace(self, id=image, tag="")


def _q(text: str) -> str:
    return json.dumps(text)


def parse(text: str) -> PullSpec:
    """Split `[registry/][namespace/]name[:tag][@digest]` as OpenShift does."""
    if not text:
        raise ValueError("repository name must have at least one component")
    remainder, at, digest = text.partition("@")
    if at and not is_valid_digest(digest):
        raise ValueError(f"invalid reference format: bad digest in {_q(text)}")
    name, tag = remainder, ""
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not is_valid_tag(tag):
            raise ValueError(f"invalid reference format: bad tag in {_q(text)}")
    if _NAME.fullmatch(name) is None:
        if _NAME.fullmatch(name.lower()) is not None:
            raise ValueError(
                f"invalid reference format: repository name must be lowercase: {_q(text)}"
            )
        raise ValueError(f"invalid reference format: {_q(text)}")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    first, slash, rest = name.partition("/")
    looks_like_host = "." in first or ":" in first or first == "localhost"
    if not slash:
        if "." in name or name.startswith("localhost"):
            # A registry alone: `quay.io`, `localhost:5000` (no image in it).
            return PullSpec(registry=f"{name}:{tag}" if tag else name, id=digest)
        return PullSpec(name=name, tag=tag, id=digest)
    registry, path = (first, rest) if looks_like_host else ("", name)
    namespace, slash, short = path.partition("/")
    if not slash:
        namespace, short = "", path
    return PullSpec(registry=registry, namespace=namespace, name=short, tag=tag, id=digest)


def split_stream_tag(text: str) -> tuple[str, str, bool]:
    """`stream:tag` -> (stream, tag, True); a missing or empty tag is `latest`.

    OpenShift's `SplitImageStreamTag`: the first `:` splits, and the flag says whether
    there was one at all.
    """
    stream, colon, tag = text.partition(":")
    return stream, tag or "latest", bool(colon)
