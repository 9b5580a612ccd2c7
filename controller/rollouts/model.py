"""The shapes a rollout reads and writes: OpenShift's names, annotations and defaults (no I/O).

Invariant: a ReplicationController belongs to a DeploymentConfig's history exactly when it
carries the `openshift.io/deployment-config.name` label and annotation, a parseable
`openshift.io/deployment-config.latest-version`, and (when it has a controller owner
reference) that reference names the DeploymentConfig's uid. Everything else is left alone.

Failures this prevents:
- adopting a user's own RC that happens to be called `<name>-2` and scaling it to zero;
- acting on the RCs of a deleted DeploymentConfig of the same name (the garbage collector
  removes those; they name the old uid);
- reading the defaults differently from OpenShift (a Rolling strategy with no params is
  25%/25%, 1 s interval, 600 s timeout; omitted `replicas` is 0), which would make the same
  manifest roll out differently here.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from controller.triggers.deploymentconfigs import image_change_triggers
from imagestream.objects import (
    Obj,
    annotations_of,
    integer,
    mapping,
    name_of,
    namespace_of,
    spec_of,
    status_of,
    uid_of,
)

DC_NAME_ANNOTATION: Final = "openshift.io/deployment-config.name"
"""On the RC (annotation and label) and on its pods: the DeploymentConfig's name."""
VERSION_ANNOTATION: Final = "openshift.io/deployment-config.latest-version"
PHASE_ANNOTATION: Final = "openshift.io/deployment.phase"
ENCODED_CONFIG_ANNOTATION: Final = "openshift.io/encoded-deployment-config"
"""The DeploymentConfig as it was when this version started: template, triggers, cause."""
STATUS_REASON_ANNOTATION: Final = "openshift.io/deployment.status-reason"
CANCELLED_ANNOTATION: Final = "openshift.io/deployment.cancelled"
DESIRED_REPLICAS_ANNOTATION: Final = "kubectl.kubernetes.io/desired-replicas"
DEPLOYMENT_NAME_ANNOTATION: Final = "openshift.io/deployment.name"
"""On pods: the name of the RC (deployment) that created them."""
DEPLOYMENTCONFIG_LABEL: Final = "deploymentconfig"
DEPLOYMENT_LABEL: Final = "deployment"
ROLLOUT_REQUEST_ANNOTATION: Final = "imagestream.dev/rollout-request"
"""Ours: `imagestream rollout latest|undo` asks for version N+1 here (see `RolloutRequest`)."""

CANCELLED_BY_NEWER: Final = "newer deployment was found running"
TIMED_OUT: Final = "the rollout did not complete within its timeoutSeconds"

DEFAULT_REVISION_HISTORY_LIMIT: Final = 10
DEFAULT_INTERVAL_S: Final = 1
DEFAULT_TIMEOUT_S: Final = 600
DEFAULT_SURGE: Final = "25%"


class Phase(StrEnum):
    """`openshift.io/deployment.phase` of a ReplicationController."""

    NEW = "New"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"

    @property
    def terminated(self) -> bool:
        return self in (Phase.COMPLETE, Phase.FAILED)


# --- reading a DeploymentConfig -----------------------------------------------------------


def desired_replicas(dc: Mapping[str, Any]) -> int:
    """`spec.replicas`; OpenShift does not default it, so omitted means 0."""
    return max(integer(spec_of(dc).get("replicas")), 0)


def latest_version(dc: Mapping[str, Any]) -> int:
    return integer(status_of(dc).get("latestVersion"))


def paused(dc: Mapping[str, Any]) -> bool:
    return spec_of(dc).get("paused") is True


