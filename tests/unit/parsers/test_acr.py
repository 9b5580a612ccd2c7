"""Azure Container Registry: its webhooks, and Event Grid in both of its schemas."""

from __future__ import annotations

import pytest

from tests.unit.parsers.helpers import (
    BATCH,
    DIGEST,
    DOCKER_V2,
    JSON_HEADERS,
    only,
    parse,
    payload,
    record,
    utc,
    with_digest,
)
from webhook.events import BadPayload, Ignored

ACR_REDACTED = "sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx"


ACR_PUSHED = record(
    "demo.azurecr.io",
    "aci-helloworld",
    "v1",
    "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5",
    media_type=DOCKER_V2,
    # The registry's own timestamp in `data`, not Event Grid's later `time`.
    pushed_at=utc(2018, 4, 25, 21, 39, 47, 276585),
    event_id=(
        "/subscriptions/<subscription-id>/resourceGroups/<resource-group-name>/providers/"
        "Microsoft.ContainerRegistry/registries/<name>#831e1650-001e-001b-66ab-eeb76e069631"
    ),
)


@pytest.mark.parametrize("headers", [BATCH, JSON_HEADERS, {}])
def test_cloudevents_acr_event_grid_batch_is_a_record(headers: dict[str, str]) -> None:
    body = payload("acr-eventgrid-imagepushed-cloudevents-docs.json")
    assert parse("cloudevents", body, headers=headers).records == [ACR_PUSHED]


def test_acr_webhook_push_with_redacted_digest_is_bad_and_with_a_digest_a_record() -> None:
    with pytest.raises(BadPayload, match="digest"):
        parse("acr", payload("acr-webhook-push-docs.json"))
    assert parse("acr", with_digest("acr-webhook-push-docs.json", ACR_REDACTED)).records == [
        record(
            "myregistry.azurecr.io",
            "hello-world",
            "v1",
            DIGEST,
            media_type=DOCKER_V2,
            pushed_at=utc(2023, 11, 17, 16, 52, 1, 343145),
            event_id="cb8c3971-9adc-488b-xxxx-43cbb4974ff5",
        )
    ]


def test_acr_captured_webhook_push_is_a_record() -> None:
    parsed = parse("acr", with_digest("acr-webhook-push-captured-kobold.json", ACR_REDACTED))
    assert parsed.records == [
        record(
            "test.azurecr.io",
            "busybox",
            "v1",
            DIGEST,
            media_type=DOCKER_V2,
            pushed_at=utc(2023, 10, 11, 14, 45, 59, 730519),
            event_id="9a5f8995-dbab-4c2b-b06c-0c29c23e759e",
        )
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "acr-webhook-delete-docs.json",
            Ignored("delete", event_id="afc359ce-df7f-4e32-xxxx-1ff8aa80927b", detail="delete"),
        ),
        (
            "acr-webhook-chart-push-docs.json",
            Ignored(
                "not_an_image", event_id="6356e9e0-627f-4fed-xxxx-d9059b5143ac", detail="chart_push"
            ),
        ),
    ],
)
def test_acr_webhook_events_that_move_no_tag_are_ignored(name: str, expected: Ignored) -> None:
    assert only(parse("acr", payload(name))) == expected


ACR_EVENT_GRID_PUSHED = record(
    "matellcr.azurecr.io",
    "ubuntu",
    "18.04",
    "sha256:3013b0d761d4bad6ff16dd2805887a2f2c3fc140d6206086698b5c3e44e0f7fe",
    media_type=DOCKER_V2,
    pushed_at=utc(2020, 7, 9, 0, 29, 38, 143428),
    event_id="b734f818-f923-472b-aec8-50995013fd7c",
)


def test_acr_event_grid_schema_with_data_as_a_string_is_a_record() -> None:
    single = payload("acr-eventgrid-imagepushed-eventgridschema-captured-2020.json")
    assert parse("acr", single).records == [ACR_EVENT_GRID_PUSHED]
    array = b"[" + single + b"]"
    assert parse("acr", array).records == [ACR_EVENT_GRID_PUSHED]


def test_acr_event_grid_subscription_validation_carries_the_code() -> None:
    validation = [
        {
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2018-01-25T22:12:19.4556811Z",
        }
    ]
    assert only(parse("acr", validation)) == Ignored(
        "subscription_validation",
        event_id="2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        detail="512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
    )


def test_acr_receiver_reads_the_event_grid_cloudevents_schema() -> None:
    body = payload("acr-eventgrid-imagepushed-cloudevents-docs.json")
    assert parse("acr", body, headers=BATCH).records == [ACR_PUSHED]
