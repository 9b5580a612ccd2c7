"""Events wait for the queued writes they explain (controller.events.EventRecorder.drained)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from controller import events
from controller.events import EventRecorder
from controller.loop.queue import WorkQueue
from imagestream.kube.client import Kube


def _recorder(queue: WorkQueue) -> EventRecorder:
    # Only the wait is exercised: no Event is written, so no client is needed.
    return EventRecorder(kube=cast(Kube, None), instance="test", drained=queue.wait_empty)


async def test_an_event_waits_while_writes_are_queued_and_goes_once_they_are_taken() -> None:
    queue = WorkQueue()
    queue.add("deployments/ns/a")
    queue.add("deployments/ns/b")
    waiting = asyncio.create_task(_recorder(queue)._after_queued_writes())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert await queue.get() == "deployments/ns/a"
    await asyncio.sleep(0.05)
    assert not waiting.done()  # one still queued
    assert await queue.get() == "deployments/ns/b"  # the last is being written
    await asyncio.wait_for(waiting, 5)


async def test_an_event_never_waits_longer_than_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "DEFER_MAX_S", 0.05)
    queue = WorkQueue()
    queue.add("deployments/ns/a")  # queued forever: nobody takes it
    await asyncio.wait_for(_recorder(queue)._after_queued_writes(), 5)


async def test_with_nothing_queued_an_event_does_not_wait() -> None:
    waiting = asyncio.create_task(_recorder(WorkQueue())._after_queued_writes())
    for _ in range(5):  # a few turns of the loop, no timer
        await asyncio.sleep(0)
    assert waiting.done()
