"""A Build's next phase, from its Job and its sibling Builds. Pure, no I/O.

See docs/openshift-behaviours.md#build-output for where a Build pushes.

    New ──(run policy lets it start, output resolves)──> Pending ──(pod ready)──> Running
     │                                                      │                       │
     └── Cancelled (cancelled, or superseded under SerialLatestOnly)                │
                                      Complete / Failed / Error / Cancelled <───────┘

Invariants:
- Phases only move forward; a terminal phase is never left.
- A Build starts only when its run policy allows it: `Parallel` at once; `Serial` when
  every older Build of its BuildConfig has ended; `SerialLatestOnly` likewise, and a
  queued (New) Build is cancelled as soon as a newer one is queued.
- An ImageStreamTag output that cannot be resolved (stream missing, or no
  `status.dockerImageRepository`) keeps the Build New with reason `InvalidOutputReference`,
  as OpenShift does; it starts once the stream is there.
- A Complete Build with a digest records the output tag (through the push path) before its
  phase is written, so a crash in between records again (a no-op) rather than never.

Failure it prevents: two Serial builds pushing to the same tag at once, and a Build marked
Complete whose image never reached its ImageStream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from controller.builds.jobs import (
    EXIT_BUILD_FAILED,
    EXIT_FETCH_FAILED,
    EXIT_PULL_FAILED,
    EXIT_PUSH_FAILED,
    ContainerEnd,
    OutputTarget,
    job_failed,
    job_running,
    job_succeeded,
)
from controller.builds.model import (
    BuildPhase,
    build_number,
    build_phase,
    buildconfig_of,
    image_stream_tag,
    output_to,
    run_policy,
    strategy_type,
)
from controller.events import Note
from controller.triggers.outcomes import StreamGetter
from imagestream.objects import Obj, mapping, name_of, namespace_of, status_of, string
from imagestream.timestamps import parse_rfc3339, rfc3339_seconds

INVALID_OUTPUT: Final = "InvalidOutputReference"
OUTPUT_UNRESOLVED: Final = "Output image could not be resolved."
OUTPUT_RETRY_S: Final = 10.0
JOB_LAG_RETRY_S: Final = 0.5
POD_POLL_S: Final = 1.0
"""How often a Pending Build's pod is read, to see its build container start."""
LOG_SNIPPET_LINES: Final = 5
"""OpenShift keeps the last five lines of a failed build's log in `status.logSnippet`."""

GENERIC_FAILURE: Final = ("GenericBuildFailed", "Generic Build failure - check logs for details.")
_EXIT_REASONS: Final = {
    EXIT_PULL_FAILED: ("PullBuilderImageFailed", "Failed pulling builder image."),
    EXIT_PUSH_FAILED: ("PushImageToRegistryFailed", "Failed to push the image to the registry."),
    EXIT_FETCH_FAILED: ("FetchSourceFailed", "Failed to fetch the input source."),
}
_STRATEGY_FAILURES: Final = {
    "Docker": ("DockerBuildFailed", "Docker build strategy has failed."),
    "Source": ("GenericS2IBuildFailed", "Generic S2I Build failure - check S2I logs for details."),
}


def failure_of(strategy: str, ended: ContainerEnd | None) -> tuple[str, str]:
    """OpenShift's reason and message for a build pod that failed (see
    docs/openshift-behaviours.md#build-lifecycle)."""
    if ended is None:
        return GENERIC_FAILURE
    if ended.reason == "OOMKilled":
        return ("OutOfMemoryKilled", "The build pod was killed due to an out of memory condition.")
    if ended.exit_code == EXIT_BUILD_FAILED:
        return _STRATEGY_FAILURES.get(strategy, GENERIC_FAILURE)
    return _EXIT_REASONS.get(ended.exit_code, GENERIC_FAILURE)


def log_snippet(message: str) -> str:
    """The last `LOG_SNIPPET_LINES` lines of a failed build pod's termination message."""
    lines = message.rstrip("\n").split("\n")
    return "\n".join(lines[-LOG_SNIPPET_LINES:]) if message.strip() else ""


@dataclass(frozen=True, kw_only=True)
class OutputProblem:
    reason: str
    message: str
    warning: str = ""
    """A Warning Event to post (OpenShift's `InvalidOutput`), when there is one."""


