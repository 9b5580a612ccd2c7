"""What a DeploymentConfig rollout should do next, decided from a snapshot (pure, no I/O).

`plan_rollout(dc, rcs, now=...)` looks at one DeploymentConfig and its ReplicationControllers
as the caches hold them and returns the writes that move it one step on: a new version
(docs/openshift-behaviours.md#behaviour-23, and docs/openshift-behaviours.md#behaviour-24
for a requested one), the RC of that version, one strategy step, the replica counts once a
rollout has ended, the RCs to prune, and the status. The reconciler performs them in that
order, each write conditional on the resourceVersion it was planned from.

Invariants:
- A new version starts only when OpenShift would start one: never while `paused` or while
  a container image is blank; the first only once every ImageChange trigger has a
  `lastTriggeredImage` (cause ConfigChange, as OpenShift records it); later ones when a
  container image is not in the latest RC (cause ImageChange, one cause per image) or, with
  a ConfigChange trigger, when the pod template differs from the one the latest RC
  recorded; triggers wait until the RC of the current version exists (behaviour 23).
- A strategy step never acts on counts it cannot trust: while any RC involved has not
  observed its latest spec (`status.observedGeneration`), the step waits. Availability
  counted for an RC is never more than its current `spec.replicas`.
- Rolling never has more than `replicas + maxSurge` pods asked for, nor fewer than
  `replicas - maxUnavailable` available ones after a scale-down; Recreate asks for no new
  pod until every old pod is gone.
- Once the latest version has ended, the last Complete version follows `spec.replicas` and
  every other version is at 0: a failed rollout scales the last good version back up.
- Conditions keep their timestamps unless their status, reason or message changes, so a
  converged DeploymentConfig plans the same status again and nothing is written.

Failures this prevents: a rollout with placeholder images, a second rollout for one change
(planning only from the RC of the current version), a Recreate that overlaps old and new
pods, a Rolling update that takes capacity away on stale counts, and status writes that
never settle.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from controller.events import Note
from controller.rollouts.model import (
    CANCELLED_ANNOTATION,
    CANCELLED_BY_NEWER,
    DEFAULT_REVISION_HISTORY_LIMIT,
    PHASE_ANNOTATION,
    STATUS_REASON_ANNOTATION,
    TIMED_OUT,
    Phase,
    Strategy,
    all_image_triggers_fired,
    container_images,
    decode_config,
    desired_replicas,
    has_blank_image,
    has_config_change_trigger,
    has_image_change_trigger,
    latest_version,
    make_replication_controller,
    owns,
    paused,
    rc_available,
    rc_cancelled,
    rc_name,
    rc_phase,
    rc_replicas,
    rc_status_count,
    rc_status_current,
    rc_version,
    rollout_request,
    strategy_of,
    template_of,
)
from imagestream.objects import Obj, integer, mapping, name_of, spec_of, status_of
from imagestream.timestamps import parse_rfc3339, rfc3339_seconds

AVAILABLE: Final = "Available"
PROGRESSING: Final = "Progressing"

# Condition reasons, as OpenShift's apps/v1 API names them.
NEW_RC_CREATED: Final = "NewReplicationControllerCreated"
RC_UPDATED: Final = "ReplicationControllerUpdated"
NEW_RC_AVAILABLE: Final = "NewReplicationControllerAvailable"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
ROLLOUT_CANCELLED: Final = "RolloutCancelled"
PAUSED: Final = "DeploymentConfigPaused"
MINIMUM_AVAILABLE: Final = "MinimumReplicasAvailable"
MINIMUM_UNAVAILABLE: Final = "MinimumReplicasUnavailable"

STATUS_FIELDS: Final = (
    "latestVersion",
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "readyReplicas",
    "details",
    "conditions",
)
"""The status fields this controller owns (and compares to decide whether to write)."""


@dataclass(frozen=True, kw_only=True)
class RolloutDecision:
    """Start version `version`; `details` is OpenShift's `status.details` (message, causes)."""

    version: int
    details: Obj


@dataclass(frozen=True, kw_only=True)
class RcUpdate:
    """A conditional update of one RC: its replicas and/or annotations (None removes one)."""

    name: str
    resource_version: str
    replicas: int | None = None
    annotations: Mapping[str, str | None] = field(default_factory=dict)

    def patch(self) -> Obj:
        """A merge patch; the resourceVersion makes it fail (409) if the RC moved meanwhile."""
        body: Obj = {"metadata": {"resourceVersion": self.resource_version}}
        if self.annotations:
            body["metadata"]["annotations"] = dict(self.annotations)
        if self.replicas is not None:
            body["spec"] = {"replicas": self.replicas}
        return body


