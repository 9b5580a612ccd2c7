"""Keeping a large cache small and out of the cyclic garbage collector's way.

A cache of 100,000 trimmed Deployments is some two million Python objects
(dicts, lists, strings), made all at once by the first list. CPython's cyclic
collector runs a full collection each time the objects that survived the young
generations grow by a quarter, and a full collection visits every tracked
object: while the cache fills, that is some forty full passes over a growing
heap, and afterwards each full pass (at any moment, under load too) costs a
pause proportional to the whole cache. Measured on a loaded control plane
(2 cores, 100,000 Deployments, `bench/` scale section): listing them took
14.4 CPU-seconds, 8.5 of them in the collector; with survivors frozen after
each page, 7.4.

Freezing (`gc.freeze`) moves every object alive now out of the collector's
generations: it is never visited again, and reference counting still frees it
when its last reference goes (the cache's entries are plain acyclic dicts and
lists, replaced whole on every change). Young garbage is collected first, so
what is frozen is what survives. The one cost: a frozen object that later
becomes part of a reference cycle is never collected. Only what is alive at a
freeze is exposed, and freezes happen only while a cache lists (at start, and
on a relist after the watch expired), so that cost is bounded by a process's
few relists, not by its uptime.

Small: JSON decoding makes a new string for every value of every object, so
100,000 cached objects carry 100,000 copies of the same namespace, image or
triggers annotation. `shared` keeps one.
"""

from __future__ import annotations

import gc
import sys
from typing import TypeVar, cast

T = TypeVar("T")


def freeze_survivors() -> None:
    """Collect the young generations, then take every surviving object out of collections."""
    gc.collect(1)
    gc.freeze()


def shared(value: T) -> T:
    """One copy of a string many cached objects carry (anything else as it is).

    Interned strings go when their last holder does, so this never keeps a value alive;
    use it for values that repeat (a namespace, an image, a fieldPath), not for names or
    uids, which would only fill the intern table.
    """
    if isinstance(value, str) and type(value) is str:  # sys.intern refuses a subclass
        return cast(T, sys.intern(value))
    return value
