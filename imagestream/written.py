"""What this process wrote, as the API server answered, for the caches of the same process.

In `imagestream run` the webhook and the controller share a process. Without
this, a push recorded by the webhook reached the controller only through the
controller's own ImageStream watch: one more trip through the API server
before the trigger loop woke. Now every ImageStream status write is
published here and the controller's cache takes it at once
(`Informer.observe`); the watch event that follows confirms it and changes
nothing. Separate processes simply never hear of each other's writes, and
the watch works as it always did: this is a shortcut, never the only way.

Invariant: a subscriber that fails cannot fail the write that was published
(the write has happened; the watch will still deliver it).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from imagestream.objects import Obj, object_key

log = structlog.get_logger(__name__)

Subscriber = Callable[[Obj], object]


class WrittenObjects:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Once per subscriber: components sharing a cache both subscribe its `observe`."""
        if subscriber not in self._subscribers:
            self._subscribers.append(subscriber)

    def publish(self, obj: Obj) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(obj)
            except Exception:
                log.exception("written_object_subscriber_failed", key=object_key(obj))