def template_of(dc: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(spec_of(dc).get("template"))


def has_config_change_trigger(dc: Mapping[str, Any]) -> bool:
    triggers = spec_of(dc).get("triggers")
    return isinstance(triggers, list) and any(
        mapping(t).get("type") == "ConfigChange" for t in triggers
    )


def has_image_change_trigger(dc: Mapping[str, Any]) -> bool:
    triggers = spec_of(dc).get("triggers")
    return isinstance(triggers, list) and any(
        mapping(t).get("type") == "ImageChange" for t in triggers
    )


def container_images(template: Mapping[str, Any], *, init: bool = True) -> list[str]:
    """The images of the template's containers (and init containers), in order."""
    pod_spec = mapping(template.get("spec"))
    kinds = ("containers", "initContainers") if init else ("containers",)
    images = []
    for kind in kinds:
        for container in pod_spec.get(kind) or []:
            image = mapping(container).get("image")
            images.append(image if isinstance(image, str) else "")
    return images


def has_blank_image(dc: Mapping[str, Any]) -> bool:
    """An empty or whitespace image: a trigger has not filled it in yet (OpenShift's rule)."""
    return any(not image.strip() for image in container_images(template_of(dc)))


def all_image_triggers_fired(dc: Mapping[str, Any]) -> bool:
    """Every ImageChange trigger, automatic or not, has a `lastTriggeredImage`."""
    return all(trigger.last_triggered_image for trigger in image_change_triggers(dc))


# --- strategy -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """`spec.strategy` with OpenShift's apps/v1 defaults applied."""

    type: str
    """`Rolling` or `Recreate`; `Custom` is rolled out as `Recreate` (no deployer image runs)."""
    max_surge: int | str
    max_unavailable: int | str
    interval_s: int
    timeout_s: int
    """0 or less: no deadline."""

    @property
    def rolling(self) -> bool:
        return self.type == "Rolling"

    def fenceposts(self, desired: int) -> tuple[int, int]:
        """(maxSurge, maxUnavailable) in pods, rounding as Kubernetes does (surge up)."""
        if not self.rolling:
            return 0, 0
        surge = _scaled(self.max_surge, desired, round_up=True)
        unavailable = _scaled(self.max_unavailable, desired, round_up=False)
        if surge == 0 and unavailable == 0:
            # Both resolved to zero (rounding): let one pod go rather than stall.
            unavailable = 1
        return surge, unavailable


def strategy_of(dc: Mapping[str, Any]) -> Strategy:
    raw = mapping(spec_of(dc).get("strategy"))
    kind = raw.get("type") if raw.get("type") in ("Rolling", "Recreate", "Custom") else "Rolling"
    if kind == "Rolling":
        params = mapping(raw.get("rollingParams"))
        surge, unavailable = params.get("maxSurge"), params.get("maxUnavailable")
        if surge is None and unavailable is None:
            surge = unavailable = DEFAULT_SURGE
        elif unavailable is None and _is_zero(surge):
            unavailable = DEFAULT_SURGE
        elif surge is None and _is_zero(unavailable):
            surge = DEFAULT_SURGE
        return Strategy(
            type="Rolling",
            max_surge=_int_or_percent(surge),
            max_unavailable=_int_or_percent(unavailable),
            interval_s=max(integer(params.get("intervalSeconds"), DEFAULT_INTERVAL_S), 1),
            timeout_s=integer(params.get("timeoutSeconds"), DEFAULT_TIMEOUT_S),
        )
    params = mapping(raw.get("recreateParams"))
    return Strategy(
        type="Recreate",
        max_surge=0,
        max_unavailable=0,
        interval_s=DEFAULT_INTERVAL_S,
        timeout_s=integer(params.get("timeoutSeconds"), DEFAULT_TIMEOUT_S),
    )


def _is_zero(value: object) -> bool:
    return value == 0 or value == "0%"


def _int_or_percent(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    if isinstance(value, str):
        return value
    return 0


def _scaled(value: int | str, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            return 0
        exact = percent * total / 100
        return max(int(math.ceil(exact) if round_up else math.floor(exact)), 0)
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


# --- ReplicationControllers ---------------------------------------------------------------


def rc_name(dc_name: str, version: int) -> str:
    return f"{dc_name}-{version}"


def rc_version(rc: Mapping[str, Any]) -> int:
    """The DC version an RC rolls out (-1 when the annotation is missing or malformed)."""
    try:
        return int(annotations_of(rc).get(VERSION_ANNOTATION, ""))
    except ValueError:
        return -1


def rc_phase(rc: Mapping[str, Any]) -> Phase:
    value = annotations_of(rc).get(PHASE_ANNOTATION, "")
    try:
        return Phase(value)
    except ValueError:
        return Phase.NEW


def rc_cancelled(rc: Mapping[str, Any]) -> bool:
    return str(annotations_of(rc).get(CANCELLED_ANNOTATION, "")).lower() == "true"


def rc_replicas(rc: Mapping[str, Any]) -> int:
    """`spec.replicas`; the API server defaults it to 1, so a missing value is 1."""
    return max(integer(spec_of(rc).get("replicas"), 1), 0)


def rc_status_count(rc: Mapping[str, Any], field: str) -> int:
    return max(integer(status_of(rc).get(field)), 0)


def rc_status_current(rc: Mapping[str, Any]) -> bool:
    """The RC's status describes its current spec (the RC manager has seen the last change)."""
    generation = integer(mapping(rc.get("metadata")).get("generation"), 1)
    return integer(status_of(rc).get("observedGeneration")) >= generation


def rc_available(rc: Mapping[str, Any]) -> int:
    """Available pods that still count: never more than the RC asks for now."""
    return min(rc_status_count(rc, "availableReplicas"), rc_replicas(rc))


def owns(dc: Mapping[str, Any], rc: Mapping[str, Any]) -> bool:
    """Whether `rc` is one of `dc`'s versions (see the module invariant)."""
    metadata = mapping(rc.get("metadata"))
    if mapping(metadata.get("labels")).get(DC_NAME_ANNOTATION) != name_of(dc):
        return False
    if annotations_of(rc).get(DC_NAME_ANNOTATION) != name_of(dc) or rc_version(rc) < 1:
        return False
    for reference in metadata.get("ownerReferences") or []:
        reference = mapping(reference)
        if reference.get("controller") is True:
            return reference.get("kind") == "DeploymentConfig" and reference.get("uid") == uid_of(
                dc
            )
    return True


def deploymentconfig_of(rc: Mapping[str, Any]) -> str | None:
    """The name of the DeploymentConfig an RC says it belongs to, if any."""
    labels = mapping(mapping(rc.get("metadata")).get("labels"))
    name = labels.get(DC_NAME_ANNOTATION)
    return name if isinstance(name, str) and name else None


# --- building a version -------------------------------------------------------------------


def encode_config(dc: Mapping[str, Any]) -> str:
    """The DeploymentConfig as recorded on an RC: enough to compare, roll back and explain."""
    metadata = mapping(dc.get("metadata"))
    annotations = {
        key: value
        for key, value in mapping(metadata.get("annotations")).items()
        if key
        not in (ROLLOUT_REQUEST_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration")
    }
    status = status_of(dc)
    recorded = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "generation", "labels")
            if key in metadata
        }
        | ({"annotations": annotations} if annotations else {}),
        "spec": copy.deepcopy(dict(spec_of(dc))),
        "status": {
            key: copy.deepcopy(status[key]) for key in ("latestVersion", "details") if key in status
        },
    }
    return json.dumps(recorded, separators=(",", ":"), sort_keys=True)


def decode_config(rc: Mapping[str, Any]) -> Obj | None:
    """The DeploymentConfig recorded on `rc`, or None when absent or unreadable."""
    text = annotations_of(rc).get(ENCODED_CONFIG_ANNOTATION)
    if not isinstance(text, str) or not text:
        return None
    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def rc_template(rc: Mapping[str, Any]) -> Obj:
    """The DC pod template `rc` was made from: the recorded config's, else the RC's own
    without the labels and annotations a rollout adds."""
    decoded = decode_config(rc)
    if decoded is not None and isinstance(mapping(decoded.get("spec")).get("template"), Mapping):
        return copy.deepcopy(dict(decoded["spec"]["template"]))
    template = copy.deepcopy(dict(mapping(spec_of(rc).get("template"))))
    metadata = template.get("metadata")
    if isinstance(metadata, dict):
        for field, keys in (
            ("labels", (DEPLOYMENT_LABEL, DEPLOYMENTCONFIG_LABEL)),
            ("annotations", (VERSION_ANNOTATION, DC_NAME_ANNOTATION, DEPLOYMENT_NAME_ANNOTATION)),
        ):
            values = metadata.get(field)
            if isinstance(values, dict):
                for key in keys:
                    values.pop(key, None)
                if not values:
                    metadata.pop(field)
        if not metadata:
            template.pop("metadata")
    return template


def rc_details(rc: Mapping[str, Any]) -> Mapping[str, Any]:
    """`status.details` of the DeploymentConfig when this version started (its cause)."""
    decoded = decode_config(rc)
    return mapping(status_of(decoded).get("details")) if decoded else {}


def make_replication_controller(dc: Mapping[str, Any], version: int) -> Obj:
    """The RC `<name>-<version>` for `dc` as it is now, at zero replicas, phase New.

    `dc` must already carry `status.latestVersion == version` and the cause in
    `status.details`: both are recorded in the encoded config, which `history` reads.
    """
    name, namespace = name_of(dc), namespace_of(dc)
    deployment = rc_name(name, version)
    template = copy.deepcopy(dict(template_of(dc)))
    pod_metadata = dict(mapping(template.get("metadata")))
    selector = dict(mapping(spec_of(dc).get("selector")) or mapping(pod_metadata.get("labels")))
    selector |= {DEPLOYMENTCONFIG_LABEL: name, DEPLOYMENT_LABEL: deployment}
    pod_metadata["labels"] = dict(mapping(pod_metadata.get("labels"))) | {
        DEPLOYMENTCONFIG_LABEL: name,
        DEPLOYMENT_LABEL: deployment,
    }
    pod_metadata["annotations"] = dict(mapping(pod_metadata.get("annotations"))) | {
        VERSION_ANNOTATION: str(version),
        DC_NAME_ANNOTATION: name,
        DEPLOYMENT_NAME_ANNOTATION: deployment,
    }
    template["metadata"] = pod_metadata
    labels = dict(mapping(mapping(dc.get("metadata")).get("labels")))
    labels |= {DC_NAME_ANNOTATION: name, DEPLOYMENTCONFIG_LABEL: name}
    spec: Obj = {"replicas": 0, "selector": selector, "template": template}
    min_ready = integer(spec_of(dc).get("minReadySeconds"))
    if min_ready > 0:
        spec["minReadySeconds"] = min_ready
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {
            "name": deployment,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                DC_NAME_ANNOTATION: name,
                VERSION_ANNOTATION: str(version),
                PHASE_ANNOTATION: Phase.NEW.value,
                DESIRED_REPLICAS_ANNOTATION: str(desired_replicas(dc)),
                ENCODED_CONFIG_ANNOTATION: encode_config(dc),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps.openshift.io/v1",
                    "kind": "DeploymentConfig",
                    "name": name,
                    "uid": uid_of(dc),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


# --- requests from the command line ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RolloutRequest:
    """`imagestream rollout latest|undo` asking for `version` with this cause.

    Custom resources have no `instantiate` subresource, so the command writes its spec
    change and this request in one guarded patch, and the controller performs the version
    bump: one write, so a concurrent trigger can never turn one request into two rollouts.
    A request for any version other than `latestVersion + 1` is stale and ignored.
    """

    version: int
    message: str
    causes: tuple[Obj, ...]

    def to_annotation(self) -> str:
        return json.dumps(
            {"version": self.version, "message": self.message, "causes": list(self.causes)},
            separators=(",", ":"),
        )


_REQUEST_CAUSES = ("Manual", "ConfigChange", "ImageChange")


def rollout_request(dc: Mapping[str, Any]) -> RolloutRequest | None:
    text = annotations_of(dc).get(ROLLOUT_REQUEST_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or integer(raw.get("version")) < 1:
        return None
    causes = tuple(
        dict(cause)
        for cause in raw.get("causes") or []
        if isinstance(cause, Mapping) and cause.get("type") in _REQUEST_CAUSES
    )
    message = raw.get("message")
    return RolloutRequest(
        version=integer(raw.get("version")),
        message=message[:256] if isinstance(message, str) and message else "manual change",
        causes=causes or ({"type": "Manual"},),
    )
