"""What `imagestream.heap.freeze_survivors` does to the garbage collector's view."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator

import pytest

from imagestream.heap import freeze_survivors, shared


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfreeze_after() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_young_garbage_is_collected_and_survivors_are_frozen(unfreeze_after: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the collector can free it
    gone = weakref.ref(a)
    del a, b
    kept = [{"metadata": {"name": f"d{n}"}} for n in range(100)]
    frozen_before = gc.get_freeze_count()

    freeze_survivors()

    assert gone() is None, "garbage made before the freeze must not be frozen with the rest"
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    # Frozen objects are still freed by reference counting when the cache lets go of them.
    holder = _Node()
    freeze_survivors()
    dropped = weakref.ref(holder)
    del holder
    assert dropped() is None


def test_shared_keeps_one_copy_of_equal_strings_and_passes_anything_else() -> None:
    first, second = (json.loads('"registry.local/ns/app@sha256:0"') for _ in range(2))
    assert first is not second
    assert shared(first) is shared(second)
    assert shared(3) == 3
    assert shared(None) is None
