"""Writing an ImageStream's spec tags for a command: decided on a fresh read, guarded.

Invariant: every write is decided from the stream as just read and is conditional on
that read (a JSON Patch whose first op tests `metadata.resourceVersion`; a create for a
stream that did not exist). When someone else wrote in between, the patch or the create
fails, and the command reads again and decides again, a bounded number of times. So a
command never overwrites a concurrent change to another tag (the controller's status
writes do not touch the spec, so they never make a command retry).

Failure it prevents: the lost update of a read-modify-write without a precondition, where
two `imagestream tag` runs (or a tag and a `kubectl apply`) each drop the other's tag.

The decisions (`with_spec_tag`, `without_spec_tag`, `spec_tag_writes`) are pure.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from imagestream.cli.common import CommandError
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import Conflict, NotFound, PatchTestFailed
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.objects import Obj, mapping

log = structlog.get_logger(__name__)

WRITE_ATTEMPTS = 5


class StreamChanged(CommandError):
    """The stream kept changing under the command; nothing more was written."""


@dataclass(frozen=True)
class SpecWrite:
    """One write of a stream's `spec.tags`: the whole list, as it must become."""

    tags: list[Obj]
    create: bool = False
    """The stream does not exist: create it with these tags."""


Decide = Callable[[Obj | None], Sequence[SpecWrite]]
"""From the stream as read (None: it does not exist), the writes to make, in order."""


def spec_tag_list(stream: Mapping[str, Any] | None) -> list[Obj]:
    tags = mapping(mapping(stream).get("spec")).get("tags") if stream is not None else None
    return [dict(t) for t in tags or [] if isinstance(t, Mapping)]


def with_spec_tag(tags: Sequence[Mapping[str, Any]], tag: Mapping[str, Any]) -> list[Obj]:
    """`tags` with `tag` in place of the one of the same name (or appended)."""
    result = [dict(t) for t in tags]
    for index, existing in enumerate(result):
        if existing.get("name") == tag.get("name"):
            result[index] = dict(tag)
            return result
    result.append(dict(tag))
    return result


def without_spec_tag(tags: Sequence[Mapping[str, Any]], name: str) -> list[Obj]:
    return [dict(t) for t in tags if t.get("name") != name]


def same_tag(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal spec tags, a field set to null being the same as a field left out."""
    if a is None or b is None:
        return a is b
    return {k: v for k, v in a.items() if v is not None} == {
        k: v for k, v in b.items() if v is not None
    }


def spec_tag_writes(
    stream: Mapping[str, Any] | None, new_tags: Sequence[Mapping[str, Any]]
) -> list[SpecWrite]:
    """The writes that make `spec.tags` equal `new_tags` and ask for every `generation: 0`.

    `generation: 0` asks the controller to import (or resolve) a tag again, but only a
    write that changes the spec makes it look (docs/openshift-behaviours.md#behaviour-5).
    OpenShift's API server replaces the 0 with the stream's generation, so the next `0`
    is a change again; our CRD keeps the 0 as written. So when a tag that asks for an
    import already holds exactly that, one write first clears its generation (no new
    import by itself: the tag's source is unchanged), and the second sets the 0 again.
    """
    old_tags = spec_tag_list(stream)
    wanted = [dict(t) for t in new_tags]
    if stream is None:
        return [SpecWrite(tags=wanted, create=True)]
    old_by_name = {str(t.get("name")): t for t in old_tags}
    repeats = [
        t
        for t in wanted
        if t.get("generation") == 0 and same_tag(old_by_name.get(str(t.get("name"))), t)
    ]
    if not repeats and len(old_tags) == len(wanted) and all(map(same_tag, old_tags, wanted)):
        return []
    if not repeats:
        return [SpecWrite(tags=wanted)]
    cleared = [
        {**t, "generation": None} if any(t is r for r in repeats) else dict(t) for t in wanted
    ]
    return [SpecWrite(tags=cleared), SpecWrite(tags=wanted)]


def _patch_for(stream: Mapping[str, Any], tags: list[Obj]) -> list[Obj]:
    metadata = mapping(stream.get("metadata"))
    patch: list[Obj] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": metadata.get("resourceVersion"),
        }
    ]
    if "spec" not in stream or not isinstance(stream.get("spec"), Mapping):
        patch.append({"op": "add", "path": "/spec", "value": {"tags": tags}})
    else:
        patch.append({"op": "add", "path": "/spec/tags", "value": tags})
    return patch


async def read_stream(kube: Kube, namespace: str, name: str) -> Obj | None:
    try:
        return await kube.get(IMAGESTREAMS, namespace, name)
    except NotFound:
        return None


async def write_spec(kube: Kube, namespace: str, name: str, decide: Decide) -> Obj | None:
    """Read, decide, write (each write guarded by the read); the stream after, or None.

    Returns the stream as the last write left it (as read, when nothing needed writing;
    None when it does not exist and nothing was to be created).
    """
    for _ in range(WRITE_ATTEMPTS):
        stream = await read_stream(kube, namespace, name)
        writes = decide(copy.deepcopy(stream) if stream is not None else None)
        current = stream
        try:
            for write in writes:
                if write.create:
                    # NotFound here is the namespace: not retried, the caller says so.
                    current = await kube.create(
                        IMAGESTREAMS,
                        namespace,
                        {
                            "apiVersion": IMAGESTREAMS.api_version,
                            "kind": IMAGESTREAMS.kind,
                            "metadata": {"name": name, "namespace": namespace},
                            "spec": {"tags": write.tags},
                        },
                    )
                else:
                    assert current is not None
                    current = await kube.patch(
                        IMAGESTREAMS,
                        namespace,
                        name,
                        _patch_for(current, write.tags),
                        patch_type=JSON_PATCH,
                    )
                log.info(
                    "spec_tags_written",
                    imagestream=f"{namespace}/{name}",
                    tags=[t.get("name") for t in write.tags],
                    created=write.create,
                )
        except Conflict:
            continue  # created by someone else in between: read and decide again
        except (PatchTestFailed, NotFound) as error:
            if isinstance(error, NotFound) and current is None:
                raise
            continue  # someone wrote (or deleted) in between: read and decide again
        return current
    raise StreamChanged(f"imagestream {namespace}/{name} kept changing; try again")
