"""Workers that drain a `WorkQueue` by calling a reconcile function per key.

Invariant: whatever a reconcile returns or raises, the key is marked done
(so it can be queued again) and its outcome is counted; the outcome alone
decides what the queue does next (`controller.loop.outcomes`). A reconcile
never sees queue mechanics, and the queue never sees API errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from controller.loop.outcomes import GiveUp, Requeue, RetryLater
from controller.loop.queue import WorkQueue
from imagestream.kube.errors import KubeError

log = structlog.get_logger(__name__)

Reconcile = Callable[[str], Awaitable[Requeue | None]]
OutcomeObserver = Callable[[str], None]


@dataclass(frozen=True)
class Loop:
    """One controller loop: its name (for logs and metrics), its queue, its reconcile."""

    name: str
    queue: WorkQueue
    reconcile: Reconcile


async def run_workers(
    *,
    loop: Loop,
    concurrency: int,
    on_outcome: OutcomeObserver | None = None,
) -> None:
    queue = loop.queue

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            outcome = "success"
            try:
                with structlog.contextvars.bound_contextvars(key=key):
                    result = await loop.reconcile(key)
                queue.forget(key)
                if result is not None:
                    queue.add_after(key, result.after_s)
            except GiveUp as error:
                outcome = "given_up"
                queue.forget(key)
                log.warning("reconcile_given_up", loop=loop.name, key=key, error=str(error))
            except Exception as error:
                outcome = "retry"
                at_least = (
                    error.at_least_s
                    if isinstance(error, RetryLater)
                    else getattr(error, "retry_after_s", None) or 0.0
                )
                delay = queue.add_rate_limited(key, at_least_s=at_least)
                expected = isinstance(error, RetryLater | KubeError)
                (log.info if expected else log.error)(
                    "reconcile_retry",
                    loop=loop.name,
                    key=key,
                    error=str(error)[:300],
                    delay_s=round(delay, 3),
                    exc_info=not expected,
                )
            finally:
                queue.done(key)
            if on_outcome is not None:
                on_outcome(outcome)
            # A reconcile that finds nothing to write never awaits real I/O, and `get`
            # returns at once while keys are queued: without this, a first pass over
            # 50,000 objects holds the event loop for seconds, and watches, the webhook
            # (in `imagestream run`) and the health probes all wait behind it.
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for number in range(concurrency):
            group.create_task(worker(), name=f"{loop.name}-worker-{number}")
