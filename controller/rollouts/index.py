"""The rollout loop's index: `namespace/dc-name` -> keys of the RCs of its versions.

A ReplicationController's progress (available replicas) wakes the
DeploymentConfig it is a version of; this index answers "which RCs are this
DeploymentConfig's versions" without a list call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.rollouts.model import deploymentconfig_of
from imagestream.index import ReverseIndex
from imagestream.objects import namespace_of


class ReplicationControllerIndex:
    def __init__(self) -> None:
        self._index: ReverseIndex[str, str] = ReverseIndex()

    def update(self, rc_key: str, rc: Mapping[str, Any] | None) -> str | None:
        """Index (or, for None, forget) one RC; returns the DeploymentConfig key it names."""
        dc_name = deploymentconfig_of(rc) if rc is not None else None
        dc_key = f"{namespace_of(rc)}/{dc_name}" if rc is not None and dc_name else None
        previous = self._index.update(rc_key, {dc_key} if dc_key else ())
        return dc_key or next(iter(previous), None)

    def of(self, dc_key: str) -> set[str]:
        return self._index.pointing_at(dc_key)
