"""Kubernetes Events that explain what the controller did, and what it could not do.

Every patch gets a Normal event on the workload naming the trigger, the tag
and the digest; every trigger that cannot act gets a Warning saying why.

Invariant: every `post()` is counted on the API server. Repeats are
aggregated the way Kubernetes aggregates them (events.k8s.io/v1, as
client-go's recorder does): an occurrence of the same Event (same object,
type, reason, action and note) within `SERIES_WINDOW_S` of the previous one
joins that Event's `series` (`count` = occurrences so far, including the
first; `lastObservedTime`) instead of becoming another Event. A new Event is
created only for the first occurrence, or after a quiet window. So four
reverts leave one Event with `series.count: 4`, and `kubectl get events`
says `x4`.

Failure it prevents: the earlier recorder dropped a repeated message for an
hour, so four real reverts of a hand edit left one Event, and a write
happened without anything on the object saying so. Deciding *which* states
are news (one Warning per change of a trigger's state, not one per
reconcile) is the caller's business (`controller.triggers.warnings`); this
module never drops an occurrence it is given, except past `PENDING_MAX`
(logged).

Failing to post an Event never fails a reconcile: events explain, they are
not state. So they are posted off the reconcile's path: `post()` returns at
once and the write happens in the background, one at a time, so a fan-out
to a thousand workloads costs one API round trip per workload on the
workers' path (the patch), not two, and the Events follow. Occurrences that
arrive while their Event is being written are carried by the next write of
the same Event (one PATCH of `series` for any number of them). Those still
waiting when the process stops are not written.

They also wait while writes are queued (`drained`, the trigger loop's queue),
for up to `DEFER_MAX_S`: an Event costs the API server about as much as a
patch (a create, an etcd write), so during a fan-out each one written
slowed the patches still to come; they now follow the fan-out instead of
interleaving with it. An isolated push finds the queue empty and is
explained at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from imagestream.caches import BoundedCache
from imagestream.kube.client import MERGE_PATCH, Kube
from imagestream.kube.errors import KubeError, NotFound
from imagestream.kube.resources import EVENTS
from imagestream.timestamps import rfc3339_micro

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER = "imagestream.dev/controller"
SERIES_WINDOW_S = 360.0
"""An occurrence this soon after the previous one joins its series; client-go's
events.k8s.io recorder closes a series after 6 minutes without an occurrence."""
REMEMBERED_MAX = 10_000
IN_FLIGHT_MAX = 1
"""Events written at once: one, so during a fan-out the patches (8 workers) go first."""
PENDING_MAX = 5000
DEFER_MAX_S = 10.0
"""The longest an Event waits for the queued writes (`EventRecorder.drained`) to be done."""

Identity = tuple[str, str, str, str, str]
"""(object uid, type, reason, action, note): occurrences of one Event."""


@dataclass(frozen=True, kw_only=True)
class Note:
    """An Event a plan asks for, explaining a write (posted by the reconciler)."""

    type: str
    reason: str
    message: str


@dataclass
class Series:
    """One Event and its occurrences: how many happened, how many the API server has."""

    regarding: dict[str, Any]
    type_: str
    reason: str
    action: str
    note: str
    first: datetime
    last: datetime
    last_seen_s: float
    """`time.monotonic()` of the last occurrence: what the window is measured on."""
    name: str = ""
    count: int = 1
    written: int = 0
    """Occurrences the API server holds; 0 until the Event is created."""
    writing: bool = False


def event_body(series: Series, *, instance: str) -> dict[str, Any]:
    """The events.k8s.io/v1 Event for `series` as it stands (a `series` from 2 occurrences)."""
    metadata = series.regarding.get("metadata") or {}
    namespace = str(metadata.get("namespace", ""))
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": series.name, "namespace": namespace},
        "eventTime": rfc3339_micro(series.first),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance,
        "action": series.action,
        "reason": series.reason,
        "note": series.note[:1024],
        "type": series.type_,
        "regarding": {
            "apiVersion": series.regarding.get("apiVersion", ""),
            "kind": series.regarding.get("kind", ""),
            "namespace": namespace,
            "name": metadata.get("name", ""),
            "uid": metadata.get("uid", ""),
            "resourceVersion": metadata.get("resourceVersion", ""),
        },
    }
    if series.count > 1:
        body["series"] = series_fields(series)
    return body


def series_fields(series: Series) -> dict[str, Any]:
    """`series` of an Event: the API server requires a count of at least 2."""
    return {"count": series.count, "lastObservedTime": rfc3339_micro(series.last)}


def _new_name(regarding: dict[str, Any]) -> str:
    # client-go's naming: the object's name, a dot, a unique suffix.
    return f"{(regarding.get('metadata') or {}).get('name', 'object')}.{secrets.token_hex(8)}"


@dataclass
class EventRecorder:
    kube: Kube
    instance: str
    _series: BoundedCache[Identity, Series] = field(
        default_factory=lambda: BoundedCache(REMEMBERED_MAX)
    )
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT_MAX))
    drained: Callable[[], Awaitable[None]] | None = None
    """Until no write that goes first is queued (the trigger loop's queue is empty)."""

    async def post(
        self, regarding: dict[str, Any], *, type_: str, reason: str, action: str, note: str
    ) -> None:
        """Count one occurrence and return; the Event is written in the background."""
        metadata = regarding.get("metadata") or {}
        identity = (str(metadata.get("uid", "")), type_, reason, action, note)
        now_s, now = time.monotonic(), datetime.now(UTC)
        series = self._series.get(identity)
        if series is not None and now_s - series.last_seen_s < SERIES_WINDOW_S:
            series.count += 1
            series.last, series.last_seen_s = now, now_s
            series.regarding = regarding
            if not series.writing:
                self._start(identity, series)
            return
        if len(self._pending) >= PENDING_MAX:
            log.warning("event_dropped", reason=reason, pending=len(self._pending))
            return
        series = Series(
            regarding=regarding,
            type_=type_,
            reason=reason,
            action=action,
            note=note,
            first=now,
            last=now,
            last_seen_s=now_s,
            name=_new_name(regarding),
        )
        # Remembered now, so a second occurrence before the create lands joins this Event.
        self._series.put(identity, series)
        self._start(identity, series)

    async def drain(self) -> None:
        """Wait until every counted occurrence is written (or failed)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _start(self, identity: Identity, series: Series) -> None:
        series.writing = True
        task = asyncio.create_task(self._write(identity, series))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, identity: Identity, series: Series) -> None:
        namespace = str((series.regarding.get("metadata") or {}).get("namespace", ""))
        try:
            # Occurrences counted while a write is in flight go out with the next one. The
            # count is absolute, so a write carrying more than it was started for is no harm.
            while series.written < series.count:
                async with self._gate:
                    await self._after_queued_writes()
                    if series.written == 0:
                        series.written = await self._create(namespace, series)
                    else:
                        series.written = await self._update_series(namespace, series)
        except KubeError as error:
            log.warning(
                "event_not_posted",
                reason=series.reason,
                occurrences=series.count - series.written,
                error=str(error),
            )
            if series.written == 0:
                self._series.pop(identity)  # a later occurrence may try again
            else:
                series.count = series.written
        finally:
            series.writing = False

    async def _after_queued_writes(self) -> None:
        """Wait (bounded) while the writes the Events explain are still queued."""
        if self.drained is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained(), DEFER_MAX_S)

    async def _create(self, namespace: str, series: Series) -> int:
        """Create the Event; the occurrences it holds."""
        body = event_body(series, instance=self.instance)
        await self.kube.create(EVENTS, namespace, body)
        return int(body.get("series", {}).get("count", 1))

    async def _update_series(self, namespace: str, series: Series) -> int:
        """Bring the Event's series up to date; the occurrences it holds."""
        fields = series_fields(series)
        try:
            await self.kube.patch(
                EVENTS, namespace, series.name, {"series": fields}, patch_type=MERGE_PATCH
            )
        except NotFound:
            # The Event expired (the API server's event TTL) mid-series: the occurrences it
            # held went with it; the others make a new Event.
            series.count -= series.written
            series.written, series.name, series.first = 0, _new_name(series.regarding), series.last
            return await self._create(namespace, series)
        return int(fields["count"])
