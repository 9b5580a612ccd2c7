"""A reverse index: which keys point at a target, kept in step with what each key points at.

The loops wake objects by what they follow (a workload by the ImageStreams of
its triggers, a DeploymentConfig by its ReplicationControllers, a BuildConfig
by its Builds, a DockerImage spec tag by the repository it imports). Each of
those is this one structure. Invariant: `pointing_at(t)` holds `k` exactly
when the last `update(k, ...)` named `t`; updating a key first forgets what it
pointed at before, so an edited or deleted object never stays woken by a
target it no longer follows (the leak that would make a push to an old tag
wake every workload that ever followed it).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", bound=Hashable)


class ReverseIndex(Generic[K, T]):
    def __init__(self) -> None:
        self._keys_of: dict[T, set[K]] = {}
        self._targets_of: dict[K, frozenset[T]] = {}

    def update(self, key: K, targets: Iterable[T]) -> frozenset[T]:
        """Make `key` point at exactly `targets`; returns what it pointed at before."""
        new = frozenset(targets)
        previous = self._targets_of.pop(key, frozenset())
        for target in previous - new:
            keys = self._keys_of.get(target)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_of[target]
        if new:
            self._targets_of[key] = new
            for target in new:
                self._keys_of.setdefault(target, set()).add(key)
        return previous

    def remove(self, key: K) -> frozenset[T]:
        """Forget `key`; returns what it pointed at."""
        return self.update(key, ())

    def pointing_at(self, target: T) -> set[K]:
        """The keys that point at `target` (a copy: safe to iterate while the index changes)."""
        return set(self._keys_of.get(target, ()))

    def __len__(self) -> int:
        """How many keys point at something."""
        return len(self._targets_of)
