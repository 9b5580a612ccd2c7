"""Workers that drain a `WorkQueue` by calling a reconcile function per key.

A reconcile returns normally (done: forget the key's back-off), returns a
`Requeue` (come back after a delay, e.g. a scheduled import), or raises:
`Retryable`-like errors and anything unexpected requeue the key with
exponential back-off; `Terminal` errors are logged and dropped until the
object changes again (retrying the same request cannot help).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from controller.loop.queue import WorkQueue
from imagestream.kube.errors import Retryable, Terminal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Requeue:
    after_s: float


Reconcile = Callable[[str], Awaitable[Requeue | None]]
OutcomeObserver = Callable[[str], None]


async def run_workers(
    *,
    name: str,
    queue: WorkQueue,
    reconcile: Reconcile,
    concurrency: int,
    on_outcome: OutcomeObserver | None = None,
) -> None:
    async def worker() -> None:
        while (key := await queue.get()) is not None:
            outcome = "success"
            try:
                with structlog.contextvars.bound_contextvars(key=key):
                    result = await reconcile(key)
                queue.forget(key)
                if result is not None:
                    queue.add_after(key, result.after_s)
            except Terminal as error:
                outcome = "terminal"
                queue.forget(key)
                log.warning("reconcile_failed_terminal", loop=name, key=key, error=str(error))
            except Exception as error:
                outcome = "retry"
                at_least = getattr(error, "retry_after_s", None) or 0.0
                delay = queue.add_rate_limited(key, at_least_s=at_least)
                level = log.info if isinstance(error, Retryable) else log.error
                level(
                    "reconcile_retry",
                    loop=name,
                    key=key,
                    error=str(error)[:300],
                    delay_s=round(delay, 3),
                    exc_info=not isinstance(error, Retryable),
                )
            finally:
                queue.done(key)
            if on_outcome is not None:
                on_outcome(outcome)

    async with asyncio.TaskGroup() as group:
        for number in range(concurrency):
            group.create_task(worker(), name=f"{name}-worker-{number}")
