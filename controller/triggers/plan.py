"""The planner for annotation-triggered workloads (behaviours 16-21,
docs/openshift-behaviours.md#behaviour-16 to #behaviour-21), the outcome vocabulary shared
with DeploymentConfigs, and the write helpers.

Invariant: a plan changes a container only when the resolved pull spec differs from the
image the container has now, so planning the object that results from applying a plan
yields a plan that writes nothing. That fixed point is the loop breaker: our own update
comes back as a watch event, is planned again, and stops there.

Failures it prevents:

* Write loops and wasted rollouts: a "changed" verdict on equal values would re-write the
  workload on every event it causes (behaviour 19, docs/openshift-behaviours.md#behaviour-19).
* One bad trigger holding the others hostage: every trigger is decided on its own
  (behaviour 18, docs/openshift-behaviours.md#behaviour-18), and a broken fieldPath is a
  per-trigger Warning, not an error that stops the whole object. (OpenShift fails the whole
  reconcile instead and retries it forever; retrying cannot fix a spec, and the valid
  triggers should keep working.)
* Clobbering a concurrent edit: the JSON Patch built here tests every value it was decided
  from, so a write based on a stale read fails instead of overwriting someone else's change.
* Fighting a human, when asked not to: with the `imagestream.dev/on-manual-change: pause`
  opt-in, an image changed by hand (say `kubectl rollout undo`) pauses its trigger instead
  of being reverted. Without the opt-in we revert, as OpenShift does. A Deployment's undo
  also restores our bookkeeping annotation from the old ReplicaSet, so the annotation alone
  cannot tell; the API server's field ownership can (`controller.triggers.ownership`): a
  record whose value someone else set is not trusted, and then only an image we set
  ourselves is not a manual change.

Nothing here performs I/O: streams come from `get_stream`, a pure lookup in the informer
cache, and the reconciler performs whatever the plan says.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    TRIGGER_ANNOTATION,
    ContainerSelector,
    FieldPathError,
    InvalidTriggers,
    LastApplied,
    ObjectFieldTrigger,
    PathOutsidePodSpec,
    format_last_applied,
    manual_change_pauses,
    object_triggers,
    parse_field_path,
    pause_triggers,
    pod_spec_path,
    read_last_applied,
)
from controller.triggers.outcomes import (
    NamespacePolicy,
    Reason,
    StreamGetter,
    TriggerOutcome,
    Unresolved,
    same_namespace_only,
)
from controller.triggers.ownership import UNKNOWN, Ownership, ownership
from controller.triggers.podspec import (
    ContainerKind,
    JsonPatch,
    add_op,
    annotation_pointer,
    container_image,
    container_image_patch,
    container_label,
    containers_in,
    pod_spec_at,
    quoted,
    test_op,
    with_container_images,
)
from controller.triggers.resolve import resolve_image_stream_tag
from imagestream.objects import annotations_of, integer, metadata_of, namespace_of

_NO_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class ContainerChange:
    """Set one container's image. `index` is the position in `container_kind`."""

    container_kind: ContainerKind
    container_name: str
    index: int
    old_image: str
    """The image as read; empty when the container has none."""
    new_image: str
    trigger: ObjectFieldTrigger
    stream_namespace: str
    stream: str
    tag: str


@dataclass(frozen=True, kw_only=True)
class PauseTrigger:
    """Pause `trigger` (write `paused: true`) instead of reverting a hand-made image change."""

    trigger: ObjectFieldTrigger
    container_kind: ContainerKind
    container_name: str
    index: int
    current_image: str
    """The image someone set by hand, which is kept."""
    last_applied_image: str | None
    """What this controller last wrote there; None when that record was replaced too."""
    resolved_image: str
    """What the tag says, which is not written."""


