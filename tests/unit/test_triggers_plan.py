"""The annotation trigger planner (behaviours 15-21, docs/openshift-behaviours.md#behaviour-15
to #behaviour-21; cases 7.1.N are those of OpenShift's TestAnnotationsReactor), the JSON
Patch it writes, rollback awareness, and the idempotence property that breaks write loops."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.triggers.annotations import (
    LAST_APPLIED_IMAGES_ANNOTATION,
    ON_MANUAL_CHANGE_ANNOTATION,
    TRIGGER_ANNOTATION,
    UnsupportedKind,
    pod_spec_path,
)
from controller.triggers.outcomes import Reason, allow_any_namespace
from controller.triggers.ownership import TRIGGER_FIELD_MANAGER
from controller.triggers.plan import (
    ContainerChange,
    TriggerPlan,
    apply_changes,
    build_json_patch,
    index_keys,
    plan_triggers,
)
from controller.triggers.podspec import CONTAINER_KINDS, json_pointer, pod_spec_at

Obj = dict[str, Any]
Getter = Callable[[str, str], Mapping[str, Any] | None]


def by_name(name: str, *, init: bool = False) -> str:
    kind = "initContainers" if init else "containers"
    return f'spec.template.spec.{kind}[?(@.name=="{name}")].image'


def image_stream(tags: Mapping[str, str]) -> Obj:
    """A stream whose status has one history entry per tag, pointing at `tags[tag]`."""
    return {
        "kind": "ImageStream",
        "spec": {"tags": []},
        "status": {
            "tags": [
                {"tag": tag, "items": [{"dockerImageReference": ref, "image": ""}]}
                for tag, ref in tags.items()
            ]
        },
    }


def streams(*refs: tuple[str, str, str]) -> Getter:
    """`get_stream` over `(namespace, "<stream>:<tag>", pull spec)` triples."""
    known: dict[tuple[str, str], dict[str, str]] = {}
    for namespace, name, ref in refs:
        stream, _, tag = name.partition(":")
        known.setdefault((namespace, stream), {})[tag] = ref
    built = {key: image_stream(tags) for key, tags in known.items()}
    return lambda namespace, name: built.get((namespace, name))


def trigger(name: str, field_path: str, *, namespace: str = "", **extra: Any) -> dict[str, Any]:
    source = {"kind": "ImageStreamTag", "name": name, "namespace": namespace}
    return {"from": source, "fieldPath": field_path, **extra}


def workload(
    triggers: list[dict[str, Any]] | None,
    containers: Mapping[str, str] | None = None,
    *,
    kind: str = "StatefulSet",
    namespace: str = "default",
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    """OpenShift's `testStatefulSet`: names starting with "-" are init containers."""
    containers = containers or {}
    pod_spec: dict[str, Any] = {"containers": []}
    for name in sorted(containers):
        entry = {"name": name.removeprefix("-"), "image": containers[name]}
        pod_spec.setdefault("initContainers" if name.startswith("-") else "containers", [])
        pod_spec["initContainers" if name.startswith("-") else "containers"].append(entry)
    obj: Obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "test"}}
    obj["metadata"]["namespace"] = namespace
    all_annotations = dict(annotations or {})
    if triggers is not None:
        all_annotations[TRIGGER_ANNOTATION] = json.dumps(triggers)
    if all_annotations:
        obj["metadata"]["annotations"] = all_annotations
    node = obj
    for part in pod_spec_path(kind)[:-1]:
        node = node.setdefault(part, {})
    node["spec"] = pod_spec
    return obj


def plan_of(obj: Obj, get_stream: Getter, **options: Any) -> TriggerPlan:
    before = copy.deepcopy(obj)
    plan = plan_triggers(obj, get_stream=get_stream, **options)
    assert obj == before, "the planner must not mutate its input"
    return plan


def applied(obj: Obj, plan: TriggerPlan) -> Obj:
    return apply_changes(obj, plan.changes, annotations=plan.annotation_updates)


def reasons(plan: TriggerPlan) -> list[Reason]:
    return [outcome.reason for outcome in plan.outcomes]


class PatchTestFailed(Exception):
    """What the API server answers with 422 when a `test` op fails."""


def apply_json_patch(document: Mapping[str, Any], patch: Sequence[Mapping[str, Any]]) -> Obj:
    """`patch` applied to `document`, or PatchTestFailed, as two RFC 6902 implementations agree.

    The hand-written one below knows only what our planners write (test, add, replace) and,
    like the API server, refuses a failed `test` and a `replace` of a missing member;
    `jsonpatch` is independent of it, so a bug in either (or a patch only one of them
    accepts) fails the test instead of passing silently."""
    try:
        independent: Obj | None = jsonpatch.apply_patch(
            copy.deepcopy(dict(document)), [dict(operation) for operation in patch]
        )
    except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict):
        independent = None
    try:
        by_hand = _apply_json_patch_by_hand(document, patch)
    except PatchTestFailed:
        assert independent is None, (
            f"jsonpatch applied what the hand-written applier refused: {patch}"
        )
        raise
    assert independent is not None, (
        f"jsonpatch refused what the hand-written applier applied: {patch}"
    )
    assert by_hand == independent, "the two JSON Patch appliers disagree"
    return by_hand


