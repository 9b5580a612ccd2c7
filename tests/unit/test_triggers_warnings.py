"""One Warning per change of a trigger's state, not one per reconcile (issue 14, point 8)."""

from __future__ import annotations

from controller.triggers.outcomes import Reason, TriggerOutcome
from controller.triggers.warnings import news

WEB = 'spec.template.spec.containers[?(@.name=="web")].image'
SIDE = 'spec.template.spec.containers[?(@.name=="side")].image'
SOURCE = "ImageStreamTag default/app:v1"


def outcome(reason: Reason, target: str = WEB, source: str = SOURCE) -> TriggerOutcome:
    return TriggerOutcome(target=target, source=source, reason=reason, message=f"{reason}")


def test_a_trigger_that_cannot_act_is_news_once_while_it_stays_so() -> None:
    states, fresh = news({}, [outcome(Reason.TAG_NOT_FOUND)])
    assert [o.reason for o in fresh] == [Reason.TAG_NOT_FOUND]
    for _ in range(3):  # resyncs, stream changes: the same state
        states, fresh = news(states, [outcome(Reason.TAG_NOT_FOUND)])
        assert fresh == ()


def test_leaving_the_state_and_entering_it_again_is_news_again() -> None:
    states, _ = news({}, [outcome(Reason.TAG_NOT_FOUND)])
    states, fresh = news(states, [outcome(Reason.APPLIED)])
    assert fresh == ()
    states, fresh = news(states, [outcome(Reason.UP_TO_DATE)])
    assert fresh == ()
    _, fresh = news(states, [outcome(Reason.TAG_NOT_FOUND)])
    assert [o.reason for o in fresh] == [Reason.TAG_NOT_FOUND]


def test_another_reason_or_another_source_is_another_state() -> None:
    states, _ = news({}, [outcome(Reason.STREAM_NOT_FOUND)])
    states, fresh = news(states, [outcome(Reason.TAG_NOT_FOUND)])
    assert [o.reason for o in fresh] == [Reason.TAG_NOT_FOUND]
    _, fresh = news(states, [outcome(Reason.TAG_NOT_FOUND, source="ImageStreamTag default/b:1")])
    assert [o.source for o in fresh] == ["ImageStreamTag default/b:1"]


def test_each_trigger_has_its_own_state() -> None:
    states, _ = news({}, [outcome(Reason.TAG_NOT_FOUND), outcome(Reason.APPLIED, SIDE)])
    _, fresh = news(
        states, [outcome(Reason.TAG_NOT_FOUND), outcome(Reason.CONTAINER_NOT_FOUND, SIDE)]
    )
    assert [(o.target, o.reason) for o in fresh] == [(SIDE, Reason.CONTAINER_NOT_FOUND)]


def test_states_that_are_not_warnings_are_never_news() -> None:
    quiet = [Reason.APPLIED, Reason.UP_TO_DATE, Reason.PAUSED, Reason.NOT_AUTOMATIC]
    for reason in quiet:
        assert news({}, [outcome(reason)])[1] == ()


def test_a_pause_is_announced_by_its_write_not_here() -> None:
    assert Reason.PAUSED_AFTER_MANUAL_CHANGE.is_warning
    assert news({}, [outcome(Reason.PAUSED_AFTER_MANUAL_CHANGE)])[1] == ()


def test_a_missing_tag_or_stream_is_a_warning() -> None:
    assert Reason.TAG_NOT_FOUND.is_warning
    assert Reason.STREAM_NOT_FOUND.is_warning


def test_only_warning_states_are_kept() -> None:
    """A workload whose triggers all act leaves nothing to remember; a quiet trigger beside
    a failing one is not kept either, and leaving it out changes no answer."""
    states, _ = news({}, [outcome(Reason.UP_TO_DATE), outcome(Reason.APPLIED, SIDE)])
    assert states == {}
    states, _ = news({}, [outcome(Reason.UP_TO_DATE), outcome(Reason.TAG_NOT_FOUND, SIDE)])
    assert states == {SIDE: (Reason.TAG_NOT_FOUND, SOURCE)}
    _, fresh = news(states, [outcome(Reason.TAG_NOT_FOUND), outcome(Reason.TAG_NOT_FOUND, SIDE)])
    assert [o.target for o in fresh] == [WEB]
