"""The informer takes our own writes early and never goes back (imagestream.kube.informer)."""

from __future__ import annotations

from typing import Any, cast

from imagestream.kube.client import Kube
from imagestream.kube.informer import Informer
from imagestream.kube.resources import IMAGESTREAMS


def _stream(version: str, tag: str = "v1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "app", "resourceVersion": version},
        "status": {"tags": [{"tag": tag}]},
    }


def _informer() -> tuple[Informer, list[tuple[str | None, str | None]]]:
    # observe() and the watch's _apply() never call the API: no client is needed.
    informer = Informer(kube=cast(Kube, None), resource=IMAGESTREAMS)
    seen: list[tuple[str | None, str | None]] = []

    def record(_key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        version = lambda obj: obj["metadata"]["resourceVersion"] if obj else None  # noqa: E731
        seen.append((version(old), version(new)))

    informer.add_handler(record)
    informer.store["ns/app"] = _stream("5")
    informer.synced.set()
    return informer, seen


def test_an_observed_write_is_dispatched_at_once_and_its_watch_event_changes_nothing() -> None:
    informer, seen = _informer()
    assert informer.observe(_stream("7", "v2"))
    assert seen == [("5", "7")]
    informer._apply({"type": "MODIFIED", "object": _stream("6")})  # older, still in flight
    informer._apply({"type": "MODIFIED", "object": _stream("7", "v2")})  # the confirmation
    assert seen == [("5", "7")]
    assert informer.get("ns/app") == _stream("7", "v2")
    informer._apply({"type": "MODIFIED", "object": _stream("8", "v3")})
    assert seen == [("5", "7"), ("7", "8")]


def test_an_older_write_is_not_observed() -> None:
    informer, seen = _informer()
    assert not informer.observe(_stream("4"))
    assert not informer.observe(_stream("5"))
    assert seen == []


def test_nothing_is_observed_before_the_first_list() -> None:
    informer, seen = _informer()
    informer.synced.clear()
    assert not informer.observe(_stream("9"))
    assert seen == []


def test_a_resource_version_that_is_not_a_number_is_left_to_the_watch() -> None:
    informer, seen = _informer()
    assert not informer.observe(_stream("abc"))
    informer._apply({"type": "MODIFIED", "object": _stream("abc")})
    assert seen == [("5", "abc")]


def test_deletes_always_apply() -> None:
    informer, seen = _informer()
    informer.observe(_stream("7"))
    informer._apply({"type": "DELETED", "object": _stream("6")})
    assert informer.get("ns/app") is None
    assert seen[-1] == ("7", None)


def test_a_handler_added_late_is_given_what_the_cache_holds() -> None:
    # Components of one process share a cache: the second one's handler must not miss
    # what the first one's list already brought.
    informer, seen = _informer()
    late: list[tuple[str, str | None]] = []
    informer.add_handler(lambda key, old, _new: late.append((key, old and "old")))
    assert late == [("ns/app", None)]
    informer.observe(_stream("7"))
    assert late == [("ns/app", None), ("ns/app", "old")]
    assert seen == [("5", "7")]
