"""Per-sender rate limits: a token bucket per receiver.

A receiver is one sender (one registry, one CI system) with its own
credentials, so its bucket is what "per authenticated sender" means here:
the check runs after authentication, so nobody can spend another sender's
budget with requests that fail to authenticate.

A request over the limit is answered 429 with `Retry-After` (whole seconds,
at least 1; docs/delivery-semantics.md#401-413-415-400-408-429) and nothing is
parsed or written. Distribution ignores the header but retries every non-2xx
answer, so nothing it sends is lost; the limit protects the API server and the
other senders.

A receiver without `rateLimit` in its config is not limited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imagestream.ratelimit import TokenBucket


@dataclass(frozen=True)
class RateLimit:
    """`requestsPerSecond` sustained, `burst` at once (the bucket's size)."""

    requests_per_second: float
    burst: int


@dataclass
class SenderLimits:
    """One bucket per limited receiver, by receiver name."""

    limits: dict[str, RateLimit]
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def retry_after(self, receiver: str) -> int | None:
        """None if `receiver` may send now; else whole seconds to wait (at least 1)."""
        limit = self.limits.get(receiver)
        if limit is None:
            return None
        bucket = self._buckets.get(receiver)
        if bucket is None:
            bucket = self._buckets[receiver] = TokenBucket(
                rate=limit.requests_per_second, burst=limit.burst, clock=self.clock
            )
        wait = bucket.take()
        if wait <= 0:
            return None
        return max(1, math.ceil(wait))