@dataclass(frozen=True, kw_only=True)
class RolloutPlan:
    decision: RolloutDecision | None = None
    create: Obj | None = None
    updates: tuple[RcUpdate, ...] = ()
    deletes: tuple[str, ...] = ()
    status: Obj = field(default_factory=dict)
    """The status the DeploymentConfig should have (only the fields in STATUS_FIELDS)."""
    status_changed: bool = False
    requeue_after_s: float | None = None
    """Look again after this long even if nothing changes (a step waits, a deadline runs)."""
    notes: tuple[Note, ...] = ()

    @property
    def acts(self) -> bool:
        """Whether the plan writes anything besides the status."""
        return bool(self.decision or self.create or self.updates or self.deletes)


# --- when a new version starts ----------------------------------------------------------------


def config_change(version: int) -> RolloutDecision:
    return RolloutDecision(
        version=version, details={"message": "config change", "causes": [{"type": "ConfigChange"}]}
    )


def image_change(version: int, images: Sequence[str]) -> RolloutDecision:
    return RolloutDecision(
        version=version,
        details={
            "message": "image change",
            "causes": [
                {
                    "type": "ImageChange",
                    "imageTrigger": {"from": {"kind": "DockerImage", "name": i}},
                }
                for i in images
            ],
        },
    )


