"""Reading who set a workload's images and annotations last from managedFields (issue 14,
point 7), in the FieldsV1 form kube-apiserver v1.37 writes (measured after a real
`kubectl rollout undo`)."""

from __future__ import annotations

from typing import Any

from controller.triggers.ownership import (
    TRIGGER_FIELD_MANAGER,
    UNKNOWN,
    Ownership,
    ownership,
    trim_managed_fields,
)
from controller.triggers.podspec import POD_SPEC_PATHS


def entry(manager: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    value: dict[str, Any] = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource:
        value["subresource"] = subresource
    return value


OURS_ON_A_DEPLOYMENT = {
    "f:metadata": {"f:annotations": {"f:imagestream.dev/last-applied-images": {}}},
    "f:spec": {
        "f:template": {
            "f:spec": {
                "f:containers": {'k:{"name":"main"}': {"f:image": {}}},
                "f:initContainers": {'k:{"name":"init"}': {".": {}, "f:image": {}}},
            }
        }
    },
}


def test_the_trigger_managers_images_and_annotations_are_read() -> None:
    obj = {
        "metadata": {
            "managedFields": [
                entry("kubectl", {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}),
                entry(TRIGGER_FIELD_MANAGER, OURS_ON_A_DEPLOYMENT),
                entry(TRIGGER_FIELD_MANAGER, {"f:status": {"f:x": {}}}, subresource="status"),
            ]
        }
    }
    assert ownership(obj, pod_spec_path=POD_SPEC_PATHS["Deployment"]) == Ownership(
        known=True,
        annotations=frozenset({"imagestream.dev/last-applied-images"}),
        images=frozenset({("containers", "main"), ("initContainers", "init")}),
    )


def test_a_cronjob_keeps_its_pod_spec_deeper() -> None:
    fields = {
        "f:spec": {
            "f:jobTemplate": {
                "f:spec": {
                    "f:template": {"f:spec": {"f:containers": {'k:{"name":"a"}': {"f:image": {}}}}}
                }
            }
        }
    }
    obj = {"metadata": {"managedFields": [entry(TRIGGER_FIELD_MANAGER, fields)]}}
    owned = ownership(obj, pod_spec_path=POD_SPEC_PATHS["CronJob"])
    assert owned.images == {("containers", "a")}


def test_other_managers_and_odd_entries_own_nothing_of_ours() -> None:
    odd: list[Any] = [
        None,
        "x",
        entry("kubectl", OURS_ON_A_DEPLOYMENT),
        {"manager": TRIGGER_FIELD_MANAGER, "fieldsV1": "not a map"},
        entry(
            TRIGGER_FIELD_MANAGER,
            {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:[": {}, "v:1": {}}}}}},
        ),
    ]
    owned = ownership({"metadata": {"managedFields": odd}}, pod_spec_path=("spec",))
    assert owned == Ownership(known=True)


def test_without_managed_fields_ownership_is_unknown() -> None:
    assert ownership({"metadata": {}}, pod_spec_path=("spec",)) is UNKNOWN
    assert trim_managed_fields({}) is None


def test_the_cache_keeps_only_the_trigger_managers_entries() -> None:
    ours = entry(TRIGGER_FIELD_MANAGER, OURS_ON_A_DEPLOYMENT)
    metadata = {
        "managedFields": [
            entry("kubectl", {"f:spec": {}}),
            ours,
            entry(TRIGGER_FIELD_MANAGER, {}, subresource="status"),
        ]
    }
    assert trim_managed_fields(metadata) == [ours]
    assert trim_managed_fields({"managedFields": [entry("kubectl", {})]}) == []
