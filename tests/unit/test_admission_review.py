"""The AdmissionReview protocol and OpenShift's refusal (admission review.py, validate.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest

from webhook.admission.review import ReviewError, allow, parse_review, refuse_invalid
from webhook.admission.validate import missing_sources, referenced_streams


def review(obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "image.openshift.io", "version": "v1", "kind": "ImageStream"},
            "resource": {
                "group": "image.openshift.io",
                "version": "v1",
                "resource": "imagestreams",
            },
            "namespace": "ns",
            "operation": "UPDATE" if old else "CREATE",
            "object": obj,
            "oldObject": old,
        },
    }


def test_patch_turns_the_object_into_the_mutated_one() -> None:
    before = {"metadata": {"name": "x"}, "spec": {"a": 1}, "status": {}}
    after = {"metadata": {"name": "x", "annotations": {"k": "v"}}, "spec": {"a": 2, "b": [1]}}
    answer = allow(parse_review(review(before)), after)
    assert answer["response"]["uid"] == "u-1"
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert jsonpatch.apply_patch(before, patch) == after
    assert "patch" not in allow(parse_review(review(before)), before)["response"]


@pytest.mark.parametrize("body", [{}, {"kind": "AdmissionReview"}, [], {"kind": "Pod"}])
def test_bad_reviews_are_refused(body: object) -> None:
    with pytest.raises(ReviewError):
        parse_review(body)


def stream(*tags: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "cart"}, "spec": {"tags": list(tags)}}


def follows(name: str, source: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "from": {"kind": "ImageStreamTag", "name": source, **extra}}


def test_only_new_or_changed_tags_of_other_streams_are_checked() -> None:
    old = stream(follows("a", "other:1"))
    new = stream(
        follows("a", "other:1"),  # unchanged: not checked again
        follows("b", "cart:a"),  # this stream
        follows("c", "a"),  # this stream, by tag
        follows("d", "base:1", namespace="shared"),
        {"name": "e", "from": {"kind": "DockerImage", "name": "r/x:1"}},
        {"name": "f", "from": {"kind": "ImageStreamImage", "name": "img@sha256:00"}},
    )
    assert referenced_streams(new, old, "ns") == [
        ("d", "base:1", "shared", "base"),
        ("f", "img@sha256:00", "ns", "img"),
    ]


async def test_missing_source_message_is_openshifts() -> None:
    async def exists(namespace: str, name: str) -> bool:
        return False

    obj = stream(follows("prod", "cart-src:prod"))
    errors = await missing_sources(obj, None, "ns", exists)
    answer = refuse_invalid(parse_review(review(obj)), errors, group="image.openshift.io")
    status = answer["response"]["status"]
    assert answer["response"]["allowed"] is False
    assert status["code"] == 422
    assert status["message"] == (
        'ImageStream.image.openshift.io "cart" is invalid: []: Internal error: imagestreams'
        ' "cart" is invalid: spec.tags[prod].from.name: Not found: "cart-src:prod"'
    )
    assert status["details"]["causes"][0]["field"] == "[]"
