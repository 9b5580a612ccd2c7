"""ImageStream status bookkeeping, as OpenShift's API server does it, in pure functions.

OpenShift keeps tag history, generations and tag tracking inside its API
server, on every write. A CRD has no server-side logic, so the webhook and
the controller apply the same rules here, on a copy of the object, before
they write it back. Nothing in this module does I/O.

The rules (behaviours 1, 2, 3, 9 and 10 of docs/openshift-behaviours.md):
- History is newest first; a new event is prepended unless the head already
  has the same reference or the same image (then the head is updated in
  place); anything that changes the head clears that tag's conditions
  (docs/openshift-behaviours.md#behaviour-1, docs/openshift-behaviours.md#behaviour-2).
- Unlike OpenShift, an event older than the head (by `created`) never moves
  the head back: it is inserted into the history in time order, or dropped
  if the history already holds it. Registries deliver at least once and in
  no guaranteed order, and a late event must not roll workloads back
  (docs/openshift-behaviours.md#behaviour-1). The webhook bounds a payload's
  push time by its time of receipt before it gets here
  (docs/delivery-semantics.md#late-and-reordered-events).
- Unlike OpenShift, history is capped (default 50 items), so an object never
  approaches etcd's size limit (docs/openshift-behaviours.md#behaviour-3).
- After a tag's head changes, the spec tags of the same stream that follow
  it (`from.kind: ImageStreamTag`, same namespace) get the same event.
  Followers in other streams are copied once, at spec-change time only
  (docs/openshift-behaviours.md#behaviour-9, docs/openshift-behaviours.md#behaviour-10).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imagestream.objects import Obj
from imagestream.references import is_valid_tag
from imagestream.timestamps import parse_rfc3339

DEFAULT_HISTORY_LIMIT = 50
IMPORT_SUCCESS = "ImportSuccess"
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class TagEvent:
    """One entry of `status.tags[].items`."""

    created: str
    docker_image_reference: str
    image: str
    generation: int

    def to_json(self) -> Obj:
        return {
            "created": self.created,
            "dockerImageReference": self.docker_image_reference,
            "image": self.image,
            "generation": self.generation,
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> TagEvent:
        return cls(
            created=str(item.get("created", "")),
            docker_image_reference=str(item.get("dockerImageReference", "")),
            image=str(item.get("image", "")),
            generation=int(item.get("generation") or 0),
        )


@dataclass(frozen=True)
class TagCondition:
    """A failed import (`ImportSuccess=False`); success is the absence of conditions."""

    reason: str
    message: str
    generation: int
    last_transition_time: str
    type: str = IMPORT_SUCCESS
    status: str = "False"

    def to_json(self) -> Obj:
        return {
            "type": self.type,
            "status": self.status,
            "lastTransitionTime": self.last_transition_time,
            "reason": self.reason,
            "message": self.message,
            "generation": self.generation,
        }


# The `date-time` format of the CRD's `created` (RFC 3339; four-digit year).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def tag_event_problem(tag: str, event: TagEvent | None) -> str | None:
    """Why the API server would refuse `event` on status tag `tag` (the CRD's schema), or None.

    Checked before a write, so an event that can never be stored costs no
    round trip and fails no batch-mate; it mirrors the schema in
    charts/imagestream-controller/crds/imagestreams.image.openshift.io.yaml.
    """
    if not is_valid_tag(tag):
        return f"tag {tag!r} is not a valid tag name"
    if event is None:
        return None
    if not event.docker_image_reference:
        return f"tag {tag}: the event has no dockerImageReference"
    if _DATE_TIME.fullmatch(event.created) is None or parse_rfc3339(event.created) is None:
        return f"tag {tag}: created {event.created!r} is not an RFC 3339 date-time"
    return None


def _older(event: TagEvent, than: TagEvent) -> bool:
    """Whether `event` happened strictly before `than` (unknown times are never older)."""
    mine, theirs = parse_rfc3339(event.created), parse_rfc3339(than.created)
    return mine is not None and theirs is not None and mine < theirs


# --- reading -----------------------------------------------------------------------------


def spec_tags(stream: Mapping[str, Any]) -> list[Obj]:
    return list((stream.get("spec") or {}).get("tags") or [])


def spec_tag(stream: Mapping[str, Any], tag: str) -> Obj | None:
    return next((t for t in spec_tags(stream) if t.get("name") == tag), None)


def status_tag(stream: Mapping[str, Any], tag: str) -> Obj | None:
    tags = (stream.get("status") or {}).get("tags") or []
    return next((t for t in tags if t.get("tag") == tag), None)


def head(stream: Mapping[str, Any], tag: str) -> TagEvent | None:
    """The current image of `tag` (its newest history item), if any."""
    entry = status_tag(stream, tag)
    items = (entry or {}).get("items") or []
    return TagEvent.from_json(items[0]) if items else None


def stream_generation(stream: Mapping[str, Any]) -> int:
    return int((stream.get("metadata") or {}).get("generation") or 0)


def split_from_name(name: str, *, default_stream: str) -> tuple[str, str]:
    """`tag` or `stream:tag` (ImageStreamTag `from.name`) into (stream, tag)."""
    stream, sep, tag = name.rpartition(":")
    if not sep:
        return default_stream, name or DEFAULT_TAG
    return stream or default_stream, tag or DEFAULT_TAG


# --- writing (on a copy) -----------------------------------------------------------------


def _status_tag_for_write(stream: Obj, tag: str) -> Obj:
    status = stream.setdefault("status", {})
    tags = status.get("tags")
    if tags is None:
        tags = status["tags"] = []
    for entry in tags:
        if entry.get("tag") == tag:
            return dict(entry)  # the caller stores it back with _store
    return {"tag": tag, "items": []}


def _store(stream: Obj, entry: Obj) -> None:
    tags: list[Obj] = stream["status"]["tags"]
    for index, existing in enumerate(tags):
        if existing.get("tag") == entry["tag"]:
            tags[index] = entry
            break
    else:
        tags.append(entry)
    # OpenShift returns tags sorted by name; keeping the same order makes our
    # writes deterministic and diffs readable.
    tags.sort(key=lambda t: str(t.get("tag", "")))


def add_tag_event(
    stream: Obj,
    tag: str,
    event: TagEvent,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    same_image_is_duplicate: bool = False,
) -> bool:
    """Record `event` on `tag` in `stream` (mutated); True if anything changed.

    `same_image_is_duplicate`: a head with the same reference and image counts
    as already recorded whatever its generation (the push path: re-pushing a
    digest writes nothing).
    """
    entry = _status_tag_for_write(stream, tag)
    items: list[Obj] = list(entry.get("items") or [])
    if items:
        current = TagEvent.from_json(items[0])
        if _older(event, current):
            return _insert_older_event(stream, entry, items, event, history_limit)
        same_ref = current.docker_image_reference == event.docker_image_reference
        same_image = current.image == event.image
        if (
            same_ref
            and same_image
            # A generation never moves back: a scheduled re-import of the same
            # image must not undo the generation a push recorded.
            and (same_image_is_duplicate or event.generation <= current.generation)
        ):
            return False
        if same_ref or same_image:
            # The head describes the same image: update it in place (keeping
            # its `created`), as OpenShift does.
            updated = dict(items[0])
            updated["dockerImageReference"] = event.docker_image_reference
            updated["image"] = event.image
            updated["generation"] = event.generation
            items[0] = updated
        else:
            items.insert(0, event.to_json())
    else:
        items = [event.to_json()]
    entry["items"] = items[:history_limit]
    entry["conditions"] = []
    _store(stream, entry)
    return True


def _insert_older_event(
    stream: Obj, entry: Obj, items: list[Obj], event: TagEvent, history_limit: int
) -> bool:
    """A late event: keep the head, place the event in time order (or drop a repeat)."""
    for item in items:
        existing = TagEvent.from_json(item)
        if (existing.docker_image_reference, existing.image) == (
            event.docker_image_reference,
            event.image,
        ):
            return False
    position = next(
        (i for i, item in enumerate(items) if _older(TagEvent.from_json(item), event)),
        len(items),
    )
    if position >= history_limit:
        return False  # older than everything we keep
    items.insert(position, event.to_json())
    entry["items"] = items[:history_limit]
    _store(stream, entry)
    return True


def set_import_failure(stream: Obj, tag: str, condition: TagCondition) -> bool:
    """Record a failed import on `tag`; True if anything changed.

    An identical condition (reason, message, generation) is not rewritten, so
    the same failure never causes a write loop.
    """
    entry = _status_tag_for_write(stream, tag)
    conditions = [c for c in entry.get("conditions") or [] if c.get("type") != condition.type]
    previous = next(
        (c for c in entry.get("conditions") or [] if c.get("type") == condition.type), None
    )
    if previous and (
        previous.get("reason"),
        previous.get("message"),
        previous.get("generation"),
        previous.get("status"),
    ) == (condition.reason, condition.message, condition.generation, condition.status):
        return False
    new = condition.to_json()
    if previous and previous.get("status") == condition.status:
        new["lastTransitionTime"] = previous.get("lastTransitionTime", new["lastTransitionTime"])
    entry["conditions"] = [*conditions, new]
    entry.setdefault("items", [])
    _store(stream, entry)
    return True


def followers(stream: Mapping[str, Any], tag: str) -> list[str]:
    """Spec tags of this stream that track `tag` of this same stream (direct followers only)."""
    metadata = stream.get("metadata") or {}
    name, namespace = metadata.get("name", ""), metadata.get("namespace", "")
    found = []
    for spec in spec_tags(stream):
        source = spec.get("from") or {}
        if source.get("kind") != "ImageStreamTag" or spec.get("name") == tag:
            continue
        if source.get("namespace") not in (None, "", namespace):
            continue
        source_stream, source_tag = split_from_name(
            str(source.get("name", "")), default_stream=name
        )
        if source_stream == name and source_tag == tag:
            found.append(str(spec["name"]))
    return found


def record(
    stream: Obj,
    tag: str,
    event: TagEvent,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    same_image_is_duplicate: bool = False,
) -> list[str]:
    """Add `event` to `tag` and to the tags that follow it; the tags that changed."""
    if not add_tag_event(
        stream,
        tag,
        event,
        history_limit=history_limit,
        same_image_is_duplicate=same_image_is_duplicate,
    ):
        return []
    changed = [tag]
    new_head = head(stream, tag)
    assert new_head is not None
    for follower in followers(stream, tag):
        if follower != tag and add_tag_event(
            stream, follower, new_head, history_limit=history_limit
        ):
            changed.append(follower)
    return changed


def copy_for_write(stream: Mapping[str, Any]) -> Obj:
    """A deep copy of what a status write sends: metadata (for the precondition) and status."""
    return {
        "apiVersion": stream.get("apiVersion", "image.openshift.io/v1"),
        "kind": stream.get("kind", "ImageStream"),
        "metadata": copy.deepcopy(stream.get("metadata") or {}),
        "spec": copy.deepcopy(stream.get("spec") or {}),
        "status": copy.deepcopy(stream.get("status") or {}),
    }


CACHE_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
"""ImageStream annotations no cache reader looks at, and often the largest: kubectl's copy
of the whole applied manifest."""


def trim_for_cache(stream: Obj) -> Obj:
    """What the ImageStream caches keep of a stream: all of it but `metadata.managedFields`
    and `CACHE_DROPPED_ANNOTATIONS` (at 20,000 streams, tens of MiB no reader uses).

    Safe for the writes made from the cache, which are all status PUTs: the API server
    takes a status update's metadata from the stored object, and a request without
    managedFields keeps the stored ones (so that clients unaware of them cannot drop
    them); tests/integration/test_push_intake.py checks both on the real API server.
    """
    metadata = stream.get("metadata")
    if not isinstance(metadata, dict):
        return stream
    kept = {key: value for key, value in metadata.items() if key != "managedFields"}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict) and any(k in annotations for k in CACHE_DROPPED_ANNOTATIONS):
        kept["annotations"] = {
            k: v for k, v in annotations.items() if k not in CACHE_DROPPED_ANNOTATIONS
        }
    return {**stream, "metadata": kept}


def copy_for_status_write(stream: Mapping[str, Any]) -> Obj:
    """`copy_for_write` without the deep copy, for the hot path (one per status write).

    Copies only what the writing functions of this module change in place:
    the top level, `metadata` and `status` (one level) and the `status.tags`
    list. Everything below is shared with `stream`, which stays untouched,
    because those functions replace a tag entry, its items and conditions
    with new objects instead of editing them (tests/unit/test_imagestream_copy.py
    holds them to that).
    """
    status = dict(stream.get("status") or {})
    if isinstance(status.get("tags"), list):
        status["tags"] = list(status["tags"])
    return {
        "apiVersion": stream.get("apiVersion", "image.openshift.io/v1"),
        "kind": stream.get("kind", "ImageStream"),
        "metadata": dict(stream.get("metadata") or {}),
        "spec": stream.get("spec") or {},
        "status": status,
    }


def all_images(stream: Mapping[str, Any]) -> Iterable[TagEvent]:
    for entry in (stream.get("status") or {}).get("tags") or []:
        for item in entry.get("items") or []:
            yield TagEvent.from_json(item)


def refresh_summary(stream: Obj) -> None:
    """Keep `status.summary` (ours, for `kubectl get is` columns) in line with the tags.

    A CRD printer column shows only the first match of a list, so the tag
    names and the newest update are kept here as plain values.
    """
    status = stream.setdefault("status", {})
    names: list[str] = []
    newest: tuple[datetime, str] | None = None
    for entry in status.get("tags") or []:
        items = entry.get("items") or []
        if not items:
            continue
        names.append(str(entry.get("tag", "")))
        created = str(items[0].get("created", ""))
        moment = parse_rfc3339(created)
        if moment is not None and (newest is None or moment > newest[0]):
            newest = (moment, created)
    summary: Obj = {"tags": ",".join(sorted(names))}
    if newest is not None:
        summary["updated"] = newest[1]
    status["summary"] = summary


def _as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def resolve_latest_tagged_image(stream: Mapping[str, Any], tag: str) -> str | None:
    """The pull spec of `tag`'s current image in `stream`, or None when the tag has none.

    OpenShift's `ResolveLatestTaggedImage` (docs/openshift-behaviours.md#behaviour-14): only
    the head of the history (`items[0]`) counts. `referencePolicy.type: Local` yields
    `<status.dockerImageRepository>@<items[0].image>` (pull through the integrated
    registry) when both parts are known; every other case yields
    `items[0].dockerImageReference` verbatim. Triggers and image lookup both use it, so a
    workload and a pod naming the same tag get the same pull spec.
    """
    tag = tag or DEFAULT_TAG
    entry: Mapping[str, Any] | None = None
    tags = _as_mapping(stream.get("status")).get("tags")
    for candidate in tags if isinstance(tags, list) else []:
        if isinstance(candidate, Mapping) and candidate.get("tag") == tag:
            items = candidate.get("items")
            if isinstance(items, list) and items and isinstance(items[0], Mapping):
                entry = items[0]
            break
    if entry is None:
        return None
    reference = entry.get("dockerImageReference")
    # The API server rejects an empty reference; if one slips through anyway the tag is
    # unresolved rather than a container image blanked (Kubernetes rejects "").
    if not isinstance(reference, str) or not reference:
        return None
    policy = None
    spec_tags_ = _as_mapping(stream.get("spec")).get("tags")
    for candidate in spec_tags_ if isinstance(spec_tags_, list) else []:
        if isinstance(candidate, Mapping) and candidate.get("name") == tag:
            policy = _as_mapping(candidate.get("referencePolicy")).get("type")
            break
    if policy == "Local":
        repository = _as_mapping(stream.get("status")).get("dockerImageRepository")
        image = entry.get("image")
        if isinstance(repository, str) and repository and isinstance(image, str) and image:
            return f"{repository}@{image}"
    return reference
