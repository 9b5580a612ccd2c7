"""The BuildConfig and Build reconcilers: plan from the caches, then write, each write guarded.

BuildConfigs (key `namespace/name`) are woken by their own changes, by a change to any
ImageStream one of their ImageChange triggers follows (through a `TriggerIndex`), and by
Builds appearing or disappearing. A reconcile plans with `triggers.plan_buildconfig` and
instantiates at most one Build: create the Build (fixed name), then record `lastVersion`
and `status.imageChangeTriggers` with a resourceVersion precondition. Streams of other
namespaces are reviewed first (the image-puller rule, behaviour 16): a refusal is a
Warning, once, and a refused base image builds nothing until a grant is seen.

A reconcile first deletes the ended Builds beyond the history limits (`prune`).

Builds (key `namespace/name`) are woken by their own changes, by their Job's, and by any
change to a Build of the same BuildConfig (a Serial queue moves when one ends). A
reconcile plans with `lifecycle.plan_build`: start the Job, follow it, and on success
record the output tag through `StreamRecorder.record` before writing `Complete`.

Invariants:
- Every status write carries the resourceVersion it was planned from; a conflict, or a
  create that finds its object already there, re-plans from fresher caches.
- The controller reads a build's pods only while it is Pending (has its container
  started? the Job's `ready` count lags by seconds) and once it has ended (the digest, or
  why it failed); it never writes pods.

Failures this prevents: two Builds for one trigger, a Build that never leaves Pending
because its Job was created but the status write was lost (the Job's name is fixed, so
the next pass finds it), and an output image that never reaches its ImageStream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import yaml

from controller.builds.index import BuildIndex
from controller.builds.instantiate import InstantiateError, instantiate
from controller.builds.jobs import (
    BUILD_NAME_ANNOTATION,
    OutputTarget,
    build_container_end,
    build_container_started,
    build_job,
    default_job_template,
    default_push_secret,
    job_ended,
    job_failed,
    job_name,
    job_succeeded,
    output_digest,
    validate_job_template,
)
from controller.builds.lifecycle import BuildStep, plan_build, resolve_output
from controller.builds.model import BuildPhase, build_phase, buildconfig_of
from controller.builds.prune import builds_to_prune
from controller.builds.triggers import base_image, index_keys, plan_buildconfig, pulled_stream_keys
from controller.events import EventRecorder
from controller.loop.outcomes import Requeue, RetryLater
from controller.loop.queue import WorkQueue
from controller.triggers.index import TriggerIndex
from controller.triggers.pullaccess import DenialNotices, PullAccess
from imagestream import imagestreams
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import BUILDCONFIGS, BUILDS, JOBS, PODS
from imagestream.objects import (
    Obj,
    mapping,
    metadata_of,
    name_of,
    namespace_of,
    object_key,
    status_of,
)
from imagestream.recording import RecordError, StreamMissing, StreamRecorder, TagUpdate
from imagestream.settings import SettingsError
from imagestream.timestamps import parse_rfc3339, rfc3339_micro, rfc3339_seconds

log = structlog.get_logger(__name__)

STALE_RETRY_S = 0.1
PUSH_SECRET_RETRY_S = 1.0
"""How soon a Build whose account's pull secret is still to be listed looks again (no
event of the account reaches this loop)."""
PUSH_SECRET_WAIT_S = 60.0
"""How long a Build waits for that Secret before its Job is made without one."""


def trim_job(job: Obj) -> Obj:
    """Keep the Jobs that run Builds (metadata and status); of others only their name."""
    metadata = job.get("metadata") or {}
    if BUILD_NAME_ANNOTATION not in (metadata.get("annotations") or {}):
        return {
            "metadata": {
                k: metadata[k] for k in ("name", "namespace", "resourceVersion") if k in metadata
            }
        }
    return {"metadata": metadata, "status": job.get("status") or {}}


def build_of_job(job: Mapping[str, Any]) -> str | None:
    """The key of the Build a Job runs, if it runs one."""
    build = mapping(mapping(job.get("metadata")).get("annotations")).get(BUILD_NAME_ANNOTATION)
    return f"{namespace_of(job)}/{build}" if isinstance(build, str) and build else None


async def _write_status(kube: Kube, resource: Any, obj: Mapping[str, Any], status: Obj) -> None:
    version = mapping(obj.get("metadata")).get("resourceVersion", "")
    await kube.patch(
        resource,
        namespace_of(obj),
        name_of(obj),
        {"metadata": {"resourceVersion": version}, "status": status},
        subresource="status",
    )


@dataclass
class BuildConfigReconciler:
    kube: Kube
    queue: WorkQueue
    buildconfigs: InformerSet
    builds: InformerSet
    streams: InformerSet
    stream_index: TriggerIndex
    build_index: BuildIndex
    events: EventRecorder
    pull_access: PullAccess
    denials: DenialNotices
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def get_stream(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.streams.get(f"{namespace}/{name}")

    def on_imagestream(self, key: str, _old: Obj | None, _new: Obj | None) -> None:
        """A base image moved: wake the BuildConfigs whose ImageChange triggers follow it."""
        for bc_key in self.stream_index.pointing_at(key):
            self.queue.add(bc_key)

    def on_buildconfig(self, key: str, _old: Obj | None, new: Obj | None) -> None:
        if new is None:
            self.stream_index.remove(key)
        else:
            self.stream_index.update(key, index_keys(new))
        self.queue.add(key)

    async def reconcile(self, key: str) -> Requeue | None:
        bc = self.buildconfigs.get(key)
        if bc is None:
            self.stream_index.remove(key)
            return None
        self.stream_index.update(key, index_keys(bc))
        # Cross-namespace streams: reviewed first (behaviour 16), said once, looked at
        # again when the answers expire. A base image it may not pull builds nothing.
        access = await self.pull_access.answers(namespace_of(bc), pulled_stream_keys(bc))
        await self.denials.announce(key, bc, access)
        base = base_image(bc)
        if base is not None and (base.namespace, base.stream) in access.denied:
            return Requeue(after_s=access.recheck_after_s or STALE_RETRY_S)
        recheck = Requeue(after_s=access.recheck_after_s) if access.recheck_after_s else None
        builds = [b for k in self.build_index.of(key) if (b := self.builds.get(k)) is not None]
        for doomed in builds_to_prune(bc, builds):
            with contextlib.suppress(NotFound):
                await self.kube.delete(BUILDS, namespace_of(bc), doomed)
            log.info("build_pruned", key=key, build=doomed)
        plan = plan_buildconfig(
            bc, builds, get_stream=self.get_stream, namespace_allowed=access.namespace_allowed
        )
        try:
            if plan.heal_status is not None:
                await _write_status(self.kube, BUILDCONFIGS, bc, plan.heal_status)
                log.info(
                    "buildconfig_status_healed",
                    key=key,
                    last_version=plan.heal_status["lastVersion"],
                )
                return recheck
            if plan.request is None:
                return recheck
            try:
                made = instantiate(
                    bc,
                    plan.request,
                    builds,
                    get_stream=self.get_stream,
                    now=rfc3339_seconds(self.clock()),
                    namespace_allowed=access.namespace_allowed,
                )
            except InstantiateError as error:
                await self.events.post(
                    bc,
                    type_="Warning",
                    reason="BuildConfigInstantiateFailed",
                    action="Instantiate",
                    note=str(error),
                )
                return recheck
            await self.kube.create(BUILDS, namespace_of(bc), made.build)
            await _write_status(self.kube, BUILDCONFIGS, bc, made.status)
        except (Conflict, NotFound):
            log.debug("buildconfig_stale", key=key)
            return Requeue(after_s=STALE_RETRY_S)
        cause = plan.request.causes[0].get("message", "")
        await self.events.post(
            bc,
            type_="Normal",
            reason="BuildCreated",
            action="Instantiate",
            note=f'Created build "{name_of(made.build)}" ({cause}'
            + (f": {plan.request.triggered_by_image})" if plan.request.triggered_by_image else ")"),
        )
        log.info(
            "build_created",
            key=key,
            build=name_of(made.build),
            cause=cause,
            image=plan.request.triggered_by_image,
        )
        return recheck


@dataclass
class BuildReconciler:
    kube: Kube
    queue: WorkQueue
    buildconfig_queue: WorkQueue
    """The build loop wakes a BuildConfig when one of its Builds is created, ends or goes."""
    builds: InformerSet
    jobs: InformerSet
    streams: InformerSet
    build_index: BuildIndex
    recorder: StreamRecorder
    events: EventRecorder
    job_template: Obj
    insecure_registries: tuple[str, ...] = ()
    integrated_hosts: Callable[[], list[str]] = list
    """The integrated registry's hosts now; with `pull_secret_of`, where a Build without a
    pushSecret pushes with its service account's pull secret."""
    pull_secret_of: Callable[[str, str], str | None] = lambda _namespace, _account: ""
    """(namespace, account) -> that account's integrated-registry pull secret, "" when none
    applies, None while one is still to come (the pull-secret loop has not listed it)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def get_stream(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.streams.get(f"{namespace}/{name}")

    def on_build(self, key: str, old: Obj | None, new: Obj | None) -> None:
        """Index the Build; wake it, its unfinished siblings (run policies) and, when it
        was created or deleted, its BuildConfig."""
        bc_key = self.build_index.update(key, new)
        if new is not None:
            self.queue.add(key)
        if bc_key is None:
            return
        for sibling in self.build_index.of(bc_key):
            build = self.builds.get(sibling)
            if build is not None and not build_phase(build).terminal:
                self.queue.add(sibling)
        ended = new is not None and build_phase(new).terminal
        if old is None or new is None or (ended and not build_phase(old).terminal):
            self.buildconfig_queue.add(bc_key)  # a Build came, went, or ended (history limits)

    def on_job(self, _key: str, old: Obj | None, new: Obj | None) -> None:
        if (build_key := build_of_job(new or old or {})) is not None:
            self.queue.add(build_key)

    async def reconcile(self, key: str) -> Requeue | None:
        build = self.builds.get(key)
        if build is None:
            return None
        phase = build_phase(build)
        if phase.terminal:
            return None
        namespace, name = namespace_of(build), name_of(build)
        job = self.jobs.get(f"{namespace}/{job_name(name)}")
        job_gone = False
        if job is None and phase in (BuildPhase.PENDING, BuildPhase.RUNNING):
            try:
                job = await self.kube.get(JOBS, namespace, job_name(name))
            except NotFound:
                job_gone = True
        digest, ended = None, None
        if job is not None and status_of(build).get("cancelled") is not True:
            if job_succeeded(job):
                digest = output_digest(job, []) or output_digest(job, await self._pods(job))
            elif job_failed(job) is not None:
                ended = build_container_end(await self._pods(job))
        started = False
        if job is not None and phase is BuildPhase.PENDING and not job_ended(job):
            started = build_container_started(await self._pods(job))
        config = buildconfig_of(build)
        siblings = [
            b
            for k in self.build_index.of(f"{namespace}/{config}")
            if (b := self.builds.get(k)) is not None
        ]
        step = plan_build(
            build,
            siblings=siblings,
            output=resolve_output(build, get_stream=self.get_stream),
            job=job,
            job_gone=job_gone,
            digest=digest,
            ended=ended,
            started=started,
            now=self.clock(),
        )
        push_secret = ""
        if step.create_job is not None:
            waited = self._push_secret(build, step.create_job)
            if waited is None:
                return Requeue(after_s=PUSH_SECRET_RETRY_S)
            push_secret = waited
        try:
            await self._perform(build, step, push_secret)
        except (Conflict, NotFound):
            log.debug("build_stale", key=key)
            return Requeue(after_s=STALE_RETRY_S)
        return Requeue(after_s=step.requeue_after_s) if step.requeue_after_s else None

    def _push_secret(self, build: Obj, output: OutputTarget) -> str | None:
        """The Secret the Job pushes with; None: wait, the account's is still to be listed.

        Waiting is bounded by the Build's age: a Job without credentials is made after
        PUSH_SECRET_WAIT_S (the push then fails with the registry's reason, as it would
        on OpenShift), so an account the pull-secret loop is refused never holds a Build
        forever."""
        secret = default_push_secret(
            build,
            output,
            integrated_hosts=self.integrated_hosts(),
            pull_secret_of=self.pull_secret_of,
        )
        if secret is not None:
            return secret
        created = parse_rfc3339(metadata_of(build).get("creationTimestamp"))
        if created is not None and (self.clock() - created).total_seconds() >= PUSH_SECRET_WAIT_S:
            log.warning("build_push_secret_missing", build=object_key(build))
            return ""
        log.debug("build_waits_for_push_secret", build=object_key(build))
        return None

    async def _perform(self, build: Obj, step: BuildStep, push_secret: str) -> None:
        namespace, name = namespace_of(build), name_of(build)
        if step.create_job is not None:
            job = build_job(
                build,
                template=self.job_template,
                output=step.create_job,
                insecure_registries=self.insecure_registries,
                push_secret=push_secret,
            )
            try:
                await self.kube.create(JOBS, namespace, job)
                log.info("build_job_created", build=f"{namespace}/{name}", job=name_of(job))
            except Conflict:
                pass  # created by an earlier pass whose status write was lost
        if step.delete_job:
            with contextlib.suppress(NotFound):
                await self.kube.request(
                    "DELETE",
                    JOBS.path(namespace=namespace, name=job_name(name)),
                    body={
                        "apiVersion": "v1",
                        "kind": "DeleteOptions",
                        "propagationPolicy": "Background",
                    },
                )
        if step.record is not None and step.digest:
            await self._record(build, step.record, step.digest)
        if step.status is not None:
            await _write_status(self.kube, BUILDS, build, step.status)
            if step.status.get("phase") != status_of(build).get("phase"):
                log.info("build_phase", build=f"{namespace}/{name}", phase=step.status.get("phase"))
        for note in step.notes:
            await self.events.post(
                build, type_=note.type, reason=note.reason, action="Build", note=note.message
            )

    async def _pods(self, job: Mapping[str, Any]) -> list[Obj]:
        """The Job's pods (read only when it has ended: the digest, or why it failed)."""
        uid = mapping(job.get("metadata")).get("uid", "")
        pods, _ = await self.kube.list(
            PODS, namespace_of(job), label_selector=f"batch.kubernetes.io/controller-uid={uid}"
        )
        return pods

    async def _record(self, build: Obj, target: OutputTarget, digest: str) -> None:
        """The output tag gets a tag event exactly as an integrated-registry push records it."""
        event = imagestreams.TagEvent(
            created=rfc3339_micro(self.clock()),
            docker_image_reference=f"{target.repository}@{digest}",
            image=digest,
            generation=0,
        )
        update = TagUpdate(
            tag=target.tag, event=event, event_id=f"build:{namespace_of(build)}/{name_of(build)}"
        )
        try:
            results = await self.recorder.record(target.stream_namespace, target.stream, [update])
        except StreamMissing:
            await self.events.post(
                build,
                type_="Warning",
                reason="BuildOutputStreamMissing",
                action="Record",
                note=f"ImageStream {target.stream_namespace}/{target.stream} no longer exists;"
                f" {digest} was not recorded",
            )
            return
        except RecordError as error:
            raise RetryLater(f"recording the output of {name_of(build)}: {error}") from error
        log.info(
            "build_output_recorded",
            build=f"{namespace_of(build)}/{name_of(build)}",
            imagestream=f"{target.stream_namespace}/{target.stream}",
            tag=target.tag,
            digest=digest,
            duplicate=all(result.duplicate for result in results),
        )


def load_job_template(path: Path | None, builder_image: str = "") -> Obj:
    """The Job template Builds run from: the file's (validated), else rootless buildah
    running `builder_image` (default: the public one).

    Read once at start; a bad file stops the process there rather than failing every Build.
    """
    if path is None:
        return default_job_template(builder_image)
    try:
        return validate_job_template(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise SettingsError(f"--build-job-template {path}: {error}") from error
