"""The build loop's index: `namespace/buildconfig` -> keys of its Builds.

A Build's progress wakes its siblings (run policies: Serial waits for the
one before) and its BuildConfig (status, history limits); this index answers
"which Builds belong to this BuildConfig" without a list call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.builds.model import buildconfig_of
from imagestream.index import ReverseIndex
from imagestream.objects import namespace_of


class BuildIndex:
    def __init__(self) -> None:
        self._index: ReverseIndex[str, str] = ReverseIndex()

    def update(self, build_key: str, build: Mapping[str, Any] | None) -> str | None:
        """Index (or, for None, forget) one Build; returns its BuildConfig key."""
        config = buildconfig_of(build) if build is not None else None
        bc_key = f"{namespace_of(build)}/{config}" if build is not None and config else None
        previous = self._index.update(build_key, {bc_key} if bc_key else ())
        return bc_key or next(iter(previous), None)

    def of(self, bc_key: str) -> set[str]:
        return self._index.pointing_at(bc_key)
