"""DeploymentConfig ImageChange triggers (docs/openshift-behaviours.md#behaviour-22 and
docs/openshift-behaviours.md#behaviour-24; cases 7.3.N are those of OpenShift's
TestDeploymentConfigReactor)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.triggers.deploymentconfigs import (
    DeploymentConfigPlan,
    apply_deploymentconfig_plan,
    build_deploymentconfig_json_patch,
    index_keys,
    plan_deploymentconfig,
)
from controller.triggers.outcomes import Reason, allow_any_namespace
from tests.unit.test_triggers_plan import (
    Getter,
    Obj,
    PatchTestFailed,
    apply_json_patch,
    streams,
)


def params(
    name: str,
    container_names: list[str],
    *,
    automatic: bool = True,
    last: str | None = None,
    namespace: str = "other",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "automatic": automatic,
        "from": {"kind": "ImageStreamTag", "name": name, "namespace": namespace},
        "containerNames": container_names,
    }
    if last is not None:
        entry["lastTriggeredImage"] = last
    return entry


def deployment_config(
    triggers: list[dict[str, Any]] | None,
    containers: Mapping[str, str] | None = None,
    *,
    init_containers: Mapping[str, str] | None = None,
) -> Obj:
    """OpenShift's `testDeploymentConfig`: one ImageChange trigger per params entry."""
    dc: Obj = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": "test", "namespace": "default"},
        "spec": {},
    }
    if triggers is not None:
        dc["spec"]["triggers"] = [{"type": "ImageChange", "imageChangeParams": p} for p in triggers]
        pod_spec: dict[str, Any] = {
            "containers": [{"name": n, "image": i} for n, i in sorted((containers or {}).items())]
        }
        if init_containers:
            pod_spec["initContainers"] = [
                {"name": n, "image": i} for n, i in sorted(init_containers.items())
            ]
        dc["spec"]["template"] = {"spec": pod_spec}
    return dc


def plan_of(dc: Obj, get_stream: Getter, **options: Any) -> DeploymentConfigPlan:
    before = copy.deepcopy(dc)
    options.setdefault("namespace_allowed", allow_any_namespace)
    plan = plan_deploymentconfig(dc, get_stream=get_stream, **options)
    assert dc == before, "the planner must not mutate its input"
    return plan


def reasons(plan: DeploymentConfigPlan) -> list[Reason]:
    return [outcome.reason for outcome in plan.outcomes]


# --- 7.3: OpenShift's TestDeploymentConfigReactor ---------------------------------------------

ONE = ("other", "stream-1:1", "image-lookup-1")
ONE_MOVED = ("other", "stream-1:1", "image-lookup-2")
TWO = ("other", "stream-2:1", "image-lookup-2")


@dataclass(frozen=True)
class ReactorCase:
    title: str
    obj: Obj
    tags: tuple[tuple[str, str, str], ...] = ()
    expected: Obj | None = None
    """The DeploymentConfig after the write; None: no write."""


