"""What the API server would do to an ImageStream on a spec change, decided in pure code.

OpenShift's API server reacts to a changed spec tag in the same write: a `reference: true`
tag records `from.name` as it is (docs/openshift-behaviours.md#behaviour-8); a tag following
another tag copies that tag's head (docs/openshift-behaviours.md#behaviour-9 to
#behaviour-11); a `DockerImage` tag becomes due for import. A CRD has no such server-side
logic, so the controller does it, and records in status which spec it
processed (`status.observedGeneration`, `status.observedTags`), so nothing
is redone: a copy or an import happens once per change of the tag's
source, not once per reconcile.

A tag's generation is the stream's `metadata.generation` at which its
source last changed (OpenShift keeps it in `spec.tags[].generation`; a
client setting that field to 0 asks for the tag to be processed again; see
docs/openshift-behaviours.md#behaviour-4 and docs/openshift-behaviours.md#behaviour-5).
An importable tag is due while its generation is newer than both its head's
generation and its last failed import's generation (behaviours 6 and 7,
docs/openshift-behaviours.md#behaviour-6 and docs/openshift-behaviours.md#behaviour-7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagestream.imagestreams import (
    IMPORT_SUCCESS,
    TagCondition,
    TagEvent,
    all_images,
    head,
    spec_tags,
    split_from_name,
    status_tag,
    stream_generation,
)
from imagestream.recording import TagUpdate

StreamGetter = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class ImportRequest:
    """A DockerImage tag to import now."""

    tag: str
    from_name: str
    generation: int
    insecure: bool


@dataclass
class SpecSync:
    updates: list[TagUpdate] = field(default_factory=list)
    imports: list[ImportRequest] = field(default_factory=list)
    status_fields: dict[str, Any] = field(default_factory=dict)


def _fingerprint(spec: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    source = spec.get("from") or {}
    fingerprint: dict[str, Any] = {"name": spec["name"]}
    if source:
        fingerprint["from"] = {
            "kind": source.get("kind", ""),
            "name": source.get("name", ""),
            "namespace": source.get("namespace") or namespace,
        }
    fingerprint["reference"] = bool(spec.get("reference"))
    fingerprint["importMode"] = (spec.get("importPolicy") or {}).get("importMode") or "Legacy"
    return fingerprint


def _same(observed: Mapping[str, Any] | None, fingerprint: Mapping[str, Any]) -> bool:
    if observed is None:
        return False
    return all(observed.get(k) == v for k, v in fingerprint.items()) and (
        "from" in fingerprint or "from" not in observed
    )


def observed_tags(stream: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in (stream.get("status") or {}).get("observedTags") or []}


def tag_generations(stream: Mapping[str, Any]) -> dict[str, tuple[int, bool]]:
    """Each spec tag's generation, and whether it changed since the controller last looked."""
    metadata = stream.get("metadata") or {}
    namespace = str(metadata.get("namespace", ""))
    generation = stream_generation(stream)
    status = stream.get("status") or {}
    processed = int(status.get("observedGeneration") or 0)
    previous = observed_tags(stream)
    result: dict[str, tuple[int, bool]] = {}
    for spec in spec_tags(stream):
        before = previous.get(spec["name"])
        reprocess = spec.get("generation") == 0 and generation > processed
        # With the admission webhook, the API server stamps a new or changed tag (and one
        # sent with generation 0) with the new stream generation, as OpenShift does
        # (docs/openshift-behaviours.md#behaviour-5): a stamp newer than what was processed
        # for the tag is a change. One above the stream's generation was not stamped by us
        # (a manifest copied with its numbers) and is ignored, so it cannot repeat work.
        stamped = spec.get("generation")
        if (
            isinstance(stamped, int)
            and before is not None
            and int(before.get("generation") or 0) < stamped <= generation
        ):
            reprocess = True
        if before is not None and _same(before, _fingerprint(spec, namespace)) and not reprocess:
            result[spec["name"]] = (int(before["generation"]), False)
        else:
            result[spec["name"]] = (generation, True)
    return result


def import_due(stream: Mapping[str, Any], tag: str, tag_generation: int) -> bool:
    """Behaviour 6: due while the tag is newer than what was imported or failed.

    See docs/openshift-behaviours.md#behaviour-6.
    """
    current = head(stream, tag)
    seen = current.generation if current else 0
    for condition in (status_tag(stream, tag) or {}).get("conditions") or []:
        if condition.get("type") == IMPORT_SUCCESS:
            seen = max(seen, int(condition.get("generation") or 0))
            break
    return tag_generation > seen


