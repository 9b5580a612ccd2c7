"""Composition root of the controller process.

The only module of the controller that constructs collaborators. It wires:

    informers (ImageStreams; Deployments, StatefulSets, DaemonSets,
               CronJobs; DeploymentConfigs when their API is served)
        |  handlers turn changes into keys
        v
    two work queues:  imagestreams  ->  ImageStreamReconciler (spec tags, imports)
                      workloads     ->  WorkloadReconciler    (triggers)
    and, where our CRDs serve apps.openshift.io / build.openshift.io:
                      rollouts      ->  RolloutReconciler     (DCs -> ReplicationControllers)
                      buildconfigs  ->  BuildConfigReconciler (triggers -> Builds)
                      builds        ->  BuildReconciler       (Builds -> Jobs -> output tag)
    an ImageStream change enqueues its own key, and, through the
    TriggerIndex, the key of every workload that follows it.

Caches fill and stay warm on every replica; only the elected leader runs
workers (and so writes). Losing the lease stops the process: better to be
restarted than to write while another replica believes it leads.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter, Gauge

from controller.builds.reconciler import (
    BuildConfigReconciler,
    BuildIndex,
    BuildReconciler,
    build_of_job,
    load_job_template,
    trim_job,
)
from controller.events import EventRecorder
from controller.imagestreams.reconciler import ImageStreamReconciler
from controller.loop.queue import WorkQueue
from controller.loop.workers import OutcomeObserver, Reconcile, run_workers
from controller.rollouts.reconciler import (
    ReplicationControllerIndex,
    RolloutReconciler,
    trim_replicationcontroller,
)
from controller.triggers.outcomes import allow_any_namespace, same_namespace_only
from controller.triggers.reactors import (
    ANNOTATION_SOURCES,
    DEPLOYMENTCONFIG_SOURCE,
    TriggerIndex,
    TriggerSource,
)
from controller.triggers.reconciler import WorkloadMetrics, WorkloadReconciler
from imagestream.health import ReadinessCheck
from imagestream.kube.client import Kube
from imagestream.kube.crds import natively_served_groups
from imagestream.kube.errors import KubeError
from imagestream.kube.informer import InformerSet, Transform
from imagestream.kube.leader import LeaderElector
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    DEPLOYMENTCONFIGS,
    IMAGESTREAMS,
    JOBS,
    REPLICATIONCONTROLLERS,
    Resource,
)
from imagestream.objects import Obj
from imagestream.process import Collaborators
from imagestream.recording import StreamRecorder
from imagestream.registry_access import RegistryAccess

log = structlog.get_logger(__name__)

LEASE_NAME = "imagestream-controller"
ELECTION_TASK = "leader-election"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Controller:
    tasks: list[asyncio.Task[Any]]
    queues: list[WorkQueue]
    session: aiohttp.ClientSession
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    elector: LeaderElector | None = None
    name: str = "controller"

    async def aclose(self) -> None:
        for queue in self.queues:
            queue.shut_down()
        # Workers first; only then may the lease go (cancelling the elector
        # releases it), so a successor never overlaps with our writes.
        election = [t for t in self.tasks if t.get_name() == ELECTION_TASK]
        others = [t for t in self.tasks if t not in election]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        for task in election:
            task.cancel()
        await asyncio.gather(*election, return_exceptions=True)
        await self.session.close()


async def _native_groups(kube: Kube, served: set[str]) -> set[str]:
    """API groups served by the platform itself, not by a CRD (ours or anyone's)."""
    try:
        return await natively_served_groups(kube)
    except KubeError as error:
        # Listing CRDs may not be granted; OpenShift always serves projects natively.
        log.warning("crds_not_listed", error=str(error))
        return set(served) if "project.openshift.io" in served else set()


def _lease_namespace(configured: str) -> str:
    if configured:
        return configured
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "default"


async def start(collaborators: Collaborators) -> Controller:
    settings, kube, metrics = collaborators.settings, collaborators.kube, collaborators.metrics
    namespaces = list(settings.watch_namespaces)

    streams = InformerSet.create(
        kube,
        IMAGESTREAMS,
        namespaces,
        resync_period_s=settings.resync_period_s,
        watch_timeout_s=settings.watch_timeout_s,
    )
    sources: list[TriggerSource] = list(ANNOTATION_SOURCES)
    served = await kube.served_groups()
    if DEPLOYMENTCONFIG_SOURCE.resource.group in served:
        sources.append(DEPLOYMENTCONFIG_SOURCE)
    caches = {
        source.resource.plural: InformerSet.create(
            kube,
            source.resource,
            namespaces,
            transform=source.trim,
            resync_period_s=settings.resync_period_s,
            watch_timeout_s=settings.watch_timeout_s,
        )
        for source in sources
    }
    index = TriggerIndex()
    stream_queue, workload_queue = WorkQueue(), WorkQueue()

    def on_stream(key: str, _old: Obj | None, _new: Obj | None) -> None:
        stream_queue.add(key)
        for workload in index.objects_following(key):
            workload_queue.add(workload)

    streams.add_handler(on_stream)
    for source in sources:

        def on_workload(
            key: str, old: Obj | None, new: Obj | None, source: TriggerSource = source
        ) -> None:
            namespace, name = key.split("/", 1)
            queue_key = source.key(namespace, name)
            if new is None:
                index.remove(queue_key)
                return
            index.update(queue_key, source.index_keys(new))
            if source.needs_reconcile(old, new):
                workload_queue.add(queue_key)

        caches[source.resource.plural].add_handler(on_workload)

    session = aiohttp.ClientSession()
    registry_access = RegistryAccess.from_settings(settings, session=session, kube=kube)
    writes = Counter(
        "imagestream_controller_status_writes",
        "ImageStream status writes by the controller.",
        registry=metrics,
    )
    recorder = StreamRecorder(
        kube=kube,
        get_cached=streams.get,
        history_limit=settings.history_limit,
        on_write=lambda _key, _n: writes.inc(),
    )
    identity = f"{socket.gethostname()}_{os.getpid()}"
    stream_reconciler = ImageStreamReconciler(
        streams=streams,
        recorder=recorder,
        registry_access=registry_access,
        import_interval_s=settings.import_interval_s,
        integrated_registry=settings.integrated_registry,
    )
    # One recorder for every loop: one memory of what was already said, one queue.
    events = EventRecorder(kube=kube, instance=identity)
    workload_reconciler = WorkloadReconciler(
        kube=kube,
        sources={source.resource.plural: source for source in sources},
        caches=caches,
        streams=streams,
        index=index,
        events=events,
        metrics=WorkloadMetrics.create(metrics),
        namespace_allowed=(
            allow_any_namespace if settings.allow_cross_namespace_triggers else same_namespace_only
        ),
    )
    outcomes = Counter(
        "imagestream_reconcile",
        "Reconciles by queue and outcome.",
        ["queue", "outcome"],
        registry=metrics,
    )
    depth = Gauge(
        "imagestream_queue_depth", "Keys waiting in each work queue.", ["queue"], registry=metrics
    )

    # DeploymentConfig rollouts and Builds: only where our CRDs serve those APIs (on
    # OpenShift the platform runs them).
    ours = served - await _native_groups(kube, served)
    loops: list[tuple[str, WorkQueue, Reconcile]] = [
        ("imagestreams", stream_queue, stream_reconciler.reconcile),
        ("workloads", workload_queue, workload_reconciler.reconcile),
    ]
    platform_informers: list[InformerSet] = []

    def cache(resource: Resource, transform: Transform | None = None) -> InformerSet:
        return InformerSet.create(
            kube,
            resource,
            namespaces,
            transform=transform,
            resync_period_s=settings.resync_period_s,
            watch_timeout_s=settings.watch_timeout_s,
        )

    if DEPLOYMENTCONFIGS.group in ours:
        rollout_queue = WorkQueue()
        dcs, rcs = (
            cache(DEPLOYMENTCONFIGS),
            cache(REPLICATIONCONTROLLERS, trim_replicationcontroller),
        )
        rollouts = RolloutReconciler(
            kube=kube,
            deploymentconfigs=dcs,
            replicationcontrollers=rcs,
            index=ReplicationControllerIndex(),
            events=events,
        )

        def on_rc(key: str, old: Obj | None, new: Obj | None) -> None:
            if (dc_key := rollouts.on_replicationcontroller(key, old, new)) is not None:
                rollout_queue.add(dc_key)

        dcs.add_handler(lambda key, _old, _new: rollout_queue.add(key))
        rcs.add_handler(on_rc)
        loops.append(("rollouts", rollout_queue, rollouts.reconcile))
        platform_informers += [dcs, rcs]
    if BUILDCONFIGS.group in ours:
        bc_queue, build_queue = WorkQueue(), WorkQueue()
        bcs, builds, jobs = cache(BUILDCONFIGS), cache(BUILDS), cache(JOBS, trim_job)
        build_index = BuildIndex()
        bc_reconciler = BuildConfigReconciler(
            kube=kube,
            buildconfigs=bcs,
            builds=builds,
            streams=streams,
            stream_index=TriggerIndex(),
            build_index=build_index,
            events=events,
            namespace_allowed=(
                allow_any_namespace
                if settings.allow_cross_namespace_triggers
                else same_namespace_only
            ),
        )
        build_reconciler = BuildReconciler(
            kube=kube,
            builds=builds,
            jobs=jobs,
            streams=streams,
            build_index=build_index,
            recorder=recorder,
            events=events,
            job_template=load_job_template(settings.build_job_template),
        )

        def on_buildconfig(key: str, old: Obj | None, new: Obj | None) -> None:
            bc_reconciler.on_buildconfig(key, old, new)
            bc_queue.add(key)

        def on_build(key: str, old: Obj | None, new: Obj | None) -> None:
            wake, bc_key = build_reconciler.on_build(key, old, new)
            for build_key in wake:
                build_queue.add(build_key)
            if bc_key is not None:
                bc_queue.add(bc_key)

        def on_job(_key: str, old: Obj | None, new: Obj | None) -> None:
            if (build_key := build_of_job(new or old or {})) is not None:
                build_queue.add(build_key)

        def on_base_image(key: str, _old: Obj | None, _new: Obj | None) -> None:
            for bc_key in bc_reconciler.following(key):
                bc_queue.add(bc_key)

        bcs.add_handler(on_buildconfig)
        builds.add_handler(on_build)
        jobs.add_handler(on_job)
        streams.add_handler(on_base_image)
        loops.append(("buildconfigs", bc_queue, bc_reconciler.reconcile))
        loops.append(("builds", build_queue, build_reconciler.reconcile))
        platform_informers += [bcs, builds, jobs]
    for loop_name, loop_queue, _ in loops:
        depth.labels(loop_name).set_function(functools.partial(len, loop_queue))

    def count(loop: str) -> OutcomeObserver:
        return lambda outcome: outcomes.labels(loop, outcome).inc()

    informer_sets = [streams, *caches.values(), *platform_informers]
    elector = (
        LeaderElector(
            kube=kube,
            namespace=_lease_namespace(settings.leader_election_namespace),
            name=LEASE_NAME,
            identity=identity,
        )
        if settings.leader_elect
        else None
    )

    async def lead() -> None:
        for informers in informer_sets:
            await informers.wait_synced()
        if elector is not None:
            await elector.elected.wait()
        log.info("controller_leading", workloads=len(index), identity=identity)
        async with asyncio.TaskGroup() as group:
            for loop_name, loop_queue, reconcile in loops:
                group.create_task(
                    run_workers(
                        name=loop_name,
                        queue=loop_queue,
                        reconcile=reconcile,
                        concurrency=settings.workers,
                        on_outcome=count(loop_name),
                    )
                )

    async def watch_leadership() -> None:
        assert elector is not None
        await elector.lost.wait()
        collaborators.stop.set()  # stop writing at once; the process exits

    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(informers.run(), name=f"informer-{i}")
        for i, informers in enumerate(informer_sets)
    ]
    tasks.append(asyncio.create_task(lead(), name="controller-workers"))
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(), name=ELECTION_TASK))
        tasks.append(asyncio.create_task(watch_leadership(), name="leadership-watch"))

    async def synced() -> bool:
        return all(informers.has_synced() for informers in informer_sets)

    return Controller(
        tasks=tasks,
        queues=[queue for _, queue, _ in loops],
        session=session,
        readiness_checks={"controller-caches-synced": synced},
        elector=elector,
    )
