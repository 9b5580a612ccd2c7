"""Kubernetes Events that explain what the controller did, and what it could not do.

Every patch gets a Normal event on the workload naming the trigger, the tag
and the digest; every trigger that cannot act gets a Warning saying why.
The same message for the same object is posted once (until it changes, or
an hour passes), so a resync every ten minutes does not flood the object's
events with repeats.

Failing to post an Event never fails a reconcile: events explain, they are
not state.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError
from imagestream.kube.resources import EVENTS

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER = "imagestream.dev/controller"
REPEAT_AFTER_S = 3600.0
REMEMBERED_MAX = 10_000


@dataclass
class EventRecorder:
    kube: Kube
    instance: str
    _posted: OrderedDict[tuple[str, str, str], float] = field(default_factory=OrderedDict)

    async def post(
        self, regarding: dict[str, Any], *, type_: str, reason: str, action: str, note: str
    ) -> None:
        metadata = regarding.get("metadata") or {}
        identity = (str(metadata.get("uid", "")), reason, note)
        now = time.monotonic()
        last = self._posted.get(identity)
        if last is not None and now - last < REPEAT_AFTER_S:
            return
        namespace = str(metadata.get("namespace", ""))
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                # client-go's naming: the object's name, a dot, a unique suffix.
                "name": f"{metadata.get('name', 'object')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
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
            await self.kube.create(EVENTS, namespace, body)
        except KubeError as error:
            log.warning("event_not_posted", reason=reason, error=str(error))
            return
        self._posted[identity] = now
        self._posted.move_to_end(identity)
        while len(self._posted) > REMEMBERED_MAX:
            self._posted.popitem(last=False)