@dataclass(frozen=True, kw_only=True)
class TriggerPlan:
    """Everything to write for one object, and why. No write needed -> no API call."""

    changes: tuple[ContainerChange, ...] = ()
    pauses: tuple[PauseTrigger, ...] = ()
    annotation_updates: Mapping[str, str] = field(default_factory=lambda: _NO_ANNOTATIONS)
    """Annotation values to set: the triggers annotation (pauses) and the last-applied map."""
    outcomes: tuple[TriggerOutcome, ...] = ()

    @property
    def needs_write(self) -> bool:
        """Whether the plan asks for an API write at all."""
        return bool(self.changes or self.annotation_updates)


def plan_triggers(
    obj: Mapping[str, Any],
    *,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy = same_namespace_only,
) -> TriggerPlan:
    """Decide what the triggers annotation of a Deployment, StatefulSet, DaemonSet or
    CronJob asks to write now. Raises `UnsupportedKind` for any other kind."""
    kind = _kind(obj)
    path = pod_spec_path(kind)
    try:
        triggers = object_triggers(obj)
    except InvalidTriggers as error:
        return TriggerPlan(
            outcomes=(
                TriggerOutcome(
                    target=f"metadata.annotations[{TRIGGER_ANNOTATION}]",
                    source="",
                    reason=Reason.INVALID_ANNOTATION,
                    message=f"{error}; all triggers of this object are disabled",
                ),
            )
        )
    if not triggers:
        return TriggerPlan()
    pod_spec = pod_spec_at(obj, path)
    pause_on_manual_change = manual_change_pauses(obj)
    # Without the opt-in our bookkeeping annotation is neither read nor written.
    record = read_last_applied(obj) if pause_on_manual_change else LastApplied(images={})
    owned = ownership(obj, pod_spec_path=path) if pause_on_manual_change else UNKNOWN
    standing = _record_standing(record, owned)
    context = _Context(
        kind=kind,
        namespace=namespace_of(obj),
        pod_spec=pod_spec,
        owners=_container_owners(triggers, kind=kind, pod_spec=pod_spec),
        pause_on_manual_change=pause_on_manual_change,
        last_applied=record.images,
        record_restored=standing is _Standing.RESTORED,
        owned_images=owned.images,
        get_stream=get_stream,
        namespace_allowed=namespace_allowed,
    )
    decisions = [_decide(trigger, context) for trigger in triggers]
    changes = tuple(d.change for d in decisions if d.change is not None)
    pauses = tuple(d.pause for d in decisions if d.pause is not None)
    updates: dict[str, str] = {}
    if pauses:
        raw = annotations_of(obj)[TRIGGER_ANNOTATION]
        updates[TRIGGER_ANNOTATION] = pause_triggers(raw, {p.trigger.field_path for p in pauses})
    if context.pause_on_manual_change:
        # Level-based bookkeeping: entries of removed triggers go, decided triggers record
        # what the container runs after this plan, undecided ones keep their entry.
        field_paths = {trigger.field_path for trigger in triggers}
        wanted = {
            path: image for path, image in context.last_applied.items() if path in field_paths
        }
        wanted.update((d.trigger.field_path, d.record) for d in decisions if d.record is not None)
        text = format_last_applied(wanted, generation=integer(metadata_of(obj).get("generation")))
        # A record someone else set is rewritten even when its images are ours, so that its
        # ownership comes back to us; an identical text would not move it, so it is not sent.
        retake = standing is not _Standing.OURS
        if (wanted != context.last_applied or retake) and text != _record_text(obj):
            updates[LAST_APPLIED_IMAGES_ANNOTATION] = text
    return TriggerPlan(
        changes=changes,
        pauses=pauses,
        annotation_updates=MappingProxyType(updates),
        outcomes=tuple(d.outcome for d in decisions),
    )


def apply_changes(
    obj: Mapping[str, Any],
    changes: Iterable[ContainerChange],
    *,
    annotations: Mapping[str, str] = _NO_ANNOTATIONS,
) -> dict[str, Any]:
    """A deep copy of `obj` with the changed images and `annotations` set; `obj` is untouched.

    `apply_changes(obj, plan.changes, annotations=plan.annotation_updates)` is the object
    the plan describes.
    """
    result = with_container_images(
        obj,
        pod_spec_path=pod_spec_path(_kind(obj)),
        images=[(c.container_kind, c.index, c.new_image) for c in changes],
    )
    if annotations:
        metadata = result.setdefault("metadata", {})
        if not isinstance(metadata.get("annotations"), dict):
            metadata["annotations"] = {}
        metadata["annotations"].update(annotations)
    return result


