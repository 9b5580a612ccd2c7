"""CloudEvents in structured, batch and binary mode: this project's own push type,
other types, malformed events. (Senders' events carried as CloudEvents are tested
with the sender: Harbor, ACR's Event Grid, CDEvents, ECR's input template.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.parsers.helpers import (
    BATCH,
    DIGEST,
    OCI_INDEX,
    PROPERTY_SETTINGS,
    STRUCTURED,
    assert_parses_or_is_bad,
    json_values,
    only,
    parse,
    record,
    utc,
)
from webhook.events import BadPayload, Ignored

GENERIC_DATA = {
    "registry": "Registry.Example.com",
    "repository": "team/app",
    "tag": "v2",
    "digest": DIGEST,
    "mediaType": OCI_INDEX,
}


def test_cloudevents_generic_push_type_in_structured_and_binary_mode() -> None:
    expected = [
        record(
            "registry.example.com",
            "team/app",
            "v2",
            DIGEST,
            media_type=OCI_INDEX,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id="/ci/build#42",
        )
    ]
    structured = {
        "specversion": "1.0",
        "type": "io.imagestream.push.v1",
        "source": "/ci/build",
        "id": "42",
        "time": "2026-01-15T10:00:02Z",
        "data": GENERIC_DATA,
    }
    assert parse("cloudevents", structured, headers=STRUCTURED).records == expected
    binary = {
        "CE-SpecVersion": "1.0",
        "CE-Type": "io.imagestream.push.v1",
        "CE-Source": "/ci/build",
        "CE-Id": "42",
        "CE-Time": "2026-01-15T10:00:02Z",
        "Content-Type": "application/json",
    }
    assert parse("cloudevents", GENERIC_DATA, headers=binary).records == expected


def test_cloudevents_without_time_has_no_push_time_and_without_registry_uses_the_receivers() -> (
    None
):
    data = {key: value for key, value in GENERIC_DATA.items() if key != "registry"}
    event = {
        "specversion": "1.0",
        "type": "io.imagestream.push.v1",
        "source": "/ci",
        "id": "1",
        "data": data,
    }
    (pushed,) = parse(
        "cloudevents", event, headers=STRUCTURED, registry="registry.local:5000"
    ).records
    # The SDK would default `time` to now; a push time must come from the sender.
    assert (pushed.registry, pushed.pushed_at) == ("registry.local:5000", None)


def test_cloudevents_of_other_types_are_ignored() -> None:
    event = {"specversion": "1.0", "type": "com.example.build.finished", "source": "/ci", "id": "7"}
    assert only(parse("cloudevents", event, headers=STRUCTURED)) == Ignored(
        "unsupported_event_type", event_id="/ci#7", detail="com.example.build.finished"
    )


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        # The SDK would invent an id, which defeats deduplication.
        (STRUCTURED, b'{"specversion": "1.0", "type": "t", "source": "/s"}', "no id"),
        ({"ce-specversion": "1.0", "ce-type": "t", "ce-source": "/s"}, b"{}", "ce-id"),
        (
            STRUCTURED,
            b'{"specversion": "0.9", "type": "t", "source": "/s", "id": "1"}',
            "specversion",
        ),
        (
            STRUCTURED,
            b'{"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "time": "x"}',
            "valid",
        ),
        (STRUCTURED, b"[]", "not a JSON object"),
        (BATCH, b"{}", "not a JSON array"),
    ],
)
def test_cloudevents_malformed_events_are_bad(
    headers: dict[str, str], body: bytes, message: str
) -> None:
    with pytest.raises(BadPayload, match=message):
        parse("cloudevents", body, headers=headers)


@PROPERTY_SETTINGS
@given(
    attributes=st.dictionaries(
        st.sampled_from(
            [
                "ce-specversion",
                "ce-id",
                "ce-source",
                "ce-type",
                "ce-time",
                "ce-subject",
                "ce-x",
                "content-type",
            ]
        ),
        st.text(max_size=30),
    ),
    value=json_values,
)
def test_arbitrary_binary_mode_cloudevents_parse_or_are_bad_payloads(
    attributes: dict[str, str], value: Any
) -> None:
    headers = {"ce-type": "io.imagestream.push.v1"} | attributes
    assert_parses_or_is_bad("cloudevents", json.dumps(value).encode(), headers)
