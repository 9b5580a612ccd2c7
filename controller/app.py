"""Composition root of the controller process.

The only module of the controller that constructs collaborators: it builds
each loop's pieces (caches, queue, index, reconciler), connects the caches'
change handlers that each loop defines, and starts the workers. No handler
logic lives here; a newcomer looking for "what wakes the trigger loop" finds
it in `controller/triggers/reconciler.py`. It wires:

    informers (ImageStreams; Deployments, StatefulSets, DaemonSets,
               CronJobs; DeploymentConfigs when their API is served)
        |  handlers turn changes into keys
        v
    two work queues:  imagestreams  ->  ImageStreamReconciler (spec tags, imports)
                      workloads     ->  TriggerReconciler     (one reactor per kind)
    and, where our CRDs serve apps.openshift.io / build.openshift.io:
                      rollouts      ->  RolloutReconciler     (DCs -> ReplicationControllers)
                      buildconfigs  ->  BuildConfigReconciler (triggers -> Builds)
                      builds        ->  BuildReconciler       (Builds -> Jobs -> output tag)
    and, with --registry-operator:
                      registryoperator -> RegistryOperator    (the integrated registry)
    and, with --service-account-pull-secrets:
                      pullsecrets   ->  PullSecretReconciler  (ServiceAccounts -> pull Secrets)
    an ImageStream change enqueues its own key, and, through the
    TriggerIndex, the key of every workload that follows it.

Caches fill and stay warm on every replica; only the elected leader runs
workers (and so writes). Losing the lease stops the process: better to be
restarted than to write while another replica believes it leads.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter, Gauge

from controller.builds.index import BuildIndex
from controller.builds.reconciler import (
    BuildConfigReconciler,
    BuildReconciler,
    load_job_template,
    trim_job,
)
from controller.events import EventRecorder
from controller.imagestreams.reconciler import IMPORT_FAILURE_REASONS, ImageStreamReconciler
from controller.loop.queue import WorkQueue
from controller.loop.workers import Loop, run_workers
from controller.registryoperator.plan import BOOTSTRAP_STATES, Bootstrap, Options
from controller.registryoperator.reconciler import KEY as OPERATOR_KEY
from controller.registryoperator.reconciler import RegistryOperator, SecretKey, TokenAuthSource
from controller.rollouts.index import ReplicationControllerIndex
from controller.rollouts.reconciler import RolloutReconciler, trim_replicationcontroller
from controller.serviceaccounts.plan import MANAGED_SELECTOR
from controller.serviceaccounts.reconciler import PullSecretReconciler, trim_serviceaccount
from controller.triggers.index import TriggerIndex
from controller.triggers.pullaccess import DenialNotices, PullAccess
from controller.triggers.reactors import REACTORS
from controller.triggers.reconciler import TriggerMetrics, TriggerReconciler
from imagestream.health import ReadinessCheck, StopSignal
from imagestream.image_config import parse_image_config
from imagestream.image_config_source import ClusterImageConfig
from imagestream.imagestreams import trim_for_cache
from imagestream.kube.client import Kube
from imagestream.kube.crds import natively_served_groups
from imagestream.kube.errors import KubeError
from imagestream.kube.informer import InformerSet, Transform
from imagestream.kube.leader import LeaderElector
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    IMAGE_CONFIGS,
    IMAGESTREAMS,
    JOBS,
    REGISTRY_CONFIGS,
    REPLICATIONCONTROLLERS,
    SECRETS,
    SERVICEACCOUNTS,
    Resource,
)
from imagestream.objects import Obj, object_key
from imagestream.process import IMAGESTREAMS_CACHE, Collaborators
from imagestream.recording import StreamRecorder
from imagestream.registry_access import RegistryAccess
from imagestream.registry_tokens import ISSUER as TOKEN_ISSUER
from imagestream.registry_tokens import SERVICE as TOKEN_SERVICE
from imagestream.registry_tokens import SIGNING_CERT_KEY, parse_secret_reference
from imagestream.settings import Settings, SettingsError

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

    def cache(
        resource: Resource, transform: Transform | None = None, *, selector: str | None = None
    ) -> InformerSet:
        return InformerSet.create(
            kube,
            resource,
            namespaces,
            transform=transform,
            resync_period_s=settings.resync_period_s,
            watch_timeout_s=settings.watch_timeout_s,
            label_selector=selector,
            after_list_page=collaborators.after_list_page,
        )

    identity = f"{socket.gethostname()}_{os.getpid()}"
    # Cross-namespace streams: the image-puller rule (behaviour 16), or no check at all.
    pull_access = (
        PullAccess.allow_all_namespaces()
        if settings.allow_cross_namespace_triggers
        else PullAccess.reviewing(kube, ttl_s=settings.pull_access_ttl_s)
    )
    served = await kube.served_groups()
    # DeploymentConfig rollouts and Builds: only where our CRDs serve those APIs (on
    # OpenShift the platform runs them).
    ours = served - await _native_groups(kube, served)
    # Shared with the webhook in `imagestream run`: one watch, one copy of each stream.
    streams = collaborators.caches.get(
        IMAGESTREAMS_CACHE, lambda: cache(IMAGESTREAMS, trim_for_cache)
    )
    # The cluster image configuration: read at every import (behaviour 31).
    image_config = ClusterImageConfig.create(kube, settings, served=served)
    session = aiohttp.ClientSession()
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
        on_written=collaborators.written_imagestreams.publish,
    )
    # In `imagestream run` the webhook's writes reach this cache at once, not a watch later.
    collaborators.written_imagestreams.subscribe(streams.observe)
    # One recorder for every loop: one memory of what was already said, one queue.
    events = EventRecorder(kube=kube, instance=identity)

    # The ImageStream loop: spec tags and imports.
    imports = Counter(
        "imagestream_imports",
        "Imports of DockerImage spec tags by result (imported, failed, throttled) and, for"
        " failures, the reason recorded on the tag's ImportSuccess condition.",
        ["result", "reason"],
        registry=metrics,
    )
    # Every series at 0 from the start: increase() misses a counter's first step when its
    # series appears already at 1, so the first failure of a reason would not alert.
    imports.labels("imported", "")
    imports.labels("throttled", "TooManyRequests")
    for reason in IMPORT_FAILURE_REASONS:
        imports.labels("failed", reason)
    stream_loop = ImageStreamReconciler(
        on_import=lambda result, reason: imports.labels(result, reason).inc(),
        queue=WorkQueue(),
        streams=streams,
        recorder=recorder,
        registry_access=RegistryAccess.from_settings(
            settings, session=session, kube=kube, policy=image_config.policy
        ),
        import_interval_s=settings.import_interval_s,
        integrated_registry=settings.integrated_registry,
    )
    streams.add_handler(stream_loop.on_imagestream)
    if image_config.configs is not None:
        # A new integrated or external hostname changes every stream's repositories.
        def requeue_streams(_key: str, old: Obj | None, new: Obj | None) -> None:
            if old is new:  # a resync: the streams' own resync requeues them
                return
            for stream in streams.values():
                stream_loop.queue.add(object_key(stream))

        image_config.configs.add_handler(requeue_streams)

    # The trigger loop: one reactor and one cache per kind whose API is served.
    reactors = [r for r in REACTORS if r.resource.group in served or not r.resource.group]
    workloads = {r.resource.plural: cache(r.resource, r.trim) for r in reactors}
    trigger_metrics = TriggerMetrics.create(metrics)
    for reactor in reactors:
        trigger_metrics.patches.labels(reactor.resource.plural)  # at 0 from the start
    trigger_queue = WorkQueue()
    # Events follow the queued patches instead of slowing them (controller/events.py).
    events.drained = trigger_queue.wait_empty
    trigger_loop = TriggerReconciler(
        kube=kube,
        queue=trigger_queue,
        reactors={r.resource.plural: r for r in reactors},
        caches=workloads,
        streams=streams,
        index=TriggerIndex(),
        events=events,
        metrics=trigger_metrics,
        pull_access=pull_access,
    )
    streams.add_handler(trigger_loop.on_imagestream)
    for reactor in reactors:
        workloads[reactor.resource.plural].add_handler(trigger_loop.on_object_of(reactor))
    loops = [
        Loop("imagestreams", stream_loop.queue, stream_loop.reconcile),
        Loop("workloads", trigger_loop.queue, trigger_loop.reconcile),
    ]
    informer_sets = [streams, *workloads.values(), *image_config.informer_sets]

    if DEPLOYMENTCONFIGS.group in ours:
        # The rollout loop: DeploymentConfigs -> ReplicationControllers.
        dcs, rcs = (
            cache(DEPLOYMENTCONFIGS),
            cache(REPLICATIONCONTROLLERS, trim_replicationcontroller),
        )
        rollout_loop = RolloutReconciler(
            kube=kube,
            queue=WorkQueue(),
            deploymentconfigs=dcs,
            replicationcontrollers=rcs,
            index=ReplicationControllerIndex(),
            events=events,
        )
        dcs.add_handler(rollout_loop.on_deploymentconfig)
        rcs.add_handler(rollout_loop.on_replicationcontroller)
        loops.append(Loop("rollouts", rollout_loop.queue, rollout_loop.reconcile))
        informer_sets += [dcs, rcs]

    def registry_hosts() -> list[str]:
        host = image_config.integrated_registry()
        return [host] if host else []

    pull_secret_loop: PullSecretReconciler | None = None
    if settings.service_account_pull_secrets:
        # Pull secrets for the integrated registry, per ServiceAccount (behaviour 34).
        accounts = cache(SERVICEACCOUNTS, trim_serviceaccount)
        pull_secrets = cache(SECRETS, selector=MANAGED_SELECTOR)
        pull_secret_loop = PullSecretReconciler(
            kube=kube,
            queue=WorkQueue(),
            accounts=accounts,
            secrets=pull_secrets,
            hosts=registry_hosts,
            token_expiry_s=settings.pull_secret_token_expiry_s,
        )
        accounts.add_handler(pull_secret_loop.on_account)
        pull_secrets.add_handler(pull_secret_loop.on_secret)
        if image_config.configs is not None:

            def host_changed(_key: str, old: Obj | None, new: Obj | None) -> None:
                before = parse_image_config(old).internal_hostname
                if old is not new and before != parse_image_config(new).internal_hostname:
                    pull_secret_loop.on_hosts_changed()

            image_config.configs.add_handler(host_changed)
        loops.append(Loop("pullsecrets", pull_secret_loop.queue, pull_secret_loop.reconcile))
        informer_sets += [accounts, pull_secrets]

    if BUILDCONFIGS.group in ours:
        # The build loop: BuildConfig triggers -> Builds -> Jobs -> the output tag.
        bcs, builds, jobs = cache(BUILDCONFIGS), cache(BUILDS), cache(JOBS, trim_job)
        build_index = BuildIndex()
        buildconfig_loop = BuildConfigReconciler(
            kube=kube,
            queue=WorkQueue(),
            buildconfigs=bcs,
            builds=builds,
            streams=streams,
            stream_index=TriggerIndex(),
            build_index=build_index,
            events=events,
            pull_access=pull_access,
            denials=DenialNotices(events=events),
        )
        build_loop = BuildReconciler(
            kube=kube,
            queue=WorkQueue(),
            buildconfig_queue=buildconfig_loop.queue,
            builds=builds,
            jobs=jobs,
            streams=streams,
            build_index=build_index,
            recorder=recorder,
            events=events,
            job_template=load_job_template(settings.build_job_template, settings.builder_image),
            insecure_registries=settings.build_insecure_registries,
            # Without a pushSecret, an output to the integrated registry is pushed with
            # the builder account's pull secret (behaviour 34), when that loop runs.
            integrated_hosts=registry_hosts,
            pull_secret_of=(
                pull_secret_loop.pull_secret_of if pull_secret_loop is not None else _no_secret
            ),
        )
        bcs.add_handler(buildconfig_loop.on_buildconfig)
        streams.add_handler(buildconfig_loop.on_imagestream)
        builds.add_handler(build_loop.on_build)
        jobs.add_handler(build_loop.on_job)
        loops.append(Loop("buildconfigs", buildconfig_loop.queue, buildconfig_loop.reconcile))
        loops.append(Loop("builds", build_loop.queue, build_loop.reconcile))
        informer_sets += [bcs, builds, jobs]

    if settings.registry_operator:
        # The Image Registry Operator's loop (behaviour 32): one key, `cluster`.
        operator_loop, operator_caches = _registry_operator(kube, settings)
        loops.append(Loop("registryoperator", operator_loop.queue, operator_loop.reconcile))
        informer_sets += operator_caches

    outcomes = Counter(
        "imagestream_reconcile",
        "Reconciles by queue and outcome.",
        ["queue", "outcome"],
        registry=metrics,
    )
    depth = Gauge(
        "imagestream_queue_depth", "Keys waiting in each work queue.", ["queue"], registry=metrics
    )
    for loop in loops:
        depth.labels(loop.name).set_function(functools.partial(len, loop.queue))
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
    Gauge(
        "imagestream_controller_leader",
        "1 while this controller leads (holds the Lease, or runs without leader election),"
        " else 0: across replicas the sum is 1, and 0 means nobody writes.",
        registry=metrics,
    ).set_function(functools.partial(_leading, elector))
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(informers.run(), name=f"informer-{i}")
        for i, informers in enumerate(informer_sets)
    ]
    tasks.append(
        asyncio.create_task(
            _lead(
                informer_sets=informer_sets,
                elector=elector,
                loops=loops,
                concurrency=settings.workers,
                count=lambda loop, outcome: outcomes.labels(loop, outcome).inc(),
                tracked_workloads=trigger_loop.index,
                identity=identity,
            ),
            name="controller-workers",
        )
    )
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(), name=ELECTION_TASK))
        tasks.append(
            asyncio.create_task(
                _stop_when_lost(elector, collaborators.stop), name="leadership-watch"
            )
        )

    async def synced() -> bool:
        return all(informers.has_synced() for informers in informer_sets)

    return Controller(
        tasks=tasks,
        queues=[loop.queue for loop in loops],
        session=session,
        readiness_checks={"controller-caches-synced": synced},
        elector=elector,
    )


def _registry_operator(
    kube: Kube, settings: Settings
) -> tuple[RegistryOperator, list[InformerSet]]:
    try:
        notification_secret = SecretKey.parse(settings.registry_notification_secret)
    except ValueError as error:
        raise SettingsError(f"--registry-notification-secret: {error}") from error
    operator = RegistryOperator(
        kube=kube,
        queue=WorkQueue(),
        options=Options(
            namespace=settings.registry_namespace,
            image=settings.registry_image,
            notification_url=settings.registry_notification_url,
            route_domain=settings.registry_route_domain,
            ingress_class=settings.registry_ingress_class,
            cluster_ip=_cluster_ip(settings.registry_cluster_ip),
            bootstrap=registry_bootstrap(settings),
        ),
        notification_secret=notification_secret,
        token_auth=token_auth_source(settings),
    )
    resync, timeout = settings.resync_period_s, settings.watch_timeout_s
    configs = InformerSet.create(
        kube, REGISTRY_CONFIGS, None, resync_period_s=resync, watch_timeout_s=timeout
    )
    deployments = InformerSet.create(
        kube,
        DEPLOYMENTS,
        [settings.registry_namespace],
        resync_period_s=resync,
        watch_timeout_s=timeout,
    )
    image_configs = InformerSet.create(
        kube, IMAGE_CONFIGS, None, resync_period_s=resync, watch_timeout_s=timeout
    )
    configs.add_handler(operator.on_config)
    deployments.add_handler(operator.on_deployment)
    image_configs.add_handler(operator.on_change)
    # The first reconcile bootstraps `cluster` when no Config exists (no event would come).
    operator.queue.add(OPERATOR_KEY)
    return operator, [configs, deployments, image_configs]


def registry_bootstrap(settings: Settings) -> Bootstrap:
    """The installer's part of the first `cluster` Config (SettingsError when unusable)."""
    spec: object = {}
    if settings.registry_bootstrap_spec.strip():
        try:
            spec = json.loads(settings.registry_bootstrap_spec)
        except json.JSONDecodeError as error:
            raise SettingsError(f"--registry-bootstrap-spec: not JSON: {error}") from error
    if not isinstance(spec, dict):
        raise SettingsError("--registry-bootstrap-spec: expected a JSON object (a Config spec)")
    storage = spec.get("storage") or {}
    kinds = (
        [k for k in ("emptyDir", "pvc", "s3") if k in storage]
        if isinstance(storage, dict)
        else None
    )
    if kinds is None or len(kinds) > 1 or (storage and not kinds):
        raise SettingsError(
            "--registry-bootstrap-spec: storage must be one of emptyDir, pvc or s3, got"
            f" {json.dumps(storage)}"
        )
    state = settings.registry_bootstrap_management_state
    if state not in ("", *BOOTSTRAP_STATES):
        raise SettingsError(
            f"--registry-bootstrap-management-state: expected Managed or Removed, got {state!r}"
        )
    return Bootstrap(management_state=state, spec=spec)


