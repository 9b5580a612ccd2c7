"""OpenShift's defaults and conversions (webhook/admission/defaults.py), case by case.

Each expected value is what OpenShift's v1 defaulting and conversion code stores (openshift/
origin pkg/apps/apis/apps/v1 and pkg/build/apis/build/v1; openshift-apiserver's image
stream strategy), as cited in docs/admission.md.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.admission.defaults import (
    default_build,
    default_buildconfig,
    default_deploymentconfig,
    default_imagestream,
    stamp_tag_generations,
)


def dc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d"}, "spec": spec}


def test_dc_trigger_image_stream_kind_becomes_tag_with_latest() -> None:
    trigger = {
        "type": "ImageChange",
        "imageChangeParams": {"from": {"kind": "ImageStream", "name": "app"}},
    }
    out = default_deploymentconfig(dc(triggers=[trigger]), "ns")
    assert out["spec"]["triggers"][0]["imageChangeParams"]["from"] == {
        "kind": "ImageStreamTag",
        "name": "app:latest",
        "namespace": "ns",
    }


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"kind": "ImageStream", "name": "app:v2"}, {"kind": "ImageStreamTag", "name": "app:v2"}),
        (
            {"kind": "ImageRepository", "name": "app"},
            {"kind": "ImageStreamTag", "name": "app:latest"},
        ),
        ({"name": "app:"}, {"kind": "ImageStreamTag", "name": "app:latest"}),
        # A bare name of kind ImageStreamTag is refused by validation, as in OpenShift.
        ({"kind": "ImageStreamTag", "name": "app"}, {"kind": "ImageStreamTag", "name": "app"}),
        ({"kind": "DockerImage", "name": "app:"}, {"kind": "DockerImage", "name": "app:"}),
    ],
)
def test_dc_trigger_references(source: dict[str, str], expected: dict[str, str]) -> None:
    trigger = {"type": "ImageChange", "imageChangeParams": {"from": dict(source)}}
    out = default_deploymentconfig(dc(triggers=[trigger]), "")
    assert out["spec"]["triggers"][0]["imageChangeParams"]["from"] == expected


def test_dc_defaults() -> None:
    out = default_deploymentconfig(
        dc(template={"metadata": {"labels": {"a": "b"}}, "spec": {}}), "ns"
    )
    assert out["spec"]["triggers"] == [{"type": "ConfigChange"}]
    assert out["spec"]["selector"] == {"a": "b"}
    assert out["spec"]["revisionHistoryLimit"] == 10
    assert out["spec"]["strategy"]["rollingParams"] == {
        "updatePeriodSeconds": 1,
        "intervalSeconds": 1,
        "timeoutSeconds": 600,
        "maxUnavailable": "25%",
        "maxSurge": "25%",
    }
    # An empty trigger list is kept: deployments then happen only when asked for.
    assert default_deploymentconfig(dc(triggers=[]), "ns")["spec"]["triggers"] == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"maxSurge": 0}, {"maxSurge": 0, "maxUnavailable": "25%"}),
        ({"maxUnavailable": "0%"}, {"maxUnavailable": "0%", "maxSurge": "25%"}),
        ({"maxSurge": 3}, {"maxSurge": 3}),
        ({"maxUnavailable": 1, "maxSurge": 2}, {"maxUnavailable": 1, "maxSurge": 2}),
    ],
)
def test_rolling_surge_and_unavailable(given: dict[str, Any], expected: dict[str, Any]) -> None:
    out = default_deploymentconfig(dc(strategy={"type": "Rolling", "rollingParams": given}), "")
    params = out["spec"]["strategy"]["rollingParams"]
    assert {k: v for k, v in params.items() if k.startswith("max")} == expected


def test_recreate_defaults() -> None:
    out = default_deploymentconfig(dc(strategy={"type": "Recreate"}), "")
    assert out["spec"]["strategy"] == {
        "type": "Recreate",
        "recreateParams": {"timeoutSeconds": 600},
        "activeDeadlineSeconds": 21600,
    }


def bc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b"}, "spec": spec}


def test_bc_deprecated_trigger_types() -> None:
    triggers = [
        {"type": "imageChange"},
        {"type": "github"},
        {"type": "generic"},
        {"type": "GitLab"},
    ]
    out = default_buildconfig(bc(triggers=triggers))
    assert [t["type"] for t in out["spec"]["triggers"]] == [
        "ImageChange",
        "GitHub",
        "Generic",
        "GitLab",
    ]
    assert out["spec"]["triggers"][0]["imageChange"] == {}


@pytest.mark.parametrize(
    ("strategy", "expected_type"),
    [
        ({"sourceStrategy": {"from": {"name": "py:3"}}}, "Source"),
        ({"type": "Docker", "sourceStrategy": {"from": {"name": "py:3"}}}, "Source"),
        ({"dockerStrategy": {}}, "Docker"),
        ({"type": "Docker"}, "Docker"),
        ({"customStrategy": {"from": {"name": "c:1"}}}, "Custom"),
        ({"jenkinsPipelineStrategy": {}}, "JenkinsPipeline"),
    ],
)
def test_strategy_type_is_derived(strategy: dict[str, Any], expected_type: str) -> None:
    out = default_buildconfig(bc(strategy=strategy))
    assert out["spec"]["strategy"]["type"] == expected_type
    if expected_type == "Source":
        assert out["spec"]["strategy"]["sourceStrategy"]["from"]["kind"] == "ImageStreamTag"
        assert "dockerStrategy" not in out["spec"]["strategy"]


def test_output_without_kind_is_a_tag() -> None:
    out = default_buildconfig(bc(output={"to": {"name": "app"}}))
    assert out["spec"]["output"]["to"] == {"kind": "ImageStreamTag", "name": "app:latest"}
    kept = default_buildconfig(bc(output={"to": {"kind": "DockerImage", "name": "r/app"}}))
    assert kept["spec"]["output"]["to"] == {"kind": "DockerImage", "name": "r/app"}


def test_build_binary_source_and_run_policy() -> None:
    out = default_build({"spec": {"source": {"type": "Binary"}, "strategy": {"type": "Docker"}}})
    assert out["spec"]["source"]["binary"] == {}
    assert out["spec"]["strategy"]["dockerStrategy"] == {}
    assert "runPolicy" not in out["spec"]  # a BuildConfig field only
    assert default_buildconfig(bc())["spec"]["runPolicy"] == "Serial"


@pytest.mark.parametrize(
    "apply",
    [
        lambda o: default_deploymentconfig(o, "ns"),
        default_buildconfig,
        default_build,
        default_imagestream,
    ],
)
def test_idempotent_and_input_untouched(apply: Any) -> None:
    obj = {
        "metadata": {"name": "x"},
        "spec": {
            "strategy": {"type": "Docker", "sourceStrategy": {"from": {"name": "a:"}}},
            "triggers": [{"type": "github", "imageChangeParams": {"from": {"name": "a:"}}}],
            "output": {"to": {"name": "o"}},
            "tags": [{"name": "t", "from": {"kind": "ImageStreamTag", "name": "s:"}}],
        },
    }
    original = copy.deepcopy(obj)
    once = apply(obj)
    assert obj == original
    assert apply(once) == once


def stream(generation: int | None, *tags: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "s"}
    if generation is not None:
        metadata["generation"] = generation
    return {"metadata": metadata, "spec": {"tags": list(tags)}}


def tag(name: str, source: str, generation: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "from": {"kind": "DockerImage", "name": source}}
    if generation is not None:
        out["generation"] = generation
    return out


def generations(obj: dict[str, Any]) -> dict[str, Any]:
    return {t["name"]: t.get("generation") for t in obj["spec"]["tags"]}


def test_create_stamps_one() -> None:
    out = stamp_tag_generations(stream(None, tag("a", "r/a:1", 9), tag("b", "r/b:1")), None, "ns")
    assert generations(out) == {"a": 1, "b": 1}


def test_update_keeps_unchanged_and_stamps_new_changed_and_zero() -> None:
    old = stream(3, tag("same", "r/a:1", 2), tag("moved", "r/b:1", 2), tag("zero", "r/c:1", 1))
    new = stream(
        3,
        tag("same", "r/a:1", 99),  # a client cannot set a number but 0
        tag("moved", "r/b:2", 2),
        tag("zero", "r/c:1", 0),
        tag("new", "r/d:1"),
    )
    out = stamp_tag_generations(new, old, "ns")
    assert generations(out) == {"same": 2, "moved": 4, "zero": 4, "new": 4}


def test_zero_twice_stamps_twice() -> None:
    old = stream(4, tag("a", "r/a:1", 4))
    out = stamp_tag_generations(stream(4, tag("a", "r/a:1", 0)), old, "ns")
    assert generations(out) == {"a": 5}
    again = stamp_tag_generations(
        stream(5, tag("a", "r/a:1", 0)), {**out, "metadata": {"generation": 5}}, "ns"
    )
    assert generations(again) == {"a": 6}


def test_no_spec_change_no_new_generation() -> None:
    old = stream(2, tag("a", "r/a:1", 1))
    out = stamp_tag_generations(stream(2, tag("a", "r/a:1")), old, "ns")
    assert generations(out) == {"a": 1}


def test_same_source_in_explicit_namespace_is_unchanged() -> None:
    old = stream(
        2, {"name": "a", "from": {"kind": "ImageStreamTag", "name": "x:1"}, "generation": 1}
    )
    new_tag = {"name": "a", "from": {"kind": "ImageStreamTag", "name": "x:1", "namespace": "ns"}}
    out = stamp_tag_generations(stream(2, new_tag), old, "ns")
    # The spec changed (namespace written out), so the stream generation moves, the tag not.
    assert generations(out) == {"a": 1}