def _apply_json_patch_by_hand(
    document: Mapping[str, Any], patch: Sequence[Mapping[str, Any]]
) -> Obj:
    """A small RFC 6902 implementation (test, add, replace) for checking built patches."""
    result: Obj = copy.deepcopy(dict(document))
    for operation in patch:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        parent: Any = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        key: Any = int(parts[-1]) if isinstance(parent, list) else parts[-1]
        if operation["op"] == "test":
            present = key < len(parent) if isinstance(parent, list) else key in parent
            if not present or parent[key] != operation["value"]:
                raise PatchTestFailed(operation["path"])
        elif operation["op"] == "replace":
            if isinstance(parent, dict) and key not in parent:
                raise PatchTestFailed(operation["path"])
            parent[key] = copy.deepcopy(operation["value"])
        elif operation["op"] == "add" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(operation["value"]))
        elif operation["op"] == "add":
            parent[key] = copy.deepcopy(operation["value"])
        else:
            raise AssertionError(f"unexpected op {operation['op']}")
    return result


# --- 7.1: OpenShift's TestAnnotationsReactor, on a StatefulSet --------------------------------

ONE = ("other", "stream-1:1", "image-lookup-1")


@dataclass(frozen=True)
class ReactorCase:
    title: str
    obj: Obj
    tags: tuple[tuple[str, str, str], ...] = ()
    expected_containers: Mapping[str, str] | None = None
    """The containers after the write; None: no write."""
    error: Reason | None = None
    """The Warning outcome OpenShift reports as a reconcile error."""