def _cluster_ip(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as error:
        raise SettingsError(f"--registry-cluster-ip: {error}") from error


def token_auth_source(settings: Settings) -> TokenAuthSource | None:
    """The registry's `auth.token` from the two settings that name the token service.

    Both or neither: a realm without the signing Secret has no certificate to verify tokens
    with, and a signing Secret without a realm would start a registry that takes anybody
    while the webhook hands out tokens for it (SettingsError, at start).
    """
    realm, secret = settings.registry_token_realm, settings.registry_token_signing_secret
    if not realm and not secret:
        return None
    if not secret:
        raise SettingsError(
            "--registry-token-realm needs --registry-token-signing-secret (the Secret whose"
            " tls.crt the registry verifies tokens with)"
        )
    if not realm:
        raise SettingsError(
            "--registry-token-signing-secret with --registry-operator needs --registry-token-realm"
            " (the token service's URL the registry sends clients to)"
        )
    url = urllib.parse.urlsplit(realm)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SettingsError(f"--registry-token-realm: expected an http(s) URL, got {realm!r}")
    try:
        namespace, name = parse_secret_reference(secret)
    except ValueError as error:
        raise SettingsError(f"--registry-token-signing-secret: {error}") from error
    return TokenAuthSource(
        realm=realm,
        service=TOKEN_SERVICE,
        issuer=TOKEN_ISSUER,
        certificate=SecretKey(namespace=namespace, name=name, key=SIGNING_CERT_KEY),
    )


async def _lead(
    *,
    informer_sets: list[InformerSet],
    elector: LeaderElector | None,
    loops: list[Loop],
    concurrency: int,
    count: Callable[[str, str], None],
    tracked_workloads: TriggerIndex,
    identity: str,
) -> None:
    """Once the caches are warm and we lead, run every loop's workers."""
    for informers in informer_sets:
        await informers.wait_synced()
    if elector is not None:
        await elector.elected.wait()
    log.info("controller_leading", workloads=len(tracked_workloads), identity=identity)
    async with asyncio.TaskGroup() as group:
        for loop in loops:
            group.create_task(
                run_workers(
                    loop=loop,
                    concurrency=concurrency,
                    on_outcome=functools.partial(count, loop.name),
                )
            )


def _no_secret(_namespace: str, _account: str) -> str | None:
    return ""


def _leading(elector: LeaderElector | None) -> float:
    if elector is None:
        return 1.0
    return 1.0 if elector.elected.is_set() and not elector.lost.is_set() else 0.0


async def _stop_when_lost(elector: LeaderElector, stop: StopSignal) -> None:
    await elector.lost.wait()
    stop.set()  # stop writing at once; the process exits