def build_json_patch(
    obj: Mapping[str, Any],
    changes: Sequence[ContainerChange],
    *,
    annotations: Mapping[str, str] = _NO_ANNOTATIONS,
) -> JsonPatch:
    """The JSON Patch that turns `obj` (as read) into `apply_changes(obj, ...)`; [] if none.

    Why JSON Patch with `test` ops rather than a merge patch or a full PUT: the plan was
    decided from a cached read. Each image write is preceded by a `test` of the container's
    name (the index still points at the same container) and of the image we read, and the
    whole patch by a `test` of the triggers annotation we planned from. If anything moved in
    between (a `kubectl set image`, a rollback, a paused trigger) the API server rejects the
    whole patch (422) and the reconciler re-plans from fresh state, instead of
    silently overwriting someone else's change, which a merge patch or PUT-from-cache does.
    """
    if not changes and not annotations:
        return []
    current = annotations_of(obj)
    patch: JsonPatch = []
    triggers_value = current.get(TRIGGER_ANNOTATION)
    if triggers_value is not None:
        patch.append(test_op(annotation_pointer(TRIGGER_ANNOTATION), triggers_value))
    path = pod_spec_path(_kind(obj))
    for change in changes:
        patch += container_image_patch(
            obj,
            pod_spec_path=path,
            container_kind=change.container_kind,
            index=change.index,
            new_image=change.new_image,
        )
    if annotations and not isinstance(_metadata(obj).get("annotations"), Mapping):
        patch.append(add_op("/metadata/annotations", dict(annotations)))
        return patch
    for key, value in sorted(annotations.items()):
        pointer = annotation_pointer(key)
        old = current.get(key)
        if old is None:
            patch.append(add_op(pointer, value))
            continue
        if key != TRIGGER_ANNOTATION:  # already tested above
            patch.append(test_op(pointer, old))
        patch.append({"op": "replace", "path": pointer, "value": value})
    return patch


def index_keys(obj: Mapping[str, Any]) -> set[str]:
    """The `<namespace>/<stream>` keys named by the object's active triggers.

    The reverse index (stream -> objects) is built from these, so a stream change wakes
    exactly the objects that follow it. Paused and non-ImageStreamTag triggers are left out,
    as in OpenShift; an invalid annotation yields no keys (the object is not tracked).
    """
    try:
        triggers = object_triggers(obj)
    except InvalidTriggers:
        return set()
    return {key for trigger in triggers if trigger.active and (key := trigger.stream_key)}


@dataclass(frozen=True, kw_only=True)
class _Context:
    kind: str
    namespace: str
    pod_spec: Mapping[str, Any]
    owners: Mapping[tuple[ContainerKind, int], str]
    pause_on_manual_change: bool
    last_applied: Mapping[str, str]
    record_restored: bool
    """Our bookkeeping was set by someone else (an undo restored it): not trusted."""
    owned_images: frozenset[tuple[ContainerKind, str]]
    get_stream: StreamGetter
    namespace_allowed: NamespacePolicy


@dataclass(frozen=True, kw_only=True)
class _Decision:
    trigger: ObjectFieldTrigger
    outcome: TriggerOutcome
    change: ContainerChange | None = None
    pause: PauseTrigger | None = None
    record: str | None = None
    """The image to remember as last applied for this fieldPath, when decided."""


def _container_owners(
    triggers: Sequence[ObjectFieldTrigger], *, kind: str, pod_spec: Mapping[str, Any]
) -> dict[tuple[ContainerKind, int], str]:
    # The first trigger (in annotation order) naming a container owns it, whatever its state
    # or its stream's state. Ownership must not depend on which tags resolve right now: if it
    # did, two triggers aliasing one container (`containers[0]` and its name) would take
    # turns writing it as their tags come and go.
    owners: dict[tuple[ContainerKind, int], str] = {}
    for trigger in triggers:
        try:
            selector = parse_field_path(trigger.field_path, kind=kind)
        except FieldPathError:
            continue
        found = find_container(pod_spec, selector)
        if found is not None:
            owners.setdefault((found[0], found[1]), trigger.field_path)
    return owners


