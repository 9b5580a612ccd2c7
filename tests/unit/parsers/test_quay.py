"""Quay's repository push notifications."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    content_id,
    document,
    only,
    parse,
    payload,
    record,
)
from webhook.events import Ignored


@pytest.mark.parametrize(
    ("name", "repository", "tag"),
    [
        ("quay-repo-push-docs.json", "dgangaia/test", "latest"),
        ("quay-repo-push-flux-recv.json", "hiddeco/foo", "3.10"),
        ("quay-repo-push-legacy-2013-gist.json", "devtable/ubuntu", "latest"),
    ],
)
def test_quay_push_is_a_record_without_digest(name: str, repository: str, tag: str) -> None:
    assert parse("quay", payload(name)).records == [
        record(
            "quay.io",
            repository,
            tag,
            "",
            event_id=content_id("quay", "quay.io", repository, tag, "", None),
        )
    ]


def test_quay_test_notification_is_ignored() -> None:
    parsed = parse("quay", payload("quay-repo-push-test-notification-constructed.json"))
    assert only(parsed) == Ignored("test_notification", detail="mynamespace/myrepo")


def test_quay_push_of_several_tags_gives_records_with_distinct_ids() -> None:
    push = document("quay-repo-push-docs.json") | {"updated_tags": ["latest", "v1"]}
    parsed = parse("quay", push)
    assert [r.tag for r in parsed.records] == ["latest", "v1"]
    assert len({r.event_id for r in parsed.records}) == 2


def test_quay_other_events_and_empty_pushes_are_ignored() -> None:
    build = {
        key: value
        for key, value in document("quay-repo-push-docs.json").items()
        if key != "updated_tags"
    }
    assert only(parse("quay", build | {"build_id": "b1"})) == Ignored(
        "not_a_push", detail="dgangaia/test"
    )
    empty = document("quay-repo-push-docs.json") | {"updated_tags": []}
    assert only(parse("quay", empty)) == Ignored("no_tag", detail="dgangaia/test")