def _other(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return trigger(name, path, namespace="other", **extra)


REACTOR: dict[int, ReactorCase] = {
    1: ReactorCase("object without annotation", workload(None)),
    2: ReactorCase(
        "tag resolves, container missing",
        workload([_other("stream-1:1", by_name("test"))]),
        tags=(ONE,),
        error=Reason.CONTAINER_NOT_FOUND,
    ),
    3: ReactorCase(
        "fieldPath ends at the container",
        workload(
            [_other("stream-1:1", 'spec.template.spec.containers[?(@.name=="test")]')],
            {"test": ""},
        ),
        tags=(ONE,),
        error=Reason.INVALID_FIELD_PATH,
    ),
    4: ReactorCase(
        "unbalanced bracket",
        workload(
            [_other("stream-1:1", 'spec.template.spec.containers[?(@.name=="test").image')],
            {"test": ""},
        ),
        tags=(ONE,),
        error=Reason.INVALID_FIELD_PATH,
    ),
    5: ReactorCase(
        "wrong selector syntax",
        workload(
            [_other("stream-1:1", "spec.template.spec.containers[@.name=test].image")],
            {"test": ""},
        ),
        tags=(ONE,),
        error=Reason.INVALID_FIELD_PATH,
    ),
    6: ReactorCase(
        "tag unresolved: no change, no error",
        workload([_other("stream-1:1", by_name("test"))], {"test": ""}),
    ),
    7: ReactorCase(
        "resolved in another namespace",
        workload([_other("stream-1:1", by_name("test"))], {"test": ""}),
        tags=(ONE,),
        expected_containers={"test": "image-lookup-1"},
    ),
    8: ReactorCase(
        "resolved for init containers",
        workload([_other("stream-1:1", by_name("test", init=True))], {"-test": ""}),
        tags=(ONE,),
        expected_containers={"-test": "image-lookup-1"},
    ),
    9: ReactorCase(
        "paused: no change",
        workload([_other("stream-1:1", by_name("test"), paused=True)], {"test": ""}),
        tags=(ONE,),
    ),
    10: ReactorCase(
        "only one of two triggers resolves",
        workload(
            [_other("stream-1:1", by_name("test")), _other("stream-2:1", by_name("test2"))],
            {"test": "", "test2": ""},
        ),
        tags=(ONE,),
        expected_containers={"test": "image-lookup-1", "test2": ""},
    ),
    11: ReactorCase(
        "one resolves, the other container keeps its old image",
        workload(
            [_other("stream-1:1", by_name("test")), _other("stream-2:1", by_name("test2"))],
            {"test": "", "test2": "old-image"},
        ),
        tags=(ONE,),
        expected_containers={"test": "image-lookup-1", "test2": "old-image"},
    ),
    12: ReactorCase(
        "two triggers on the same tag",
        workload(
            [_other("stream-1:1", by_name("test")), _other("stream-1:1", by_name("test2"))],
            {"test": "", "test2": ""},
        ),
        tags=(ONE,),
        expected_containers={"test": "image-lookup-1", "test2": "image-lookup-1"},
    ),
}


def reactor_cases(*numbers: int) -> list[Any]:
    return [pytest.param(REACTOR[n], id=f"7.1.{n} {REACTOR[n].title}") for n in numbers]


def check_reactor_case(case: ReactorCase) -> None:
    plan = plan_of(case.obj, streams(*case.tags), namespace_allowed=allow_any_namespace)
    if case.error is not None:
        assert case.error in reasons(plan)
        assert case.error.is_warning
    if case.expected_containers is None:
        assert not plan.needs_write
        return
    annotations = case.obj["metadata"]["annotations"]
    expected = workload(None, case.expected_containers)
    expected["metadata"]["annotations"] = annotations
    assert applied(case.obj, plan) == expected


def test_mirror_covers_all_twelve_upstream_cases() -> None:
    assert sorted(REACTOR) == list(range(1, 13))


@pytest.mark.parametrize("case", reactor_cases(1))
def test_behaviour_15_object_without_annotation_is_not_updated(case: ReactorCase) -> None:
    check_reactor_case(case)
    assert plan_of(case.obj, streams()).outcomes == ()


@pytest.mark.parametrize("case", reactor_cases(2, 3, 4, 5))
def test_behaviour_17_bad_path_or_missing_container_is_an_error_when_the_tag_resolves(
    case: ReactorCase,
) -> None:
    check_reactor_case(case)


@pytest.mark.parametrize("case", reactor_cases(2, 3, 4, 5))
def test_behaviour_17_bad_path_or_missing_container_is_silent_while_unresolved(
    case: ReactorCase,
) -> None:
    plan = plan_of(case.obj, streams(), namespace_allowed=allow_any_namespace)
    assert reasons(plan) == [Reason.STREAM_NOT_FOUND]
    assert not plan.needs_write


@pytest.mark.parametrize("case", reactor_cases(6, 9))
def test_behaviour_16_unresolved_or_paused_triggers_change_nothing(case: ReactorCase) -> None:
    check_reactor_case(case)


@pytest.mark.parametrize("case", reactor_cases(7, 8))
def test_behaviour_17_resolved_trigger_sets_the_container_or_init_container_image(
    case: ReactorCase,
) -> None:
    check_reactor_case(case)


def test_behaviour_17_a_name_under_containers_finds_an_init_container_as_openshift_does() -> None:
    # `oc set triggers` writes containers[?(@.name=="migrate")] for an init container too;
    # OpenShift's name lookup searches the init containers first, then the containers.
    obj = workload([trigger("app:v1", by_name("migrate"))], {"-migrate": "old", "web": "w"})
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    after = applied(obj, plan)
    pod_spec = after["spec"]["template"]["spec"]
    assert pod_spec["initContainers"] == [{"name": "migrate", "image": "new"}]
    assert pod_spec["containers"] == [{"name": "web", "image": "w"}]
    patch = build_json_patch(obj, plan.changes, annotations=plan.annotation_updates)
    assert apply_json_patch(obj, patch) == after


def test_behaviour_17_a_name_in_both_lists_moves_the_init_container_only() -> None:
    obj = workload([trigger("app:v1", by_name("same"))], {"-same": "old", "same": "old"})
    after = applied(obj, plan_of(obj, streams(("default", "app:v1", "new"))))
    pod_spec = after["spec"]["template"]["spec"]
    assert pod_spec["initContainers"] == [{"name": "same", "image": "new"}]
    assert pod_spec["containers"] == [{"name": "same", "image": "old"}]


def test_behaviour_17_a_position_counts_only_in_the_list_the_path_names() -> None:
    path = "spec.template.spec.containers[1].image"
    obj = workload([trigger("app:v1", path)], {"-a": "old", "-b": "old", "c": "old"})
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    assert reasons(plan) == [Reason.CONTAINER_NOT_FOUND]
    assert applied(obj, plan) == obj


@pytest.mark.parametrize("case", reactor_cases(10, 11, 12))
def test_behaviour_18_each_trigger_applies_independently(case: ReactorCase) -> None:
    check_reactor_case(case)


def test_behaviour_18_a_bad_trigger_does_not_hold_the_others_back() -> None:
    obj = workload(
        [trigger("app:v1", by_name("missing")), trigger("app:v1", by_name("web"))],
        {"web": " "},
    )
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.CONTAINER_NOT_FOUND, Reason.APPLIED]
    assert [c.container_name for c in plan.changes] == ["web"]


# --- behaviour 19: write only on difference; manual edits are reverted by default -------------


