"""One token bucket: `rate` tokens a second on average, bursts of up to `burst`.

Used where we must not overwhelm someone else: the webhook limits each
sender (a 429 with Retry-After instead of a queue that grows without bound),
and the controller limits its calls to registries (an import storm must not
get us banned by a registry's own rate limit). One implementation, so that
"how many requests can go now" has one answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: float
    """The bucket's size: how many may go at once after a quiet spell."""
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(default=-1.0)
    _updated: float = 0.0
    _lock: asyncio.Lock | None = None

    def take(self) -> float:
        """0 if one may go now (and take a token); else the seconds until one may."""
        now = self.clock()
        if self._tokens < 0:
            self._tokens, self._updated = float(self.burst), now
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait until one may go, then take its token (callers queue in order)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            wait = self.take()
            if wait > 0:
                await asyncio.sleep(wait)
                # The token that filled while we slept is ours.
                self._tokens, self._updated = 0.0, self.clock()
