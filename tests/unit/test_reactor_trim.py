"""What the workload caches keep of an object (controller.triggers.reactors, `trim`)."""

from __future__ import annotations

import json
from typing import Any

from controller.triggers.annotations import TRIGGER_ANNOTATION
from controller.triggers.reactors import REACTORS

DEPLOYMENTS = next(r for r in REACTORS if r.resource.plural == "deployments")
DEPLOYMENTCONFIGS = next(r for r in REACTORS if r.resource.plural == "deploymentconfigs")
TRIGGERS = json.dumps(
    [
        {
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="main")].image',
        }
    ]
)


def _deployment(annotations: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "web",
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "9",
        "generation": 3,
        "labels": {"app": "web"},
        "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {}}],
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "main", "image": "a:1", "ports": []}]}},
        },
        "status": {"replicas": 2},
    }


def test_an_object_without_triggers_is_not_kept() -> None:
    """Half of 100,000 Deployments have no triggers: the cache holds nothing of them."""
    assert DEPLOYMENTS.trim(_deployment({"team": "web"})) is None
    assert DEPLOYMENTS.trim(_deployment(None)) is None


def test_a_deploymentconfig_without_triggers_is_kept() -> None:
    """DeploymentConfigs are few, and their rollouts read every annotation."""
    dc = _deployment({"team": "web"}) | {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "a:1"}]}}},
    }
    kept = DEPLOYMENTCONFIGS.trim(dc)
    assert kept is not None
    assert kept["metadata"]["annotations"] == {"team": "web"}


def test_a_triggered_object_keeps_its_images_and_triggers() -> None:
    kept = DEPLOYMENTS.trim(_deployment({TRIGGER_ANNOTATION: TRIGGERS, "team": "web"}))
    assert kept["metadata"]["annotations"] == {TRIGGER_ANNOTATION: TRIGGERS}
    assert kept["spec"] == {
        "template": {"spec": {"containers": [{"name": "main", "image": "a:1"}]}}
    }
    assert DEPLOYMENTS.follows(kept) == {"ns/app"}


def test_adding_the_annotation_wakes_the_object() -> None:
    """Its watch event finds no cached copy: the object is new to the trigger loop."""
    triggered = DEPLOYMENTS.trim(_deployment({TRIGGER_ANNOTATION: TRIGGERS}))
    assert triggered is not None
    assert DEPLOYMENTS.needs_reconcile(None, triggered)
    touched = DEPLOYMENTS.trim(_deployment({TRIGGER_ANNOTATION: TRIGGERS}) | {"status": {}})
    assert touched is not None
    assert not DEPLOYMENTS.needs_reconcile(triggered, touched)  # nothing a trigger reads moved


def test_cached_objects_share_their_repeated_strings() -> None:
    """The cache of 100,000 objects keeps one copy of a namespace, an image or a triggers
    annotation, not one per object (JSON decoding makes a new string for each)."""
    first, second = (
        DEPLOYMENTS.trim(json.loads(json.dumps(_deployment({TRIGGER_ANNOTATION: TRIGGERS}))))
        for _ in range(2)
    )
    for kept in (first, second):
        assert kept["metadata"]["annotations"] == {TRIGGER_ANNOTATION: TRIGGERS}
    assert first["metadata"]["namespace"] is second["metadata"]["namespace"]
    assert (
        first["metadata"]["annotations"][TRIGGER_ANNOTATION]
        is second["metadata"]["annotations"][TRIGGER_ANNOTATION]
    )
    image = "spec", "template", "spec", "containers"
    first_container, second_container = (
        kept[image[0]][image[1]][image[2]][image[3]][0] for kept in (first, second)
    )
    assert first_container["image"] is second_container["image"]
    assert first["kind"] is second["kind"]
