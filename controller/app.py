"""Composition root of the controller process.

The only module of the controller that constructs collaborators. It wires:

    informers (ImageStreams; Deployments, StatefulSets, DaemonSets,
               CronJobs; DeploymentConfigs when their API is served)
        |  handlers turn changes into keys
        v
    two work queues:  imagestreams  ->  ImageStreamReconciler (spec tags, imports)
                      workloads     ->  WorkloadReconciler    (triggers)
    an ImageStream change enqueues its own key, and, through the
    TriggerIndex, the key of every workload that follows it.

Caches fill and stay warm on every replica; only the elected leader runs
workers (and so writes). Losing the lease stops the process: better to be
restarted than to write while another replica believes it leads.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter, Gauge

from controller.events import EventRecorder
from controller.imagestreams import ImageStreamReconciler
from controller.sources import (
    ANNOTATION_SOURCES,
    DEPLOYMENTCONFIG_SOURCE,
    TriggerIndex,
    TriggerSource,
)
from controller.triggers.plan import allow_any_namespace, same_namespace_only
from controller.workers import run_workers
from controller.workloads import WorkloadMetrics, WorkloadReconciler
from imagestream.health import ReadinessCheck
from imagestream.kube.client import Obj
from imagestream.kube.informer import InformerSet
from imagestream.kube.leader import LeaderElector
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.process import Collaborators
from imagestream.recording import StreamRecorder
from imagestream.registry_access import RegistryAccess
from imagestream.workqueue import WorkQueue

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
        kube, IMAGESTREAMS, namespaces, resync_period_s=settings.resync_period_s
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
    registry_access = RegistryAccess(
        session=session,
        kube=kube,
        global_config_file=settings.registry_config,
        ca_bundle=settings.registry_ca_bundle,
        allowed_registries=settings.allowed_registries,
    )
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
    workload_reconciler = WorkloadReconciler(
        kube=kube,
        sources={source.resource.plural: source for source in sources},
        caches=caches,
        streams=streams,
        index=index,
        events=EventRecorder(kube=kube, instance=identity),
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
    depth.labels("imagestreams").set_function(lambda: len(stream_queue))
    depth.labels("workloads").set_function(lambda: len(workload_queue))

    informer_sets = [streams, *caches.values()]
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
            group.create_task(
                run_workers(
                    name="imagestreams",
                    queue=stream_queue,
                    reconcile=stream_reconciler.reconcile,
                    concurrency=settings.workers,
                    on_outcome=lambda o: outcomes.labels("imagestreams", o).inc(),
                )
            )
            group.create_task(
                run_workers(
                    name="workloads",
                    queue=workload_queue,
                    reconcile=workload_reconciler.reconcile,
                    concurrency=settings.workers,
                    on_outcome=lambda o: outcomes.labels("workloads", o).inc(),
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
        queues=[stream_queue, workload_queue],
        session=session,
        readiness_checks={"controller-caches-synced": synced},
        elector=elector,
    )