REACTOR: dict[int, ReactorCase] = {
    1: ReactorCase("no triggers", deployment_config(None)),
    2: ReactorCase(
        "no container, lastTriggeredImage set",
        deployment_config([params("stream-1:1", ["test"])]),
        tags=(ONE,),
        expected=deployment_config([params("stream-1:1", ["test"], last="image-lookup-1")]),
    ),
    3: ReactorCase(
        "no container, second run",
        deployment_config([params("stream-1:1", ["test"], last="image-lookup-1")]),
        tags=(ONE_MOVED,),
        expected=deployment_config([params("stream-1:1", ["test"], last="image-lookup-2")]),
    ),
    4: ReactorCase(
        "no ref, no change",
        deployment_config([params("stream-1:1", ["test"])], {"test": ""}),
    ),
    5: ReactorCase(
        "resolved in another namespace",
        deployment_config([params("stream-1:1", ["test"])], {"test": ""}),
        tags=(ONE,),
        expected=deployment_config(
            [params("stream-1:1", ["test"], last="image-lookup-1")], {"test": "image-lookup-1"}
        ),
    ),
    6: ReactorCase(
        "not automatic",
        deployment_config([params("stream-1:1", ["test"], automatic=False)], {"test": ""}),
        tags=(ONE,),
    ),
    7: ReactorCase(
        "second trigger unresolved and never triggered",
        deployment_config(
            [params("stream-1:1", ["test"]), params("stream-2:1", ["test2"])],
            {"test": "", "test2": ""},
        ),
        tags=(ONE,),
    ),
    8: ReactorCase(
        "second trigger unresolved but triggered before",
        deployment_config(
            [params("stream-1:1", ["test"]), params("stream-2:1", ["test2"], last="old-image")],
            {"test": "", "test2": "old-image"},
        ),
        tags=(ONE,),
        expected=deployment_config(
            [
                params("stream-1:1", ["test"], last="image-lookup-1"),
                params("stream-2:1", ["test2"], last="old-image"),
            ],
            {"test": "image-lookup-1", "test2": "old-image"},
        ),
    ),
    9: ReactorCase(
        "second trigger's tag moved",
        deployment_config(
            [
                params("stream-1:1", ["test"], last="old-image"),
                params("stream-2:1", ["test2"], last="image-lookup-1"),
            ],
            {"test": "old-image", "test2": "image-lookup-1"},
        ),
        tags=(TWO,),
        expected=deployment_config(
            [
                params("stream-1:1", ["test"], last="old-image"),
                params("stream-2:1", ["test2"], last="image-lookup-2"),
            ],
            {"test": "old-image", "test2": "image-lookup-2"},
        ),
    ),
    10: ReactorCase(
        "the only trigger cannot resolve",
        deployment_config(
            [params("stream-1:1", ["test"])], {"test": "", "test2": "image-lookup-1"}
        ),
        tags=(TWO,),
    ),
    11: ReactorCase(
        "one cannot resolve, the other can",
        deployment_config(
            [
                params("stream-1:1", ["test"]),
                params("stream-2:1", ["test2"], last="image-lookup-1"),
            ],
            {"test": ""},
        ),
        tags=(TWO,),
    ),
    12: ReactorCase(
        "two triggers on the same tag",
        deployment_config(
            [params("stream-1:1", ["test"]), params("stream-1:1", ["test2"])],
            {"test": "", "test2": ""},
        ),
        tags=(ONE,),
        expected=deployment_config(
            [
                params("stream-1:1", ["test"], last="image-lookup-1"),
                params("stream-1:1", ["test2"], last="image-lookup-1"),
            ],
            {"test": "image-lookup-1", "test2": "image-lookup-1"},
        ),
    ),
    13: ReactorCase(
        "two triggers on the same tag, second run",
        deployment_config(
            [
                params("stream-1:1", ["test"], last="image-lookup-1"),
                params("stream-1:1", ["test2"], last="image-lookup-1"),
            ],
            {"test": "image-lookup-1", "test2": "image-lookup-1"},
        ),
        tags=(ONE_MOVED,),
        expected=deployment_config(
            [
                params("stream-1:1", ["test"], last="image-lookup-2"),
                params("stream-1:1", ["test2"], last="image-lookup-2"),
            ],
            {"test": "image-lookup-2", "test2": "image-lookup-2"},
        ),
    ),
    14: ReactorCase(
        "one trigger, two containers",
        deployment_config([params("stream-1:1", ["test", "test2"])], {"test": "", "test2": ""}),
        tags=(ONE,),
        expected=deployment_config(
            [params("stream-1:1", ["test", "test2"], last="image-lookup-1")],
            {"test": "image-lookup-1", "test2": "image-lookup-1"},
        ),
    ),
    15: ReactorCase(
        "one trigger, two containers, second run",
        deployment_config(
            [params("stream-1:1", ["test", "test2"], last="image-lookup-1")],
            {"test": "image-lookup-1", "test2": "image-lookup-1"},
        ),
        tags=(ONE_MOVED,),
        expected=deployment_config(
            [params("stream-1:1", ["test", "test2"], last="image-lookup-2")],
            {"test": "image-lookup-2", "test2": "image-lookup-2"},
        ),
    ),
}


def reactor_cases(*numbers: int) -> list[Any]:
    return [pytest.param(REACTOR[n], id=f"7.3.{n} {REACTOR[n].title}") for n in numbers]


def check_reactor_case(case: ReactorCase) -> DeploymentConfigPlan:
    plan = plan_of(case.obj, streams(*case.tags))
    if case.expected is None:
        assert not plan.needs_write
        assert build_deploymentconfig_json_patch(case.obj, plan) == []
        return plan
    result = apply_deploymentconfig_plan(case.obj, plan)
    assert result == case.expected
    patch = build_deploymentconfig_json_patch(case.obj, plan)
    assert apply_json_patch(case.obj, patch) == result
    assert not plan_of(result, streams(*case.tags)).needs_write
    return plan


def test_mirror_covers_all_fifteen_upstream_cases() -> None:
    assert sorted(REACTOR) == list(range(1, 16))


@pytest.mark.parametrize("case", reactor_cases(1))
def test_behaviour_22_no_triggers_no_update(case: ReactorCase) -> None:
    assert check_reactor_case(case).outcomes == ()


