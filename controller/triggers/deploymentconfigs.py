"""DeploymentConfig `ImageChange` triggers (behaviours 22 and 24).

Invariant: a plan writes either nothing, or an image for every automatic trigger: each one
has resolved now or still has its `lastTriggeredImage`. While any automatic trigger has
neither, nothing at all is written, not even for the triggers that do resolve.

Failure it prevents: a first rollout with half of the images. The DeploymentConfig
controller rolls out as soon as every ImageChange trigger has a `lastTriggeredImage`;
writing the resolvable triggers early would also write their containers, and a later
rollout would then mix fresh images with placeholders. OpenShift waits for all of them,
and so do we.

`lastTriggeredImage` lives in `spec`, so the written values are also what makes the next
plan a no-op: a trigger whose tag still points at its `lastTriggeredImage`, with containers
already running it, has nothing to write.

Behaviours 22 and 24 are docs/openshift-behaviours.md#behaviour-22 and
docs/openshift-behaviours.md#behaviour-24.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.triggers.annotations import IMAGE_STREAM_TAG, split_stream_tag
from controller.triggers.outcomes import (
    NamespacePolicy,
    Reason,
    StreamGetter,
    TriggerOutcome,
    Unresolved,
    same_namespace_only,
)
from controller.triggers.podspec import (
    CONTAINER_KINDS,
    POD_SPEC_PATHS,
    ContainerKind,
    JsonPatch,
    container_image,
    container_image_patch,
    container_label,
    containers_in,
    json_pointer,
    pod_spec_at,
    with_container_images,
)
from controller.triggers.resolve import resolve_image_stream_tag
from imagestream.objects import namespace_of

POD_SPEC_PATH: Final = POD_SPEC_PATHS["DeploymentConfig"]
"""Where a DeploymentConfig keeps its pod spec."""


@dataclass(frozen=True, kw_only=True)
class ImageChangeTrigger:
    """One `spec.triggers[position].imageChangeParams`, with the API defaults applied."""

    position: int
    automatic: bool
    container_names: tuple[str, ...]
    kind: str
    """`from.kind`, `ImageStreamTag` when empty."""
    name: str
    namespace: str
    """`from.namespace`, the DeploymentConfig's namespace when empty."""
    last_triggered_image: str

    @property
    def target(self) -> str:
        return f"spec.triggers[{self.position}]"

    @property
    def source(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, kw_only=True)
class ContainerImageUpdate:
    """Set the image of the container at `index` in `container_kind`."""

    container_kind: ContainerKind
    index: int
    container_name: str
    old_image: str
    new_image: str


@dataclass(frozen=True, kw_only=True)
class LastTriggeredImageUpdate:
    """Set `trigger`'s `lastTriggeredImage` (old value: `trigger.last_triggered_image`)."""

    trigger: ImageChangeTrigger
    new_image: str


@dataclass(frozen=True, kw_only=True)
class DeploymentConfigPlan:
    """The spec pieces to write for one DeploymentConfig, and why. No write -> no API call."""

    container_images: tuple[ContainerImageUpdate, ...] = ()
    last_triggered_images: tuple[LastTriggeredImageUpdate, ...] = ()
    outcomes: tuple[TriggerOutcome, ...] = ()

    @property
    def needs_write(self) -> bool:
        return bool(self.container_images or self.last_triggered_images)


def image_change_triggers(dc: Mapping[str, Any]) -> tuple[ImageChangeTrigger, ...]:
    """The DeploymentConfig's image triggers (entries with `imageChangeParams`), in order."""
    spec = dc.get("spec")
    entries = spec.get("triggers") if isinstance(spec, Mapping) else None
    if not isinstance(entries, list):
        return ()
    namespace = namespace_of(dc)
    triggers = []
    for position, entry in enumerate(entries):
        params = entry.get("imageChangeParams") if isinstance(entry, Mapping) else None
        if not isinstance(params, Mapping):
            continue
        source = params.get("from")
        source = source if isinstance(source, Mapping) else {}
        names = params.get("containerNames")
        triggers.append(
            ImageChangeTrigger(
                position=position,
                # Go's zero value: a trigger without `automatic` is a manual one.
                automatic=params.get("automatic") is True,
                container_names=tuple(
                    name
                    for name in (names if isinstance(names, list) else [])
                    if isinstance(name, str) and name
                ),
                kind=_string(source.get("kind")) or IMAGE_STREAM_TAG,
                name=_string(source.get("name")),
                namespace=_string(source.get("namespace")) or namespace,
                last_triggered_image=_string(params.get("lastTriggeredImage")),
            )
        )
    return tuple(triggers)