def test_behaviour_19_no_write_when_the_image_already_matches() -> None:
    obj = workload([trigger("app:v1", by_name("web"))], {"web": "img-1"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.UP_TO_DATE]
    assert not plan.needs_write
    assert build_json_patch(obj, plan.changes, annotations=plan.annotation_updates) == []


def test_behaviour_19_a_manual_change_of_a_triggered_image_is_reverted() -> None:
    obj = workload([trigger("app:v1", by_name("web"))], {"web": " "})
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert plan.changes == (
        ContainerChange(
            container_kind="containers",
            container_name="web",
            index=0,
            old_image=" ",
            new_image="img-1",
            trigger=plan.changes[0].trigger,
            stream_namespace="default",
            stream="app",
            tag="v1",
        ),
    )
    assert plan.outcomes[0].message == (
        'container "web" image set from " " to "img-1", the current image of'
        " ImageStreamTag default/app:v1"
    )
    assert plan.outcomes[0].resolved_image == "img-1"


def test_behaviour_19_our_own_write_plans_no_further_write() -> None:
    obj = workload([trigger("app:", by_name("web"))], {"web": " "})
    get_stream = streams(("default", "app:latest", "img-1"))
    first = plan_of(obj, get_stream)
    assert first.needs_write
    assert not plan_of(applied(obj, first), get_stream).needs_write


# --- the other reasons ------------------------------------------------------------------------


def test_behaviour_16_non_image_stream_tag_and_colonless_triggers_are_not_followed() -> None:
    docker = {"from": {"kind": "DockerImage", "name": "app:v1"}, "fieldPath": by_name("a")}
    obj = workload([docker, trigger("app", by_name("b"))], {"a": "", "b": ""})
    plan = plan_of(obj, streams(("default", "app:latest", "img-1")))
    assert reasons(plan) == [Reason.NOT_IMAGE_STREAM_TAG, Reason.INVALID_TAG_REFERENCE]
    assert not plan.needs_write


def test_behaviour_17_paths_outside_the_pod_spec_are_ignored_without_reading_streams() -> None:
    looked_up: list[tuple[str, str]] = []

    def get_stream(namespace: str, name: str) -> None:
        looked_up.append((namespace, name))

    obj = workload([trigger("app:v1", "spec.containers[0].image")], {"web": ""})
    plan = plan_of(obj, get_stream)
    assert reasons(plan) == [Reason.PATH_OUTSIDE_POD_SPEC]
    assert not Reason.PATH_OUTSIDE_POD_SPEC.is_warning
    assert looked_up == []


def test_behaviour_18_missing_stream_and_missing_tag_leave_the_container_alone() -> None:
    obj = workload(
        [trigger("gone:v1", by_name("a")), trigger("app:v2", by_name("b"))],
        {"a": "x", "b": "y"},
    )
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.STREAM_NOT_FOUND, Reason.TAG_NOT_FOUND]
    assert plan.outcomes[1].message == (
        'ImageStream default/app has no image for tag "v2"; the container is left unchanged'
    )


def test_cross_namespace_streams_are_refused_by_default_and_never_read() -> None:
    looked_up: list[tuple[str, str]] = []
    get_stream = streams(ONE)

    def recording(namespace: str, name: str) -> Mapping[str, Any] | None:
        looked_up.append((namespace, name))
        return get_stream(namespace, name)

    obj = workload([trigger("stream-1:1", by_name("test"), namespace="other")], {"test": ""})
    plan = plan_of(obj, recording)
    assert reasons(plan) == [Reason.NAMESPACE_NOT_ALLOWED]
    assert not plan.needs_write
    assert looked_up == []
    allowed = plan_of(
        obj, recording, namespace_allowed=lambda w, s, _n: (w, s) == ("default", "other")
    )
    assert reasons(allowed) == [Reason.APPLIED]


def test_behaviour_21_invalid_annotation_yields_one_outcome_and_no_write() -> None:
    obj = workload(None, {"web": ""}, annotations={TRIGGER_ANNOTATION: "[{"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.INVALID_ANNOTATION]
    assert plan.outcomes[0].message.endswith("all triggers of this object are disabled")
    assert not plan.needs_write


def test_behaviour_21_duplicate_field_paths_disable_even_the_valid_trigger() -> None:
    obj = workload([trigger("app:v1", by_name("web")), trigger("app:v1", by_name("web"))])
    assert reasons(plan_of(obj, streams(("default", "app:v1", "i")))) == [Reason.INVALID_ANNOTATION]


def test_two_triggers_on_one_container_only_the_first_applies() -> None:
    obj = workload(
        [
            trigger("a:v1", "spec.template.spec.containers[0].image", paused=True),
            trigger("b:v1", by_name("web")),
        ],
        {"web": ""},
    )
    plan = plan_of(obj, streams(("default", "a:v1", "img-a"), ("default", "b:v1", "img-b")))
    assert reasons(plan) == [Reason.PAUSED, Reason.CONTAINER_ALREADY_TARGETED]
    assert not plan.needs_write


def test_cronjob_triggers_use_the_job_template_pod_spec() -> None:
    path = 'spec.jobTemplate.spec.template.spec.containers[?(@.name=="job")].image'
    obj = workload([trigger("app:v1", path)], {"job": ""}, kind="CronJob")
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    patch = build_json_patch(obj, plan.changes)
    base = "/spec/jobTemplate/spec/template/spec/containers/0"
    assert patch[1:] == [
        {"op": "test", "path": f"{base}/name", "value": "job"},
        {"op": "test", "path": f"{base}/image", "value": ""},
        {"op": "replace", "path": f"{base}/image", "value": "img-1"},
    ]
    assert applied(obj, plan)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "job", "image": "img-1"}
    ]


@pytest.mark.parametrize("kind", ["Job", "Pod", "DeploymentConfig"])
def test_behaviour_15_other_kinds_are_refused(kind: str) -> None:
    obj = workload(None)
    obj["kind"] = kind
    with pytest.raises(UnsupportedKind):
        plan_triggers(obj, get_stream=streams())


# --- JSON Patch -------------------------------------------------------------------------------


