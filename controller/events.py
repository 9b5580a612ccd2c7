"""Kubernetes Events that explain what the controller did, and what it could not do.

Every patch gets a Normal event on the workload naming the trigger, the tag
and the digest; every trigger that cannot act gets a Warning saying why.
The same message for the same object is posted once (until it changes, or
an hour passes), so a resync every ten minutes does not flood the object's
events with repeats.

Failing to post an Event never fails a reconcile: events explain, they are
not state. So they are posted off the reconcile's path: `post()` returns at
once and the Event is created in the background, one at a time, so a
fan-out to a thousand workloads costs one API round trip per workload on
the workers' path (the patch), not two, and the Events follow. Bounded:
past `PENDING_MAX` Events waiting, new ones are dropped (and logged); those
still waiting when the process stops are not created.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from imagestream.caches import BoundedCache
from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError
from imagestream.kube.resources import EVENTS
from imagestream.timestamps import rfc3339_micro

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER = "imagestream.dev/controller"
REPEAT_AFTER_S = 3600.0
REMEMBERED_MAX = 10_000
IN_FLIGHT_MAX = 1
"""Events created at once: one, so during a fan-out the patches (8 workers) go first."""
PENDING_MAX = 5000


@dataclass(frozen=True, kw_only=True)
class Note:
    """An Event a plan asks for, explaining a write (posted by the reconciler)."""

    type: str
    reason: str
    message: str


@dataclass
class EventRecorder:
    kube: Kube
    instance: str
    _posted: BoundedCache[tuple[str, str, str], float] = field(
        default_factory=lambda: BoundedCache(REMEMBERED_MAX)
    )
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT_MAX))

    async def post(
        self, regarding: dict[str, Any], *, type_: str, reason: str, action: str, note: str
    ) -> None:
        """Queue the Event and return; it is created in the background."""
        metadata = regarding.get("metadata") or {}
        identity = (str(metadata.get("uid", "")), reason, note)
        now = time.monotonic()
        last = self._posted.get(identity)
        if last is not None and now - last < REPEAT_AFTER_S:
            return
        if len(self._pending) >= PENDING_MAX:
            log.warning("event_dropped", reason=reason, pending=len(self._pending))
            return
        # Remembered now, so a second reconcile before the create lands posts nothing.
        self._remember(identity, now)
        task = asyncio.create_task(self._create(regarding, identity, type_, reason, action, note))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait until every queued Event is created (or failed)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _remember(self, identity: tuple[str, str, str], now: float) -> None:
        self._posted.put(identity, now)

    async def _create(
        self,
        regarding: dict[str, Any],
        identity: tuple[str, str, str],
        type_: str,
        reason: str,
        action: str,
        note: str,
    ) -> None:
        metadata = regarding.get("metadata") or {}
        namespace = str(metadata.get("namespace", ""))
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                # client-go's naming: the object's name, a dot, a unique suffix.
                "name": f"{metadata.get('name', 'object')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "eventTime": rfc3339_micro(datetime.now(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": type_,
            "regarding": {
                "apiVersion": regarding.get("apiVersion", ""),
                "kind": regarding.get("kind", ""),
                "namespace": namespace,
                "name": metadata.get("name", ""),
                "uid": metadata.get("uid", ""),
                "resourceVersion": metadata.get("resourceVersion", ""),
            },
        }
        try:
            async with self._gate:
                await self.kube.create(EVENTS, namespace, body)
        except KubeError as error:
            log.warning("event_not_posted", reason=reason, error=str(error))
            self._posted.pop(identity)  # a later reconcile may try again