def resolve_output(
    build: Mapping[str, Any], *, get_stream: StreamGetter
) -> OutputTarget | OutputProblem:
    """Where the Build pushes (docs/openshift-behaviours.md#build-output)."""
    to = output_to(build)
    kind = string(to.get("kind"))
    if kind == "DockerImage" and string(to.get("name")):
        return OutputTarget(push_spec=string(to.get("name")))
    reference = image_stream_tag(to, namespace=namespace_of(build))
    if reference is None:
        return OutputProblem(
            reason=INVALID_OUTPUT,
            message="the output must be an ImageStreamTag <stream>:<tag> or a DockerImage",
        )
    stream = get_stream(reference.namespace, reference.stream)
    if stream is None:
        return OutputProblem(reason=INVALID_OUTPUT, message=OUTPUT_UNRESOLVED)
    repository = string(mapping(stream.get("status")).get("dockerImageRepository"))
    if not repository:
        return OutputProblem(
            reason=INVALID_OUTPUT,
            message=OUTPUT_UNRESOLVED,
            warning=f"ImageStream {reference.namespace}/{reference.stream} has no"
            " status.dockerImageRepository (is an integrated registry configured?)",
        )
    return OutputTarget(
        push_spec=f"{repository}:{reference.tag}",
        repository=repository,
        stream_namespace=reference.namespace,
        stream=reference.stream,
        tag=reference.tag,
    )


def run_policy_verdict(
    build: Mapping[str, Any], siblings: Iterable[Mapping[str, Any]]
) -> Literal["start", "wait", "cancel"]:
    """What the run policy says about a New Build, given the other Builds of its config."""
    number = build_number(build)
    others = [s for s in siblings if name_of(s) != name_of(build)]
    policy = run_policy(build)
    if policy == "Parallel":
        return "start"
    if policy == "SerialLatestOnly" and any(
        build_number(s) > number and build_phase(s) is BuildPhase.NEW for s in others
    ):
        return "cancel"
    if any(build_number(s) < number and not build_phase(s).terminal for s in others):
        return "wait"
    return "start"


@dataclass(frozen=True, kw_only=True)
class BuildStep:
    status: Obj | None = None
    """Status fields to merge into the Build's status (None: nothing to write)."""
    create_job: OutputTarget | None = None
    delete_job: bool = False
    record: OutputTarget | None = None
    digest: str = ""
    notes: tuple[Note, ...] = field(default_factory=tuple)
    requeue_after_s: float | None = None


def _ended(build: Mapping[str, Any], phase: BuildPhase, now: datetime, **fields: Any) -> Obj:
    status: Obj = {"phase": phase.value, "completionTimestamp": rfc3339_seconds(now)} | fields
    started = parse_rfc3339(status_of(build).get("startTimestamp")) or parse_rfc3339(
        mapping(build.get("metadata")).get("creationTimestamp")
    )
    if started is not None:
        # OpenShift's `duration` is a Go time.Duration: nanoseconds.
        status["duration"] = max(int((now - started).total_seconds() * 1e9), 0)
    return status


def _config_ref(build: Mapping[str, Any]) -> Obj:
    return {
        "kind": "BuildConfig",
        "namespace": namespace_of(build),
        "name": buildconfig_of(build) or "",
    }


