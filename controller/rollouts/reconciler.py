"""The rollout reconciler: plan from the caches, then write, each write guarded.

Queue keys are `namespace/name` of DeploymentConfigs. A change to a DeploymentConfig, or
to any ReplicationController that names one, enqueues the DeploymentConfig; the reconcile
reads both from the caches, plans (`plan.plan_rollout`) and performs the plan in order:

    1. a new version: the status write that raises `latestVersion` (and records the cause);
    2. RC updates (cancel, scale, phase), each a merge patch carrying the RC's
       resourceVersion;
    3. the new version's RC (a fixed name, so a second create fails instead of duplicating);
    4. pruned RCs;
    5. the status, unless step 1 wrote it.

Invariants:
- Every write is conditional on what it was planned from; a 409 (or a create that finds
  the RC already there) means the cache was behind, and the key is planned again shortly
  from fresher state. Nothing is ever written from a stale read.
- A status write that is the reconcile's only write waits `status_settle_s` (the status
  is recomputed then): a burst of RC status updates during a rollout costs one
  DeploymentConfig write, and hand-written status (tests, migrations) is not overwritten
  within the same instant.

Failures this prevents: two RCs for one version, a scale decided on an RC that has moved
since, and a DeploymentConfig status rewritten on every pod readiness change.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from controller.events import EventRecorder
from controller.loop.outcomes import Requeue
from controller.loop.queue import WorkQueue
from controller.rollouts.index import ReplicationControllerIndex
from controller.rollouts.model import deploymentconfig_of
from controller.rollouts.plan import RolloutPlan, plan_rollout
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound, Terminal
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import DEPLOYMENTCONFIGS, REPLICATIONCONTROLLERS
from imagestream.objects import Obj, name_of, namespace_of

log = structlog.get_logger(__name__)

STALE_RETRY_S = 0.1
STATUS_SETTLE_S = 1.0


def trim_replicationcontroller(rc: Obj) -> Obj:
    """Keep DeploymentConfig versions whole; of every other RC, only what names it."""
    if deploymentconfig_of(rc) is not None:
        return rc
    metadata = rc.get("metadata") or {}
    return {
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "resourceVersion")
            if key in metadata
        }
    }


@dataclass
class RolloutReconciler:
    kube: Kube
    queue: WorkQueue
    deploymentconfigs: InformerSet
    replicationcontrollers: InformerSet
    index: ReplicationControllerIndex
    events: EventRecorder
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    status_settle_s: float = STATUS_SETTLE_S
    _status_due: dict[str, float] = field(default_factory=dict)

    def on_deploymentconfig(self, key: str, _old: Obj | None, _new: Obj | None) -> None:
        self.queue.add(key)

    def on_replicationcontroller(self, key: str, _old: Obj | None, new: Obj | None) -> None:
        """Index the RC, and wake the DeploymentConfig it is (or was) a version of."""
        if (dc_key := self.index.update(key, new)) is not None:
            self.queue.add(dc_key)

    async def reconcile(self, key: str) -> Requeue | None:
        dc = self.deploymentconfigs.get(key)
        if dc is None:
            self._status_due.pop(key, None)
            return None  # the garbage collector removes its RCs (owner references)
        rcs = [rc for k in self.index.of(key) if (rc := self.replicationcontrollers.get(k))]
        plan = plan_rollout(dc, rcs, now=self.clock())
        try:
            return await self._perform(key, dc, plan)
        except (Conflict, NotFound):
            log.debug("rollout_stale", key=key)
            return Requeue(after_s=STALE_RETRY_S)

    async def _perform(self, key: str, dc: Obj, plan: RolloutPlan) -> Requeue | None:
        namespace = namespace_of(dc)
        status_written = False
        if plan.decision is not None:
            await self._write_status(dc, plan.status)
            status_written = True
            log.info(
                "rollout_triggered",
                key=key,
                version=plan.decision.version,
                cause=plan.decision.details.get("message"),
            )
        for update in plan.updates:
            await self.kube.patch(REPLICATIONCONTROLLERS, namespace, update.name, update.patch())
        if plan.create is not None:
            try:
                await self.kube.create(REPLICATIONCONTROLLERS, namespace, plan.create)
            except Terminal as error:
                await self.events.post(
                    dc,
                    type_="Warning",
                    reason="DeploymentCreationFailed",
                    action="Create",
                    note=f"Couldn't deploy version {plan.status.get('latestVersion')}: {error}",
                )
                raise
        for rc in plan.deletes:
            with contextlib.suppress(NotFound):
                await self.kube.delete(REPLICATIONCONTROLLERS, namespace, rc)
            log.info("rollout_pruned", key=key, replicationcontroller=rc)
        for note in plan.notes:
            await self.events.post(
                dc, type_=note.type, reason=note.reason, action="Rollout", note=note.message
            )
        if plan.notes:
            log.info("rollout_step", key=key, steps=[n.message for n in plan.notes])
        requeue = plan.requeue_after_s
        if plan.status_changed and not status_written:
            if plan.acts:
                await self._write_status(dc, plan.status)
            else:
                now = self.monotonic()
                due = self._status_due.setdefault(key, now + self.status_settle_s)
                if now < due:
                    wait = due - now
                    return Requeue(after_s=min(wait, requeue) if requeue is not None else wait)
                await self._write_status(dc, plan.status)
        self._status_due.pop(key, None)
        return Requeue(after_s=requeue) if requeue is not None else None

    async def _write_status(self, dc: Obj, status: Obj) -> None:
        resource_version = (dc.get("metadata") or {}).get("resourceVersion", "")
        await self.kube.patch(
            DEPLOYMENTCONFIGS,
            namespace_of(dc),
            name_of(dc),
            {"metadata": {"resourceVersion": resource_version}, "status": status},
            subresource="status",
        )
        self._status_due.pop(f"{namespace_of(dc)}/{name_of(dc)}", None)