def plan_deploymentconfig(
    dc: Mapping[str, Any],
    *,
    get_stream: StreamGetter,
    include_manual: bool = False,
    namespace_allowed: NamespacePolicy = same_namespace_only,
) -> DeploymentConfigPlan:
    """Decide which container images and `lastTriggeredImage`s the triggers ask for now.

    Automatic triggers are applied in order, each setting its value on every container and
    init container named in `containerNames` (unknown names are ignored) and on its
    `lastTriggeredImage`; an unresolved trigger falls back to its `lastTriggeredImage`.
    `include_manual=True` is `oc rollout latest`: `automatic: false` triggers are resolved
    too, once, under the same rules.
    """
    workload_namespace = namespace_of(dc)
    pod_spec = pod_spec_at(dc, POD_SPEC_PATH)
    original = {
        (container_kind, index): container
        for container_kind in CONTAINER_KINDS
        for index, container in enumerate(containers_in(pod_spec, container_kind))
    }
    images = {key: container_image(container) for key, container in original.items()}
    steps: list[_Step | TriggerOutcome] = []
    for trigger in image_change_triggers(dc):
        if trigger.kind != IMAGE_STREAM_TAG:
            steps.append(
                TriggerOutcome(
                    target=trigger.target,
                    source=trigger.source,
                    reason=Reason.NOT_IMAGE_STREAM_TAG,
                    message=f"from.kind {_q(trigger.kind)} is not an ImageStreamTag; only"
                    " ImageStreamTag triggers are followed",
                )
            )
            continue
        if not trigger.automatic and not include_manual:
            steps.append(
                TriggerOutcome(
                    target=trigger.target,
                    source=trigger.source,
                    reason=Reason.NOT_AUTOMATIC,
                    message=f"automatic is false: {trigger.source} is applied only on"
                    " request (oc rollout latest)",
                )
            )
            continue
        resolution = _resolve(
            trigger,
            workload_namespace=workload_namespace,
            get_stream=get_stream,
            namespace_allowed=namespace_allowed,
        )
        value = resolution if isinstance(resolution, str) else trigger.last_triggered_image
        changed: list[tuple[ContainerKind, int]] = []
        if value:
            # Triggers apply in order, each over the result of the previous ones: when two
            # name the same container the last one wins, as in OpenShift.
            for key, container in original.items():
                if container.get("name") in trigger.container_names and images[key] != value:
                    images[key] = value
                    changed.append(key)
        steps.append(_Step(trigger=trigger, resolution=resolution, value=value, changed=changed))

    blockers = [s for s in steps if isinstance(s, _Step) and not s.value]
    outcomes = tuple(
        step if isinstance(step, TriggerOutcome) else _outcome(step, blockers, original)
        for step in steps
    )
    if blockers:
        return DeploymentConfigPlan(outcomes=outcomes)
    return DeploymentConfigPlan(
        container_images=tuple(
            ContainerImageUpdate(
                container_kind=container_kind,
                index=index,
                container_name=_string(container.get("name")),
                old_image=container_image(container),
                new_image=images[container_kind, index],
            )
            for (container_kind, index), container in original.items()
            if images[container_kind, index] != container_image(container)
        ),
        last_triggered_images=tuple(
            LastTriggeredImageUpdate(trigger=step.trigger, new_image=step.value)
            for step in steps
            if isinstance(step, _Step) and step.value != step.trigger.last_triggered_image
        ),
        outcomes=outcomes,
    )


def apply_deploymentconfig_plan(
    dc: Mapping[str, Any], plan: DeploymentConfigPlan
) -> dict[str, Any]:
    """A deep copy of `dc` with the plan's images and `lastTriggeredImage`s set."""
    result = with_container_images(
        dc,
        pod_spec_path=POD_SPEC_PATH,
        images=[(u.container_kind, u.index, u.new_image) for u in plan.container_images],
    )
    for update in plan.last_triggered_images:
        params = result["spec"]["triggers"][update.trigger.position]["imageChangeParams"]
        params["lastTriggeredImage"] = update.new_image
    return result


def build_deploymentconfig_json_patch(
    dc: Mapping[str, Any], plan: DeploymentConfigPlan
) -> JsonPatch:
    """The JSON Patch for the plan, guarded by `test` ops; [] when there is nothing to write.

    The whole `spec.triggers` list we planned from is tested first: a concurrent retarget,
    pause or `lastTriggeredImage` change then fails the patch instead of being overwritten,
    and the reconciler plans again from fresh state. Each container write also tests the
    container's name and image (see `plan.build_json_patch`).
    """
    if not plan.needs_write:
        return []
    spec = dc.get("spec")
    triggers = spec.get("triggers") if isinstance(spec, Mapping) else None
    patch: JsonPatch = [{"op": "test", "path": "/spec/triggers", "value": triggers}]
    for update in plan.container_images:
        patch += container_image_patch(
            dc,
            pod_spec_path=POD_SPEC_PATH,
            container_kind=update.container_kind,
            index=update.index,
            new_image=update.new_image,
        )
    for last in plan.last_triggered_images:
        pointer = json_pointer(
            "spec", "triggers", last.trigger.position, "imageChangeParams", "lastTriggeredImage"
        )
        # `add` sets an object member whether or not it exists; the list test above already
        # pins its old value.
        patch.append({"op": "add", "path": pointer, "value": last.new_image})
    return patch


