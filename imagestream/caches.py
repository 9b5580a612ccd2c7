"""A bounded memory: at most `max_entries` keys, the least recently written forgotten first.

Several parts of a long-running process remember things to avoid repeating
work (Event messages already posted, event ids already recorded, our own
writes the cache has not caught up with yet, registry tokens). Each memory
is a hint, never the truth, so forgetting the oldest entry only costs a
repeated write that is itself a no-op; what must never happen is a memory
that grows with every object ever seen. This is the one implementation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember `value` as the newest entry; forget the oldest beyond the bound."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