@pytest.mark.parametrize("case", reactor_cases(2, 3, 5, 12, 13, 14, 15))
def test_behaviour_22_automatic_triggers_set_containers_and_last_triggered_image(
    case: ReactorCase,
) -> None:
    plan = check_reactor_case(case)
    assert set(reasons(plan)) == {Reason.APPLIED}


@pytest.mark.parametrize("case", reactor_cases(4, 7, 10, 11))
def test_behaviour_22_no_write_at_all_while_an_automatic_trigger_has_no_image(
    case: ReactorCase,
) -> None:
    plan = check_reactor_case(case)
    assert Reason.STREAM_NOT_FOUND in reasons(plan)


@pytest.mark.parametrize("case", reactor_cases(8, 9))
def test_behaviour_22_unresolved_trigger_with_a_last_image_does_not_block(
    case: ReactorCase,
) -> None:
    check_reactor_case(case)


@pytest.mark.parametrize("case", reactor_cases(6))
def test_behaviour_24_automatic_false_never_changes_anything(case: ReactorCase) -> None:
    plan = check_reactor_case(case)
    assert reasons(plan) == [Reason.NOT_AUTOMATIC]
    assert index_keys(case.obj) == set()


# --- outcomes ---------------------------------------------------------------------------------


def test_behaviour_22_blocked_outcomes_say_who_waits_for_whom() -> None:
    plan = check_reactor_case(REACTOR[7])
    assert reasons(plan) == [Reason.WAITING_FOR_OTHER_TRIGGERS, Reason.STREAM_NOT_FOUND]
    assert plan.outcomes[0].resolved_image == "image-lookup-1"
    assert plan.outcomes[0].message == (
        '"image-lookup-1" is not written yet: spec.triggers[1] (ImageStreamTag'
        " other/stream-2:1) has no image yet"
    )
    assert plan.outcomes[1].message == (
        "ImageStream other/stream-2 not found and the trigger has no lastTriggeredImage yet;"
        " no image of this DeploymentConfig is updated until it resolves"
    )


def test_behaviour_22_unknown_container_names_are_ignored_and_reported() -> None:
    plan = check_reactor_case(REACTOR[2])
    assert plan.outcomes[0].message == (
        'lastTriggeredImage set to "image-lookup-1", the current image of ImageStreamTag'
        ' other/stream-1:1; there is no container named "test"'
    )


