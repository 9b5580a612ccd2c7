"""The trigger loop: make each workload's triggered images equal what its tags resolve to.

This is OpenShift's image trigger controller, in our own words: triggers
are level driven. The queue holds object keys; for one key we read the
object and its ImageStreams from the caches, ask the object's reactor
(`controller.triggers.reactors`) what its triggers want now, and write only
when that says so. Our own write comes back as a watch event, is planned
again, and stops there (behaviour 19, docs/openshift-behaviours.md#behaviour-19),
so there is no write loop and, converged, no API call.

The write is a JSON Patch that tests every value it was decided from. What
the API server answers decides what happens next, and the two 422s are
never confused (docs/architecture.md#api-errors):

* the patch no longer applies (`PatchTestFailed`: someone edited the object
  after our read): plan again from the newer object, soon, instead of
  overwriting their edit;
* the server refused the new image (`Invalid`: validation or an admission
  policy): a Warning Event on the workload with the server's message, then
  retry with the queue's capped exponential back-off, never a tight loop;
* the object is gone (`NotFound`): nothing was written, so nothing is said:
  no `ImageTriggered` Event, no latency sample, no log line.

A stream in another namespace is followed only where the object's service
accounts may pull from it (the image-puller rule, behaviour 16): the answers
are asked before planning (`controller.triggers.pullaccess`, cached for a
TTL), the plan gets them as input, and a refused object is reconciled again
when its answers expire, so a RoleBinding granted later takes effect with no
other change.

Every patch is explained by a Normal Event on the object (each one counted:
repeats join the Event's series), and every trigger that cannot act by a
Warning Event, once per change of its state (`controller.triggers.warnings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from controller.events import EventRecorder
from controller.loop.outcomes import GiveUp, Requeue, RetryLater
from controller.loop.queue import WorkQueue
from controller.triggers.annotations import UnsupportedKind
from controller.triggers.index import TriggerIndex
from controller.triggers.outcomes import Reason, TriggerOutcome
from controller.triggers.ownership import TRIGGER_FIELD_MANAGER
from controller.triggers.pullaccess import PullAccess
from controller.triggers.reactors import AppliedImage, Reaction, Reactor
from controller.triggers.warnings import TriggerStates, news
from imagestream.caches import BoundedCache
from imagestream.heap import shared
from imagestream.imagestreams import head, status_tag
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import Invalid, NotFound, PatchTestFailed
from imagestream.kube.informer import InformerSet
from imagestream.objects import Obj, uid_of
from imagestream.timestamps import parse_rfc3339

log = structlog.get_logger(__name__)

STALE_RETRY_S = 0.2
"""After a stale read: long enough for the watch to bring the newer object."""
STATES_REMEMBERED_MAX = 100_000
"""Objects whose trigger states are remembered; forgetting one costs one repeated Warning."""
_NOTHING_TO_TAKE = frozenset({Reason.TAG_NOT_FOUND, Reason.STREAM_NOT_FOUND})


@dataclass
class TriggerMetrics:
    patches: Counter
    tag_to_patch: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TriggerMetrics:
        return cls(
            patches=Counter(
                "imagestream_trigger_patches",
                "Workloads patched by triggers.",
                ["resource"],
                registry=registry,
            ),
            tag_to_patch=Histogram(
                "imagestream_tag_to_patch_seconds",
                "From a tag event's `created` time to the workload patch carrying it, for"
                " push-driven patches only (the event was one the container had not taken).",
                registry=registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            ),
        )


@dataclass
class TriggerReconciler:
    kube: Kube
    queue: WorkQueue
    reactors: Mapping[str, Reactor]
    """By resource plural, the first part of a queue key."""
    caches: Mapping[str, InformerSet]
    """By resource plural: the trimmed objects of each kind."""
    streams: InformerSet
    index: TriggerIndex
    events: EventRecorder
    metrics: TriggerMetrics
    pull_access: PullAccess
    """Whether cross-namespace streams may be followed (behaviour 16)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _states: BoundedCache[str, tuple[str, TriggerStates]] = field(
        default_factory=lambda: BoundedCache(STATES_REMEMBERED_MAX)
    )
    """By queue key: the object's uid and its triggers' warning states at the last
    reconcile; no entry while every trigger acts."""
    _taken: BoundedCache[str, tuple[str, dict[str, str]]] = field(
        default_factory=lambda: BoundedCache(STATES_REMEMBERED_MAX)
    )
    """By queue key: the object's uid, and by trigger fieldPath the image that container
    last carried from its tag (found up to date, or written by us; "" while its tag had no
    image): what decides whether a patch is push-driven. Forgetting one costs, at worst,
    one latency sample not taken."""

    # --- what wakes a key ---------------------------------------------------------------

    def on_imagestream(self, key: str, _old: Obj | None, _new: Obj | None) -> None:
        """A stream changed: wake every object whose active triggers follow it."""
        for workload in self.index.pointing_at(key):
            self.queue.add(workload)

    def on_object_of(self, reactor: Reactor) -> Callable[[str, Obj | None, Obj | None], None]:
        """The cache handler for one kind: keep the index current, wake what may act."""

        def on_object(key: str, old: Obj | None, new: Obj | None) -> None:
            namespace, name = key.split("/", 1)
            queue_key = reactor.key(namespace, name)
            if new is None:  # deleted, or its triggers went (the cache keeps it no more)
                self.index.remove(queue_key)
                self._states.pop(queue_key)
                self._taken.pop(queue_key)
                return
            self.index.update(queue_key, reactor.follows(new))
            if reactor.needs_reconcile(old, new):
                self.queue.add(queue_key)

        return on_object

    # --- reconcile ----------------------------------------------------------------------

    def get_stream(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.streams.get(f"{namespace}/{name}")

    async def reconcile(self, key: str) -> Requeue | None:
        plural, namespace, name = key.split("/", 2)
        reactor = self.reactors[plural]
        obj = self.caches[plural].get(f"{namespace}/{name}")
        if obj is None:
            self.index.remove(key)
            self._states.pop(key)
            self._taken.pop(key)
            return None
        self.index.update(key, reactor.follows(obj))
        try:
            # Asked before planning (a review is I/O; a failed one raises and backs off),
            # so that the plan is pure and never reads a stream it may not follow.
            access = await self.pull_access.answers(namespace, reactor.named_streams(obj))
            reaction = reactor.react(
                obj, get_stream=self.get_stream, namespace_allowed=access.namespace_allowed
            )
        except UnsupportedKind as error:
            raise GiveUp(str(error)) from error
        await self._explain_failures(key, obj, reaction.outcomes)
        # A denial is looked at again after its answer expires: a RoleBinding granted
        # meanwhile then takes effect with no change to the object or the stream.
        recheck = Requeue(after_s=access.recheck_after_s) if access.recheck_after_s else None
        taken = self._taken_by(key, obj)
        for outcome in reaction.outcomes:
            # Interned: 50,000 workloads repeat a few fieldPaths and share their tags' images.
            if outcome.reason is Reason.UP_TO_DATE and outcome.resolved_image:
                taken[shared(outcome.target)] = shared(outcome.resolved_image)
            elif outcome.reason in _NOTHING_TO_TAKE:
                taken.setdefault(shared(outcome.target), "")  # followed, no event yet
        if not reaction.patch:
            return recheck
        try:
            await self.kube.patch(
                reactor.resource,
                namespace,
                name,
                reaction.patch,
                patch_type=JSON_PATCH,
                # Under our own name: managedFields then say which images we set last.
                field_manager=TRIGGER_FIELD_MANAGER,
            )
        except NotFound:
            log.debug("patch_target_gone", key=key)
            return None
        except PatchTestFailed:
            log.debug("patch_stale", key=key)
            return Requeue(after_s=STALE_RETRY_S)
        except Invalid as error:
            await self.events.post(
                obj,
                type_="Warning",
                reason="TriggerPatchRefused",
                action="UpdateImage",
                note=f"the API server refused the triggered image update: {error}",
            )
            raise RetryLater(f"image update refused: {error}") from error
        self.metrics.patches.labels(reactor.resource.plural).inc()
        push_driven = {a.target for a in reaction.applied if self._push_driven(taken, a)}
        taken.update((shared(a.target), shared(a.image)) for a in reaction.applied if a.target)
        await self._announce(key, obj, reaction, push_driven)
        return recheck

    async def _announce(
        self, key: str, obj: Obj, reaction: Reaction, push_driven: set[str]
    ) -> None:
        """After a write that happened: one Event, one log line and one latency sample each."""
        for applied in reaction.applied:
            await self.events.post(
                obj,
                type_="Normal",
                reason="ImageTriggered",
                action="UpdateImage",
                note=applied.note,
            )
            fields: dict[str, str] = {}
            if applied.stream_tag is not None:
                stream_namespace, stream, tag = applied.stream_tag
                if applied.target in push_driven:
                    self._observe_latency(stream_namespace, stream, tag)
                fields = {"imagestream": f"{stream_namespace}/{stream}", "tag": tag}
            log.info(
                "workload_patched",
                key=key,
                container=applied.container,
                digest=applied.image.rpartition("@")[2],
                **fields,
            )
        for pause in reaction.pauses:
            await self.events.post(
                obj,
                type_="Warning",
                reason="TriggerPausedAfterManualChange",
                action="Pause",
                note=(
                    f"{pause.container_kind}[{pause.container_name}] was changed by hand to "
                    f"{pause.current_image}; its trigger is paused instead of reverting to "
                    f"{pause.resolved_image}. Set paused: false to follow the tag again."
                ),
            )

    async def _explain_failures(
        self, key: str, obj: Obj, outcomes: tuple[TriggerOutcome, ...]
    ) -> None:
        """One Warning per trigger that entered a state in which it cannot act."""
        uid = uid_of(obj)
        remembered = self._states.get(key)
        previous = remembered[1] if remembered is not None and remembered[0] == uid else {}
        states, fresh = news(previous, outcomes)
        if states:
            self._states.put(key, (uid, states))
        else:
            self._states.pop(key)  # every trigger acts: nothing to remember
        for outcome in fresh:
            log.info("trigger_cannot_act", key=key, target=outcome.target, reason=outcome.reason)
            await self.events.post(
                obj,
                type_="Warning",
                reason=f"Trigger{outcome.reason}",
                action="Resolve",
                note=f"{outcome.target} <- {outcome.source}: {outcome.message}",
            )

    def _taken_by(self, key: str, obj: Obj) -> dict[str, str]:
        """The remembered images of this object (not of an earlier one of the same name)."""
        uid = uid_of(obj)
        remembered = self._taken.get(key)
        if remembered is None or remembered[0] != uid:
            remembered = (uid, {})
        self._taken.put(key, remembered)  # the newest entry: the last forgotten
        return remembered[1]

    def _push_driven(self, taken: Mapping[str, str], applied: AppliedImage) -> bool:
        """Whether this patch carries a tag event the container had not yet taken.

        It had taken it if it carried that image the last time we saw the trigger
        followed (up to date, or patched by us): writing it again reverts a hand edit or a
        rollback, or resumes an unpaused trigger, and the tag did not move. A trigger seen
        waiting for its tag's first image takes a new event. Not seen since this process
        started leading (a restart, a failover, a workload created after the push): only
        if the container was visibly behind the tag, its image an older event of the same
        tag's history; a placeholder (`" "`) or a hand-set image says nothing of a push.
        """
        if applied.stream_tag is None or not applied.target:
            return False
        last = taken.get(applied.target)
        if last is not None:
            return last != applied.image
        namespace, stream_name, tag = applied.stream_tag
        stream = self.get_stream(namespace, stream_name)
        entry = status_tag(stream, tag) if stream is not None else None
        older = ((entry or {}).get("items") or [])[1:]
        digest = applied.previous.rpartition("@")[2]
        return any(item.get("image") == digest for item in older)

    def _observe_latency(self, namespace: str, stream_name: str, tag: str) -> None:
        stream = self.get_stream(namespace, stream_name)
        current = head(stream, tag) if stream else None
        created = parse_rfc3339(current.created) if current else None
        if created is not None:
            self.metrics.tag_to_patch.observe(max((self.clock() - created).total_seconds(), 0.0))
