"""The trigger reconciler: make each workload's triggered images equal what its tags resolve to.

This is OpenShift's image trigger controller, in our own words: triggers
are level driven. The queue holds object keys; for one key we read the
object and its ImageStreams from the caches, plan with the pure planners
in `controller.triggers`, and write only when the plan says so. Our own
write comes back as a watch event, is planned again, and stops there
(behaviour 19), so there is no write loop and, converged, no API call.

The write is a JSON Patch that tests every value it was decided from; if
the object changed meanwhile the API server refuses it (422), and we plan
again from the newer object instead of overwriting someone's edit.

Every patch is explained by a Normal Event on the object, and every
trigger that cannot act by a Warning Event (deduplicated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from controller.events import EventRecorder
from controller.loop.workers import Requeue
from controller.triggers import deploymentconfigs as dc_triggers
from controller.triggers.annotations import UnsupportedKind
from controller.triggers.outcomes import NamespacePolicy, Reason, TriggerOutcome
from controller.triggers.plan import build_json_patch, plan_triggers
from controller.triggers.reactors import TriggerIndex, TriggerSource
from imagestream.imagestreams import head
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import NotFound, Terminal
from imagestream.kube.informer import InformerSet
from imagestream.timestamps import parse_rfc3339

log = structlog.get_logger(__name__)

STALE_RETRY_S = 0.2


@dataclass
class WorkloadMetrics:
    patches: Counter
    tag_to_patch: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkloadMetrics:
        return cls(
            patches=Counter(
                "imagestream_trigger_patches",
                "Workloads patched by triggers.",
                ["resource"],
                registry=registry,
            ),
            tag_to_patch=Histogram(
                "imagestream_tag_to_patch_seconds",
                "From a tag event's `created` time to the workload patch carrying it.",
                registry=registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            ),
        )


@dataclass
class WorkloadReconciler:
    kube: Kube
    sources: Mapping[str, TriggerSource]
    """By resource plural, the first part of a queue key."""
    caches: Mapping[str, InformerSet]
    streams: InformerSet
    index: TriggerIndex
    events: EventRecorder
    metrics: WorkloadMetrics
    namespace_allowed: NamespacePolicy
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def get_stream(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.streams.get(f"{namespace}/{name}")

    async def reconcile(self, key: str) -> Requeue | None:
        plural, namespace, name = key.split("/", 2)
        source = self.sources[plural]
        obj = self.caches[plural].get(f"{namespace}/{name}")
        if obj is None:
            self.index.remove(key)
            return None
        self.index.update(key, source.index_keys(obj))
        if source.is_deploymentconfig:
            return await self._reconcile_deploymentconfig(source, obj)
        return await self._reconcile_annotated(source, obj)

    async def _reconcile_annotated(
        self, source: TriggerSource, obj: dict[str, Any]
    ) -> Requeue | None:
        try:
            plan = plan_triggers(
                obj, get_stream=self.get_stream, namespace_allowed=self.namespace_allowed
            )
        except UnsupportedKind as error:
            raise Terminal(str(error)) from error
        await self._explain_failures(obj, plan.outcomes)
        if not plan.needs_write:
            return None
        patch = build_json_patch(obj, plan.changes, annotations=plan.annotation_updates)
        written = await self._patch(source, obj, patch)
        if written is None:
            return Requeue(after_s=STALE_RETRY_S)
        for change in plan.changes:
            await self.events.post(
                obj,
                type_="Normal",
                reason="ImageTriggered",
                action="UpdateImage",
                note=(
                    f"set {change.container_kind}[{change.container_name}] to "
                    f"{change.new_image} from ImageStreamTag "
                    f"{change.stream_namespace}/{change.stream}:{change.tag}"
                ),
            )
            self._observe_latency(change.stream_namespace, change.stream, change.tag)
            log.info(
                "workload_patched",
                key=source.key(*_name(obj)),
                imagestream=(f"{change.stream_namespace}/{change.stream}"),
                tag=change.tag,
                digest=change.new_image.rpartition("@")[2],
                container=change.container_name,
            )
        for pause in plan.pauses:
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
        return None

    async def _reconcile_deploymentconfig(
        self, source: TriggerSource, dc: dict[str, Any]
    ) -> Requeue | None:
        plan = dc_triggers.plan_deploymentconfig(
            dc, get_stream=self.get_stream, namespace_allowed=self.namespace_allowed
        )
        await self._explain_failures(dc, plan.outcomes)
        if not plan.needs_write:
            return None
        patch = dc_triggers.build_deploymentconfig_json_patch(dc, plan)
        written = await self._patch(source, dc, patch)
        if written is None:
            return Requeue(after_s=STALE_RETRY_S)
        for update in plan.container_images:
            await self.events.post(
                dc,
                type_="Normal",
                reason="ImageTriggered",
                action="UpdateImage",
                note=f"set container {update.container_name} to {update.new_image}",
            )
        for outcome in plan.outcomes:
            if outcome.reason == Reason.APPLIED and outcome.resolved_image:
                log.info(
                    "deploymentconfig_patched",
                    key=source.key(*_name(dc)),
                    source=outcome.source,
                    digest=outcome.resolved_image.rpartition("@")[2],
                )
        return None

    async def _patch(
        self, source: TriggerSource, obj: dict[str, Any], patch: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Apply the patch; None when the object moved since we read it (plan again)."""
        namespace, name = _name(obj)
        try:
            written = await self.kube.patch(
                source.resource, namespace, name, patch, patch_type=JSON_PATCH
            )
        except NotFound:
            return {}
        except Terminal as error:
            if error.status == 422:  # a `test` op failed: our read was stale
                log.debug("patch_stale", key=source.key(namespace, name))
                return None
            raise
        self.metrics.patches.labels(source.resource.plural).inc()
        return written

    async def _explain_failures(
        self, obj: dict[str, Any], outcomes: tuple[TriggerOutcome, ...]
    ) -> None:
        for outcome in outcomes:
            if outcome.reason.is_warning:
                await self.events.post(
                    obj,
                    type_="Warning",
                    reason=f"Trigger{outcome.reason}",
                    action="Resolve",
                    note=f"{outcome.target} <- {outcome.source}: {outcome.message}",
                )

    def _observe_latency(self, namespace: str, stream_name: str, tag: str) -> None:
        stream = self.get_stream(namespace, stream_name)
        current = head(stream, tag) if stream else None
        created = parse_rfc3339(current.created) if current else None
        if created is not None:
            self.metrics.tag_to_patch.observe(max((self.clock() - created).total_seconds(), 0.0))


def _name(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))
