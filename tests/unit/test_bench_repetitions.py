"""The median-of-repetitions rule the benchmarks report by (bench/repetitions.py)."""

from __future__ import annotations

from bench.repetitions import combine, spread


def rep(p99: float, ratio: float, met: bool) -> dict[str, object]:
    return {
        "title": "t",
        "unit": "ms",
        "ours": {"p99_ms": p99, "samples": 300},
        "ratio": ratio,
        "met": met,
    }


def test_every_number_is_the_median_and_its_range_is_kept() -> None:
    figure = combine([rep(30.0, 1.9, False), rep(10.0, 1.1, True), rep(20.0, 1.4, True)])
    assert figure["ours"] == {"p99_ms": 20.0, "samples": 300}
    assert figure["ratio"] == 1.4
    assert figure["range"]["ratio"] == [1.1, 1.9]
    assert figure["range"]["ours.p99_ms"] == [10.0, 30.0]
    assert len(figure["repetitions"]) == 3
    assert spread(figure, "ratio") == " [1.1-1.9]"


def test_a_goal_is_met_when_most_repetitions_met_it() -> None:
    assert combine([rep(1, 1, True), rep(1, 1, False), rep(1, 1, True)])["met"] is True
    assert combine([rep(1, 1, False), rep(1, 1, False), rep(1, 1, True)])["met"] is False


def test_a_failed_repetition_is_kept_but_not_counted() -> None:
    failed = {"title": "t", "error": "TimeoutError: not seen"}
    figure = combine([failed, rep(10.0, 1.2, True), rep(12.0, 1.4, True)])
    assert figure["ratio"] == 1.3
    assert figure["repetitions_measured"] == 2
    assert figure["repetitions"][0] == failed
    assert combine([failed])["error"] == "TimeoutError: not seen"


def test_one_repetition_prints_no_range() -> None:
    assert spread(combine([rep(10.0, 1.2, True)]), "ratio") == ""
