"""`imagestream rollout`: the words it prints and the patches it sends (no cluster)."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import pytest

from controller.rollouts.model import ROLLOUT_REQUEST_ANNOTATION, make_replication_controller
from controller.triggers.pullaccess import PullAnswers
from imagestream.cli.main import build_parser
from imagestream.cli.rollout import (
    RolloutError,
    history_table,
    latest_patch,
    parse_duration,
    parse_target,
    rollback_patch,
    rollback_target,
    status_message,
)

Obj = dict[str, Any]
IMAGE = "registry.example/ns/app@sha256:" + "a" * 64


def dc(
    *, version: int = 0, triggers: list[Obj] | None = None, image: str = IMAGE, **status: Any
) -> Obj:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u",
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {
            "replicas": 2,
            "triggers": triggers if triggers is not None else [{"type": "ConfigChange"}],
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
        "status": {"latestVersion": version, "observedGeneration": 1} | status,
    }


def rc(config: Obj, version: int, phase: str, message: str) -> Obj:
    view = copy.deepcopy(config)
    view["status"] = {"latestVersion": version, "details": {"message": message}}
    made = make_replication_controller(view, version)
    made["metadata"]["annotations"]["openshift.io/deployment.phase"] = phase
    return made


def test_targets_name_deploymentconfigs_only() -> None:
    assert parse_target("dc/web") == parse_target("deploymentconfig.apps.openshift.io/web") == "web"
    with pytest.raises(RolloutError):
        parse_target("deployment/web")


def test_status_messages_follow_oc() -> None:
    assert status_message(dc(triggers=[]))[1:] == (False, True)
    progressing = {
        "type": "Progressing",
        "reason": "NewReplicationControllerAvailable",
        "message": "done",
    }
    assert status_message(dc(version=2, conditions=[progressing])) == ("done", True, False)
    failed = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "failed"}
    assert status_message(dc(version=2, conditions=[failed])) == ("failed", True, True)
    waiting = status_message(dc(version=2, updatedReplicas=1, replicas=1))
    assert waiting == (
        "Waiting for rollout to finish: 1 out of 2 new replicas have been updated...",
        False,
        False,
    )
    unobserved = dc(version=2)
    unobserved["metadata"]["generation"] = 2
    assert status_message(unobserved)[0].startswith("Waiting for the latest spec")


def test_history_lists_versions_with_their_causes() -> None:
    config = dc(version=2)
    rcs = [rc(config, 2, "Running", "image change"), rc(config, 1, "Complete", "config change")]
    assert history_table(config, rcs) == (
        'deploymentconfigs "web"\n'
        "REVISION  STATUS    CAUSE\n"
        "1         Complete  config change\n"
        "2         Running   image change\n"
    )
    assert history_table(config, []) == "No rollout history found.\n"


def test_undo_takes_the_last_complete_template_and_disables_image_triggers() -> None:
    image_trigger = {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": True,
            "containerNames": ["web"],
            "from": {"name": "app:latest"},
        },
    }
    old = dc(version=1, triggers=[{"type": "ConfigChange"}, image_trigger])
    current = dc(
        version=3, triggers=[{"type": "ConfigChange"}, image_trigger], image="example/new:2"
    )
    rcs = [
        rc(old, 1, "Complete", "config change"),
        rc(current, 2, "Failed", "image change"),
        rc(current, 3, "Complete", "x"),
    ]
    target = rollback_target(current, rcs, None)
    assert target["metadata"]["name"] == "web-1"
    patch, disabled = rollback_patch(current, target)
    assert disabled == ["app:latest"]
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert patch[1]["value"]["spec"]["containers"][0]["image"] == IMAGE
    assert patch[2]["value"][1]["imageChangeParams"]["automatic"] is False
    request = json.loads(patch[3]["value"][ROLLOUT_REQUEST_ANNOTATION])
    assert request == {
        "version": 4,
        "message": "rollback to revision 1",
        "causes": [{"type": "Manual"}],
    }
    with pytest.raises(RolloutError, match="current"):
        rollback_target(current, rcs, 3)


def test_latest_resolves_manual_triggers_once_or_refuses() -> None:
    manual = {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": False,
            "containerNames": ["web"],
            "from": {"name": "app:v1"},
        },
    }
    config = dc(triggers=[manual], image=" ")
    config["metadata"]["annotations"] = {}
    stream = {
        "metadata": {"name": "app", "namespace": "ns"},
        "status": {
            "tags": [
                {
                    "tag": "v1",
                    "items": [{"dockerImageReference": IMAGE, "image": "sha256:" + "a" * 64}],
                }
            ]
        },
    }
    patch = latest_patch(config, {"ns/app": stream})
    values = [op.get("value") for op in patch if op["op"] != "test"]
    assert IMAGE in values
    assert json.loads(patch[-1]["value"]) == {
        "version": 1,
        "message": "manual change",
        "causes": [{"type": "Manual"}],
    }
    assert patch[-1]["path"] == "/metadata/annotations/imagestream.dev~1rollout-request"
    with pytest.raises(RolloutError, match="unresolved images"):
        latest_patch(config, {})
    config["spec"]["paused"] = True
    with pytest.raises(RolloutError, match="paused"):
        latest_patch(config, {"ns/app": stream})


def test_latest_follows_another_namespace_only_where_the_answers_allow() -> None:
    manual = {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": False,
            "containerNames": ["web"],
            "from": {"name": "app:v1", "namespace": "shared"},
        },
    }
    config = dc(triggers=[manual], image=" ")
    config["metadata"]["annotations"] = {}
    stream = {
        "metadata": {"name": "app", "namespace": "shared"},
        "status": {
            "tags": [
                {
                    "tag": "v1",
                    "items": [{"dockerImageReference": IMAGE, "image": "sha256:" + "a" * 64}],
                }
            ]
        },
    }
    namespace = config["metadata"]["namespace"]
    refused = PullAnswers(namespace=namespace, denied=(("shared", "app"),))
    with pytest.raises(RolloutError, match="unresolved images"):
        latest_patch(config, {"shared/app": stream}, namespace_allowed=refused.namespace_allowed)
    granted = PullAnswers(namespace=namespace, allowed=frozenset({("shared", "app")}))
    patch = latest_patch(
        config, {"shared/app": stream}, namespace_allowed=granted.namespace_allowed
    )
    assert IMAGE in [op.get("value") for op in patch if op["op"] != "test"]


def test_the_commands_parse() -> None:
    args = build_parser().parse_args(
        ["rollout", "undo", "-n", "team", "dc/web", "--to-revision", "2"]
    )
    assert (args.action, args.namespace, args.target, args.to_revision) == (
        "undo",
        "team",
        "dc/web",
        2,
    )
    args = build_parser().parse_args(["start-build", "web", "-n", "team"])
    assert (args.command, args.name, args.namespace) == ("start-build", "web", "team")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("2s", 2.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("0", 0.0),
    ],
)
def test_timeouts_are_seconds_or_kubectl_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "2x", "1m 30s", "-1", "nan", "inf", "2s3"])
def test_a_timeout_that_is_not_a_duration_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_status_timeout_takes_a_duration() -> None:
    args = build_parser().parse_args(["rollout", "status", "-w", "--timeout", "1m", "dc/web"])
    assert (args.watch, args.timeout) == (True, 60.0)