def plan_spec_sync(
    stream: Mapping[str, Any],
    *,
    now: str,
    get_stream: StreamGetter,
    scheduled_due: bool = False,
    docker_image_repository: str = "",
) -> SpecSync:
    """The tag events, failures and imports a spec change calls for, and the bookkeeping.

    `docker_image_repository` is this stream's integrated-registry repository
    when it is about to be set in the same write (copies are rewritten to it).
    """
    metadata = stream.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    generations = tag_generations(stream)
    sync = SpecSync()
    observed = []
    for spec in spec_tags(stream):
        tag = spec["name"]
        generation, changed = generations[tag]
        observed.append({**_fingerprint(spec, namespace), "generation": generation})
        source = spec.get("from") or {}
        kind = source.get("kind")
        if kind == "DockerImage" and not spec.get("reference"):
            scheduled = bool((spec.get("importPolicy") or {}).get("scheduled"))
            if import_due(stream, tag, generation) or (scheduled and scheduled_due):
                sync.imports.append(
                    ImportRequest(
                        tag=tag,
                        from_name=str(source.get("name", "")),
                        generation=generation,
                        insecure=bool((spec.get("importPolicy") or {}).get("insecure")),
                    )
                )
            continue
        if not changed or not kind:
            continue
        update = _resolve_spec_tag(
            stream,
            spec,
            generation=generation,
            now=now,
            get_stream=get_stream,
            namespace=namespace,
            name=name,
            repository=docker_image_repository
            or (stream.get("status") or {}).get("dockerImageRepository", ""),
        )
        if update is not None:
            sync.updates.append(update)
    status = stream.get("status") or {}
    generation = stream_generation(stream)
    if status.get("observedGeneration") != generation:
        sync.status_fields["observedGeneration"] = generation
    if (status.get("observedTags") or []) != observed:
        sync.status_fields["observedTags"] = observed
    return sync


def _resolve_spec_tag(
    stream: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    generation: int,
    now: str,
    get_stream: StreamGetter,
    namespace: str,
    name: str,
    repository: str,
) -> TagUpdate | None:
    tag, source = spec["name"], spec["from"]
    kind, from_name = source.get("kind"), str(source.get("name", ""))
    source_namespace = source.get("namespace") or namespace

    def failed(reason: str, message: str) -> TagUpdate:
        return TagUpdate(
            tag=tag,
            failure=TagCondition(
                reason=reason, message=message, generation=generation, last_transition_time=now
            ),
        )

    def event(reference: str, image: str) -> TagUpdate:
        return TagUpdate(
            tag=tag,
            same_image_is_duplicate=False,
            event=TagEvent(
                created=now, docker_image_reference=reference, image=image, generation=generation
            ),
        )

    if kind == "DockerImage":  # reference: true (docs/openshift-behaviours.md#behaviour-8)
        return event(from_name, "")
    if kind == "ImageStreamTag":
        source_stream, source_tag = split_from_name(from_name, default_stream=name)
        same_stream = source_stream == name and source_namespace == namespace
        origin = stream if same_stream else get_stream(source_namespace, source_stream)
        if origin is None:
            return failed("NotFound", f"imagestream {source_namespace}/{source_stream} not found")
        current = head(origin, source_tag)
        if current is None:
            return None  # OpenShift accepts a missing source tag silently
        reference = current.docker_image_reference
        if not same_stream:
            reference = _rewrite_integrated(reference, origin, repository, current.image)
        return event(reference, current.image)
    if kind == "ImageStreamImage":
        source_stream, _, image_id = from_name.rpartition("@")
        source_stream = source_stream or name
        same_stream = source_stream == name and source_namespace == namespace
        origin = stream if same_stream else get_stream(source_namespace, source_stream)
        if origin is None:
            return failed("NotFound", f"imagestream {source_namespace}/{source_stream} not found")
        matches = {
            e.image: e for e in all_images(origin) if e.image and _digest_matches(e.image, image_id)
        }
        if not matches:
            return failed(
                "NotFound", f"image {image_id} not found in {source_namespace}/{source_stream}"
            )
        if len(matches) > 1:
            return failed(
                "Conflict", f"{image_id} matches {len(matches)} images; give more of the digest"
            )
        (found,) = matches.values()
        reference = found.docker_image_reference
        if not same_stream:
            reference = _rewrite_integrated(reference, origin, repository, found.image)
        return event(reference, found.image)
    return None


def _digest_matches(image: str, wanted: str) -> bool:
    return image == wanted or image.startswith(wanted) or image.split(":", 1)[-1].startswith(wanted)


def _rewrite_integrated(
    reference: str, origin: Mapping[str, Any], target_repository: str, image: str
) -> str:
    """Behaviour 11: a copy of an integrated-registry image points at this stream's repository.

    See docs/openshift-behaviours.md#behaviour-11.
    """
    source_repository = (origin.get("status") or {}).get("dockerImageRepository") or ""
    if (
        source_repository
        and target_repository
        and image
        and reference.startswith(source_repository + "@")
    ):
        return f"{target_repository}@{image}"
    return reference
