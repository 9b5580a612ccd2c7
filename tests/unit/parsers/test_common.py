"""What holds for every receiver type: header matching, configuration errors, unsupported
media types, malformed bodies, and properties over arbitrary and mutated payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tests.unit.parsers.helpers import (
    BATCH,
    GITHUB_HEADERS,
    JSON_HEADERS,
    NEXUS_HEADERS,
    PROPERTY_SETTINGS,
    STRUCTURED,
    assert_parses_or_is_bad,
    document,
    json_values,
    parse,
    payload,
)
from webhook.events import BadPayload, UnsupportedMediaType
from webhook.parsers import RECEIVER_TYPES


def test_headers_are_matched_case_insensitively_with_aiohttps_mapping() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"CONTENT-TYPE": "Application/JSON; charset=UTF-8"}))
    body = payload("distribution-push-manifest-tag-captured-maiev-2017.json")
    assert len(parse("distribution", body, headers=headers).records) == 1


def test_configuration_errors_are_not_bad_payloads() -> None:
    body = payload("dockerhub-push-docs.json")
    with pytest.raises(ValueError, match="unknown receiver type") as unknown:
        parse("gitlab", body)
    assert not isinstance(unknown.value, BadPayload)
    with pytest.raises(ValueError, match="registry") as invalid:
        parse("nexus", body, registry="not a host")
    assert not isinstance(invalid.value, BadPayload)


@pytest.mark.parametrize("receiver_type", RECEIVER_TYPES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_content_types_a_receiver_cannot_carry_are_unsupported(
    receiver_type: str, content_type: str
) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(receiver_type, b"{}", headers={"Content-Type": content_type})


@pytest.mark.parametrize("receiver_type", RECEIVER_TYPES)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"42",
        b'"text"',
        b"{}",
        b'{"events": {}}',
        b"[" * 100_000,
    ],
)
def test_malformed_bodies_are_bad_payloads(receiver_type: str, body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse(receiver_type, body)


# --- properties --------------------------------------------------------------------

# (receiver type, sample, headers) for samples of every sender's tests; mutating them reaches
# deep paths.
SAMPLES: list[tuple[str, str, dict[str, str]]] = [
    ("distribution", "distribution-push-index-with-references-constructed.json", JSON_HEADERS),
    ("distribution", "distribution-push-envelope-test-fixture.json", JSON_HEADERS),
    ("harbor", "harbor-push-default-v2-flux-recv.json", JSON_HEADERS),
    ("harbor", "harbor-replication-default-docs.json", JSON_HEADERS),
    ("cloudevents", "harbor-push-cloudevents-tagged-constructed.json", STRUCTURED),
    ("cloudevents", "acr-eventgrid-imagepushed-cloudevents-docs.json", BATCH),
    (
        "cloudevents",
        "ecr-eventbridge-to-cloudevents-input-template-argocd-image-updater.json",
        STRUCTURED,
    ),
    ("quay", "quay-repo-push-legacy-2013-gist.json", JSON_HEADERS),
    ("dockerhub", "dockerhub-push-docs.json", JSON_HEADERS),
    ("acr", "acr-webhook-push-docs.json", JSON_HEADERS),
    ("acr", "acr-eventgrid-imagepushed-eventgridschema-captured-2020.json", JSON_HEADERS),
    ("gcr", "gar-pubsub-push-envelope-constructed.json", JSON_HEADERS),
    ("gcr", "gcr-pubsub-message-insert-captured.json", JSON_HEADERS),
    ("ecr", "ecr-eventbridge-image-push-docs.json", JSON_HEADERS),
    ("github", "ghcr-package-create-captured-keel-2020.json", GITHUB_HEADERS),
    (
        "github",
        "github-registry-package-published-docker-pkg-captured-keel-2019.json",
        JSON_HEADERS,
    ),
    ("jfrog", "jfrog-docker-pushed-keel.json", JSON_HEADERS),
    ("nexus", "nexus-component-created-docker-flux-recv.json", NEXUS_HEADERS),
    ("nexus", "nexus-asset-created-docker-kraken-doc.json", NEXUS_HEADERS),
]

HEADER_CHOICES: list[dict[str, str]] = [
    {},
    JSON_HEADERS,
    STRUCTURED,
    BATCH,
    {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "io.imagestream.push.v1"},
]


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replaced(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], tuple(rest), new)  # type: ignore[index]
    return copy


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    receiver_type, name, headers = draw(st.sampled_from(SAMPLES))
    sample = document(name)
    path = draw(st.sampled_from(list(_paths(sample))))
    return receiver_type, json.dumps(_replaced(sample, path, draw(json_values))).encode(), headers


@PROPERTY_SETTINGS
@given(
    receiver_type=st.sampled_from(RECEIVER_TYPES),
    body=st.binary(max_size=256),
    headers=st.sampled_from(HEADER_CHOICES),
)
def test_arbitrary_bytes_parse_or_are_bad_payloads(
    receiver_type: str, body: bytes, headers: dict[str, str]
) -> None:
    assert_parses_or_is_bad(receiver_type, body, headers)


@PROPERTY_SETTINGS
@given(
    receiver_type=st.sampled_from(RECEIVER_TYPES),
    value=json_values,
    headers=st.sampled_from(HEADER_CHOICES),
)
def test_arbitrary_json_parses_or_is_bad_payload(
    receiver_type: str, value: Any, headers: dict[str, str]
) -> None:
    assert_parses_or_is_bad(receiver_type, json.dumps(value).encode(), headers)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=mutated_samples())
def test_mutated_real_payloads_parse_or_are_bad_payloads(
    sample: tuple[str, bytes, dict[str, str]],
) -> None:
    assert_parses_or_is_bad(*sample)
