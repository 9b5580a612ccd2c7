"""A queue of object keys, in the manner of client-go's rate-limited work queue.

Invariants:
- A key is queued at most once however often it is added (events collapse:
  the reconciler reads the current state, so ten changes need one pass).
- A key is never processed by two workers at once: a key added while it is
  being processed is marked dirty and queued again when `done()` is called.
- A failing key is retried with per-key exponential back-off, capped, and
  forgotten (back-off reset) on success.

These are what make reconciling level-triggered: we queue names, not events.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass
class WorkQueue:
    base_delay_s: float = 0.05
    max_delay_s: float = 30.0
    _queue: deque[str] = field(default_factory=deque)
    _queued: set[str] = field(default_factory=set)
    _processing: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    _failures: dict[str, int] = field(default_factory=dict)
    _delayed: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _empty: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    """Set while nothing is queued (keys being processed may still be in flight)."""
    _shutting_down: bool = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._processing)

    def add(self, key: str) -> None:
        if self._shutting_down:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._empty.clear()
        self._wakeup.set()

    def add_after(self, key: str, delay_s: float) -> None:
        if delay_s <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._delayed.get(key)
        if existing is not None and existing.when() <= loop.time() + delay_s:
            return  # an earlier retry is already scheduled
        if existing is not None:
            existing.cancel()
        self._delayed[key] = loop.call_later(delay_s, self._fire_delayed, key)

    def _fire_delayed(self, key: str) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str, *, at_least_s: float = 0.0) -> float:
        """Requeue a failed key after its back-off; returns the delay chosen."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = max(min(self.base_delay_s * 2.0**failures, self.max_delay_s), at_least_s)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        """The next key to process, or None once the queue is shut down."""
        while not self._queue:
            if self._shutting_down:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        if not self._queue:
            self._empty.set()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def wait_empty(self) -> None:
        """Until nothing is queued (the last keys may still be being processed)."""
        await self._empty.wait()

    def shut_down(self) -> None:
        self._shutting_down = True
        self._empty.set()
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._wakeup.set()

    def is_idle(self) -> bool:
        """Nothing queued, nothing in flight and no retry pending."""
        return not self._queue and not self._processing and not self._delayed


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event
