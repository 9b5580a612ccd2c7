"""`imagestream set triggers`'s decisions: oc's flags, its trigger model and what it writes.

Expected values from openshift/oc pkg/cli/set/triggers.go (and Go's encoding/json of
library-go's ObjectFieldTrigger for the annotation bytes).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from imagestream.cli.common import CommandError
from imagestream.cli.setcmd import (
    ImageTrigger,
    TriggerDefinition,
    apply_annotation,
    definition_of,
    deploymentconfig_triggers,
    parse_trigger_flags,
    trigger_table,
    update,
)

Obj = dict[str, Any]
WEB = 'spec.template.spec.containers[?(@.name=="web")].image'


def flags(**given: Any) -> argparse.Namespace:
    values = {
        "from_image": None,
        "containers": None,
        "from_config": False,
        "auto": False,
        "manual": False,
        "remove": False,
        "remove_all": False,
    }
    return argparse.Namespace(**(values | given))


def deployment(annotation: object = None, *, paused: bool = False) -> Obj:
    metadata: Obj = {"name": "web", "namespace": "me"}
    if annotation is not None:
        metadata["annotations"] = {"image.openshift.io/triggers": json.dumps(annotation)}
    return {
        "metadata": metadata,
        "spec": {
            "paused": paused,
            "template": {
                "spec": {
                    "initContainers": [{"name": "init", "image": " "}],
                    "containers": [{"name": "web", "image": " "}, {"name": "side", "image": " "}],
                }
            },
        },
    }


def test_flags_as_oc_reads_them() -> None:
    parsed = parse_trigger_flags(flags(from_image="other/app:v1", containers="web,side"), "me")
    assert (parsed.from_image, parsed.from_image_namespace, parsed.auto) == (
        "app:v1",
        "other",
        True,
    )
    assert parsed.containers == ("web", "side")
    assert parse_trigger_flags(flags(from_image="me/app:v1"), "me").from_image_namespace == ""
    assert parse_trigger_flags(flags(), "me").print_table
    assert parse_trigger_flags(flags(manual=True), "me").reset
    for given, words in (
        ({"from_image": "quay.io/app:v1"}, "image stream tag on this server"),
        ({"from_image": "app"}, "must include the tag"),
        ({"auto": True, "manual": True}, "at most one of --auto or --manual"),
        ({"remove": True, "remove_all": True}, "either --remove or --remove-all"),
        ({"remove_all": True, "auto": True}, "--remove-all may not be used"),
        ({"remove": True}, "--remove requires a flag"),
        ({"from_config": True, "from_image": "a:b"}, "one trigger type at a time"),
    ):
        with pytest.raises(CommandError, match=words):
            parse_trigger_flags(flags(**given), "me")


def test_reading_triggers_keeps_what_names_a_container() -> None:
    obj = deployment(
        [
            {
                "from": {"kind": "ImageStreamTag", "name": "app:v1", "namespace": "me"},
                "fieldPath": WEB,
            },
            {
                "from": {"kind": "ImageStreamTag", "name": "db:1", "namespace": "shared"},
                "fieldPath": 'spec.template.spec.initContainers[?(@.name=="init")].image',
                "paused": True,
            },
            {
                "from": {"kind": "ImageStreamTag", "name": "x:1"},
                "fieldPath": "spec.template.spec.containers[5].image",
            },
            {"from": {"kind": "ImageStreamTag", "name": "x:1"}, "fieldPath": "spec.nothing"},
        ],
        paused=True,
    )
    assert definition_of(obj, "Deployment") == TriggerDefinition(
        config_change=False,
        images=(
            ImageTrigger(source="app:v1", namespace="", auto=True, names=("web",)),
            ImageTrigger(source="db:1", namespace="shared", auto=False, names=("init",)),
        ),
    )


def test_the_annotation_oc_writes() -> None:
    definition = update(
        definition_of(deployment(), "Deployment"),
        parse_trigger_flags(flags(from_image="app:v1", containers="web"), "me"),
    )
    change = apply_annotation(deployment(), "Deployment", definition)
    assert change.ops == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {
                "image.openshift.io/triggers": (
                    '[{"from":{"kind":"ImageStreamTag","name":"app:v1"},'
                    '"fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]'
                )
            },
        }
    ]
    # Manual, another namespace, an init container; and --manual pauses the Deployment.
    other = update(
        definition,
        parse_trigger_flags(flags(from_image="shared/db:1", containers="init", manual=True), "me"),
    )
    value = apply_annotation(deployment(), "Deployment", other).ops[0]["value"]
    assert json.loads(value["image.openshift.io/triggers"])[1] == {
        "from": {"kind": "ImageStreamTag", "name": "db:1", "namespace": "shared"},
        "fieldPath": 'spec.template.spec.initContainers[?(@.name=="init")].image',
        "paused": True,
    }
    reset = update(definition, parse_trigger_flags(flags(manual=True), "me"))
    ops = apply_annotation(deployment(), "Deployment", reset).ops
    assert {"op": "add", "path": "/spec/paused", "value": True} in ops
    # Removing the last trigger leaves Go's encoding of an empty list.
    removed = update(definition, parse_trigger_flags(flags(remove=True, from_image="app:v1"), "me"))
    assert apply_annotation(deployment(), "Deployment", removed).ops[0]["value"] == {
        "image.openshift.io/triggers": "null"
    }


def test_what_oc_refuses_to_write() -> None:
    for definition, words in (
        (TriggerDefinition(images=(ImageTrigger("a:1", "", True, ()),)), "specify --containers"),
        (
            TriggerDefinition(images=(ImageTrigger("a:1", "", True, ("x",)),)),
            "not all container names exist: x",
        ),
        (
            TriggerDefinition(
                images=(
                    ImageTrigger("a:1", "", True, ("web",)),
                    ImageTrigger("b:1", "", True, ("web",)),
                )
            ),
            "only one trigger may reference each container: web",
        ),
    ):
        with pytest.raises(CommandError, match=words):
            apply_annotation(deployment(), "Deployment", definition)


def test_deploymentconfig_triggers() -> None:
    kept = {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": True,
            "containerNames": ["web"],
            "from": {"kind": "ImageStreamTag", "name": "app:v1"},
            "lastTriggeredImage": "r/app@sha256:1",
        },
    }
    dc = {
        "metadata": {"namespace": "me"},
        "spec": {
            "triggers": [kept, {"type": "ConfigChange"}],
            "template": {"spec": {"containers": [{"name": "web"}, {"name": "side"}]}},
        },
    }
    definition = update(
        definition_of(dc, "DeploymentConfig"),
        parse_trigger_flags(flags(from_image="db:2", containers="side", manual=True), "me"),
    )
    assert deploymentconfig_triggers(dc, definition) == [
        kept,
        {"type": "ConfigChange"},
        {
            "type": "ImageChange",
            "imageChangeParams": {
                "automatic": False,
                "from": {"kind": "ImageStreamTag", "name": "db:2"},
                "containerNames": ["side"],
            },
        },
    ]


def test_the_table() -> None:
    definition = TriggerDefinition(
        config_change=True,
        images=(
            ImageTrigger("app:v1", "", True, ("web",)),
            ImageTrigger("db:1", "shared", False, ("init", "web")),
        ),
    )
    # As Go's tabwriter (minwidth 0, tabwidth 2, padding 2, spaces) prints it.
    assert trigger_table([("deployments/web", definition)]) == (
        "NAME             TYPE    VALUE                    AUTO\n"
        "deployments/web  config                           true\n"
        "deployments/web  image   app:v1 (web)             true\n"
        "deployments/web  image   shared/db:1 (init, web)  false\n"
    )
