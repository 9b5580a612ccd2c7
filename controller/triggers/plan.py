"""The planner for annotation-triggered workloads (semantics sections 2.4-2.6, behaviours
16-21), the outcome vocabulary shared with DeploymentConfigs, and the write helpers.

Invariant: a plan changes a container only when the resolved pull spec differs from the
image the container has now, so planning the object that results from applying a plan
yields a plan that writes nothing. That fixed point is the loop breaker: our own update
comes back as a watch event, is planned again, and stops there.

Failures it prevents:

* Write loops and wasted rollouts: a "changed" verdict on equal values would re-write the
  workload on every event it causes (behaviour 19).
* One bad trigger holding the others hostage: every trigger is decided on its own
  (behaviour 18), and a broken fieldPath is a per-trigger Warning, not an error that stops
  the whole object. (OpenShift fails the whole reconcile instead and retries it forever;
  retrying cannot fix a spec, and the valid triggers should keep working.)
* Clobbering a concurrent edit: the JSON Patch built here tests every value it was decided
  from, so a write based on a stale read fails instead of overwriting someone else's change.
* Fighting a human, when asked not to: with the `imagestream.dev/on-manual-change: pause`
  opt-in, an image changed by hand (say `kubectl rollout undo`) pauses its trigger instead
  of being reverted. Without the opt-in we revert, as OpenShift does.

Nothing here performs I/O: streams come from `get_stream`, a pure lookup in the informer
cache, and the reconciler performs whatever the plan says.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    TRIGGER_ANNOTATION,
    ContainerKind,
    ContainerSelector,
    FieldPathError,
    InvalidTriggers,
    ObjectFieldTrigger,
    PathOutsidePodSpec,
    annotations_of,
    format_last_applied_images,
    manual_change_pauses,
    namespace_of,
    object_triggers,
    parse_field_path,
    pause_triggers,
    pod_spec_path,
    read_last_applied_images,
)
from controller.triggers.resolve import resolve_latest_tagged_image

StreamGetter = Callable[[str, str], Mapping[str, Any] | None]
"""`get_stream(namespace, name)`: the cached ImageStream, or None. Must not do I/O."""

NamespacePolicy = Callable[[str, str], bool]
"""`namespace_allowed(workload_namespace, stream_namespace)`: may that stream trigger it?"""

JsonPatch = list[dict[str, Any]]
"""An RFC 6902 JSON Patch document."""

CONTAINER_KINDS: Final[tuple[ContainerKind, ...]] = ("containers", "initContainers")

_NO_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})


class Reason(StrEnum):
    """Why a trigger did or did not act. Values are stable: Events and `explain` print them."""

    APPLIED = "Applied"
    """The container image was set to the tag's current image."""
    UP_TO_DATE = "UpToDate"
    """The container already runs the tag's current image; nothing to write."""
    PAUSED = "Paused"
    """The trigger has `paused: true`; it is not followed until unpaused."""
    PAUSED_AFTER_MANUAL_CHANGE = "PausedAfterManualChange"
    """The image was changed by hand; the trigger is paused instead of reverting it (opt-in)."""
    TAG_NOT_FOUND = "TagNotFound"
    """The ImageStream exists but the tag has no image yet; the container is left alone."""
    STREAM_NOT_FOUND = "StreamNotFound"
    """The ImageStream does not exist (yet); the container is left alone."""
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    """The cross-namespace policy forbids this stream to trigger this object."""
    INVALID_FIELD_PATH = "InvalidFieldPath"
    """The tag resolves but the fieldPath does not follow the grammar."""
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    """The tag resolves but no container matches the fieldPath."""
    CONTAINER_ALREADY_TARGETED = "ContainerAlreadyTargeted"
    """An earlier trigger in the annotation names the same container; only it applies."""
    PATH_OUTSIDE_POD_SPEC = "PathOutsidePodSpec"
    """The fieldPath is outside the kind's pod spec; OpenShift silently ignores it."""
    NOT_IMAGE_STREAM_TAG = "NotImageStreamTag"
    """`from` is not an ImageStreamTag (other kind, or an apiVersion); never followed."""
    INVALID_TAG_REFERENCE = "InvalidTagReference"
    """`from.name` is not `<stream>:<tag>`; the trigger can never resolve."""
    INVALID_ANNOTATION = "InvalidAnnotation"
    """The annotation is not valid JSON or repeats a fieldPath; all triggers are off."""
    NOT_AUTOMATIC = "NotAutomatic"
    """A DeploymentConfig trigger with `automatic: false`; only `oc rollout latest` applies it."""
    REAPPLIED_LAST_TRIGGERED_IMAGE = "ReappliedLastTriggeredImage"
    """The tag is unresolved; containers were reset to the DeploymentConfig trigger's last image."""
    WAITING_FOR_OTHER_TRIGGERS = "WaitingForOtherTriggers"
    """Resolved, but not written: another automatic DeploymentConfig trigger has no image yet."""

    @property
    def is_warning(self) -> bool:
        """Whether an Event for this reason is a Warning: someone should fix something."""
        return self in _WARNING_REASONS