def test_json_patch_tests_what_it_was_planned_from_then_replaces() -> None:
    obj = workload([trigger("app:v1", by_name("web", init=True))], {"-web": "old", "side": "s"})
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    patch = build_json_patch(obj, plan.changes, annotations=plan.annotation_updates)
    base = "/spec/template/spec/initContainers/0"
    assert patch == [
        {
            "op": "test",
            "path": "/metadata/annotations/image.openshift.io~1triggers",
            "value": obj["metadata"]["annotations"][TRIGGER_ANNOTATION],
        },
        {"op": "test", "path": f"{base}/name", "value": "web"},
        {"op": "test", "path": f"{base}/image", "value": "old"},
        {"op": "replace", "path": f"{base}/image", "value": "new"},
    ]
    assert apply_json_patch(obj, patch) == applied(obj, plan)


def test_json_patch_fails_instead_of_clobbering_a_concurrent_change() -> None:
    obj = workload([trigger("app:v1", by_name("web"))], {"web": "old"})
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    patch = build_json_patch(obj, plan.changes)
    concurrently = copy.deepcopy(obj)
    concurrently["spec"]["template"]["spec"]["containers"][0]["image"] = "rolled-back"
    with pytest.raises(PatchTestFailed):
        apply_json_patch(concurrently, patch)
    reordered = workload([trigger("app:v1", by_name("web"))], {"a-new": "old", "web": "old"})
    reordered["metadata"] = obj["metadata"]
    with pytest.raises(PatchTestFailed):
        apply_json_patch(reordered, patch)


def test_json_patch_adds_an_image_to_a_container_without_one() -> None:
    obj = workload([trigger("app:v1", by_name("web"))], {"web": ""})
    del obj["spec"]["template"]["spec"]["containers"][0]["image"]
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    patch = build_json_patch(obj, plan.changes)
    assert patch[-1] == {
        "op": "add",
        "path": "/spec/template/spec/containers/0/image",
        "value": "new",
    }
    assert apply_json_patch(obj, patch) == applied(obj, plan)


def test_json_pointer_escapes_slash_and_tilde() -> None:
    assert json_pointer("metadata", "annotations", "a/b~c", 0) == "/metadata/annotations/a~1b~0c/0"


def test_apply_changes_returns_a_copy() -> None:
    obj = workload([trigger("app:v1", by_name("web"))], {"web": "old"})
    before = copy.deepcopy(obj)
    plan = plan_of(obj, streams(("default", "app:v1", "new")))
    result = applied(obj, plan)
    assert obj == before
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "new"


# --- rollback awareness (opt-in) --------------------------------------------------------------

OPT_IN = {ON_MANUAL_CHANGE_ANNOTATION: "pause"}
WEB = by_name("web")


def opted_in(image: str, last_applied: Mapping[str, str] | None) -> Obj:
    annotations = dict(OPT_IN)
    if last_applied is not None:
        annotations[LAST_APPLIED_IMAGES_ANNOTATION] = json.dumps(last_applied)
    return workload([trigger("app:v1", WEB)], {"web": image}, annotations=annotations)


def last_applied_after(obj: Obj, plan: TriggerPlan) -> dict[str, str]:
    result = applied(obj, plan)["metadata"]["annotations"]
    parsed: dict[str, str] = json.loads(result[LAST_APPLIED_IMAGES_ANNOTATION])["images"]
    return parsed


def test_manual_change_pauses_the_trigger_when_opted_in() -> None:
    obj = opted_in("rolled-back", {WEB: "img-1"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.PAUSED_AFTER_MANUAL_CHANGE]
    assert plan.changes == ()
    (pause,) = plan.pauses
    assert (pause.current_image, pause.last_applied_image, pause.resolved_image) == (
        "rolled-back",
        "img-1",
        "img-2",
    )
    result = applied(obj, plan)
    (written,) = json.loads(result["metadata"]["annotations"][TRIGGER_ANNOTATION])
    assert written["paused"] is True
    assert result["spec"] == obj["spec"]
    assert last_applied_after(obj, plan) == {WEB: "rolled-back"}
    assert plan.outcomes[0].message == (
        'container "web" was changed by hand to "rolled-back" (this controller last applied'
        ' "img-1"); the trigger is paused instead of reverting it to "img-2". Set "paused":'
        " false to follow ImageStreamTag default/app:v1 again"
    )


def test_manual_change_is_reverted_without_the_opt_in() -> None:
    obj = workload(
        [trigger("app:v1", WEB)],
        {"web": "rolled-back"},
        annotations={LAST_APPLIED_IMAGES_ANNOTATION: json.dumps({WEB: "img-1"})},
    )
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.APPLIED]
    assert set(plan.annotation_updates) == set(), "without the opt-in we keep no bookkeeping"


def test_opted_in_tag_move_is_followed_and_recorded() -> None:
    obj = opted_in("img-1", {WEB: "img-1"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.APPLIED]
    assert last_applied_after(obj, plan) == {WEB: "img-2"}


def test_opted_in_without_a_record_follows_openshift_and_starts_recording() -> None:
    obj = opted_in(" ", None)
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.APPLIED]
    assert last_applied_after(obj, plan) == {WEB: "img-1"}


