"""The work queue's promises: dedup, no concurrent processing of a key, back-off."""

from __future__ import annotations

import asyncio

from controller.loop.queue import WorkQueue
from controller.loop.workers import Loop, run_workers


async def test_a_key_added_many_times_is_queued_once() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    assert await queue.get() == "ns/a"
    assert await queue.get() == "ns/b"


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    key = await queue.get()
    queue.add("ns/a")  # a change arrives while we work on it
    assert len(queue) == 0, "must not be handed to a second worker"
    assert key is not None
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "ns/a"


async def test_back_off_grows_per_key_and_resets_on_forget() -> None:
    queue = WorkQueue(base_delay_s=0.01, max_delay_s=0.04)
    delays = [queue.add_rate_limited("ns/a") for _ in range(4)]
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert queue.failures("ns/a") == 4
    queue.forget("ns/a")
    assert queue.add_rate_limited("ns/a") == 0.01


async def test_delayed_add_arrives_later() -> None:
    queue = WorkQueue()
    queue.add_after("ns/a", 0.05)
    assert len(queue) == 0 and not queue.is_idle()
    assert await asyncio.wait_for(queue.get(), 2) == "ns/a"


async def test_workers_never_hold_the_same_key_at_once() -> None:
    queue = WorkQueue()
    active: set[str] = set()
    overlaps = 0

    async def worker() -> None:
        nonlocal overlaps
        while (key := await queue.get()) is not None:
            if key in active:
                overlaps += 1
            active.add(key)
            await asyncio.sleep(0)
            active.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for round_ in range(200):
        queue.add(f"ns/{round_ % 3}")
        await asyncio.sleep(0)
    async with asyncio.timeout(5):
        while not queue.is_idle():  # noqa: ASYNC110 - the queue offers no idle event
            await asyncio.sleep(0.01)
    queue.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == 0


async def test_workers_let_the_event_loop_run_between_keys_that_never_await() -> None:
    """A first pass over many objects that need no write must not starve the loop: the
    health probes, the watches and the webhook run between its keys."""
    queue = WorkQueue()
    reconciled: list[str] = []

    async def reconcile(key: str) -> None:
        reconciled.append(key)  # no await: an object found up to date

    for n in range(1_000):
        queue.add(f"deployments/ns/d{n}")
    workers = asyncio.create_task(
        run_workers(loop=Loop(name="t", queue=queue, reconcile=reconcile), concurrency=2)
    )
    seen_at_first_turn = -1

    async def probe() -> None:
        nonlocal seen_at_first_turn
        seen_at_first_turn = len(reconciled)

    await asyncio.sleep(0)  # the workers start
    await asyncio.create_task(probe())
    async with asyncio.timeout(5):
        while not queue.is_idle():  # noqa: ASYNC110 - the queue offers no idle event
            await asyncio.sleep(0.01)
    queue.shut_down()
    await workers
    assert len(reconciled) == 1_000
    assert 0 <= seen_at_first_turn < 10
