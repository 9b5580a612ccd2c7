"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it.

Only the leader writes. Timings (client-go's defaults): a lease lasts 15 s,
the leader must renew within 10 s (renew deadline) and tries every 2 s.

Invariants:
- The leader stops writing before anyone else can take the lease: if it has
  not renewed within the renew deadline (shorter than the lease), it gives
  up leadership and `lost` is set; the process then stops its workers. A
  standby only takes a lease that its holder has not renewed for a whole
  lease duration, measured on the standby's own clock from when it last
  saw the lease change (never by comparing clocks across machines).
- Updates are conditional on the Lease's resourceVersion, so two
  candidates can never both believe they won.
- On graceful shutdown the leader releases the lease (empty holder), so a
  standby takes over at once instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, KubeError, NotFound
from imagestream.kube.resources import LEASES
from imagestream.timestamps import rfc3339_micro

log = structlog.get_logger(__name__)

LEASE_DURATION_S = 15.0
RENEW_DEADLINE_S = 10.0
RETRY_PERIOD_S = 2.0


def _now_micro() -> str:
    return rfc3339_micro(datetime.now(UTC))


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_duration_s: float = LEASE_DURATION_S
    renew_deadline_s: float = RENEW_DEADLINE_S
    retry_period_s: float = RETRY_PERIOD_S
    elected: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    _observed: tuple[str, str] | None = None
    """(holder, renewTime) last seen, and when (monotonic) we first saw it."""
    _observed_at: float = 0.0
    _lease: dict[str, Any] | None = None

    async def run(self) -> None:
        """Acquire, then renew until the lease is lost or the task is cancelled."""
        try:
            while not self.elected.is_set():
                if await self._try_acquire_or_renew():
                    self.elected.set()
                    log.info(
                        "leader_elected",
                        lease=f"{self.namespace}/{self.name}",
                        identity=self.identity,
                    )
                    break
                await asyncio.sleep(self.retry_period_s)
            last_renewed = time.monotonic()
            while True:
                # The renew deadline is a hard stop, as client-go's renew context: no
                # attempt may outlast it, so leadership ends by `renew_deadline_s` after
                # the last renewal was sent, before a standby can take the lease.
                deadline = last_renewed + self.renew_deadline_s
                await asyncio.sleep(min(self.retry_period_s, max(deadline - time.monotonic(), 0)))
                sent = time.monotonic()
                if deadline - sent > 0 and await self._try_acquire_or_renew(
                    timeout_s=min(self.retry_period_s * 2, deadline - sent)
                ):
                    last_renewed = sent
                elif time.monotonic() >= deadline:
                    log.error(
                        "leader_lost", lease=f"{self.namespace}/{self.name}", identity=self.identity
                    )
                    self.lost.set()
                    return
        except asyncio.CancelledError:
            if self.elected.is_set() and not self.lost.is_set():
                await asyncio.shield(self._release())
            raise

    async def _try_acquire_or_renew(self, *, timeout_s: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout_s or self.retry_period_s * 2):
                return await self._attempt()
        except (KubeError, TimeoutError) as error:
            log.debug("lease_attempt_failed", error=str(error))
            return False

    async def _attempt(self) -> bool:
        try:
            lease = await self.kube.get(LEASES, self.namespace, self.name)
        except NotFound:
            return await self._create()
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        observed = (holder, str(spec.get("renewTime") or ""))
        now = time.monotonic()
        if observed != self._observed:
            self._observed, self._observed_at = observed, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        expired = now - self._observed_at >= duration
        if holder and holder != self.identity and not expired:
            return False
        new_spec = dict(spec)
        new_spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration_s),
                "renewTime": _now_micro(),
            }
        )
        if holder != self.identity:
            new_spec["acquireTime"] = new_spec["renewTime"]
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if holder else 0
            )
        lease["spec"] = new_spec
        try:
            self._lease = await self.kube.replace(LEASES, self.namespace, self.name, lease)
        except Conflict:
            return False
        return True

    async def _create(self) -> bool:
        now = _now_micro()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration_s),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            self._lease = await self.kube.create(LEASES, self.namespace, body)
        except Conflict:
            return False
        return True

    async def _release(self) -> None:
        if self._lease is None:
            return
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        spec["holderIdentity"] = ""
        lease["spec"] = spec
        try:
            await self.kube.request(
                "PUT",
                LEASES.path(namespace=self.namespace, name=self.name),
                body=lease,
                attempts=1,
                timeout_s=2,
            )
            log.info("leader_released", lease=f"{self.namespace}/{self.name}")
        except KubeError as error:
            log.warning("leader_release_failed", error=str(error))
