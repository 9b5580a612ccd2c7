"""The trigger loop's outcome vocabulary: why each trigger did or did not act.

One vocabulary for every trigger kind (annotation-triggered workloads and
DeploymentConfigs), for the Events the reconciler posts and for what
`imagestream explain` and `imagestream rollout` print, so that a user reads
the same reason wherever they look. Values are stable strings: they appear
in Events (as `Trigger<Reason>`) and scripts may match them.

These are decisions about a workload, not reconcile outcomes (requeue, retry
later, give up: `controller.loop.outcomes`) and not API errors
(`imagestream.kube.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

StreamGetter = Callable[[str, str], Mapping[str, Any] | None]
"""`get_stream(namespace, name)`: the cached ImageStream, or None. Must not do I/O."""


NamespacePolicy = Callable[[str, str, str], bool]
"""`namespace_allowed(workload_namespace, stream_namespace, stream)`: may that stream
trigger it? Pure: the controller's policy answers from reviews made before planning
(`controller.triggers.pullaccess`)."""


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
    """The ImageStream exists but the tag has no image (yet, or any more); the container is
    left alone. A Warning: the trigger cannot act until someone pushes or tags."""
    STREAM_NOT_FOUND = "StreamNotFound"
    """The ImageStream does not exist (yet); the container is left alone. A Warning, as
    `TagNotFound`."""
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    """The object's service accounts may not pull from that stream in another namespace
    (the image-puller rule, behaviour 16); the message names the RoleBinding that allows it."""
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
        Reason.TAG_NOT_FOUND,
        Reason.STREAM_NOT_FOUND,
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
class Unresolved:
    """Why a `<namespace>/<stream>:<tag>` has no pull spec right now."""

    reason: Reason
    message: str


def same_namespace_only(workload_namespace: str, stream_namespace: str, stream: str) -> bool:
    """Only streams in the workload's own namespace (where nothing was reviewed)."""
    del stream
    return workload_namespace == stream_namespace


def allow_any_namespace(workload_namespace: str, stream_namespace: str, stream: str) -> bool:
    """OpenShift's trigger controller: any stream the controller can read, no check."""
    del workload_namespace, stream_namespace, stream
    return True
