"""BuildConfig triggers, instantiation, Build lifecycle and Jobs (behaviour 25 and the build
rules: docs/openshift-behaviours.md#behaviour-25, docs/openshift-behaviours.md#build-output,
docs/openshift-behaviours.md#build-instantiation)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.builds.instantiate import InstantiateError, instantiate
from controller.builds.jobs import (
    BUILD_SCRIPT,
    ContainerEnd,
    OutputTarget,
    build_container_end,
    build_container_started,
    build_job,
    default_job_template,
    default_push_secret,
    job_name,
    output_digest,
    validate_job_template,
)
from controller.builds.lifecycle import (
    OutputProblem,
    plan_build,
    resolve_output,
    run_policy_verdict,
)
from controller.builds.prune import builds_to_prune
from controller.builds.triggers import BuildRequest, index_keys, plan_buildconfig
from controller.triggers.outcomes import allow_any_namespace
from imagestream.cli.builds import BuildCommandError, outcome, split_reference

Obj = dict[str, Any]
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
BASE_1 = "registry.example/ns/base@sha256:" + "1" * 64
BASE_2 = "registry.example/ns/base@sha256:" + "2" * 64
TOOLS = "registry.example/ns/tools@sha256:" + "7" * 64
DIGEST = "sha256:" + "d" * 64


def stream(name: str, tags: dict[str, str], *, repository: str = "") -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {},
        "status": {
            "dockerImageRepository": repository,
            "tags": [
                {
                    "tag": tag,
                    "items": [{"dockerImageReference": ref, "image": ref.rpartition("@")[2]}],
                }
                for tag, ref in tags.items()
            ],
        },
    }


def getter(*streams: Obj) -> Any:
    found = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in streams}
    return lambda namespace, name: found.get((namespace, name))


def bc(
    triggers: list[Obj] | None = None,
    *,
    base: Obj | None = None,
    status: Obj | None = None,
    paused: bool = False,
    run_policy: str = "",
) -> Obj:
    body: Obj = {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": "ns", "uid": "bc-uid", "labels": {"team": "a"}},
        "spec": {
            "triggers": [{"type": "ImageChange", "imageChange": {}}]
            if triggers is None
            else triggers,
            "source": {"git": {"uri": "https://git.example/app.git"}, "dockerfile": "FROM x"},
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {
                    "from": base or {"kind": "ImageStreamTag", "name": "base:latest"}
                },
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
        },
        "status": status or {},
    }
    if paused:
        body["metadata"]["annotations"] = {"openshift.io/build-config.paused": "true"}
    if run_policy:
        body["spec"]["runPolicy"] = run_policy
    return body


def existing_build(
    number: int, *, phase: str = "Complete", image: str = "", policy: str = "Serial"
) -> Obj:
    causes = (
        [
            {
                "message": "Image change",
                "imageChangeBuild": {
                    "imageID": image,
                    "fromRef": {"namespace": "ns", "name": "base:latest"},
                },
            }
        ]
        if image
        else [{"message": "Manually triggered"}]
    )
    return {
        "metadata": {
            "name": f"web-{number}",
            "namespace": "ns",
            "labels": {
                "openshift.io/build-config.name": "web",
                "openshift.io/build.start-policy": policy,
            },
            "annotations": {
                "openshift.io/build-config.name": "web",
                "openshift.io/build.number": str(number),
            },
        },
        "spec": {"triggeredBy": causes, "strategy": {"type": "Docker"}},
        "status": {"phase": phase},
    }


# --- triggers (behaviour 25) ------------------------------------------------------------------


def test_a_new_image_on_the_strategy_stream_asks_for_one_build() -> None:
    plan = plan_buildconfig(bc(), [], get_stream=getter(stream("base", {"latest": BASE_1})))
    assert plan.request == BuildRequest(
        causes=(
            {
                "message": "Image change",
                "imageChangeBuild": {
                    "imageID": BASE_1,
                    "fromRef": {"kind": "ImageStreamTag", "namespace": "ns", "name": "base:latest"},
                },
            },
        ),
        triggered_by_image=BASE_1,
        from_ref=plan.request.from_ref if plan.request else None,
    )
    assert index_keys(bc()) == {"ns/base"}


def test_the_recorded_image_in_status_or_deprecated_spec_fires_nothing() -> None:
    recorded = {
        "imageChangeTriggers": [{"from": {"name": "base:latest"}, "lastTriggeredImageID": BASE_1}]
    }
    get = getter(stream("base", {"latest": BASE_1}))
    assert plan_buildconfig(bc(status=recorded), [], get_stream=get).request is None
    legacy = bc([{"type": "ImageChange", "imageChange": {"lastTriggeredImageID": BASE_1}}])
    assert plan_buildconfig(legacy, [], get_stream=get).request is None


def test_several_triggers_moving_together_make_one_request_with_every_cause() -> None:
    triggers = [
        {"type": "ImageChange", "imageChange": {}},
        {
            "type": "ImageChange",
            "imageChange": {"from": {"kind": "ImageStreamTag", "name": "tools:v1"}},
        },
    ]
    get = getter(stream("base", {"latest": BASE_1}), stream("tools", {"v1": TOOLS}))
    plan = plan_buildconfig(bc(triggers), [], get_stream=get)
    assert plan.request is not None and plan.request.triggered_by_image == BASE_1
    assert [c["imageChangeBuild"]["imageID"] for c in plan.request.causes] == [BASE_1, TOOLS]
    assert index_keys(bc(triggers)) == {"ns/base", "ns/tools"}


def test_paused_triggers_and_paused_configs_fire_nothing() -> None:
    get = getter(stream("base", {"latest": BASE_1}))
    paused_trigger = bc([{"type": "ImageChange", "imageChange": {"paused": True}}])
    assert plan_buildconfig(paused_trigger, [], get_stream=get).request is None
    assert plan_buildconfig(bc(paused=True), [], get_stream=get).request is None


def test_unresolved_tags_and_non_stream_strategies_fire_nothing() -> None:
    assert plan_buildconfig(bc(), [], get_stream=getter()).request is None
    docker_image = bc(base={"kind": "DockerImage", "name": "example/base:1"})
    assert index_keys(docker_image) == set()
    assert plan_buildconfig(docker_image, [], get_stream=getter()).request is None


def test_a_config_change_asks_only_for_the_very_first_build() -> None:
    config = bc([{"type": "ConfigChange"}], base={"kind": "DockerImage", "name": "example/base:1"})
    plan = plan_buildconfig(config, [], get_stream=getter())
    assert plan.request == BuildRequest(causes=({"message": "Build configuration change"},))
    built = bc([{"type": "ConfigChange"}], status={"lastVersion": 1})
    assert plan_buildconfig(built, [existing_build(1)], get_stream=getter()).request is None


def test_a_build_beyond_last_version_heals_the_status_instead_of_building_again() -> None:
    get = getter(stream("base", {"latest": BASE_1}))
    plan = plan_buildconfig(bc(), [existing_build(1, image=BASE_1, phase="New")], get_stream=get)
    assert plan.request is None
    assert plan.heal_status == {
        "lastVersion": 1,
        "imageChangeTriggers": [
            {"from": {"namespace": "ns", "name": "base:latest"}, "lastTriggeredImageID": BASE_1}
        ],
    }


def test_cross_namespace_streams_follow_the_policy() -> None:
    other = stream("base", {"latest": BASE_1})
    other["metadata"]["namespace"] = "shared"
    config = bc(
        [
            {
                "type": "ImageChange",
                "imageChange": {
                    "from": {"kind": "ImageStreamTag", "name": "base:latest", "namespace": "shared"}
                },
            }
        ]
    )
    assert plan_buildconfig(config, [], get_stream=getter(other)).request is None
    allowed = plan_buildconfig(
        config, [], get_stream=getter(other), namespace_allowed=allow_any_namespace
    )
    assert allowed.request is not None


# --- instantiate ------------------------------------------------------------------------------


def test_instantiate_makes_build_n_with_openshifts_names_and_the_image_that_fired() -> None:
    config = bc(status={"lastVersion": 3})
    get = getter(stream("base", {"latest": BASE_2}))
    request = plan_buildconfig(config, [], get_stream=get).request
    assert request is not None
    made = instantiate(
        config, request, [existing_build(5)], get_stream=get, now="2026-05-01T12:00:00Z"
    )
    assert made.number == 6
    metadata = made.build["metadata"]
    assert metadata["name"] == "web-6"
    assert metadata["labels"] == {
        "team": "a",
        "buildconfig": "web",
        "openshift.io/build-config.name": "web",
        "openshift.io/build.start-policy": "Serial",
    }
    assert metadata["annotations"] == {
        "openshift.io/build-config.name": "web",
        "openshift.io/build.number": "6",
    }
    assert metadata["ownerReferences"][0]["uid"] == "bc-uid"
    spec = made.build["spec"]
    assert spec["strategy"]["dockerStrategy"]["from"] == {"kind": "DockerImage", "name": BASE_2}
    assert spec["output"] == {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}
    assert spec["triggeredBy"] == list(request.causes)
    assert made.status == {
        "lastVersion": 6,
        "imageChangeTriggers": [
            {
                "from": {"namespace": "ns", "name": "base:latest"},
                "lastTriggeredImageID": BASE_2,
                "lastTriggerTime": "2026-05-01T12:00:00Z",
            }
        ],
    }


def test_a_manual_build_records_every_triggers_current_image() -> None:
    get = getter(stream("base", {"latest": BASE_1}))
    made = instantiate(
        bc(), BuildRequest(causes=({"message": "Manually triggered"},)), [], get_stream=get, now="t"
    )
    assert made.status["imageChangeTriggers"] == [
        {"from": {"namespace": "ns", "name": "base:latest"}, "lastTriggeredImageID": BASE_1}
    ]
    assert plan_buildconfig(bc(status=made.status), [], get_stream=get).request is None


def test_instantiate_refuses_paused_configs_and_unresolvable_bases() -> None:
    request = BuildRequest(causes=({"message": "Manually triggered"},))
    with pytest.raises(InstantiateError, match="paused"):
        instantiate(bc(paused=True), request, [], get_stream=getter(), now="t")
    with pytest.raises(InstantiateError, match="unable to resolve"):
        instantiate(bc(), request, [], get_stream=getter(), now="t")


# --- lifecycle --------------------------------------------------------------------------------


def build(number: int = 1, *, phase: str = "", policy: str = "Serial", **status: Any) -> Obj:
    made = existing_build(number, phase=phase, policy=policy)
    made["metadata"]["uid"] = f"uid-{number}"
    made["metadata"]["creationTimestamp"] = "2026-05-01T11:59:00Z"
    made["spec"] |= copy.deepcopy(bc()["spec"])
    made["status"] = ({"phase": phase} if phase else {}) | status
    return made


TARGET = OutputTarget(
    push_spec="registry.example/ns/app:latest",
    repository="registry.example/ns/app",
    stream_namespace="ns",
    stream="app",
    tag="latest",
)


def job(**status: Any) -> Obj:
    return {"metadata": {"name": "web-1-build", "namespace": "ns"}, "status": status}


def test_the_output_resolves_to_the_streams_repository() -> None:
    assert (
        resolve_output(
            build(), get_stream=getter(stream("app", {}, repository="registry.example/ns/app"))
        )
        == TARGET
    )
    missing = resolve_output(build(), get_stream=getter())
    assert isinstance(missing, OutputProblem) and missing.reason == "InvalidOutputReference"
    no_registry = resolve_output(build(), get_stream=getter(stream("app", {})))
    assert isinstance(no_registry, OutputProblem) and no_registry.warning
    docker = build()
    docker["spec"]["output"]["to"] = {"kind": "DockerImage", "name": "quay.io/x/app:1"}
    assert resolve_output(docker, get_stream=getter()) == OutputTarget(push_spec="quay.io/x/app:1")


@pytest.mark.parametrize(
    ("policy", "siblings", "verdict"),
    [
        ("Serial", [], "start"),
        ("Serial", [build(1, phase="Running")], "wait"),
        ("Serial", [build(1, phase="Complete"), build(3, phase="New")], "start"),
        ("Parallel", [build(1, phase="Running")], "start"),
        ("SerialLatestOnly", [build(3, phase="New")], "cancel"),
        ("SerialLatestOnly", [build(1, phase="Pending")], "wait"),
    ],
)
def test_run_policies(policy: str, siblings: list[Obj], verdict: str) -> None:
    assert run_policy_verdict(build(2, phase="New", policy=policy), siblings) == verdict


def test_a_new_build_starts_its_job_or_waits_with_a_reason() -> None:
    step = plan_build(build(), siblings=[], output=TARGET, job=None, now=NOW)
    assert step.create_job == TARGET
    assert step.status is not None and step.status["phase"] == "Pending"
    assert step.status["outputDockerImageReference"] == "registry.example/ns/app:latest"
    problem = OutputProblem(
        reason="InvalidOutputReference", message="Output image could not be resolved."
    )
    waiting = plan_build(build(), siblings=[], output=problem, job=None, now=NOW)
    assert waiting.create_job is None and waiting.requeue_after_s
    assert waiting.status is not None and waiting.status["reason"] == "InvalidOutputReference"
    queued = plan_build(
        build(2), siblings=[build(1, phase="Running")], output=TARGET, job=None, now=NOW
    )
    assert (
        queued.create_job is None and queued.status is not None and queued.status["phase"] == "New"
    )


def test_the_build_follows_its_job() -> None:
    pending = build(phase="Pending")
    running = plan_build(pending, siblings=[], output=TARGET, job=job(active=1, ready=1), now=NOW)
    assert running.status == {"phase": "Running", "startTimestamp": "2026-05-01T12:00:00Z"}
    assert (
        plan_build(pending, siblings=[], output=TARGET, job=job(active=1), now=NOW).status is None
    )
    failed = plan_build(
        pending,
        siblings=[],
        output=TARGET,
        job=job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
        now=NOW,
    )
    assert failed.status is not None and (failed.status["phase"], failed.status["reason"]) == (
        "Failed",
        "BuildPodExceededDeadline",
    )
    gone = plan_build(pending, siblings=[], output=TARGET, job=None, job_gone=True, now=NOW)
    assert gone.status is not None and gone.status["phase"] == "Error"
    lagging = plan_build(pending, siblings=[], output=TARGET, job=None, now=NOW)
    assert lagging.status is None and lagging.requeue_after_s


def test_a_complete_job_records_the_output_then_completes() -> None:
    done = job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    running = build(phase="Running", startTimestamp="2026-05-01T11:59:30Z")
    step = plan_build(running, siblings=[], output=TARGET, job=done, digest=DIGEST, now=NOW)
    assert (step.record, step.digest) == (TARGET, DIGEST)
    assert step.status is not None
    assert step.status["phase"] == "Complete"
    assert step.status["output"] == {"to": {"imageDigest": DIGEST}}
    assert step.status["duration"] == 30 * 10**9
    silent = plan_build(running, siblings=[], output=TARGET, job=done, digest=None, now=NOW)
    assert silent.record is None and silent.notes[0].reason == "BuildOutputDigestMissing"
    external = plan_build(
        running,
        siblings=[],
        output=OutputTarget(push_spec="quay.io/x/app:1"),
        job=done,
        digest=DIGEST,
        now=NOW,
    )
    assert external.record is None, "a DockerImage output updates no ImageStream"


def test_cancelled_and_terminal_builds() -> None:
    step = plan_build(
        build(phase="Running", cancelled=True), siblings=[], output=TARGET, job=job(), now=NOW
    )
    assert step.delete_job and step.status is not None and step.status["phase"] == "Cancelled"
    assert (
        plan_build(build(phase="Complete"), siblings=[], output=TARGET, job=None, now=NOW).status
        is None
    )
    superseded = plan_build(
        build(1, policy="SerialLatestOnly"),
        siblings=[build(2, phase="New")],
        output=TARGET,
        job=None,
        now=NOW,
    )
    assert superseded.status is not None and superseded.status["phase"] == "Cancelled"


# --- jobs -------------------------------------------------------------------------------------


def test_the_job_runs_the_build_with_what_the_strategy_asks_for() -> None:
    spec_build = build()
    params = spec_build["spec"]["strategy"]["dockerStrategy"]
    params |= {
        "from": {"kind": "DockerImage", "name": BASE_1},
        "buildArgs": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "env": [{"name": "EXTRA", "value": "x"}],
        "noCache": True,
        "pullSecret": {"name": "pull"},
    }
    spec_build["spec"] |= {
        "serviceAccount": "builder",
        "completionDeadlineSeconds": 900,
        "output": {
            "to": {"kind": "ImageStreamTag", "name": "app:latest"},
            "pushSecret": {"name": "push"},
        },
        "resources": {"limits": {"memory": "1Gi"}},
    }
    made = build_job(spec_build, template=default_job_template(), output=TARGET)
    assert made["metadata"]["name"] == "web-1-build"
    assert made["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "build.openshift.io/v1",
        "kind": "Build",
        "name": "web-1",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert made["spec"]["activeDeadlineSeconds"] == 900
    pod = made["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "builder"
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FROM_IMAGE"] == BASE_1 and env["OUTPUT_IMAGE"] == TARGET.push_spec
    assert env["BUILD_ARGS"] == "A=1\nB=2" and env["NO_CACHE"] == "true" and env["EXTRA"] == "x"
    assert env["PUSH_DOCKERCFG_PATH"] == "/var/run/secrets/openshift.io/push/.dockerconfigjson"
    assert {v["secret"]["secretName"] for v in pod["volumes"]} == {"push", "pull"}
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert len(job_name("b" * 80)) <= 63 and job_name("b" * 80).endswith("-build")


def test_an_integrated_output_without_push_secret_pushes_as_the_builder_account() -> None:
    host = TARGET.push_spec.split("/")[0]
    lent = {("ns", "builder"): "builder-dockercfg-abcde", ("ns", "robot"): "robot-dockercfg-x"}

    def secret_of(namespace: str, account: str) -> str:
        return lent.get((namespace, account), "")

    plain = build()
    assert (
        default_push_secret(plain, TARGET, integrated_hosts=[host], pull_secret_of=secret_of)
        == "builder-dockercfg-abcde"
    )
    made = build_job(
        plain, template=default_job_template(), output=TARGET, push_secret="builder-dockercfg-abcde"
    )
    pod = made["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"]] == ["builder-dockercfg-abcde"]
    robot = build()
    robot["spec"]["serviceAccount"] = "robot"
    assert (
        default_push_secret(robot, TARGET, integrated_hosts=[host], pull_secret_of=secret_of)
        == "robot-dockercfg-x"
    )
    given = build()
    given["spec"]["output"] = {**given["spec"]["output"], "pushSecret": {"name": "mine"}}
    assert not default_push_secret(given, TARGET, integrated_hosts=[host], pull_secret_of=secret_of)
    elsewhere = OutputTarget(push_spec="quay.example/ns/app:latest")
    assert not default_push_secret(
        plain, elsewhere, integrated_hosts=[host], pull_secret_of=secret_of
    )


def test_a_custom_template_needs_a_build_container() -> None:
    template = default_job_template()
    template["spec"]["template"]["spec"]["containers"][0]["name"] = "other"
    with pytest.raises(ValueError, match="build"):
        validate_job_template(template)
    assert validate_job_template(default_job_template()) == default_job_template()


def test_the_digest_comes_from_the_annotation_or_the_termination_message() -> None:
    def pod(phase: str, message: str, exit_code: int = 0) -> Obj:
        terminated = {"exitCode": exit_code, "message": message}
        return {
            "status": {
                "phase": phase,
                "containerStatuses": [{"name": "build", "state": {"terminated": terminated}}],
            }
        }

    annotated = {"metadata": {"annotations": {"build.openshift.io/output-digest": DIGEST}}}
    assert output_digest(annotated, []) == DIGEST
    assert output_digest(job(), [pod("Succeeded", f"pushed {DIGEST}\n")]) == DIGEST
    assert output_digest(job(), [pod("Failed", DIGEST, 1)]) is None
    assert output_digest(job(), [pod("Succeeded", "sha256:short")]) is None


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize(
    ("variables", "build_args"),
    [
        (
            {"DOCKERFILE": "FROM scratch", "BUILD_ARGS": "A=1\nB=2 3"},
            ["--file", "<workdir>/Dockerfile", "--build-arg", "A=1", "--build-arg", "B=2 3"],
        ),
        (
            {"DOCKERFILE": "FROM scratch", "TLS_VERIFY": "false"},
            ["--file", "<workdir>/Dockerfile", "--tls-verify=false"],
        ),
    ],
)
def test_the_build_script_calls_buildah_as_the_build_asks(
    tmp_path: Path, variables: dict[str, str], build_args: list[str]
) -> None:
    """The default builder's script, with a `buildah` that records its arguments.

    (Git sources and the Source strategy: tests/unit/test_build_sources_script.py.)"""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "buildah"
    fake.parent.mkdir()
    fake.write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> {calls}\necho --- >> {calls}\n'
    )
    fake.chmod(0o755)
    environment = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "OUTPUT_IMAGE": "registry.example/ns/app:latest",
        "FROM_IMAGE": BASE_1,
        "DIGEST_FILE": str(tmp_path / "digest"),
        "BUILD_STRATEGY": "Docker",
    } | variables
    subprocess.run(["sh", "-c", BUILD_SCRIPT], env=environment, check=True, timeout=30)
    pull_call, build_call, push_call, _ = (
        calls.read_text().replace(str(tmp_path / "build"), "<workdir>").split("---\n")
    )
    tls = ["--tls-verify=false"] if "TLS_VERIFY" in variables else []
    assert pull_call.splitlines() == ["pull", *tls, BASE_1]
    assert build_call.splitlines() == [
        "build",
        "--tag",
        "registry.example/ns/app:latest",
        *build_args,
        "<workdir>/context",
    ]
    push = ["push", *(["--tls-verify=false"] if "TLS_VERIFY" in variables else [])]
    assert push_call.splitlines() == [
        *push,
        "--digestfile",
        str(tmp_path / "digest"),
        "registry.example/ns/app:latest",
        "docker://registry.example/ns/app:latest",
    ]
    # The strategy's `from` is the (last) FROM, as OpenShift's builder rewrites it.
    assert (tmp_path / "build" / "Dockerfile").read_text().startswith(f"FROM {BASE_1}\n")


# --- failures, history limits, plain HTTP (docs/openshift-behaviours.md#build-lifecycle) -------


def _failed_job() -> Obj:
    return job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])


@pytest.mark.parametrize(
    ("exit_code", "kubelet_reason", "reason"),
    [
        (2, "Error", "DockerBuildFailed"),
        (3, "Error", "PushImageToRegistryFailed"),
        (4, "Error", "PullBuilderImageFailed"),
        (1, "Error", "GenericBuildFailed"),
        (137, "OOMKilled", "OutOfMemoryKilled"),
    ],
)
def test_a_failed_build_says_why_and_keeps_the_logs_last_lines(
    exit_code: int, kubelet_reason: str, reason: str
) -> None:
    log = "".join(f"line {n}\n" for n in range(1, 9))
    ended = ContainerEnd(exit_code=exit_code, reason=kubelet_reason, message=log)
    step = plan_build(
        build(phase="Running"), siblings=[], output=TARGET, job=_failed_job(), ended=ended, now=NOW
    )
    assert step.status is not None and step.record is None
    assert (step.status["phase"], step.status["reason"]) == ("Failed", reason)
    assert step.status["logSnippet"] == "line 4\nline 5\nline 6\nline 7\nline 8"
    unknown = plan_build(
        build(phase="Running"), siblings=[], output=TARGET, job=_failed_job(), now=NOW
    )
    assert unknown.status is not None and unknown.status["reason"] == "GenericBuildFailed"
    assert "logSnippet" not in unknown.status


def test_the_container_end_is_read_from_the_build_container() -> None:
    other = {"name": "sidecar", "state": {"terminated": {"exitCode": 0}}}
    built = {
        "name": "build",
        "state": {"terminated": {"exitCode": 2, "reason": "Error", "message": "x"}},
    }
    pods = [{"status": {"containerStatuses": [other, built]}}]
    assert build_container_end(pods) == ContainerEnd(exit_code=2, reason="Error", message="x")
    running = [{"status": {"containerStatuses": [{"name": "build", "state": {"running": {}}}]}}]
    assert build_container_end(running) is None


def _ended_build(number: int, phase: str, created: str) -> Obj:
    made = build(number, phase=phase)
    made["metadata"]["creationTimestamp"] = created
    return made


def test_history_limits_prune_the_oldest_ended_builds_and_default_to_five() -> None:
    builds = [_ended_build(n, "Complete", f"2026-05-01T12:00:{n:02d}Z") for n in range(1, 8)] + [
        _ended_build(8, "Failed", "2026-05-01T12:00:08Z"),
        _ended_build(9, "Cancelled", "2026-05-01T12:00:09Z"),
        _ended_build(10, "Error", "2026-05-01T12:00:09Z"),  # same second: by number
        _ended_build(11, "Running", "2026-05-01T12:00:01Z"),
    ]
    assert builds_to_prune(bc(), builds) == ["web-1", "web-2"]
    limited = bc()
    limited["spec"] |= {"successfulBuildsHistoryLimit": 1, "failedBuildsHistoryLimit": 1}
    assert builds_to_prune(limited, builds) == [
        "web-1",
        "web-2",
        "web-3",
        "web-4",
        "web-5",
        "web-6",
        "web-8",
        "web-9",
    ]


def test_plain_http_only_for_the_registries_named() -> None:
    local = OutputTarget(push_spec="10.244.255.1:5000/ns/app:latest")
    made = build_job(
        build(),
        template=default_job_template("10.244.255.1:5000/localdev/builder@" + DIGEST),
        output=local,
        insecure_registries=("10.244.255.1:5000",),
    )
    (container,) = made["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TLS_VERIFY"] == "false"
    assert container["image"] == "10.244.255.1:5000/localdev/builder@" + DIGEST
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    secure = build_job(
        build(),
        template=default_job_template(),
        output=TARGET,
        insecure_registries=("10.244.255.1:5000",),
    )
    (container,) = secure["spec"]["template"]["spec"]["containers"]
    assert "TLS_VERIFY" not in {e["name"] for e in container["env"]}


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize(("failing", "exit_code"), [("pull", 4), ("build", 2), ("push", 3)])
def test_the_build_script_exits_with_the_step_that_failed(
    tmp_path: Path, failing: str, exit_code: int
) -> None:
    fake = tmp_path / "bin" / "buildah"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\n[ "$1" = {failing} ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    environment = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "OUTPUT_IMAGE": "registry.example/ns/app:latest",
        "FROM_IMAGE": BASE_1,
        "DIGEST_FILE": str(tmp_path / "digest"),
        "DOCKERFILE": "FROM scratch",
    }
    ran = subprocess.run(["sh", "-c", BUILD_SCRIPT], env=environment, check=False, timeout=30)
    assert ran.returncode == exit_code


def test_a_pending_build_is_running_once_its_pod_says_so() -> None:
    pending = build(phase="Pending")
    waiting = plan_build(pending, siblings=[], output=TARGET, job=job(active=1), now=NOW)
    assert waiting.status is None and waiting.requeue_after_s  # reads the pod again
    step = plan_build(pending, siblings=[], output=TARGET, job=job(active=1), started=True, now=NOW)
    assert step.status == {"phase": "Running", "startTimestamp": "2026-05-01T12:00:00Z"}
    running = {"name": "build", "state": {"running": {"startedAt": "2026-05-01T12:00:00Z"}}}
    waiting_pod = {"name": "build", "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert build_container_started([{"status": {"containerStatuses": [running]}}])
    assert not build_container_started([{"status": {"containerStatuses": [waiting_pod]}}])


# --- the build commands' decisions (imagestream logs / start-build / cancel-build) ------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web-1", ("build", "web-1")),
        ("build/web-1", ("build", "web-1")),
        ("builds/web-1", ("build", "web-1")),
        ("bc/web", ("bc", "web")),
        ("buildconfig.build.openshift.io/web", ("bc", "web")),
    ],
)
def test_build_references_as_oc_spells_them(text: str, expected: tuple[str, str]) -> None:
    assert split_reference(text, default_kind="build") == expected


def test_a_reference_of_another_kind_is_refused() -> None:
    with pytest.raises(BuildCommandError, match="build/NAME or bc/NAME"):
        split_reference("pod/web-1", default_kind="build")


def test_wait_exits_one_unless_the_build_completed() -> None:
    complete = build(phase="Complete")
    assert outcome(complete).code == 0
    failed = outcome(build(phase="Failed"))
    assert failed.code == 1
    assert failed.stderr == 'error: the build ns/web-1 status is "Failed"'
