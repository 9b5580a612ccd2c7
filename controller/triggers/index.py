"""The trigger loop's index: `namespace/stream` -> keys of the objects following it.

An ImageStream change wakes exactly those objects, so no list of all
workloads is ever taken and a push costs the same with ten workloads or a
hundred thousand. Paused and manual triggers are not indexed (OpenShift
does the same): a stream change must not wake an object that would not act.
"""

from __future__ import annotations

from imagestream.index import ReverseIndex

TriggerIndex = ReverseIndex[str, str]
"""Queue key of a workload (`<plural>/<namespace>/<name>`) -> `namespace/stream` keys."""