def test_opted_in_up_to_date_image_is_recorded_so_a_later_rollback_is_seen() -> None:
    obj = opted_in("img-1", None)
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert reasons(plan) == [Reason.UP_TO_DATE]
    assert plan.changes == ()
    assert last_applied_after(obj, plan) == {WEB: "img-1"}


def test_opted_in_records_of_removed_triggers_are_dropped() -> None:
    obj = opted_in("img-1", {WEB: "img-1", "gone": "x"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-1")))
    assert last_applied_after(obj, plan) == {WEB: "img-1"}


def test_unpausing_after_a_manual_change_follows_the_tag_again() -> None:
    get_stream = streams(("default", "app:v1", "img-2"))
    obj = opted_in("rolled-back", {WEB: "img-1"})
    paused = applied(obj, plan_of(obj, get_stream))
    assert not plan_of(paused, get_stream).needs_write
    annotations = paused["metadata"]["annotations"]
    annotations[TRIGGER_ANNOTATION] = json.dumps([trigger("app:v1", WEB, paused=False)])
    plan = plan_of(paused, get_stream)
    assert reasons(plan) == [Reason.APPLIED]
    assert plan.changes[0].new_image == "img-2"


def test_pause_patch_tests_the_annotation_and_keeps_images() -> None:
    obj = opted_in("rolled-back", {WEB: "img-1"})
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    patch = build_json_patch(obj, plan.changes, annotations=plan.annotation_updates)
    triggers = "/metadata/annotations/image.openshift.io~1triggers"
    last = "/metadata/annotations/imagestream.dev~1last-applied-images"
    assert [(op["op"], op["path"]) for op in patch] == [
        ("test", triggers),
        ("replace", triggers),
        ("test", last),
        ("replace", last),
    ]
    assert apply_json_patch(obj, patch) == applied(obj, plan)


# --- rollback awareness: who set the record, from managedFields ------------------------------

Field = tuple[str, ...]
"""An owned field of the model: `("annotation", key)` or `("image", container kind, name)`."""


def field_values(obj: Obj) -> dict[Field, object]:
    """The values of the fields the model tracks: annotations and container images."""
    values: dict[Field, object] = {
        ("annotation", key): value
        for key, value in (obj.get("metadata", {}).get("annotations") or {}).items()
    }
    pod_spec = pod_spec_at(obj, pod_spec_path(obj["kind"]))
    for container_kind in CONTAINER_KINDS:
        for container in pod_spec.get(container_kind) or []:
            values[("image", container_kind, container["name"])] = container.get("image")
    return values


def with_owners(obj: Obj, owners: Mapping[str, set[Field]]) -> Obj:
    """`obj` with managedFields saying that each manager last set `owners[manager]`."""
    result = copy.deepcopy(obj)
    entries = []
    for manager, owned in sorted(owners.items()):
        fields: dict[str, Any] = {}
        for field in sorted(owned):
            if field[0] == "annotation":
                annotations = fields.setdefault("f:metadata", {}).setdefault("f:annotations", {})
                annotations[f"f:{field[1]}"] = {}
                continue
            node = fields
            for part in pod_spec_path(obj["kind"]):
                node = node.setdefault(f"f:{part}", {})
            key = "k:" + json.dumps({"name": field[2]}, separators=(",", ":"))
            node.setdefault(f"f:{field[1]}", {})[key] = {"f:image": {}}
        entries.append({"manager": manager, "operation": "Update", "fieldsV1": fields})
    result["metadata"]["managedFields"] = entries
    return result


def owners_of(obj: Obj) -> dict[str, set[Field]]:
    """The inverse of `with_owners`, for the fields the model tracks."""
    owners: dict[str, set[Field]] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        fields = entry["fieldsV1"]
        owned = owners.setdefault(entry["manager"], set())
        for key in fields.get("f:metadata", {}).get("f:annotations", {}):
            owned.add(("annotation", key[2:]))
        node = fields
        for part in pod_spec_path(obj["kind"]):
            node = node.get(f"f:{part}", {})
        for container_kind in CONTAINER_KINDS:
            for key in node.get(f"f:{container_kind}", {}):
                owned.add(("image", container_kind, json.loads(key[2:])["name"]))
    return owners


def server_update(before: Obj, after: Obj, manager: str) -> Obj:
    """`after` as the API server stores an update of `before` by `manager`, for the fields the
    model tracks: a value it changed is `manager`'s alone, a removed one nobody's, a manager
    left with nothing is dropped (as structured-merge-diff does), a changed spec bumps the
    generation. Objects without managedFields keep none."""
    if "managedFields" not in before["metadata"]:
        return after
    old, new = field_values(before), field_values(after)
    changed = {field for field, value in new.items() if old.get(field, object()) != value}
    removed = set(old) - set(new)
    owners = {m: owned - changed - removed for m, owned in owners_of(before).items()}
    owners[manager] = owners.get(manager, set()) | changed
    result = with_owners(after, {m: owned for m, owned in owners.items() if owned})
    if before.get("spec") != after.get("spec"):
        result["metadata"]["generation"] = before["metadata"].get("generation", 0) + 1
    return result


RECORD: Field = ("annotation", LAST_APPLIED_IMAGES_ANNOTATION)
WEB_IMAGE: Field = ("image", "containers", "web")


def undone(image: str, *, record: Mapping[str, str], owners: Mapping[str, set[Field]]) -> Obj:
    """An opted-in workload at generation 5 whose record (written at generation 2) and image
    were last set by `owners`; what `kubectl rollout undo` leaves is kubectl owning both."""
    obj = opted_in(image, None)
    obj["metadata"]["generation"] = 5
    obj["metadata"]["annotations"][LAST_APPLIED_IMAGES_ANNOTATION] = json.dumps(
        {"generation": 2, "images": dict(record)}
    )
    return with_owners(obj, owners)


def test_kubectl_rollout_undo_restoring_our_record_pauses_instead_of_reverting() -> None:
    # The undo brought back image and record together: they agree, and only
    # managedFields say that kubectl, not this controller, set them.
    get_stream = streams(("default", "app:v1", "img-2"))
    obj = undone("img-1", record={WEB: "img-1"}, owners={"kubectl": {RECORD, WEB_IMAGE}})
    plan = plan_of(obj, get_stream)
    assert reasons(plan) == [Reason.PAUSED_AFTER_MANUAL_CHANGE]
    assert plan.changes == ()
    (pause,) = plan.pauses
    assert (pause.current_image, pause.last_applied_image) == ("img-1", None)
    assert "as `kubectl rollout undo` does" in plan.outcomes[0].message
    written = json.loads(plan.annotation_updates[LAST_APPLIED_IMAGES_ANNOTATION])
    assert written == {"generation": 5, "images": {WEB: "img-1"}}
    # Written, the record is ours again: nothing more to do, and unpausing follows the tag.
    paused = server_update(obj, applied(obj, plan), TRIGGER_FIELD_MANAGER)
    assert owners_of(paused)[TRIGGER_FIELD_MANAGER] == {RECORD, ("annotation", TRIGGER_ANNOTATION)}
    assert not plan_of(paused, get_stream).needs_write
    paused["metadata"]["annotations"][TRIGGER_ANNOTATION] = json.dumps(
        [trigger("app:v1", WEB, paused=False)]
    )
    assert reasons(plan_of(paused, get_stream)) == [Reason.APPLIED]


def test_a_restored_record_does_not_pause_an_image_this_controller_set() -> None:
    obj = undone(
        "img-1",
        record={WEB: "img-0"},
        owners={"kubectl": {RECORD}, TRIGGER_FIELD_MANAGER: {WEB_IMAGE}},
    )
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.APPLIED]
    assert last_applied_after(obj, plan) == {WEB: "img-2"}


def test_a_restored_record_of_an_image_already_current_is_taken_back() -> None:
    obj = undone("img-2", record={WEB: "img-2"}, owners={"kubectl": {RECORD, WEB_IMAGE}})
    get_stream = streams(("default", "app:v1", "img-2"))
    plan = plan_of(obj, get_stream)
    assert reasons(plan) == [Reason.UP_TO_DATE]
    assert plan.changes == ()
    assert json.loads(plan.annotation_updates[LAST_APPLIED_IMAGES_ANNOTATION])["generation"] == 5
    after = server_update(obj, applied(obj, plan), TRIGGER_FIELD_MANAGER)
    assert not plan_of(after, get_stream).needs_write


def test_our_record_keeps_the_rule_an_image_differing_from_it_was_changed_by_hand() -> None:
    obj = undone(
        "by-hand", record={WEB: "img-1"}, owners={TRIGGER_FIELD_MANAGER: {RECORD}, "kubectl": set()}
    )
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.PAUSED_AFTER_MANUAL_CHANGE]
    assert plan.pauses[0].last_applied_image == "img-1"


