"""One reactor per kind of object that follows ImageStream tags.

A reactor carries everything that differs between kinds, as OpenShift's
trigger controller has one per resource: which API resource it is, what of
each object the cache keeps, which streams an object follows (for the
index), whether a change to the object needs a reconcile, and how to react
to the current state (plan, and the JSON Patch that carries the plan out).
The trigger reconciler and `imagestream explain` only talk to reactors, so
adding a kind means adding one reactor to `REACTORS`, not editing a loop.

    AnnotationReactor          Deployments, StatefulSets, DaemonSets, CronJobs:
                               the `image.openshift.io/triggers` annotation
    DeploymentConfigReactor    DeploymentConfigs: `spec.triggers[].imageChangeParams`
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from controller.triggers import deploymentconfigs as dc_triggers
from controller.triggers import plan as annotation_triggers
from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    TRIGGER_ANNOTATION,
    InvalidTriggers,
    object_triggers,
)
from controller.triggers.outcomes import NamespacePolicy, StreamGetter, TriggerOutcome
from controller.triggers.ownership import trim_managed_fields
from controller.triggers.plan import PauseTrigger
from controller.triggers.podspec import POD_SPEC_PATHS, JsonPatch, pod_spec_at
from imagestream.heap import shared
from imagestream.kube.resources import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    STATEFULSETS,
    Resource,
)
from imagestream.objects import Obj, annotations_of, mapping, namespace_of

_KEPT_ANNOTATIONS = (
    TRIGGER_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    LAST_APPLIED_IMAGES_ANNOTATION,
)


@dataclass(frozen=True, kw_only=True)
class AppliedImage:
    """One image a reaction's patch sets: what its Event, log line and latency sample say."""

    container: str
    """`containers[web]`-style label of the container written."""
    image: str
    note: str
    """The Event message."""
    stream_tag: tuple[str, str, str] | None = None
    """`(namespace, stream, tag)` the image came from, when the plan knows it."""
    target: str = ""
    """The trigger's fieldPath, when the plan knows it (which container slot it writes)."""
    previous: str = ""
    """The image the patch replaces, as read."""


@dataclass(frozen=True, kw_only=True)
class Reaction:
    """What one object's triggers ask for now. An empty patch means no API call."""

    outcomes: tuple[TriggerOutcome, ...] = ()
    patch: JsonPatch = field(default_factory=list)
    applied: tuple[AppliedImage, ...] = ()
    pauses: tuple[PauseTrigger, ...] = ()


class Reactor(Protocol):
    @property
    def resource(self) -> Resource: ...

    def key(self, namespace: str, name: str) -> str: ...
    def trim(self, obj: Obj) -> Obj | None: ...
    def follows(self, obj: Mapping[str, Any]) -> set[str]: ...
    def named_streams(self, obj: Mapping[str, Any]) -> set[str]: ...
    def needs_reconcile(self, old: Obj | None, new: Obj) -> bool: ...
    def react(
        self,
        obj: Mapping[str, Any],
        *,
        get_stream: StreamGetter,
        namespace_allowed: NamespacePolicy,
    ) -> Reaction: ...


@dataclass(frozen=True)
class _ReactorBase:
    """What every kind shares: queue keys, cache trimming of the pod spec, waking rules."""

    resource: Resource
    keeps_all_annotations: ClassVar[bool] = False
    kept_spec_fields: ClassVar[tuple[str, ...]] = ()

    def key(self, namespace: str, name: str) -> str:
        """The work-queue key: `<plural>/<namespace>/<name>`."""
        return f"{self.resource.plural}/{namespace}/{name}"

    def follows(self, obj: Mapping[str, Any]) -> set[str]:
        """The `namespace/stream` keys of the streams the object's active triggers follow."""
        raise NotImplementedError

    def has_triggers(self, obj: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def trim(self, obj: Obj) -> Obj | None:
        """Keep what planning and patching read; the cache holds thousands of these.

        An object without triggers is not kept at all (None): nothing plans it, and were
        the annotation added, the watch event of that change brings the whole object,
        which the cache then takes as new (`needs_reconcile` of no old object). One whose
        annotation goes leaves the cache as if deleted, and the trigger loop forgets it.
        At 100,000 Deployments, half without triggers, keeping even their identity cost
        some 35 MiB.
        """
        if not self.keeps_all_annotations and not self.has_triggers(obj):
            return None
        metadata = mapping(obj.get("metadata"))
        annotations = annotations_of(obj)
        kept_metadata = {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "generation")
            if key in metadata
        }
        if "namespace" in kept_metadata:
            kept_metadata["namespace"] = shared(kept_metadata["namespace"])
        kept: Obj = {
            "apiVersion": shared(obj.get("apiVersion", self.resource.api_version)),
            "kind": shared(obj.get("kind", self.resource.kind)),
            "metadata": kept_metadata,
        }
        # Only the trigger loop's own entries: who set the images and our bookkeeping last.
        managed_fields = trim_managed_fields(metadata)
        if managed_fields is not None:
            kept["metadata"]["managedFields"] = managed_fields
        if self.keeps_all_annotations:
            kept["metadata"]["annotations"] = dict(annotations)
        elif TRIGGER_ANNOTATION in annotations:
            kept["metadata"]["annotations"] = {
                k: shared(annotations[k]) for k in _KEPT_ANNOTATIONS if k in annotations
            }
        elif annotations:
            # Keep an empty map, so a patch adding annotations knows the map exists.
            kept["metadata"]["annotations"] = {}
        spec = mapping(obj.get("spec"))
        kept_spec = {k: spec[k] for k in self.kept_spec_fields if k in spec}
        if kept_spec:
            kept["spec"] = kept_spec
        path = POD_SPEC_PATHS[self.resource.kind]
        pod_spec = pod_spec_at(obj, path)
        trimmed_pod_spec: Obj = {}
        for container_kind in ("containers", "initContainers"):
            containers = pod_spec.get(container_kind)
            if isinstance(containers, list):
                trimmed_pod_spec[container_kind] = [
                    {k: shared(c[k]) for k in ("name", "image") if k in c}
                    for c in containers
                    if isinstance(c, Mapping)
                ]
        node = kept
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = trimmed_pod_spec
        return kept

    def needs_reconcile(self, old: Obj | None, new: Obj) -> bool:
        """Wake the object only when its triggers or targeted images may have changed."""
        if old is None or old is new:
            return bool(self.follows(new)) or self.has_triggers(new)
        return (
            annotations_of(old) != annotations_of(new) or old.get("spec") != new.get("spec")
        ) and (self.has_triggers(new) or self.has_triggers(old))


