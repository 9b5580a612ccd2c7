"""Which ended Builds of a BuildConfig to delete: its history limits. Pure, no I/O.

See docs/openshift-behaviours.md#build-pruning. OpenShift's build.openshift.io/v1 API
defaults `successfulBuildsHistoryLimit` and `failedBuildsHistoryLimit` to 5 when a
BuildConfig is created; we apply the same default when the field is absent. Complete
Builds count against the first; Failed, Error and Cancelled ones against the second.
Builds that have not ended are never pruned. The oldest go first (by creation time,
then by build number, since creation times have one-second resolution).

Failure it prevents: a BuildConfig that has built for months leaving thousands of Builds
(and their Jobs and pods, which go with them through owner references).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from controller.builds.model import BuildPhase, build_number, build_phase, builds_of
from imagestream.objects import mapping, name_of, spec_of

DEFAULT_HISTORY_LIMIT: Final = 5
FAILED_PHASES: Final = (BuildPhase.FAILED, BuildPhase.ERROR, BuildPhase.CANCELLED)


def history_limit(bc: Mapping[str, Any], field: str) -> int:
    value = spec_of(bc).get(field)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return DEFAULT_HISTORY_LIMIT


def builds_to_prune(bc: Mapping[str, Any], builds: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the BuildConfig's ended Builds beyond its history limits, oldest first."""
    mine = builds_of(bc, builds)

    def age(build: Mapping[str, Any]) -> tuple[str, int]:
        created = mapping(build.get("metadata")).get("creationTimestamp")
        return (created if isinstance(created, str) else "", build_number(build))

    doomed: list[Mapping[str, Any]] = []
    for phases, field in (
        ((BuildPhase.COMPLETE,), "successfulBuildsHistoryLimit"),
        (FAILED_PHASES, "failedBuildsHistoryLimit"),
    ):
        ended = sorted((b for b in mine if build_phase(b) in phases), key=age)
        limit = history_limit(bc, field)
        doomed.extend(ended[: max(len(ended) - limit, 0)])
    return [name_of(b) for b in sorted(doomed, key=age)]
