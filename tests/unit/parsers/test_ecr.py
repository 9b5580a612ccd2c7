"""Amazon ECR through EventBridge, and EventBridge's CloudEvents input template."""

from __future__ import annotations

import json

import pytest

from tests.unit.parsers.helpers import (
    DIGEST,
    STRUCTURED,
    document,
    only,
    parse,
    payload,
    reason,
    record,
    utc,
    with_digest,
)
from webhook.events import BadPayload, Ignored

ECR_DOCS_DIGEST = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234"


def test_ecr_push_is_a_record_on_the_account_registry() -> None:
    name = "ecr-eventbridge-image-push-docs.json"
    with pytest.raises(BadPayload, match="digest"):  # the AWS sample's digest has 60 digits
        parse("ecr", payload(name))
    assert parse("ecr", with_digest(name, ECR_DOCS_DIGEST)).records == [
        record(
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
            "my-repository-name",
            "latest",
            DIGEST,
            pushed_at=utc(2019, 11, 16, 1, 54, 34),
            event_id="13cde686-328b-6117-af20-0e5566167482",
        )
    ]


def test_ecr_china_regions_use_their_own_domain() -> None:
    event = json.loads(with_digest("ecr-eventbridge-image-push-docs.json", ECR_DOCS_DIGEST))
    (pushed,) = parse("ecr", event | {"region": "cn-north-1"}).records
    assert pushed.registry == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"


def test_ecr_events_that_move_no_tag_are_ignored() -> None:
    delete = parse("ecr", payload("ecr-eventbridge-image-delete-docs.json"))
    assert only(delete) == Ignored("delete", event_id="dd3b46cb-2c74-f49e-393b-28286b67279d")
    push = document("ecr-eventbridge-image-push-docs.json")
    failed = push | {"detail": push["detail"] | {"result": "FAILURE"}}
    assert only(parse("ecr", failed)) == Ignored(
        "push_failed", event_id="13cde686-328b-6117-af20-0e5566167482", detail="FAILURE"
    )
    scan = push | {"detail-type": "ECR Image Scan"}
    assert reason(parse("ecr", scan)) == "scan_completed"


def test_cloudevents_ecr_input_template_is_a_record() -> None:
    template = payload(
        "ecr-eventbridge-to-cloudevents-input-template-argocd-image-updater.json"
    ).decode()
    for placeholder, value in {
        "<id>": "0f5a",
        "<region>": "eu-west-1",
        "<account>": "123456789012",
        "<repo>": "team/app",
        "<tag>": "v1",
        "<time>": "2026-01-15T10:00:02Z",
        "<digest>": DIGEST,
    }.items():
        template = template.replace(placeholder, value)
    source = "urn:aws:ecr:eu-west-1:123456789012:repository/team/app"
    assert parse("cloudevents", template.encode(), headers=STRUCTURED).records == [
        record(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "team/app",
            "v1",
            DIGEST,
            pushed_at=utc(2026, 1, 15, 10, 0, 2),
            event_id=f"{source}#0f5a",
        )
    ]