def recorded_template(rc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The DC template the RC recorded; None for an RC without a readable record."""
    decoded = decode_config(rc)
    if decoded is None:
        return None
    template = mapping(decoded.get("spec")).get("template")
    return template if isinstance(template, Mapping) else None


def decide_rollout(
    dc: Mapping[str, Any], latest_rc: Mapping[str, Any] | None
) -> RolloutDecision | None:
    """Whether a new version starts now, and why (OpenShift's `triggerActivated`).

    `latest_rc` is the RC of the current `status.latestVersion`, if it exists.
    """
    if paused(dc) or has_blank_image(dc):
        return None
    version = latest_version(dc)
    request = rollout_request(dc)
    if request is not None and request.version == version + 1:
        return RolloutDecision(
            version=version + 1,
            details={"message": request.message, "causes": [dict(c) for c in request.causes]},
        )
    image_trigger, config_trigger = has_image_change_trigger(dc), has_config_change_trigger(dc)
    if version == 0:
        if image_trigger:
            # OpenShift records the first rollout as a config change even though the
            # images caused it.
            return config_change(1) if all_image_triggers_fired(dc) else None
        return config_change(1) if config_trigger else None
    if latest_rc is None:
        return None  # the current version's RC does not exist yet
    if image_trigger:
        deployed = set(container_images(mapping(spec_of(latest_rc).get("template")), init=False))
        changed = _unique(
            image
            for image in container_images(template_of(dc), init=False)
            if image not in deployed
        )
        if changed:
            return image_change(version + 1, changed)
    if config_trigger:
        recorded = recorded_template(latest_rc)
        # NB: without a record we cannot compare (the RC's own template is defaulted by
        # the API server and would always differ), so an unrecorded RC never triggers.
        if recorded is not None and recorded != template_of(dc):
            return config_change(version + 1)
    return None


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


# --- one rollout step -------------------------------------------------------------------------


@dataclass
class _Changes:
    """RC writes being planned, merged per RC, and the RCs as they will look after them."""

    rcs: dict[str, Obj]
    replicas: dict[str, int] = field(default_factory=dict)
    annotations: dict[str, dict[str, str | None]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    def scale(self, rc: Mapping[str, Any], replicas: int) -> None:
        name = name_of(rc)
        current = self.replicas.get(name, rc_replicas(rc))
        if current == replicas:
            return
        self.replicas[name] = replicas
        self.rcs[name].setdefault("spec", {})["replicas"] = replicas
        self.notes.append(
            Note(
                type="Normal",
                reason="ReplicationControllerScaled",
                message=f'Scaled replication controller "{name}" from {current} to {replicas}',
            )
        )

    def annotate(self, rc: Mapping[str, Any], values: Mapping[str, str | None]) -> None:
        name = name_of(rc)
        self.annotations.setdefault(name, {}).update(values)
        annotations = self.rcs[name].setdefault("metadata", {}).setdefault("annotations", {})
        for key, value in values.items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value

    def updates(self, originals: Mapping[str, Mapping[str, Any]]) -> tuple[RcUpdate, ...]:
        names = sorted(set(self.replicas) | set(self.annotations), key=_version_order(originals))
        return tuple(
            RcUpdate(
                name=name,
                resource_version=str(
                    mapping(originals[name].get("metadata")).get("resourceVersion", "")
                ),
                replicas=self.replicas.get(name),
                annotations=self.annotations.get(name, {}),
            )
            for name in names
        )


def _version_order(rcs: Mapping[str, Mapping[str, Any]]) -> Any:
    return lambda name: rc_version(rcs[name])


def _strategy_step(
    dc: Mapping[str, Any],
    new: Mapping[str, Any],
    olds: Sequence[Mapping[str, Any]],
    changes: _Changes,
    now: datetime,
) -> float | None:
    """Plan one step of the running rollout of `new`; returns when to look again."""
    strategy = strategy_of(dc)
    desired = desired_replicas(dc)
    name = name_of(new)
    created = parse_rfc3339(mapping(new.get("metadata")).get("creationTimestamp"))
    elapsed = (now - created).total_seconds() if created is not None else 0.0
    if strategy.timeout_s > 0 and elapsed > strategy.timeout_s:
        changes.annotate(
            new, {PHASE_ANNOTATION: Phase.FAILED.value, STATUS_REASON_ANNOTATION: TIMED_OUT}
        )
        changes.notes.append(
            Note(
                type="Warning",
                reason=PROGRESS_DEADLINE_EXCEEDED,
                message=f'replication controller "{name}" has failed progressing: {TIMED_OUT}'
                f" ({strategy.timeout_s}s); the last complete version is scaled back up",
            )
        )
        return None
    if rc_phase(new) in (Phase.NEW, Phase.PENDING):
        changes.annotate(new, {PHASE_ANNOTATION: Phase.RUNNING.value})
    wait_s = float(strategy.interval_s)
    if strategy.timeout_s > 0:
        wait_s = max(min(wait_s, strategy.timeout_s - elapsed + 0.05), 0.05)
    involved = [new, *(o for o in olds if rc_replicas(o) or rc_status_count(o, "replicas"))]
    if not all(rc_status_current(rc) for rc in involved):
        return wait_s  # the RC manager has not caught up with the last change yet
    if strategy.rolling:
        done = _rolling_step(strategy, desired, new, olds, changes)
    else:
        done = _recreate_step(desired, new, olds, changes)
    if done:
        changes.annotate(new, {PHASE_ANNOTATION: Phase.COMPLETE.value})
        changes.notes.append(
            Note(
                type="Normal",
                reason=NEW_RC_AVAILABLE,
                message=f'replication controller "{name}" successfully rolled out',
            )
        )
        return None
    return wait_s


def _recreate_step(
    desired: int, new: Mapping[str, Any], olds: Sequence[Mapping[str, Any]], changes: _Changes
) -> bool:
    """Old versions to zero, wait until their pods are gone, then the new one up."""
    running = [old for old in olds if rc_replicas(old) > 0]
    if running:
        for old in running:
            changes.scale(old, 0)
        return False
    if any(rc_status_count(old, "replicas") > 0 for old in olds):
        return False  # old pods still terminating
    if rc_replicas(new) != desired:
        changes.scale(new, desired)
        return False
    return rc_available(new) >= desired


def _rolling_step(
    strategy: Strategy,
    desired: int,
    new: Mapping[str, Any],
    olds: Sequence[Mapping[str, Any]],
    changes: _Changes,
) -> bool:
    """One step of kubectl's rolling updater, which OpenShift's Rolling strategy runs."""
    old_total = sum(rc_replicas(old) for old in olds)
    new_replicas = rc_replicas(new)
    if old_total == 0:
        # The first version (or nothing old left): go straight to the desired count.
        if new_replicas != desired:
            changes.scale(new, desired)
            return False
        return rc_available(new) >= desired
    if new_replicas > desired:
        changes.scale(new, desired)
        return False
    surge, unavailable = strategy.fenceposts(desired)
    if new_replicas < desired:
        increment = desired + surge - (old_total + new_replicas)
        if increment > 0:
            changes.scale(new, min(desired, new_replicas + increment))
            return False
    # Scale down as far as availability allows; the old pods count as available (kubectl's
    # rule: a volatile old version must not block the update), the new ones only when they
    # are.
    min_available = desired - unavailable
    new_unavailable = new_replicas - rc_available(new)
    decrement = old_total + new_replicas - min_available - new_unavailable
    for old in olds:
        if decrement <= 0:
            break
        current = rc_replicas(old)
        if current > 0:
            take = min(decrement, current)
            changes.scale(old, current - take)
            decrement -= take
    return False


# --- the whole plan ---------------------------------------------------------------------------


def plan_rollout(
    dc: Mapping[str, Any], rcs: Iterable[Mapping[str, Any]], *, now: datetime
) -> RolloutPlan:
    """Everything to write for `dc` now, given the RCs in the cache (any; others are ignored)."""
    owned = sorted((rc for rc in rcs if owns(dc, rc)), key=rc_version)
    originals = {name_of(rc): rc for rc in owned}
    changes = _Changes(rcs={name: copy.deepcopy(dict(rc)) for name, rc in originals.items()})
    version = latest_version(dc)
    latest = next((rc for rc in owned if rc_version(rc) == version), None)
    decision = decide_rollout(dc, latest)
    details = copy.deepcopy(status_of(dc).get("details"))
    view: Mapping[str, Any] = dc
    if decision is not None:
        version, details, latest = decision.version, decision.details, None
        view = _with_status(dc, latestVersion=version, details=details)
    create: Obj | None = None
    requeue: float | None = None
    if version > 0 and latest is None:
        # The RC of the current version does not exist: cancel what still runs, create it.
        if not paused(dc) and not has_blank_image(dc):
            for rc in owned:
                if not rc_phase(rc).terminated:
                    changes.annotate(
                        rc,
                        {
                            PHASE_ANNOTATION: Phase.FAILED.value,
                            CANCELLED_ANNOTATION: "true",
                            STATUS_REASON_ANNOTATION: CANCELLED_BY_NEWER,
                        },
                    )
                    changes.notes.append(
                        Note(
                            type="Normal",
                            reason="DeploymentCancelled",
                            message=f'Cancelled rollout of "{name_of(rc)}", superseded by'
                            f" version {version}",
                        )
                    )
            create = make_replication_controller(view, version)
            changes.notes.append(
                Note(
                    type="Normal",
                    reason="DeploymentCreated",
                    message=f'Created new replication controller "{name_of(create)}" for'
                    f" version {version}",
                )
            )
    elif latest is not None and not rc_phase(latest).terminated:
        olds = [rc for rc in owned if rc is not latest]
        requeue = _strategy_step(dc, latest, olds, changes, now)
    elif latest is not None:
        _follow_active(dc, owned, changes)
    after = [changes.rcs[name_of(rc)] for rc in owned]
    deletes: tuple[str, ...] = ()
    latest_after = changes.rcs.get(rc_name(name_of(dc), version))
    if create is not None or (latest_after is not None and rc_phase(latest_after).terminated):
        deletes = _prunable(dc, owned, version)
        after = [rc for rc in after if name_of(rc) not in deletes]
    if create is not None:
        after.append(create)
    status = compute_status(view, after, version=version, details=details, now=now)
    return RolloutPlan(
        decision=decision,
        create=create,
        updates=changes.updates(originals),
        deletes=deletes,
        status=status,
        status_changed=_owned_status(status_of(dc)) != status,
        requeue_after_s=requeue,
        notes=tuple(changes.notes),
    )


def _with_status(dc: Mapping[str, Any], **fields: Any) -> Obj:
    view = dict(dc)
    view["status"] = dict(status_of(dc)) | fields
    return view


def _follow_active(
    dc: Mapping[str, Any], owned: Sequence[Mapping[str, Any]], changes: _Changes
) -> None:
    """The latest version has ended: the last Complete one runs `replicas`, the rest 0."""
    complete = [rc for rc in owned if rc_phase(rc) == Phase.COMPLETE]
    active = complete[-1] if complete else None
    wanted = 0 if spec_of(dc).get("test") is True else desired_replicas(dc)
    for rc in owned:
        changes.scale(rc, wanted if rc is active else 0)


def _prunable(
    dc: Mapping[str, Any], owned: Sequence[Mapping[str, Any]], version: int
) -> tuple[str, ...]:
    """Old versions beyond `revisionHistoryLimit` that run no pods (OpenShift's cleanup rule).

    Only versions older than the active one (or, with none active, all but the latest)
    count; those still scaled up count but are kept until they are at zero.
    """
    limit = integer(spec_of(dc).get("revisionHistoryLimit"), DEFAULT_REVISION_HISTORY_LIMIT)
    complete = [rc for rc in owned if rc_phase(rc) == Phase.COMPLETE]
    active = complete[-1] if complete else None
    if active is None:
        candidates = [rc for rc in owned if rc_version(rc) != version]
    else:
        candidates = [rc for rc in owned if rc_version(rc) < rc_version(active)]
    excess = len(candidates) - max(limit, 0)
    return tuple(name_of(rc) for rc in candidates[: max(excess, 0)] if rc_replicas(rc) == 0)


# --- status -------------------------------------------------------------------------------------


def _owned_status(status: Mapping[str, Any]) -> Obj:
    return {key: status[key] for key in STATUS_FIELDS if key in status}


def compute_status(
    dc: Mapping[str, Any],
    rcs: Sequence[Mapping[str, Any]],
    *,
    version: int,
    details: object,
    now: datetime,
) -> Obj:
    """The DeploymentConfig status for these RCs (as they will be after the plan's writes)."""
    name = name_of(dc)
    latest = next((rc for rc in rcs if name_of(rc) == rc_name(name, version)), None)
    desired = desired_replicas(dc)
    available = sum(rc_status_count(rc, "availableReplicas") for rc in rcs)
    status: Obj = {
        "latestVersion": version,
        "observedGeneration": integer(mapping(dc.get("metadata")).get("generation")),
        "replicas": sum(rc_status_count(rc, "replicas") for rc in rcs),
        "updatedReplicas": rc_status_count(latest, "replicas") if latest is not None else 0,
        "availableReplicas": available,
        "unavailableReplicas": max(sum(rc_replicas(rc) for rc in rcs) - available, 0),
        "readyReplicas": sum(rc_status_count(rc, "readyReplicas") for rc in rcs),
    }
    if isinstance(details, Mapping) and details:
        status["details"] = copy.deepcopy(dict(details))
    conditions = [dict(c) for c in status_of(dc).get("conditions") or [] if isinstance(c, Mapping)]
    stamp = rfc3339_seconds(now)
    _, max_unavailable = strategy_of(dc).fenceposts(desired)
    if available >= desired - max_unavailable:
        _set(conditions, AVAILABLE, "True", MINIMUM_AVAILABLE,
             "Deployment config has minimum availability.", stamp)  # fmt: skip
    else:
        _set(conditions, AVAILABLE, "False", MINIMUM_UNAVAILABLE,
             "Deployment config does not have minimum availability.", stamp)  # fmt: skip
    if latest is not None:
        _set(conditions, PROGRESSING, *_progress(latest), stamp)
    if paused(dc) and (latest is None or rc_phase(latest).terminated):
        _set(conditions, PROGRESSING, "Unknown", PAUSED, "Deployment config is paused", stamp)
    status["conditions"] = conditions
    return status


def _progress(rc: Mapping[str, Any]) -> tuple[str, str, str]:
    name = name_of(rc)
    phase = rc_phase(rc)
    if phase is Phase.COMPLETE:
        return "True", NEW_RC_AVAILABLE, f'replication controller "{name}" successfully rolled out'
    if phase is Phase.FAILED:
        if rc_cancelled(rc):
            return (
                "False",
                ROLLOUT_CANCELLED,
                f'rollout of replication controller "{name}" was cancelled',
            )
        return (
            "False",
            PROGRESS_DEADLINE_EXCEEDED,
            f'replication controller "{name}" has failed progressing',
        )
    if phase is Phase.RUNNING:
        return "True", RC_UPDATED, f'replication controller "{name}" is progressing'
    return "True", NEW_RC_CREATED, f'created new replication controller "{name}"'


def _set(
    conditions: list[Obj], type_: str, status: str, reason: str, message: str, stamp: str
) -> None:
    """Set one condition; unchanged values keep their timestamps (so nothing is rewritten)."""
    for index, existing in enumerate(conditions):
        if existing.get("type") != type_:
            continue
        if (existing.get("status"), existing.get("reason"), existing.get("message")) == (
            status,
            reason,
            message,
        ):
            return
        transition = (
            existing.get("lastTransitionTime") if existing.get("status") == status else None
        )
        conditions[index] = {
            "type": type_,
            "status": status,
            "lastUpdateTime": stamp,
            "lastTransitionTime": transition or stamp,
            "reason": reason,
            "message": message,
        }
        return
    conditions.append(
        {
            "type": type_,
            "status": status,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )
