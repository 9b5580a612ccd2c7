"""The readiness gate asked before every webhook write (imagestream.health.cached)."""

from __future__ import annotations

import asyncio

from imagestream.health import cached


class Check:
    """A readiness check whose answers the test gives, one call at a time."""

    def __init__(self) -> None:
        self.calls = 0
        self.answers: asyncio.Queue[bool] = asyncio.Queue()

    async def __call__(self) -> bool:
        self.calls += 1
        return await self.answers.get()


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_stale_yes_is_answered_at_once_and_asked_again_in_the_background() -> None:
    check = Check()
    gate = cached(check, ttl_s=0.0)  # every answer is stale at once
    check.answers.put_nowait(True)
    assert await gate()  # nothing known yet: asked, and waited for
    asking = [asyncio.create_task(gate()) for _ in range(3)]
    await _turns()
    # The check now hangs (no answer given): the requests did not wait for it.
    assert all(task.done() and task.result() for task in asking)
    assert check.calls == 2  # one background check for the three, not three
    check.answers.put_nowait(False)  # the server has gone
    await _turns()
    waiting = asyncio.create_task(gate())  # a "no" is asked again before answering
    await _turns()
    assert not waiting.done()
    check.answers.put_nowait(True)
    assert await waiting


async def test_a_fresh_answer_is_not_asked_again() -> None:
    check = Check()
    gate = cached(check, ttl_s=3600.0)
    check.answers.put_nowait(False)
    assert not await gate()
    assert not await gate()
    assert check.calls == 1