_WARNING_REASONS: Final = frozenset(
    {
        Reason.PAUSED_AFTER_MANUAL_CHANGE,
        Reason.NAMESPACE_NOT_ALLOWED,
        Reason.INVALID_FIELD_PATH,
        Reason.CONTAINER_NOT_FOUND,
        Reason.CONTAINER_ALREADY_TARGETED,
        Reason.INVALID_TAG_REFERENCE,
        Reason.INVALID_ANNOTATION,
    }
)


@dataclass(frozen=True, kw_only=True)
class TriggerOutcome:
    """What one trigger resolved to and why it did or did not act."""

    target: str
    """What the trigger writes: its fieldPath, or `spec.triggers[N]` for DeploymentConfigs."""
    source: str
    """What it follows, e.g. `ImageStreamTag shared/app:v1`."""
    reason: Reason
    message: str
    """One human-readable sentence, fit for an Event."""
    resolved_image: str | None = None
    """The tag's current pull spec, when it resolved."""


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
    last_applied_image: str
    """What this controller last wrote there."""
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


@dataclass(frozen=True, kw_only=True)
class Unresolved:
    """Why a `<namespace>/<stream>:<tag>` has no pull spec right now."""

    reason: Reason
    message: str


def same_namespace_only(workload_namespace: str, stream_namespace: str) -> bool:
    """The default policy: only streams in the workload's own namespace may trigger it."""
    return workload_namespace == stream_namespace


def allow_any_namespace(workload_namespace: str, stream_namespace: str) -> bool:
    """OpenShift's behaviour: any stream the controller can read may trigger any workload."""
    del workload_namespace, stream_namespace
    return True


