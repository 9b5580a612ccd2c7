"""What a reconcile tells the loop that runs it: done, come back later, retry later, give up.

This vocabulary is the loop's, not the API server's. A reconciler decides
which outcome an API error means in its own situation (a stale read means
"plan again now"; an admission refusal means "say why, then retry later";
an object whose spec can never work means "give up until it changes") and
says so with one of these; `controller.loop.workers` maps each to what the
queue does. Keeping the two apart is what stops one 422 from meaning
"retry at once" in one place and "never again" in another.

    return None            done: forget the key's back-off
    return Requeue(s)      done for now; reconcile again after s seconds
    raise RetryLater(...)  failed; back off (the queue's capped exponential delay)
    raise GiveUp(...)      retrying cannot help; drop the key until the object changes

Any other exception also backs off, and is logged with its traceback: it is
a bug or an outage, and retrying is the safe default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Requeue:
    """Reconcile this key again after `after_s` seconds (a scheduled import, a fresh plan)."""

    after_s: float


class RetryLater(Exception):
    """The work failed in a way time may fix: back off, at least `at_least_s` seconds."""

    def __init__(self, message: str, *, at_least_s: float = 0.0) -> None:
        super().__init__(message)
        self.at_least_s = at_least_s


class GiveUp(Exception):
    """Retrying cannot help until the object changes; its next change enqueues it again."""
