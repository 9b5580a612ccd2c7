"""Events wait for the queued writes they explain (controller.events.EventRecorder.busy)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from controller import events
from controller.events import EventRecorder
from imagestream.kube.client import Kube


async def test_an_event_waits_while_writes_are_queued_and_goes_once_they_are_done() -> None:
    queued = [True]
    # Only the wait is exercised: no Event is written, so no client is needed.
    recorder = EventRecorder(kube=cast(Kube, None), instance="test", busy=lambda: queued[0])
    waiting = asyncio.create_task(recorder._after_queued_writes())
    await asyncio.sleep(events.DEFER_POLL_S * 3)
    assert not waiting.done()
    queued[0] = False
    await asyncio.wait_for(waiting, 5)


async def test_an_event_never_waits_longer_than_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "DEFER_MAX_S", 0.05)
    recorder = EventRecorder(kube=cast(Kube, None), instance="test", busy=lambda: True)
    await asyncio.wait_for(recorder._after_queued_writes(), 5)  # a busy queue forever


async def test_without_queued_writes_an_event_does_not_wait() -> None:
    recorder = EventRecorder(kube=cast(Kube, None), instance="test")
    waiting = asyncio.create_task(recorder._after_queued_writes())
    await asyncio.sleep(0)
    assert waiting.done()