@dataclass(frozen=True)
class AnnotationReactor(_ReactorBase):
    """Deployments, StatefulSets, DaemonSets and CronJobs, through the triggers annotation."""

    def follows(self, obj: Mapping[str, Any]) -> set[str]:
        return annotation_triggers.index_keys(obj)

    def has_triggers(self, obj: Mapping[str, Any]) -> bool:
        return TRIGGER_ANNOTATION in annotations_of(obj)

    def named_streams(self, obj: Mapping[str, Any]) -> set[str]:
        """Every stream any trigger names, paused ones included (explain shows them all)."""
        try:
            triggers = object_triggers(obj)
        except InvalidTriggers:
            return set()
        namespace = namespace_of(obj)
        return {
            f"{trigger.namespace or namespace}/{trigger.stream}"
            for trigger in triggers
            if trigger.stream
        }

    def react(
        self,
        obj: Mapping[str, Any],
        *,
        get_stream: StreamGetter,
        namespace_allowed: NamespacePolicy,
    ) -> Reaction:
        """Raises `UnsupportedKind` for an object of a kind the annotation does not apply to."""
        plan = annotation_triggers.plan_triggers(
            obj, get_stream=get_stream, namespace_allowed=namespace_allowed
        )
        if not plan.needs_write:
            return Reaction(outcomes=plan.outcomes)
        return Reaction(
            outcomes=plan.outcomes,
            patch=annotation_triggers.build_json_patch(
                obj, plan.changes, annotations=plan.annotation_updates
            ),
            applied=tuple(
                AppliedImage(
                    container=f"{change.container_kind}[{change.container_name}]",
                    image=change.new_image,
                    note=(
                        f"set {change.container_kind}[{change.container_name}] to "
                        f"{change.new_image} from ImageStreamTag "
                        f"{change.stream_namespace}/{change.stream}:{change.tag}"
                    ),
                    stream_tag=(change.stream_namespace, change.stream, change.tag),
                    target=change.trigger.field_path,
                    previous=change.old_image,
                )
                for change in plan.changes
            ),
            pauses=plan.pauses,
        )


@dataclass(frozen=True)
class DeploymentConfigReactor(_ReactorBase):
    """DeploymentConfigs, through `spec.triggers` (OpenShift's all-or-nothing rule applies)."""

    keeps_all_annotations: ClassVar[bool] = True
    kept_spec_fields: ClassVar[tuple[str, ...]] = ("triggers", "paused")

    def follows(self, obj: Mapping[str, Any]) -> set[str]:
        return dc_triggers.index_keys(obj)

    def has_triggers(self, obj: Mapping[str, Any]) -> bool:
        return bool(dc_triggers.image_change_triggers(obj))

    def named_streams(self, obj: Mapping[str, Any]) -> set[str]:
        keys = set()
        for trigger in dc_triggers.image_change_triggers(obj):
            stream = trigger.name.rpartition(":")[0]
            if stream:
                keys.add(f"{trigger.namespace or namespace_of(obj)}/{stream}")
        return keys

    def react(
        self,
        obj: Mapping[str, Any],
        *,
        get_stream: StreamGetter,
        namespace_allowed: NamespacePolicy,
    ) -> Reaction:
        plan = dc_triggers.plan_deploymentconfig(
            obj, get_stream=get_stream, namespace_allowed=namespace_allowed
        )
        if not plan.needs_write:
            return Reaction(outcomes=plan.outcomes)
        return Reaction(
            outcomes=plan.outcomes,
            patch=dc_triggers.build_deploymentconfig_json_patch(obj, plan),
            applied=tuple(
                AppliedImage(
                    container=f"{update.container_kind}[{update.container_name}]",
                    image=update.new_image,
                    note=f"set container {update.container_name} to {update.new_image}",
                )
                for update in plan.container_images
            ),
        )


REACTORS: tuple[Reactor, ...] = (
    *(
        AnnotationReactor(resource)
        for resource in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS, CRONJOBS)
    ),
    DeploymentConfigReactor(DEPLOYMENTCONFIGS),
)
"""Every kind that follows tags; the controller watches those whose API is served."""