def _decide(trigger: ObjectFieldTrigger, context: _Context) -> _Decision:
    if trigger.follows_image_stream_tag:
        source = f"ImageStreamTag {trigger.namespace}/{trigger.name}"
    else:
        source = f"{trigger.kind or '(no kind)'} {trigger.name}"

    def decision(
        reason: Reason,
        message: str,
        resolved: str | None = None,
        *,
        change: ContainerChange | None = None,
        pause: PauseTrigger | None = None,
        record: str | None = None,
    ) -> _Decision:
        outcome = TriggerOutcome(
            target=trigger.field_path,
            source=source,
            reason=reason,
            message=message,
            resolved_image=resolved,
        )
        return _Decision(
            trigger=trigger, outcome=outcome, change=change, pause=pause, record=record
        )

    if trigger.paused:
        return decision(
            Reason.PAUSED,
            f'the trigger is paused ("paused": true): {source} is not followed until it is'
            " unpaused",
        )
    if not trigger.follows_image_stream_tag:
        return decision(
            Reason.NOT_IMAGE_STREAM_TAG,
            f"from.kind {quoted(trigger.kind)} with apiVersion {quoted(trigger.api_version)}"
            " is not an ImageStreamTag; only ImageStreamTag triggers are followed",
        )
    stream, tag = trigger.stream, trigger.tag
    if stream is None or tag is None:
        return decision(
            Reason.INVALID_TAG_REFERENCE,
            f"from.name {quoted(trigger.name)} is not of the form <stream>:<tag>; this trigger"
            " can never resolve",
        )
    path_error: FieldPathError | None = None
    selector: ContainerSelector | None = None
    try:
        selector = parse_field_path(trigger.field_path, kind=context.kind)
    except PathOutsidePodSpec as error:
        return decision(Reason.PATH_OUTSIDE_POD_SPEC, f"{error}; the trigger is ignored")
    except FieldPathError as error:
        # Reported only if the tag resolves, as OpenShift does: an unresolved trigger with a
        # bad path has nothing to write yet.
        path_error = error
    resolved = resolve_image_stream_tag(
        workload_namespace=context.namespace,
        stream_namespace=trigger.namespace,
        stream=stream,
        tag=tag,
        get_stream=context.get_stream,
        namespace_allowed=context.namespace_allowed,
    )
    if isinstance(resolved, Unresolved):
        return decision(resolved.reason, f"{resolved.message}; the container is left unchanged")
    if selector is None:
        return decision(
            Reason.INVALID_FIELD_PATH,
            f"{path_error}; {source} resolved to {quoted(resolved)} but nothing is updated",
            resolved,
        )
    found = find_container(context.pod_spec, selector)
    if found is None:
        return decision(
            Reason.CONTAINER_NOT_FOUND,
            f"no {selector.describe()} in the pod spec; {source} resolved to {quoted(resolved)}"
            " but nothing is updated",
            resolved,
        )
    container_kind, index, container = found
    name = container.get("name")
    container_name = name if isinstance(name, str) else ""
    described = container_label(container_kind, container_name)
    owner = context.owners.get((container_kind, index))
    if owner != trigger.field_path:
        return decision(
            Reason.CONTAINER_ALREADY_TARGETED,
            f"{described} is already targeted by the earlier trigger {owner}; only that"
            " trigger updates it",
            resolved,
        )
    current = container_image(container)
    if current == resolved:
        return decision(
            Reason.UP_TO_DATE,
            f"{described} already runs {quoted(resolved)}, the current image of {source}",
            resolved,
            record=resolved,
        )
    last_applied = context.last_applied.get(trigger.field_path)
    if context.record_restored:
        # The record came back with the image (a Deployment's undo copies both from the old
        # ReplicaSet), so it cannot say what we wrote last; field ownership can: an image we
        # did not set ourselves, on a trigger we have followed, was changed by someone else.
        mine = (container_kind, container_name) in context.owned_images
        manual = last_applied is not None and not mine
        what_we_applied = (
            "the image and this controller's record of what it applied were both replaced,"
            " as `kubectl rollout undo` does"
        )
        last_applied = None
    else:
        manual = last_applied is not None and current != last_applied
        what_we_applied = f"this controller last applied {quoted(last_applied or '')}"
    if context.pause_on_manual_change and manual:
        # Recording the hand-made image as accepted means that un-pausing resumes following
        # the tag, rather than seeing the same "manual change" again and pausing at once.
        return decision(
            Reason.PAUSED_AFTER_MANUAL_CHANGE,
            f"{described} was changed by hand to {quoted(current)} ({what_we_applied}); the"
            f" trigger is paused instead of reverting it to {quoted(resolved)}. Set"
            f' "paused": false to follow {source} again',
            resolved,
            pause=PauseTrigger(
                trigger=trigger,
                container_kind=container_kind,
                container_name=container_name,
                index=index,
                current_image=current,
                last_applied_image=last_applied,
                resolved_image=resolved,
            ),
            record=current,
        )
    return decision(
        Reason.APPLIED,
        f"{described} image set from {quoted(current)} to {quoted(resolved)}, the current image of"
        f" {source}",
        resolved,
        change=ContainerChange(
            container_kind=container_kind,
            container_name=container_name,
            index=index,
            old_image=current,
            new_image=resolved,
            trigger=trigger,
            stream_namespace=trigger.namespace,
            stream=stream,
            tag=tag,
        ),
        record=resolved,
    )


