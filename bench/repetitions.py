"""Several repetitions of one figure, reported as their median with its min and max.

On two shared cores one measurement moves by tens of percent from run to run, so a single
figure cannot tell a change from noise. Every section is measured `BENCH_REPS` times (3 by
default) in one run; the figure reported is, number by number, the median of the
repetitions, `range` holds the min and max of every number, and `repetitions` keeps each
one as it was measured.

A boolean (a goal's `met`) is true when most repetitions met it: for a goal that is one
threshold on one number, that is exactly "the median meets it".

Pure: no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _merge(values: Sequence[Any]) -> Any:
    first = values[0]
    if all(isinstance(value, bool) for value in values):
        return sum(values) * 2 > len(values)
    if all(_numeric(value) for value in values):
        median = statistics.median(values)
        if all(isinstance(value, int) for value in values) and median == int(median):
            return int(median)
        return round(float(median), 3)
    if all(isinstance(value, Mapping) for value in values):
        return {
            key: _merge([value[key] for value in values])
            for key in first
            if all(key in value for value in values)
        }
    return first


def _ranges(values: Sequence[Any], path: str, out: dict[str, list[float]]) -> None:
    if all(_numeric(value) for value in values):
        out[path] = [min(values), max(values)]
    elif all(isinstance(value, Mapping) for value in values):
        for key in values[0]:
            if all(key in value for value in values):
                _ranges([value[key] for value in values], f"{path}.{key}" if path else key, out)


def combine(repetitions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One figure from its repetitions (at least one); an errored repetition is dropped.

    If every repetition failed, the first error is the figure.
    """
    measured = [rep for rep in repetitions if "error" not in rep]
    if not measured:
        return dict(repetitions[0])
    combined: dict[str, Any] = _merge(measured)
    ranges: dict[str, list[float]] = {}
    _ranges(measured, "", ranges)
    combined["range"] = ranges
    combined["repetitions"] = list(repetitions)
    combined["repetitions_measured"] = len(measured)
    return combined


def spread(figure: Mapping[str, Any], path: str) -> str:
    """` [min-max]` for the number at `path`, or "" with a single repetition."""
    low_high = (figure.get("range") or {}).get(path)
    if not low_high or int(figure.get("repetitions_measured") or 0) < 2:
        return ""
    low, high = low_high
    return f" [{low:g}-{high:g}]"