def index_keys(dc: Mapping[str, Any]) -> set[str]:
    """The `<namespace>/<stream>` keys of the automatic ImageStreamTag triggers.

    Manual triggers are left out (OpenShift marks them paused), so a stream change does not
    wake a DeploymentConfig that would not act on it. Unlike OpenShift, a trigger whose
    containerNames match no container is still indexed: its `lastTriggeredImage` follows.
    """
    keys = set()
    for trigger in image_change_triggers(dc):
        parts = split_stream_tag(trigger.name)
        if trigger.automatic and trigger.kind == IMAGE_STREAM_TAG and parts is not None:
            keys.add(f"{trigger.namespace}/{parts[0]}")
    return keys


@dataclass(frozen=True, kw_only=True)
class _Step:
    trigger: ImageChangeTrigger
    resolution: str | Unresolved
    value: str
    """The image this trigger stands for: resolved now, else its lastTriggeredImage, else ""."""
    changed: list[tuple[ContainerKind, int]]
    """Containers whose image this trigger changed, in application order."""


def _resolve(
    trigger: ImageChangeTrigger,
    *,
    workload_namespace: str,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy,
) -> str | Unresolved:
    parts = split_stream_tag(trigger.name)
    if parts is None:
        return Unresolved(
            reason=Reason.INVALID_TAG_REFERENCE,
            message=f"from.name {_q(trigger.name)} is not of the form <stream>:<tag>",
        )
    stream, tag = parts
    return resolve_image_stream_tag(
        workload_namespace=workload_namespace,
        stream_namespace=trigger.namespace,
        stream=stream,
        tag=tag,
        get_stream=get_stream,
        namespace_allowed=namespace_allowed,
    )


def _outcome(
    step: _Step,
    blockers: list[_Step],
    containers: Mapping[tuple[ContainerKind, int], Mapping[str, Any]],
) -> TriggerOutcome:
    trigger = step.trigger
    resolved = step.resolution if isinstance(step.resolution, str) else None

    def outcome(reason: Reason, message: str) -> TriggerOutcome:
        return TriggerOutcome(
            target=trigger.target,
            source=trigger.source,
            reason=reason,
            message=message,
            resolved_image=resolved,
        )

    if isinstance(step.resolution, Unresolved) and not step.value:
        return outcome(
            step.resolution.reason,
            f"{step.resolution.message} and the trigger has no lastTriggeredImage yet; no image"
            " of this DeploymentConfig is updated until it resolves",
        )
    writes = bool(step.changed) or step.value != trigger.last_triggered_image
    if writes and blockers:
        waiting_for = ", ".join(f"{b.trigger.target} ({b.trigger.source})" for b in blockers)
        return outcome(
            Reason.WAITING_FOR_OTHER_TRIGGERS,
            f"{_q(step.value)} is not written yet: {waiting_for} has no image yet",
        )
    targets = ", ".join(
        (["lastTriggeredImage"] if step.value != trigger.last_triggered_image else [])
        + [container_label(key[0], _string(containers[key].get("name"))) for key in step.changed]
    )
    present = {_string(container.get("name")) for container in containers.values()}
    missing = [name for name in trigger.container_names if name not in present]
    note = "".join(f'; there is no container named "{name}"' for name in missing)
    if isinstance(step.resolution, Unresolved):
        if step.changed:
            return outcome(
                Reason.REAPPLIED_LAST_TRIGGERED_IMAGE,
                f"{step.resolution.message}; {targets} reset to lastTriggeredImage"
                f" {_q(step.value)}{note}",
            )
        return outcome(
            step.resolution.reason,
            f"{step.resolution.message}; keeping lastTriggeredImage {_q(step.value)}{note}",
        )
    if writes:
        manual = "" if trigger.automatic else " (manual trigger, resolved on request)"
        return outcome(
            Reason.APPLIED,
            f"{targets} set to {_q(step.value)}, the current image of {trigger.source}"
            f"{manual}{note}",
        )
    return outcome(
        Reason.UP_TO_DATE,
        f"lastTriggeredImage and the named containers already hold {_q(step.value)}, the"
        f" current image of {trigger.source}{note}",
    )


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _q(text: str) -> str:
    return json.dumps(text)