def plan_build(
    build: Mapping[str, Any],
    *,
    siblings: Iterable[Mapping[str, Any]],
    output: OutputTarget | OutputProblem,
    job: Mapping[str, Any] | None,
    job_gone: bool = False,
    digest: str | None = None,
    ended: ContainerEnd | None = None,
    started: bool = False,
    now: datetime,
) -> BuildStep:
    """The next step for `build`.

    `job` is its Job from the cache; `job_gone` says a live read confirmed there is none;
    `digest` is what the builder reported, read by the caller once the Job has succeeded;
    `ended` how its build container ended, read by the caller once the Job has failed;
    `started` whether its build container runs, read by the caller while it is Pending.
    """
    phase = build_phase(build)
    status = status_of(build)
    if phase.terminal:
        return BuildStep()
    if status.get("cancelled") is True:
        return BuildStep(
            status=_ended(
                build,
                BuildPhase.CANCELLED,
                now,
                reason="CancelledBuild",
                message="The build was cancelled by the user.",
            ),
            delete_job=job is not None,
        )
    if phase is BuildPhase.NEW:
        return _plan_new(build, siblings=siblings, output=output, job=job)
    if job is None:
        if not job_gone:
            return BuildStep(requeue_after_s=JOB_LAG_RETRY_S)  # the cache may be behind
        return BuildStep(
            status=_ended(
                build,
                BuildPhase.ERROR,
                now,
                reason="BuildPodDeleted",
                message="The pod for this build was deleted before the build completed.",
            )
        )
    if job_succeeded(job):
        target = output if isinstance(output, OutputTarget) else None
        if digest is None:
            notes: tuple[Note, ...] = (
                Note(
                    type="Warning",
                    reason="BuildOutputDigestMissing",
                    message="the builder reported no digest; no ImageStream tag was updated",
                ),
            )
            return BuildStep(status=_ended(build, BuildPhase.COMPLETE, now), notes=notes)
        fields: Obj = {"output": {"to": {"imageDigest": digest}}}
        return BuildStep(
            status=_ended(build, BuildPhase.COMPLETE, now, **fields),
            record=target if target is not None and target.records_tag else None,
            digest=digest,
            notes=(
                Note(
                    type="Normal",
                    reason="BuildCompleted",
                    message=f"Build {namespace_of(build)}/{name_of(build)} completed, pushed"
                    f" {digest}",
                ),
            ),
        )
    failed = job_failed(job)
    if failed is not None:
        if failed.get("reason") == "DeadlineExceeded":
            reason, message = (
                "BuildPodExceededDeadline",
                "Build was terminated after its completionDeadlineSeconds.",
            )
        else:
            reason, message = failure_of(strategy_type(build), ended)
        failure: Obj = {"reason": reason, "message": message}
        snippet = log_snippet(ended.message) if ended is not None else ""
        if snippet:
            failure["logSnippet"] = snippet
        return BuildStep(
            status=_ended(build, BuildPhase.FAILED, now, **failure),
            notes=(
                Note(
                    type="Warning",
                    reason="BuildFailed",
                    message=f"Build {namespace_of(build)}/{name_of(build)} failed: {message}",
                ),
            ),
        )
    if (started or job_running(job)) and phase is not BuildPhase.RUNNING:
        running: Obj = {"phase": BuildPhase.RUNNING.value}
        if not status.get("startTimestamp"):
            running["startTimestamp"] = rfc3339_seconds(now)
        return BuildStep(status=running)
    if phase is BuildPhase.PENDING:
        return BuildStep(requeue_after_s=POD_POLL_S)  # until its pod's container starts
    return BuildStep()


def _plan_new(
    build: Mapping[str, Any],
    *,
    siblings: Iterable[Mapping[str, Any]],
    output: OutputTarget | OutputProblem,
    job: Mapping[str, Any] | None,
) -> BuildStep:
    status = status_of(build)
    queued: Obj = {"phase": BuildPhase.NEW.value, "config": _config_ref(build)}
    verdict = run_policy_verdict(build, siblings)
    if verdict == "cancel":
        return BuildStep(
            status={
                "phase": BuildPhase.CANCELLED.value,
                "config": _config_ref(build),
                "reason": "CancelledBuild",
                "message": "A newer build was queued (runPolicy SerialLatestOnly).",
            }
        )
    if strategy_type(build) not in ("Docker", "Source"):
        return BuildStep(
            status={
                "phase": BuildPhase.FAILED.value,
                "config": _config_ref(build),
                "reason": "UnsupportedBuildStrategy",
                "message": f"the {strategy_type(build)} strategy does not run on plain"
                " Kubernetes; use Docker or Source",
            }
        )
    if verdict == "wait":
        return BuildStep(status=_changed(status, queued))
    if isinstance(output, OutputProblem):
        waiting = queued | {"reason": output.reason, "message": output.message}
        notes = (Note(type="Warning", reason="InvalidOutput", message=output.warning),)
        return BuildStep(
            status=_changed(status, waiting),
            notes=notes if output.warning else (),
            requeue_after_s=OUTPUT_RETRY_S,
        )
    pending: Obj = {
        "phase": BuildPhase.PENDING.value,
        "config": _config_ref(build),
        "outputDockerImageReference": output.push_spec,
        # null removes a field in a merge patch: the New phase's reason no longer applies.
        "reason": None,
        "message": None,
    }
    return BuildStep(status=pending, create_job=output if job is None else None)


def _changed(current: Mapping[str, Any], wanted: Obj) -> Obj | None:
    return wanted if any(current.get(k) != v for k, v in wanted.items()) else None