def resolve_image_stream_tag(
    *,
    workload_namespace: str,
    stream_namespace: str,
    stream: str,
    tag: str,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy,
) -> str | Unresolved:
    """The pull spec of `<stream_namespace>/<stream>:<tag>` for a workload, or why not.

    The policy is asked before the cache, so a forbidden stream is never read and its
    existence never shows up in an outcome.
    """
    if not namespace_allowed(workload_namespace, stream_namespace):
        return Unresolved(
            reason=Reason.NAMESPACE_NOT_ALLOWED,
            message=f"ImageStreams in namespace {_q(stream_namespace)} may not trigger"
            f" objects in namespace {_q(workload_namespace)}",
        )
    image_stream = get_stream(stream_namespace, stream)
    if image_stream is None:
        return Unresolved(
            reason=Reason.STREAM_NOT_FOUND,
            message=f"ImageStream {stream_namespace}/{stream} not found",
        )
    image = resolve_latest_tagged_image(image_stream, tag)
    if image is None:
        return Unresolved(
            reason=Reason.TAG_NOT_FOUND,
            message=f"ImageStream {stream_namespace}/{stream} has no image for tag {_q(tag)}",
        )
    return image


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
    context = _Context(
        kind=kind,
        namespace=namespace_of(obj),
        pod_spec=pod_spec,
        owners=_container_owners(triggers, kind=kind, pod_spec=pod_spec),
        pause_on_manual_change=pause_on_manual_change,
        # Without the opt-in our bookkeeping annotation is neither read nor written.
        last_applied=read_last_applied_images(obj) if pause_on_manual_change else {},
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
        if wanted != context.last_applied:
            updates[LAST_APPLIED_IMAGES_ANNOTATION] = format_last_applied_images(wanted)
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
        patch.append(_test(_annotation_pointer(TRIGGER_ANNOTATION), triggers_value))
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
        patch.append(_add("/metadata/annotations", dict(annotations)))
        return patch
    for key, value in sorted(annotations.items()):
        pointer = _annotation_pointer(key)
        old = current.get(key)
        if old is None:
            patch.append(_add(pointer, value))
            continue
        if key != TRIGGER_ANNOTATION:  # already tested above
            patch.append(_test(pointer, old))
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


def json_pointer(*parts: str | int) -> str:
    """An RFC 6901 pointer: `json_pointer("a", "b/c", 0)` -> `/a/b~1c/0`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def pod_spec_at(obj: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    """The mapping at `path` in `obj` (the pod spec), or an empty mapping if absent."""
    node: object = obj
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def containers_in(pod_spec: Mapping[str, Any], kind: ContainerKind) -> list[Mapping[str, Any]]:
    """The `containers` or `initContainers` list; malformed entries read as empty mappings
    so that positions stay the positions of the list on the server."""
    items = pod_spec.get(kind)
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, Mapping) else {} for item in items]


def container_label(container_kind: ContainerKind, name: str) -> str:
    """`container "web"` or `init container "web"`, for messages."""
    noun = "init container" if container_kind == "initContainers" else "container"
    return f"{noun} {_q(name)}"


def container_image(container: Mapping[str, Any]) -> str:
    """The container's image; empty when it has none (the API allows that for templates)."""
    image = container.get("image")
    return image if isinstance(image, str) else ""


def with_container_images(
    obj: Mapping[str, Any],
    *,
    pod_spec_path: Sequence[str],
    images: Iterable[tuple[ContainerKind, int, str]],
) -> dict[str, Any]:
    """A deep copy of `obj` with `(container_kind, index, image)` set in its pod spec."""
    result: dict[str, Any] = copy.deepcopy(dict(obj))
    pod_spec = pod_spec_at(result, pod_spec_path)
    for container_kind, index, image in images:
        pod_spec[container_kind][index]["image"] = image
    return result


def container_image_patch(
    obj: Mapping[str, Any],
    *,
    pod_spec_path: Sequence[str],
    container_kind: ContainerKind,
    index: int,
    new_image: str,
) -> JsonPatch:
    """`test` name, `test` old image, `replace` image; `add` when there is no image field
    (a `test` of an absent member would always fail)."""
    container = containers_in(pod_spec_at(obj, pod_spec_path), container_kind)[index]
    base = json_pointer(*pod_spec_path, container_kind, index)
    patch: JsonPatch = []
    name = container.get("name")
    if isinstance(name, str):
        patch.append(_test(f"{base}/name", name))
    old = container.get("image")
    if isinstance(old, str):
        patch.append(_test(f"{base}/image", old))
        patch.append({"op": "replace", "path": f"{base}/image", "value": new_image})
    else:
        patch.append(_add(f"{base}/image", new_image))
    return patch


def find_container(
    pod_spec: Mapping[str, Any], selector: ContainerSelector
) -> tuple[int, Mapping[str, Any]] | None:
    """The position and container a selector names, or None."""
    containers = containers_in(pod_spec, selector.container_kind)
    if selector.index is not None:
        if selector.index < len(containers):
            return selector.index, containers[selector.index]
        return None
    for index, container in enumerate(containers):
        if container.get("name") == selector.name:
            return index, container
    return None


@dataclass(frozen=True, kw_only=True)
class _Context:
    kind: str
    namespace: str
    pod_spec: Mapping[str, Any]
    owners: Mapping[tuple[ContainerKind, int], str]
    pause_on_manual_change: bool
    last_applied: Mapping[str, str]
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
            owners.setdefault((selector.container_kind, found[0]), trigger.field_path)
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
            f"from.kind {_q(trigger.kind)} with apiVersion {_q(trigger.api_version)} is not an"
            " ImageStreamTag; only ImageStreamTag triggers are followed",
        )
    stream, tag = trigger.stream, trigger.tag
    if stream is None or tag is None:
        return decision(
            Reason.INVALID_TAG_REFERENCE,
            f"from.name {_q(trigger.name)} is not of the form <stream>:<tag>; this trigger"
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
            f"{path_error}; {source} resolved to {_q(resolved)} but nothing is updated",
            resolved,
        )
    found = find_container(context.pod_spec, selector)
    if found is None:
        return decision(
            Reason.CONTAINER_NOT_FOUND,
            f"no {selector.describe()} in the pod spec; {source} resolved to {_q(resolved)}"
            " but nothing is updated",
            resolved,
        )
    index, container = found
    name = container.get("name")
    container_name = name if isinstance(name, str) else ""
    described = container_label(selector.container_kind, container_name)
    owner = context.owners.get((selector.container_kind, index))
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
            f"{described} already runs {_q(resolved)}, the current image of {source}",
            resolved,
            record=resolved,
        )
    last_applied = context.last_applied.get(trigger.field_path)
    if context.pause_on_manual_change and last_applied is not None and current != last_applied:
        # Recording the hand-made image as accepted means that un-pausing resumes following
        # the tag, rather than seeing the same "manual change" again and pausing at once.
        return decision(
            Reason.PAUSED_AFTER_MANUAL_CHANGE,
            f"{described} was changed by hand to {_q(current)} (this controller last applied"
            f" {_q(last_applied)}); the trigger is paused instead of reverting it to"
            f' {_q(resolved)}. Set "paused": false to follow {source} again',
            resolved,
            pause=PauseTrigger(
                trigger=trigger,
                container_kind=selector.container_kind,
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
        f"{described} image set from {_q(current)} to {_q(resolved)}, the current image of"
        f" {source}",
        resolved,
        change=ContainerChange(
            container_kind=selector.container_kind,
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


def _kind(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind")
    return kind if isinstance(kind, str) else ""


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _annotation_pointer(key: str) -> str:
    return json_pointer("metadata", "annotations", key)


def _test(path: str, value: object) -> dict[str, Any]:
    return {"op": "test", "path": path, "value": value}


def _add(path: str, value: object) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _q(text: str | None) -> str:
    # JSON quoting keeps placeholders such as " " visible and escapes odd characters.
    return json.dumps(text)
