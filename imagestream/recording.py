"""Writing tag events to ImageStreams: one status write per stream, whatever the burst.

Everything that moves a tag (a registry push, an import, a finished build)
comes through `StreamRecorder.record()`. Calls for the same stream that
arrive while a write for it is in flight are merged into the next write
(group commit), so a burst of 500 pushes to one stream costs a handful of
writes, not 500, and never two concurrent writers from this process racing
each other into conflicts.

Invariants:
- A caller is told "applied" only after the status write that contains its
  update succeeded (or the update was already recorded: a duplicate).
- A write is conditional on the resourceVersion it was computed from. On
  409 we re-read and re-apply (other webhook replicas and the controller
  write the same streams), within a bounded budget; then the caller gets
  `RecordError` and answers 503, and the sender's retry is safe because
  recording the same event twice changes nothing.
- The write runs in its own task: a caller that goes away (client
  disconnect, shutdown) does not abort a write that other callers wait on.
- One update the API server refuses as invalid (422: the schema, an
  admission policy) never fails the others written with it. Updates are
  checked against the schema before the write (`tag_event_problem`); if the
  server still refuses a batch, it is split in halves and each is written
  again, down to the one update refused, which is reported as `refused`
  (nothing of it written) while its batch-mates are applied. Otherwise one
  sender's bad event answered 503 for every concurrent push to that stream,
  and on every redelivery, forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from imagestream.caches import BoundedCache
from imagestream.imagestreams import (
    DEFAULT_HISTORY_LIMIT,
    TagCondition,
    TagEvent,
    copy_for_status_write,
    record,
    refresh_summary,
    set_import_failure,
    stream_generation,
    tag_event_problem,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, Invalid, KubeError, NotFound
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.objects import Obj

log = structlog.get_logger(__name__)

CONFLICT_BUDGET = 5
WRITTEN_MAX = 1024


@dataclass(frozen=True)
class TagUpdate:
    """One change to one tag: a new event, or a failed import."""

    tag: str
    event: TagEvent | None = None
    failure: TagCondition | None = None
    same_image_is_duplicate: bool = True
    event_id: str = ""


@dataclass(frozen=True)
class CreateSpec:
    """How to create the stream when it does not exist (integrated-registry pushes)."""

    docker_image_repository: str
    public_docker_image_repository: str = ""


@dataclass(frozen=True)
class UpdateResult:
    update: TagUpdate
    changed_tags: tuple[str, ...]
    refused: str = ""
    """Why the update can never be stored (the schema, or the API server's 422); then
    nothing of it was written. Empty for an update applied or already recorded."""

    @property
    def duplicate(self) -> bool:
        return not self.changed_tags and not self.refused


class RecordError(Exception):
    """The update could not be persisted now; the sender should retry."""


class UpdateRefused(RecordError):
    """Some of the caller's updates can never be stored: the API server refuses them.

    Retrying the same updates cannot help (it is the sender's error, not an
    outage). `results` holds the outcome of each of the caller's updates, in
    order: the refused ones say why, the others were applied.
    """

    def __init__(self, message: str, results: list[UpdateResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


class StreamMissing(RecordError):
    """The ImageStream does not exist and we were not asked to create it."""


class NamespaceMissing(RecordError):
    """The ImageStream should be created, but its namespace does not exist."""


@dataclass
class _Pending:
    update: TagUpdate | None
    create: CreateSpec | None
    status_fields: Mapping[str, Any]
    done: asyncio.Future[UpdateResult | None]


@dataclass
class StreamRecorder:
    kube: Kube
    get_cached: Callable[[str], Obj | None] = lambda _key: None
    history_limit: int = DEFAULT_HISTORY_LIMIT
    conflict_budget: int = CONFLICT_BUDGET
    on_write: Callable[[str, int], None] | None = None
    """Called after each successful status write with (stream key, updates in it)."""
    on_written: Callable[[Obj], object] | None = None
    """Called after each successful status write with the object the API server answered."""
    _pending: dict[str, list[_Pending]] = field(default_factory=dict)
    _writers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _written: BoundedCache[str, tuple[str, Obj]] = field(
        default_factory=lambda: BoundedCache(WRITTEN_MAX)
    )
    """Our last write per stream: (the resourceVersion it replaced, the object written).

    The watch that updates the cache lags our own writes by a few ms; a stream
    written again before it caught up would be written from the version we
    just replaced: a certain 409, a GET and a second PUT. While the cache still
    shows that replaced version, our own write is the newer one."""

    async def record(
        self,
        namespace: str,
        name: str,
        updates: list[TagUpdate],
        *,
        create: CreateSpec | None = None,
        status_fields: Mapping[str, Any] | None = None,
    ) -> list[UpdateResult]:
        """Persist `updates` (and `status_fields`, controller bookkeeping) in one write.

        The results are in the order of `updates`.
        """
        loop = asyncio.get_running_loop()
        key = f"{namespace}/{name}"
        entries = [_Pending(u, create, {}, loop.create_future()) for u in updates]
        if status_fields:
            entries.append(_Pending(None, create, status_fields, loop.create_future()))
        self._pending.setdefault(key, []).extend(entries)
        if key not in self._writers:
            task = loop.create_task(self._write_loop(namespace, name))
            self._writers[key] = task
        # shield: the caller may be cancelled; the write goes on for the others.
        results = await asyncio.shield(asyncio.gather(*(e.done for e in entries)))
        found = [result for result in results if result is not None]
        refused = [result.refused for result in found if result.refused]
        if refused:
            raise UpdateRefused(f"imagestream {key}: {refused[0]}", found)
        return found

    async def drain(self) -> None:
        """Wait for every write in flight (graceful shutdown)."""
        while self._writers:
            await asyncio.gather(*list(self._writers.values()), return_exceptions=True)

    async def _write_loop(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        latest: Obj | None = None
        try:
            while batch := self._pending.pop(key, []):
                try:
                    latest, results = await self._write_batch(namespace, name, batch, latest)
                except Exception as error:
                    failure = error if isinstance(error, RecordError) else RecordError(str(error))
                    for entry in batch:
                        if not entry.done.done():
                            entry.done.set_exception(failure)
                    latest = None
                    continue
                for entry, result in zip(batch, results, strict=True):
                    if entry.done.done():
                        continue
                    if isinstance(result, RecordError):
                        entry.done.set_exception(result)
                    else:
                        entry.done.set_result(result)
        finally:
            self._writers.pop(key, None)

    async def _current(self, namespace: str, name: str, latest: Obj | None) -> Obj | None:
        if latest is not None:
            return latest
        key = f"{namespace}/{name}"
        cached = self.get_cached(key)
        written = self._written.get(key)
        if written is not None:
            replaced, ours = written
            if cached is None or _resource_version(cached) == replaced:
                return ours
            self._written.pop(key)  # the cache has caught up (or moved on)
        if cached is not None:
            return cached
        try:
            return await self.kube.get(IMAGESTREAMS, namespace, name)
        except NotFound:
            return None

    async def _write_batch(
        self, namespace: str, name: str, batch: list[_Pending], latest: Obj | None
    ) -> tuple[Obj | None, list[_Outcome]]:
        current = await self._current(namespace, name, latest)
        for attempt in range(self.conflict_budget):
            if current is None:
                create = next((e.create for e in batch if e.create is not None), None)
                if create is None:
                    raise StreamMissing(f"imagestream {namespace}/{name} does not exist")
                current = await self._create(namespace, name, create)
            stream = copy_for_status_write(current)
            results: list[_Outcome] = [
                None if entry.update is None else self._apply(stream, entry.update)
                for entry in batch
            ]
            create = next((e.create for e in batch if e.create is not None), None)
            fields_changed = create is not None and _set_repositories(stream, create)
            for entry in batch:
                fields_changed = _set_status_fields(stream, entry.status_fields) or fields_changed
            if not any(_changed(r) for r in results) and not fields_changed:
                return current, results
            refresh_summary(stream)
            try:
                written = await self.kube.replace(
                    IMAGESTREAMS, namespace, name, stream, subresource="status"
                )
            except Conflict:
                log.debug(
                    "imagestream_conflict", imagestream=f"{namespace}/{name}", attempt=attempt + 1
                )
                current = await self._fresh(namespace, name)
                continue
            except NotFound:
                current = None
                continue
            except Invalid as error:
                return await self._isolate(namespace, name, batch, current, str(error))
            self._remember(f"{namespace}/{name}", _resource_version(current), written)
            if self.on_write is not None:
                self.on_write(f"{namespace}/{name}", len(batch))
            if self.on_written is not None:
                self.on_written(written)
            return written, results
        raise RecordError(
            f"imagestream {namespace}/{name}: still conflicting after {self.conflict_budget} writes"
        )

    async def _isolate(
        self, namespace: str, name: str, batch: list[_Pending], current: Obj, refusal: str
    ) -> tuple[Obj | None, list[_Outcome]]:
        """The server refused the batch: find the updates it refuses, write the others.

        Halving finds one refused update among n with about 2 log2(n) writes;
        nothing of a refused write was stored, so `current` is still the base.
        """
        if len(batch) == 1:
            (entry,) = batch
            log.warning(
                "imagestream_update_refused",
                imagestream=f"{namespace}/{name}",
                tag=entry.update.tag if entry.update is not None else "",
                event_id=entry.update.event_id if entry.update is not None else "",
                reason=refusal,
            )
            if entry.update is None:
                return current, [UpdateRefused(f"imagestream {namespace}/{name}: {refusal}")]
            return current, [UpdateResult(update=entry.update, changed_tags=(), refused=refusal)]
        middle = len(batch) // 2
        latest, first = await self._write_batch(namespace, name, batch[:middle], current)
        latest, second = await self._write_batch(namespace, name, batch[middle:], latest)
        return latest, first + second

    def _remember(self, key: str, replaced: str, written: Obj) -> None:
        self._written.put(key, (replaced, written))

    async def _fresh(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self.kube.get(IMAGESTREAMS, namespace, name)
        except NotFound:
            return None

    async def _create(self, namespace: str, name: str, create: CreateSpec) -> Obj:
        body = {
            "apiVersion": IMAGESTREAMS.api_version,
            "kind": IMAGESTREAMS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        }
        try:
            created = await self.kube.create(IMAGESTREAMS, namespace, body)
        except Conflict:  # another replica created it first
            fresh = await self._fresh(namespace, name)
            if fresh is None:
                raise RecordError(
                    f"imagestream {namespace}/{name} vanished while created"
                ) from None
            return fresh
        except NotFound as error:
            raise NamespaceMissing(f"namespace {namespace} does not exist") from error
        except Invalid as error:
            # Every update of the batch needs this stream: all are refused.
            raise UpdateRefused(f"creating imagestream {namespace}/{name}: {error}") from error
        except KubeError as error:
            raise RecordError(f"creating imagestream {namespace}/{name}: {error}") from error
        log.info("imagestream_created", imagestream=f"{namespace}/{name}")
        return created

    def _apply(self, stream: Obj, update: TagUpdate) -> UpdateResult:
        """Apply one update; generation 0 means "the stream's generation", as a push records it."""
        problem = tag_event_problem(update.tag, update.event)
        if problem is not None:
            return UpdateResult(update=update, changed_tags=(), refused=problem)
        changed: list[str] = []
        generation = stream_generation(stream)
        if update.event is not None:
            event = update.event
            if event.generation == 0:
                event = replace(event, generation=generation)
            changed = record(
                stream,
                update.tag,
                event,
                history_limit=self.history_limit,
                same_image_is_duplicate=update.same_image_is_duplicate,
            )
        elif update.failure is not None:
            failure = update.failure
            if failure.generation == 0:
                failure = replace(failure, generation=generation)
            if set_import_failure(stream, update.tag, failure):
                changed = [update.tag]
        return UpdateResult(update=update, changed_tags=tuple(changed))


_Outcome = UpdateResult | RecordError | None
"""What a batch entry gets: its result, the error to raise to its caller, or None (the
entry carried only status fields, and they were written)."""


def _changed(outcome: _Outcome) -> bool:
    return isinstance(outcome, UpdateResult) and bool(outcome.changed_tags)


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _set_status_fields(stream: Obj, fields: Mapping[str, Any]) -> bool:
    status: dict[str, Any] = stream.setdefault("status", {})
    changed = False
    for field_name, value in fields.items():
        if status.get(field_name) != value:
            status[field_name] = value
            changed = True
    return changed


def _set_repositories(stream: Obj, create: CreateSpec) -> bool:
    status: dict[str, Any] = stream.setdefault("status", {})
    wanted = {
        "dockerImageRepository": create.docker_image_repository,
        "publicDockerImageRepository": create.public_docker_image_repository,
    }
    changed = False
    for field_name, value in wanted.items():
        if value and status.get(field_name) != value:
            status[field_name] = value
            changed = True
    return changed