def test_a_record_of_the_earlier_form_set_by_an_earlier_version_is_trusted_and_rewritten() -> None:
    obj = with_owners(opted_in("img-1", {WEB: "img-1"}), {"imagestream-controller": {RECORD}})
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.APPLIED]
    assert last_applied_after(obj, plan) == {WEB: "img-2"}
    obj = with_owners(opted_in("img-2", {WEB: "img-2"}), {"imagestream-controller": {RECORD}})
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.UP_TO_DATE]
    assert "generation" in json.loads(plan.annotation_updates[LAST_APPLIED_IMAGES_ANNOTATION])


def test_without_managed_fields_the_record_is_trusted_as_written() -> None:
    obj = undone("img-1", record={WEB: "img-1"}, owners={})
    del obj["metadata"]["managedFields"]
    plan = plan_of(obj, streams(("default", "app:v1", "img-2")))
    assert reasons(plan) == [Reason.APPLIED]


# --- index keys and reasons -------------------------------------------------------------------


def test_behaviour_20_index_keys_name_the_streams_of_active_triggers() -> None:
    obj = workload(
        [
            trigger("app:v1", by_name("a")),
            trigger("base:", by_name("b"), namespace="shared"),
            trigger("app:v2", by_name("c")),
            trigger("paused:v1", by_name("d"), paused=True),
            {"from": {"kind": "DockerImage", "name": "docker:v1"}, "fieldPath": by_name("e")},
            trigger("colonless", by_name("f")),
        ]
    )
    assert index_keys(obj) == {"default/app", "shared/base"}
    assert index_keys(workload(None)) == set()
    assert index_keys(workload(None, annotations={TRIGGER_ANNOTATION: "oops"})) == set()