class _Standing(enum.Enum):
    """Who set the bookkeeping annotation's current value, as far as managedFields tell."""

    OURS = "ours"
    """We did; or there is no record; or the object has no managedFields (then we trust it,
    the rule from before ownership was read)."""
    EARLIER = "earlier"
    """Someone else set a record of the earlier form (no generation): an earlier version of
    this controller, under another field manager. Trusted, and rewritten so it becomes ours."""
    RESTORED = "restored"
    """Someone else set a record of ours: `kubectl rollout undo` copied it back from an old
    ReplicaSet, or it was edited by hand, or a manifest carried it. Not trusted: only field
    ownership says which images are still ours. Rewritten, so it becomes ours again."""


def _record_standing(record: LastApplied, owned: Ownership) -> _Standing:
    if not record.present or not owned.known:
        return _Standing.OURS
    if LAST_APPLIED_IMAGES_ANNOTATION in owned.annotations:
        return _Standing.OURS
    return _Standing.EARLIER if record.generation is None else _Standing.RESTORED


def _record_text(obj: Mapping[str, Any]) -> str | None:
    value = annotations_of(obj).get(LAST_APPLIED_IMAGES_ANNOTATION)
    return value if isinstance(value, str) else None


def _kind(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind")
    return kind if isinstance(kind, str) else ""


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def find_container(
    pod_spec: Mapping[str, Any], selector: ContainerSelector
) -> tuple[ContainerKind, int, Mapping[str, Any]] | None:
    """The list, position and container a selector names, or None.

    A position counts in the list the fieldPath names. A name is looked up in the init
    containers first, then in the containers, whichever list the fieldPath names, as
    OpenShift's trigger controller does (docs/openshift-behaviours.md#behaviour-17): `oc set
    triggers` writes `containers[?(@.name=="x")]` for an init container too, and such a
    trigger must still move it.
    """
    if selector.index is not None:
        containers = containers_in(pod_spec, selector.container_kind)
        if selector.index < len(containers):
            return selector.container_kind, selector.index, containers[selector.index]
        return None
    for container_kind in ("initContainers", "containers"):
        for index, container in enumerate(containers_in(pod_spec, container_kind)):
            if container.get("name") == selector.name:
                return container_kind, index, container
    return None
