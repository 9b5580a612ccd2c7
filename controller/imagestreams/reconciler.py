"""The ImageStream reconciler: spec-tag processing and imports.

For one stream key: read the cached stream, decide with
`specsync.plan_spec_sync` what the API server would have recorded for the
spec as it is (reference tags, tag copies, due imports), perform the
imports against the registries, and persist everything in one status write
through the shared `StreamRecorder`. A stream whose spec was already
processed and has nothing due costs no API call.

Scheduled imports (`importPolicy.scheduled: true`) are the safety net for
pushes whose notification was lost (distribution keeps its queue in memory
only): every `import_interval_s` each such stream is imported again, and
an unchanged digest writes nothing.

The cluster image configuration (docs/openshift-behaviours.md#behaviour-31)
is asked at each reconcile, through the registry access's current policy:
the integrated registry's host (`status.dockerImageRepository`), the first
external hostname (`status.publicDockerImageRepository`), and whether each
import may name its registry at all, digest-pinned ones included (OpenShift
refuses those in admission): a refused import records `ImportSuccess=False`
with reason `Forbidden` and the policy's message, and nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.imagestreams.plan import ImportRequest, plan_spec_sync
from controller.loop.outcomes import Requeue, RetryLater
from controller.loop.queue import WorkQueue
from imagestream.imagestreams import TagCondition, TagEvent
from imagestream.kube.informer import InformerSet
from imagestream.objects import Obj
from imagestream.recording import RecordError, StreamMissing, StreamRecorder, TagUpdate
from imagestream.references import name_as_written, parse_image_reference
from imagestream.registry_access import RegistryAccess
from imagestream.registry_client import ResolveError, ResolveReason
from imagestream.timestamps import rfc3339_micro

log = structlog.get_logger(__name__)

INVALID_IMAGE_REFERENCE = "InvalidImageReference"
IMPORT_FAILURE_REASONS: tuple[str, ...] = (
    *(str(r) for r in ResolveReason if r is not ResolveReason.TOO_MANY_REQUESTS),
    INVALID_IMAGE_REFERENCE,
)
"""Every `reason` a failed import records (a 429 is retried, not recorded)."""


@dataclass
class ImageStreamReconciler:
    queue: WorkQueue
    streams: InformerSet
    recorder: StreamRecorder
    registry_access: RegistryAccess
    import_interval_s: float = 900.0
    integrated_registry: str = ""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_import: Callable[[str, str], None] = lambda _result, _reason: None
    """Told each import's result (`imported`, `failed`, `throttled`) and failure reason."""
    _last_scheduled: dict[str, float] = field(default_factory=dict)

    def on_imagestream(self, key: str, _old: Obj | None, _new: Obj | None) -> None:
        self.queue.add(key)

    def has_scheduled_tags(self, stream: dict[str, Any]) -> bool:
        return any(
            (tag.get("importPolicy") or {}).get("scheduled")
            and (tag.get("from") or {}).get("kind") == "DockerImage"
            and not tag.get("reference")
            for tag in (stream.get("spec") or {}).get("tags") or []
        )

    async def reconcile(self, key: str) -> Requeue | None:
        stream = self.streams.get(key)
        if stream is None:
            self._last_scheduled.pop(key, None)
            return None
        namespace, name = key.split("/", 1)
        scheduled = self.has_scheduled_tags(stream)
        now_s = time.monotonic()
        scheduled_due = scheduled and (
            now_s - self._last_scheduled.get(key, float("-inf")) >= self.import_interval_s
        )
        now = rfc3339_micro(self.clock())
        policy = self.registry_access.current_policy()
        integrated = policy.integrated_registry or self.integrated_registry
        repository = f"{integrated}/{namespace}/{name}" if integrated else ""
        public = policy.public_registry()
        public_repository = f"{public}/{namespace}/{name}" if public else ""
        sync = plan_spec_sync(
            stream,
            now=now,
            get_stream=self._get,
            scheduled_due=scheduled_due,
            docker_image_repository=repository,
        )
        if repository and (stream.get("status") or {}).get("dockerImageRepository") != repository:
            sync.status_fields["dockerImageRepository"] = repository
        if (
            public_repository
            and (stream.get("status") or {}).get("publicDockerImageRepository") != public_repository
        ):
            sync.status_fields["publicDockerImageRepository"] = public_repository
        retry_after: float | None = None
        updates = list(sync.updates)
        for request in sync.imports:
            update, wait = await self._import(namespace, request, now)
            if wait is not None:
                self.on_import("throttled", "TooManyRequests")
            elif update is not None and update.failure is not None:
                self.on_import("failed", update.failure.reason)
            elif update is not None:
                self.on_import("imported", "")
            if update is not None:
                updates.append(update)
            if wait is not None:
                retry_after = min(retry_after or wait, wait)
        if updates or sync.status_fields:
            try:
                await self.recorder.record(
                    namespace, name, updates, status_fields=sync.status_fields
                )
            except StreamMissing:
                return None
            except RecordError as error:
                raise RetryLater(str(error)) from error
            for update in updates:
                if update.event is not None:
                    log.info(
                        "tag_resolved",
                        imagestream=key,
                        tag=update.tag,
                        digest=update.event.image,
                        reference=update.event.docker_image_reference,
                    )
        if scheduled_due and retry_after is None:
            self._last_scheduled[key] = now_s
        if retry_after is not None:
            return Requeue(after_s=retry_after)
        if scheduled:
            remaining = self.import_interval_s - (now_s - self._last_scheduled.get(key, now_s))
            return Requeue(after_s=max(remaining, 1.0))
        return None

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.streams.get(f"{namespace}/{name}")

    async def _import(
        self, namespace: str, request: ImportRequest, now: str
    ) -> tuple[TagUpdate | None, float | None]:
        """One tag's import: the event, or the failure to record; and a retry delay for 429s."""

        def failed(reason: str, message: str) -> TagUpdate:
            return TagUpdate(
                tag=request.tag,
                failure=TagCondition(
                    reason=reason,
                    message=message,
                    generation=request.generation,
                    last_transition_time=now,
                ),
            )

        try:
            reference = parse_image_reference(request.from_name)
        except ValueError as error:
            return failed(INVALID_IMAGE_REFERENCE, str(error)), None
        refusal = self.registry_access.current_policy().decide(
            reference.registry,
            repository=reference.repository,
            insecure=request.insecure,
            importing=True,
            contacting=not reference.digest,
        )
        if refusal.refused:
            log.info(
                "import_refused",
                imagestream_namespace=namespace,
                tag=request.tag,
                message=refusal.refused,
            )
            return failed(str(ResolveReason.FORBIDDEN), refusal.refused), None
        if reference.digest:
            digest = reference.digest
        else:
            try:
                resolved = await self.registry_access.resolve(
                    registry=reference.registry,
                    repository=reference.repository,
                    tag=reference.tag,
                    namespace=namespace,
                    insecure=request.insecure,
                    importing=True,
                )
            except ResolveError as error:
                if error.reason == ResolveReason.TOO_MANY_REQUESTS:
                    return None, error.retry_after_s or 60.0
                log.info(
                    "import_failed",
                    imagestream_namespace=namespace,
                    tag=request.tag,
                    reason=str(error.reason),
                    message=error.message,
                )
                return failed(str(error.reason), error.message), None
            except ValueError as error:
                return failed(INVALID_IMAGE_REFERENCE, str(error)), None
            digest = resolved.digest
        event = TagEvent(
            created=now,
            docker_image_reference=f"{name_as_written(request.from_name)}@{digest}",
            image=digest,
            generation=request.generation,
        )
        return TagUpdate(tag=request.tag, event=event, same_image_is_duplicate=False), None