def test_reasons_are_unique_camel_case_constants() -> None:
    values = [reason.value for reason in Reason]
    assert len(set(values)) == len(values)
    assert all(value[0].isupper() and value.isalnum() for value in values)
    assert str(Reason.APPLIED) == "Applied"
    assert not Reason.APPLIED.is_warning
    assert Reason.INVALID_ANNOTATION.is_warning


# --- property: applying a plan and planning again writes nothing ------------------------------

NAMESPACES = ("default", "other")
IMAGES = ("img-a", "img-b", "img-c")


def mostly(common: Any, *rare: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([common] * 6 + list(rare))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Obj, Getter, bool]:
    """A workload with up to four triggers, its streams, and whether any namespace may
    trigger it. Skewed towards triggers that resolve and containers that exist, so that
    changes and pauses are common, with every failure reason still reachable."""
    kind = draw(st.sampled_from(["StatefulSet", "Deployment", "DaemonSet", "CronJob"]))
    prefix = ".".join(pod_spec_path(kind)) + "."
    images = st.sampled_from(["", " ", "manual", *IMAGES])
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, min_size=1, max_size=3))
    init_names = draw(st.lists(st.sampled_from(["a", "i"]), unique=True, max_size=2))
    containers = {name: draw(images) for name in names}
    containers |= {f"-{name}": draw(images) for name in init_names}
    valid_paths = [
        *(f'{prefix}containers[?(@.name=="{n}")].image' for n in names),
        *(f'{prefix}initContainers[?(@.name=="{n}")].image' for n in init_names),
        f"{prefix}containers[0].image",
    ]
    odd_paths = [
        f'{prefix}containers[?(@.name=="zz")].image',
        f"{prefix}initContainers[3].image",
        f"{prefix}containers[x].image",
        "spec.containers[0].image",
    ]
    field_path = st.sampled_from(valid_paths) | st.sampled_from(odd_paths)
    entries = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "from": st.fixed_dictionaries(
                        {
                            "kind": mostly("ImageStreamTag", "DockerImage"),
                            "name": mostly("s1:v1", "s1:", "s2:v1", "s1"),
                            "namespace": mostly("", "default", "other"),
                        }
                    ),
                    "fieldPath": field_path,
                    "paused": mostly(False, True),
                }
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda entry: entry["fieldPath"],
        )
    )
    annotations = {}
    if draw(st.booleans()):
        annotations[ON_MANUAL_CHANGE_ANNOTATION] = "pause"
    if draw(st.booleans()):
        records = draw(st.dictionaries(st.sampled_from(valid_paths), images, max_size=3))
        if draw(st.booleans()):  # the current form; else the earlier one
            records = {"generation": draw(st.integers(1, 9)), "images": records}
        annotations[LAST_APPLIED_IMAGES_ANNOTATION] = json.dumps(records)
    obj = workload(entries, containers, kind=kind, annotations=annotations)
    obj["metadata"]["generation"] = draw(st.integers(1, 9))
    if draw(st.booleans()):  # who set what last, as managedFields say
        fields = sorted(field_values(obj))
        owners = {
            manager: set(draw(st.lists(st.sampled_from(fields), max_size=len(fields))))
            for manager in (TRIGGER_FIELD_MANAGER, "kubectl")
        }
        obj = with_owners(obj, owners)
    tags = [
        (namespace, name) for namespace in NAMESPACES for name in ("s1:v1", "s1:latest", "s2:v1")
    ]
    refs = draw(st.dictionaries(st.sampled_from(tags), st.sampled_from(IMAGES), min_size=2))
    return (
        obj,
        streams(*((ns, name, ref) for (ns, name), ref in refs.items())),
        draw(st.booleans()),
    )


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_property_applying_a_plan_then_planning_again_writes_nothing(
    world: tuple[Obj, Getter, bool],
) -> None:
    obj, get_stream, any_namespace = world
    options: dict[str, Any] = {"namespace_allowed": allow_any_namespace} if any_namespace else {}
    plan = plan_of(obj, get_stream, **options)
    result = applied(obj, plan)
    patch = build_json_patch(obj, plan.changes, annotations=plan.annotation_updates)
    assert apply_json_patch(obj, patch) == result
    assert (patch == []) is (not plan.needs_write)
    # What the API server stores: our changed values are ours now (managedFields).
    again = plan_of(server_update(obj, result, TRIGGER_FIELD_MANAGER), get_stream, **options)
    assert again.changes == ()
    assert again.pauses == ()
    assert not again.needs_write
    assert len(plan.outcomes) == len(json.loads(obj["metadata"]["annotations"][TRIGGER_ANNOTATION]))