def test_behaviour_22_init_containers_are_set_too() -> None:
    dc = deployment_config(
        [params("stream-1:1", ["web"])], {"web": ""}, init_containers={"web": " "}
    )
    plan = plan_of(dc, streams(ONE))
    result = apply_deploymentconfig_plan(dc, plan)
    pod_spec = result["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["image"] == pod_spec["initContainers"][0]["image"]
    assert pod_spec["initContainers"][0]["image"] == "image-lookup-1"


def test_behaviour_22_an_edited_image_is_restored_from_last_triggered_image() -> None:
    dc = deployment_config([params("stream-1:1", ["test"], last="image-lookup-1")], {"test": " "})
    plan = plan_of(dc, streams())
    assert reasons(plan) == [Reason.REAPPLIED_LAST_TRIGGERED_IMAGE]
    assert plan.last_triggered_images == ()
    assert [u.new_image for u in plan.container_images] == ["image-lookup-1"]
    restored = apply_deploymentconfig_plan(dc, plan)
    assert reasons(plan_of(restored, streams())) == [Reason.STREAM_NOT_FOUND]


def test_from_kind_defaults_to_image_stream_tag_and_namespace_to_the_dcs() -> None:
    entry = params("app:v1", ["web"])
    entry["from"] = {"name": "app:v1"}
    dc = deployment_config([entry], {"web": ""})
    plan = plan_deploymentconfig(dc, get_stream=streams(("default", "app:v1", "img")))
    assert reasons(plan) == [Reason.APPLIED]
    assert plan.outcomes[0].source == "ImageStreamTag default/app:v1"
    assert index_keys(dc) == {"default/app"}


def test_other_from_kinds_are_skipped_without_blocking() -> None:
    docker = params("quay.io/x:1", ["a"])
    docker["from"]["kind"] = "DockerImage"
    dc = deployment_config([docker, params("stream-1:1", ["b"])], {"a": "", "b": ""})
    plan = plan_of(dc, streams(ONE))
    assert reasons(plan) == [Reason.NOT_IMAGE_STREAM_TAG, Reason.APPLIED]
    assert index_keys(dc) == {"other/stream-1"}


def test_cross_namespace_denial_is_unresolved_and_blocks_without_a_last_image() -> None:
    dc = deployment_config([params("stream-1:1", ["test"])], {"test": ""})
    plan = plan_deploymentconfig(dc, get_stream=streams(ONE))
    assert reasons(plan) == [Reason.NAMESPACE_NOT_ALLOWED]
    assert not plan.needs_write


def test_behaviour_24_rollout_latest_resolves_manual_triggers_once() -> None:
    case = REACTOR[6]
    plan = plan_of(case.obj, streams(ONE), include_manual=True)
    assert reasons(plan) == [Reason.APPLIED]
    assert "manual trigger, resolved on request" in plan.outcomes[0].message
    result = apply_deploymentconfig_plan(case.obj, plan)
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "image-lookup-1"
    manual = result["spec"]["triggers"][0]["imageChangeParams"]
    assert (manual["automatic"], manual["lastTriggeredImage"]) == (False, "image-lookup-1")


def test_behaviour_24_rollout_latest_with_an_unresolved_manual_trigger_writes_nothing() -> None:
    dc = deployment_config(
        [params("stream-1:1", ["a"]), params("stream-2:1", ["b"], automatic=False)],
        {"a": "", "b": ""},
    )
    assert plan_of(dc, streams(ONE)).needs_write
    assert not plan_of(dc, streams(ONE), include_manual=True).needs_write


def test_index_keys_name_automatic_image_stream_tag_streams_even_without_containers() -> None:
    dc = deployment_config(
        [
            params("stream-1:1", ["missing"]),
            params("base:", ["b"], namespace=""),
            params("manual:1", ["c"], automatic=False),
            params("colonless", ["d"]),
        ]
    )
    assert index_keys(dc) == {"other/stream-1", "default/base"}
    assert index_keys(deployment_config(None)) == set()


# --- JSON Patch -------------------------------------------------------------------------------


def test_json_patch_tests_the_triggers_and_the_containers_it_planned_from() -> None:
    case = REACTOR[5]
    plan = plan_of(case.obj, streams(ONE))
    patch = build_deploymentconfig_json_patch(case.obj, plan)
    assert patch == [
        {"op": "test", "path": "/spec/triggers", "value": case.obj["spec"]["triggers"]},
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "test"},
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": ""},
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": "image-lookup-1",
        },
        {
            "op": "add",
            "path": "/spec/triggers/0/imageChangeParams/lastTriggeredImage",
            "value": "image-lookup-1",
        },
    ]
    retargeted = copy.deepcopy(case.obj)
    retargeted["spec"]["triggers"][0]["imageChangeParams"]["from"]["name"] = "stream-1:2"
    with pytest.raises(PatchTestFailed):
        apply_json_patch(retargeted, patch)


# --- property: applying a plan and planning again writes nothing ------------------------------


@st.composite
def deployment_configs(draw: st.DrawFn) -> tuple[Obj, Getter, bool]:
    names = ["a", "b", "c"]
    images = st.sampled_from(["", " ", "img-a", "img-b"])
    triggers = draw(
        st.lists(
            st.builds(
                params,
                st.sampled_from(["s1:v1", "s2:v1", "s1:", "s1"]),
                st.lists(st.sampled_from(names), max_size=2),
                automatic=st.sampled_from([True, True, True, False]),
                last=st.none() | images,
                namespace=st.sampled_from(["", "other"]),
            ),
            max_size=3,
        )
    )
    containers = draw(st.dictionaries(st.sampled_from(names), images, max_size=3))
    init_containers = draw(st.dictionaries(st.sampled_from(names), images, max_size=2))
    refs = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(["default", "other"]), st.sampled_from(["s1:v1", "s2:v1"])),
            st.sampled_from(["img-a", "img-b", "img-c"]),
        )
    )
    dc = deployment_config(triggers, containers, init_containers=init_containers)
    get_stream = streams(*((ns, name, ref) for (ns, name), ref in refs.items()))
    return dc, get_stream, draw(st.booleans())


@settings(max_examples=100, deadline=None)
@given(deployment_configs())
def test_property_applying_a_plan_then_planning_again_writes_nothing(
    world: tuple[Obj, Getter, bool],
) -> None:
    dc, get_stream, include_manual = world
    plan = plan_of(dc, get_stream, include_manual=include_manual)
    result = apply_deploymentconfig_plan(dc, plan)
    patch = build_deploymentconfig_json_patch(dc, plan)
    assert apply_json_patch(dc, patch) == result
    assert (patch == []) is (not plan.needs_write)
    assert not plan_of(result, get_stream, include_manual=include_manual).needs_write
