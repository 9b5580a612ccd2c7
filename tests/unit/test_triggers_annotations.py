"""The triggers annotation and its fieldPath grammar (behaviours 15-17 and 21,
docs/openshift-behaviours.md#behaviour-15 to #behaviour-17 and #behaviour-21)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    TRIGGER_ANNOTATION,
    ContainerSelector,
    InvalidFieldPath,
    InvalidTriggers,
    LastApplied,
    ObjectFieldTrigger,
    PathOutsidePodSpec,
    UnsupportedKind,
    format_last_applied,
    manual_change_pauses,
    object_triggers,
    parse_field_path,
    parse_triggers,
    pause_triggers,
    read_last_applied,
    split_stream_tag,
)

WEB_PATH = 'spec.template.spec.containers[?(@.name=="web")].image'


def trigger_json(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "from": {"kind": "ImageStreamTag", "name": "app:v1"},
        "fieldPath": WEB_PATH,
    }
    entry.update(overrides)
    return entry


def parse_one(entry: dict[str, Any], *, namespace: str = "default") -> ObjectFieldTrigger:
    (trigger,) = parse_triggers(json.dumps([entry]), namespace=namespace)
    return trigger


def test_behaviour_15_documented_annotation_parses() -> None:
    value = json.dumps(
        [
            {
                "from": {
                    "kind": "ImageStreamTag",
                    "name": "app:v1",
                    "namespace": "shared",
                    "apiVersion": "",
                },
                "fieldPath": WEB_PATH,
                "paused": False,
            }
        ]
    )
    assert parse_triggers(value, namespace="default") == (
        ObjectFieldTrigger(
            kind="ImageStreamTag",
            name="app:v1",
            namespace="shared",
            api_version="",
            field_path=WEB_PATH,
            paused=False,
        ),
    )


def test_behaviour_16_empty_namespace_means_the_objects_namespace() -> None:
    assert parse_one(trigger_json(), namespace="team").namespace == "team"
    entry = trigger_json(**{"from": {"kind": "ImageStreamTag", "name": "a:b", "namespace": ""}})
    assert parse_one(entry, namespace="team").namespace == "team"


def test_behaviour_16_stream_colon_means_tag_latest() -> None:
    entry = trigger_json(**{"from": {"kind": "ImageStreamTag", "name": "app:"}})
    trigger = parse_one(entry)
    assert (trigger.stream, trigger.tag, trigger.active) == ("app", "latest", True)


@pytest.mark.parametrize(
    ("source", "paused", "active"),
    [
        pytest.param({"kind": "ImageStreamTag", "name": "app:v1"}, False, True, id="active"),
        pytest.param({"kind": "ImageStreamTag", "name": "app:v1"}, True, False, id="paused"),
        pytest.param({"kind": "DockerImage", "name": "app:v1"}, False, False, id="DockerImage"),
        pytest.param({"kind": "ImageStreamTag", "name": "app"}, False, False, id="no colon"),
        pytest.param({"kind": "ImageStreamTag", "name": ":v1"}, False, False, id="no stream"),
        pytest.param(
            {"kind": "ImageStreamTag", "name": "app:v1", "apiVersion": "image.openshift.io/v1"},
            False,
            False,
            id="apiVersion set",
        ),
        pytest.param({"name": "app:v1"}, False, False, id="no kind"),
    ],
)
def test_behaviour_16_active_only_for_unpaused_image_stream_tags_with_a_colon(
    source: dict[str, str], paused: bool, active: bool
) -> None:
    trigger = parse_one(trigger_json(**{"from": source, "paused": paused}))
    assert trigger.active is active
    assert (trigger.stream_key is not None) is (trigger.stream is not None)


def test_behaviour_16_stream_key_names_namespace_and_stream() -> None:
    entry = trigger_json(**{"from": {"kind": "ImageStreamTag", "name": "app:v1"}})
    assert parse_one(entry, namespace="ns").stream_key == "ns/app"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app:v1", ("app", "v1")),
        ("app:", ("app", "latest")),
        ("app", None),
        (":v1", None),
        ("app:v1:x", ("app", "v1:x")),
    ],
)
def test_behaviour_16_split_stream_tag(name: str, expected: tuple[str, str] | None) -> None:
    assert split_stream_tag(name) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty string"),
        pytest.param("not json", id="not JSON"),
        pytest.param("[", id="truncated"),
        pytest.param("{}", id="object, not array"),
        pytest.param('"x"', id="string, not array"),
        pytest.param("[1]", id="entry not an object"),
        pytest.param('[{"from": "app:v1"}]', id="from not an object"),
        pytest.param('[{"fieldPath": 3}]', id="fieldPath not a string"),
        pytest.param('[{"paused": "true"}]', id="paused not a boolean"),
        pytest.param('[{"from": {"name": 1}}]', id="name not a string"),
        pytest.param('[{"fieldPath": NaN}]', id="NaN is not JSON"),
        pytest.param("[" * 100_000, id="absurd nesting"),
        pytest.param(
            json.dumps([trigger_json(), trigger_json(paused=True)]), id="duplicate fieldPath"
        ),
    ],
)
def test_behaviour_21_invalid_json_or_duplicate_field_path_disables_all_triggers(
    value: str,
) -> None:
    with pytest.raises(InvalidTriggers):
        parse_triggers(value, namespace="default")


def test_behaviour_21_duplicate_message_names_the_field_path() -> None:
    with pytest.raises(InvalidTriggers, match="duplicate triggers are not allowed"):
        parse_triggers(json.dumps([trigger_json(), trigger_json()]), namespace="default")


def test_nulls_read_as_zero_values_like_go() -> None:
    assert parse_triggers("null", namespace="ns") == ()
    assert parse_triggers("[null]", namespace="ns") == (
        ObjectFieldTrigger(
            kind="", name="", namespace="ns", api_version="", field_path="", paused=False
        ),
    )
    assert parse_one(trigger_json(paused=None)).paused is False


def test_unknown_fields_are_ignored() -> None:
    assert parse_one(trigger_json(extra={"x": 1})).field_path == WEB_PATH


def test_object_triggers_reads_the_annotation_of_the_object() -> None:
    obj = {
        "metadata": {
            "namespace": "ns",
            "annotations": {TRIGGER_ANNOTATION: json.dumps([trigger_json()])},
        }
    }
    assert [t.namespace for t in object_triggers(obj)] == ["ns"]
    assert object_triggers({"metadata": {"annotations": None}}) == ()
    assert object_triggers({}) == ()


@pytest.mark.parametrize(
    ("kind", "field_path", "expected"),
    [
        (
            "StatefulSet",
            'spec.template.spec.containers[?(@.name=="test")].image',
            ContainerSelector(container_kind="containers", name="test"),
        ),
        (
            "Deployment",
            "spec.template.spec.containers[0].image",
            ContainerSelector(container_kind="containers", index=0),
        ),
        (
            "DaemonSet",
            'spec.template.spec.initContainers[?(@.name=="init")].image',
            ContainerSelector(container_kind="initContainers", name="init"),
        ),
        (
            "CronJob",
            "spec.jobTemplate.spec.template.spec.initContainers[12].image",
            ContainerSelector(container_kind="initContainers", index=12),
        ),
    ],
)
def test_behaviour_17_field_path_grammar(
    kind: str, field_path: str, expected: ContainerSelector
) -> None:
    assert parse_field_path(field_path, kind=kind) == expected


@pytest.mark.parametrize(
    ("kind", "field_path"),
    [
        ("StatefulSet", "spec.containers[0].image"),
        ("StatefulSet", "metadata.annotations.x"),
        ("CronJob", "spec.template.spec.containers[0].image"),
        ("StatefulSet", ""),
    ],
)
def test_behaviour_17_paths_outside_the_kinds_pod_spec_are_ignored(
    kind: str, field_path: str
) -> None:
    with pytest.raises(PathOutsidePodSpec):
        parse_field_path(field_path, kind=kind)


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param('containers[?(@.name=="test")]', id="ends at the container"),
        pytest.param('containers[?(@.name=="test").image', id="unbalanced bracket"),
        pytest.param("containers[@.name=test].image", id="wrong selector syntax"),
        pytest.param("containers[?(@.name=='test')].image", id="single quotes"),
        pytest.param('containers[?(@.name == "test")].image', id="spaces"),
        pytest.param("containers[-1].image", id="negative index"),
        pytest.param("containers[].image", id="empty selector"),
        pytest.param("containers[0].image.x", id="past the image"),
        pytest.param("containers[0].name", id="not the image"),
        pytest.param("volumes[0].image", id="not a container list"),
        pytest.param("containers.image", id="no selector"),
    ],
)
def test_behaviour_17_malformed_paths_are_invalid(rest: str) -> None:
    with pytest.raises(InvalidFieldPath):
        parse_field_path("spec.template.spec." + rest, kind="StatefulSet")


def test_behaviour_15_only_the_four_workload_kinds_honour_the_annotation() -> None:
    for kind in ("Job", "Pod", "ReplicaSet", "DeploymentConfig", ""):
        with pytest.raises(UnsupportedKind):
            parse_field_path("spec.template.spec.containers[0].image", kind=kind)


def test_pause_triggers_sets_paused_and_keeps_unknown_fields() -> None:
    other = 'spec.template.spec.containers[?(@.name=="b")].image'
    value = json.dumps([trigger_json(extra=1), trigger_json(fieldPath=other), None])
    paused = json.loads(pause_triggers(value, {WEB_PATH}))
    assert paused[0] == trigger_json(extra=1, paused=True)
    assert paused[1] == trigger_json(fieldPath=other)
    assert paused[2] is None


def test_last_applied_round_trip_sorted_and_compact() -> None:
    images = {"b": "img-b", "a": "img-a"}
    text = format_last_applied(images, generation=7)
    assert text == '{"generation":7,"images":{"a":"img-a","b":"img-b"}}'
    obj = {"metadata": {"annotations": {LAST_APPLIED_IMAGES_ANNOTATION: text}}}
    assert read_last_applied(obj) == LastApplied(images=images, generation=7, present=True)
    assert read_last_applied({}) == LastApplied(images={})


def test_last_applied_of_the_earlier_form_reads_as_images_without_a_generation() -> None:
    obj = {"metadata": {"annotations": {LAST_APPLIED_IMAGES_ANNOTATION: '{"a":"img-a"}'}}}
    assert read_last_applied(obj) == LastApplied(images={"a": "img-a"}, present=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nope", {}),
        ("[]", {}),
        ("[" * 100_000, {}),
        ('{"a": 1, "b": "x"}', {"b": "x"}),
        ('{"generation": "7", "images": {"a": "x", "b": 2}}', {"a": "x"}),
    ],
)
def test_unreadable_last_applied_images_read_as_empty_not_as_errors(
    value: str, expected: dict[str, str]
) -> None:
    obj = {"metadata": {"annotations": {LAST_APPLIED_IMAGES_ANNOTATION: value}}}
    record = read_last_applied(obj)
    assert (record.images, record.generation, record.present) == (expected, None, True)


@pytest.mark.parametrize(("value", "expected"), [("pause", True), ("revert", False), ("", False)])
def test_manual_change_opt_in_is_exactly_pause(value: str, expected: bool) -> None:
    obj = {"metadata": {"annotations": {ON_MANUAL_CHANGE_ANNOTATION: value}}}
    assert manual_change_pauses(obj) is expected
    assert manual_change_pauses({}) is False


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["from", "kind", "name", "namespace", "fieldPath", "paused", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        st.text(),
        _JSON.map(json.dumps),
        st.lists(_JSON, max_size=4).map(json.dumps),
    )
)
def test_property_arbitrary_annotations_raise_nothing_but_invalid_triggers(value: str) -> None:
    try:
        triggers = parse_triggers(value, namespace="ns")
    except InvalidTriggers:
        return
    assert len({t.field_path for t in triggers}) == len(triggers)
    assert all(t.namespace for t in triggers)
