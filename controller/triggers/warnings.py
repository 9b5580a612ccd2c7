"""Which trigger outcomes are news: one Warning per change of a trigger's state.

A trigger's state is its outcome's reason and what it follows, per target (fieldPath, or
`spec.triggers[N]`). Invariant: a trigger that cannot act is reported when it enters that
state, and not again while it stays there, however many reconciles (stream changes,
resyncs every `--resync-period`) find it so; once it leaves (it acts, or fails for another
reason) and comes back, it is reported again.

Failures it prevents: a Warning per reconcile (a thousand workloads on a missing tag,
re-posted at every resync), and its opposite, a state change that says nothing because
the same message was posted an hour ago (the recorder used to drop repeats; it now counts
every occurrence it is given, so what is an occurrence is decided here).

Outcomes that a write announces are not news here: the pause after a manual change gets
its Event from the write that pauses it, once it happened.

Pure: the previous states come in, the new states and the news go out; the reconciler
keeps the states (in memory: after a restart every trigger that cannot act is reported
once more). Only warning states are kept: a state that is not a warning is never news,
and being absent compares the same as it does, so a workload whose triggers all act
costs the reconciler no memory (50,000 of them: about 20 MiB).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.triggers.outcomes import Reason, TriggerOutcome

TriggerStates = Mapping[str, tuple[Reason, str]]
"""target -> (reason, source) of the last reconcile."""

_ANNOUNCED_BY_THEIR_WRITE = frozenset({Reason.PAUSED_AFTER_MANUAL_CHANGE})


def news(
    previous: TriggerStates, outcomes: Iterable[TriggerOutcome]
) -> tuple[dict[str, tuple[Reason, str]], tuple[TriggerOutcome, ...]]:
    """The warning states after `outcomes` (empty when every trigger acts), and the
    Warning outcomes whose state is new."""
    states: dict[str, tuple[Reason, str]] = {}
    fresh: list[TriggerOutcome] = []
    for outcome in outcomes:
        if not outcome.reason.is_warning:
            continue
        state = (outcome.reason, outcome.source)
        states[outcome.target] = state
        if (
            outcome.reason not in _ANNOUNCED_BY_THEIR_WRITE
            and previous.get(outcome.target) != state
        ):
            fresh.append(outcome)
    return states, tuple(fresh)
