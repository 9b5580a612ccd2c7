"""Composition root of the webhook: the HTTP server registries push to.

This is the only module of the webhook that constructs collaborators. It
wires: the receivers (config file, or one distribution receiver with a
token file), their authenticators, an ImageStream cache (watch) with the
reverse index of DockerImage spec tags, the recorder that writes tag
events, the registry client for verification, and the routes.

Readiness is true only when the API server answers and the ImageStream
cache has synced: before that, the index could miss a spec tag and a push
would be acknowledged without moving it; and the cluster image configuration
(imagestream/image_config_source.py) has synced, or a verification could ask
a registry the cluster blocks. With `--generated-secret`, also
only once that Secret holds every key (webhook/generated_secret.py: the
tokens the Helm chart does not make up at render time) and every receiver
file named after one of its keys has content (the kubelet has mounted it).

With `--registry-token-signing-secret`, it also serves the integrated registry's token
service (webhook/registry_token.py), once its signing key is loaded or made.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import Counter

from imagestream.health import ReadinessCheck, cached, health_routes, metrics_routes, serve
from imagestream.image_config_source import ClusterImageConfig
from imagestream.imagestreams import trim_for_cache
from imagestream.kube.errors import KubeError
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.process import IMAGESTREAMS_CACHE, Collaborators
from imagestream.recording import StreamRecorder
from imagestream.references import is_valid_registry_host
from imagestream.registry_access import RegistryAccess
from imagestream.registry_tokens import parse_secret_reference
from webhook.admission.server import AdmissionMetrics, AdmissionRoutes, Streams
from webhook.admission.tls import FileCertificates, SecretCertificates, ServingContext, keep
from webhook.auth import Authenticator
from webhook.config import ConfigError, Receiver, default_receivers, load_config
from webhook.generated_secret import GeneratedSecret, ensure_until_done
from webhook.handlers import ReceiverRoutes, WebhookMetrics
from webhook.intake import Intake
from webhook.limits import SenderLimits
from webhook.registry_token import (
    SigningSecretError,
    TokenMetrics,
    TokenService,
    ensure_signing_key,
)
from webhook.targets import DockerImageTagIndex

log = structlog.get_logger(__name__)

SHUTDOWN_DRAIN_S = 20.0


@dataclass
class Webhook:
    runner: web.AppRunner
    streams: InformerSet
    recorder: StreamRecorder
    session: aiohttp.ClientSession
    tasks: list[asyncio.Task[None]]
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    name: str = "webhook"
    admission: Admission | None = None

    async def aclose(self) -> None:
        # Stop taking requests, let those in flight finish (aiohttp waits for
        # handlers on cleanup), then let writes other callers wait on land.
        if self.admission is not None:
            await self.admission.aclose()
        await self.runner.cleanup()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.recorder.drain(), SHUTDOWN_DRAIN_S)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()


@dataclass
class Admission:
    """The admission webhook's HTTPS server and the task keeping its certificate."""

    runner: web.AppRunner
    serving: ServingContext
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def aclose(self) -> None:
        self.stop.set()
        await self.runner.cleanup()
        await asyncio.gather(self.task, return_exceptions=True)
        self.serving.close()


def admission_certificates(
    collaborators: Collaborators, serving: ServingContext
) -> SecretCertificates | FileCertificates:
    settings = collaborators.settings
    if settings.admission_cert_dir is not None:
        return FileCertificates(directory=settings.admission_cert_dir, serving=serving)
    namespace, _, name = settings.admission_secret.partition("/")
    if not namespace or not name:
        raise ConfigError(
            "--admission-addr: give --admission-cert-dir, or --admission-secret namespace/name"
        )
    if not settings.admission_hosts:
        raise ConfigError("--admission-secret: give --admission-hosts (the certificate's names)")
    return SecretCertificates(
        kube=collaborators.kube,
        namespace=namespace,
        name=name,
        hosts=settings.admission_hosts,
        webhook_configuration=settings.admission_webhook_configuration,
        validity=datetime.timedelta(seconds=settings.admission_cert_validity_s),
        serving=serving,
    )


async def start_admission(collaborators: Collaborators, streams: InformerSet) -> Admission:
    """Load (or make) the certificate first: the server never answers without one."""
    settings = collaborators.settings
    assert settings.admission_addr is not None
    serving = ServingContext()
    try:
        certificates = admission_certificates(collaborators, serving)
        settled = await certificates.check()
        routes = AdmissionRoutes(
            streams=Streams(cached=streams.get, kube=collaborators.kube),
            metrics=AdmissionMetrics.create(collaborators.metrics),
        )
        runner = await serve(
            routes.routes(),
            settings.admission_addr,
            "admission",
            client_max_size=settings.max_body_bytes * 3,
            ssl_context=serving.context,
        )
    except BaseException:
        serving.close()
        raise
    stop = asyncio.Event()
    task = asyncio.create_task(
        keep(certificates, settings.admission_cert_check_interval_s, stop, settled=settled),
        name="webhook-admission-certificates",
    )
    return Admission(runner=runner, serving=serving, stop=stop, task=task)


def load_receivers(collaborators: Collaborators) -> list[Receiver]:
    settings = collaborators.settings
    if settings.webhook_config is not None:
        receivers = load_config(settings.webhook_config)
    elif settings.webhook_token_file is None:
        raise ConfigError("give --webhook-config, or --webhook-token-file for the default receiver")
    else:
        receivers = default_receivers(settings.webhook_token_file)
    check_integrated_registry(receivers, settings.integrated_registry)
    return receivers


def check_integrated_registry(receivers: list[Receiver], integrated_registry: str) -> None:
    """An `integrated` receiver records only `--integrated-registry`: without it, refuse to start.

    Recording whatever host a payload names instead is what let one request
    point a stream at any registry; recording nothing would acknowledge
    every push and move no tag, silently.
    """
    integrated = [r.name for r in receivers if r.integrated]
    if not integrated:
        return
    if not integrated_registry:
        raise ConfigError(
            f"receiver {integrated[0]} is integrated: give --integrated-registry "
            "(IMAGESTREAM_INTEGRATED_REGISTRY), the host[:port] of the registry it serves"
        )
    if not is_valid_registry_host(integrated_registry):
        raise ConfigError(
            f"--integrated-registry: must be host or host:port, got {integrated_registry!r}"
        )


async def start(collaborators: Collaborators) -> Webhook:
    settings, kube = collaborators.settings, collaborators.kube
    receivers = {receiver.name: receiver for receiver in load_receivers(collaborators)}
    authenticators = {name: Authenticator(receiver) for name, receiver in receivers.items()}
    token_routes: list[web.RouteDef] = []
    if settings.registry_token_signing_secret:
        token_routes = await token_service_routes(collaborators)

    # Shared with the controller in `imagestream run`: one watch, one copy of each stream.
    streams = collaborators.caches.get(
        IMAGESTREAMS_CACHE,
        lambda: InformerSet.create(
            kube,
            IMAGESTREAMS,
            list(settings.watch_namespaces),
            transform=trim_for_cache,
            resync_period_s=settings.resync_period_s,
            watch_timeout_s=settings.watch_timeout_s,
            after_list_page=collaborators.after_list_page,
        ),
    )
    index = DockerImageTagIndex()
    streams.add_handler(lambda key, _old, new: index.update(key, new))

    writes = Counter(
        "imagestream_status_writes",
        "ImageStream status writes by the webhook.",
        registry=collaborators.metrics,
    )
    recorder = StreamRecorder(
        kube=kube,
        get_cached=streams.get,
        history_limit=settings.history_limit,
        on_write=lambda _key, _updates: writes.inc(),
        on_written=collaborators.written_imagestreams.publish,
    )
    collaborators.written_imagestreams.subscribe(streams.observe)
    # The cluster image configuration: read at every verification (behaviour 31).
    image_config = ClusterImageConfig.create(kube, settings, served=await kube.served_groups())
    session = aiohttp.ClientSession()
    registry_access = RegistryAccess.from_settings(
        settings, session=session, kube=kube, policy=image_config.policy
    )
    intake = Intake(
        recorder=recorder,
        index=index,
        registry_access=registry_access,
        integrated_registry=settings.integrated_registry,
        live_integrated_registry=image_config.integrated_registry,
        watched_namespaces=frozenset(settings.watch_namespaces),
    )

    async def synced() -> bool:
        return streams.has_synced()

    async def image_config_synced() -> bool:
        return image_config.synced()

    # Asked before every write; the API server's reachability is checked at
    # most once a second, not once per push.
    apiserver_reachable = cached(kube.reachable)

    async def ready() -> bool:
        return streams.has_synced() and image_config.synced() and await apiserver_reachable()

    checks: dict[str, ReadinessCheck] = {
        "imagestreams-synced": synced,
        "image-config-synced": image_config_synced,
    }
    tasks = [asyncio.create_task(streams.run(), name="webhook-imagestreams-informer")]
    tasks += [
        asyncio.create_task(informers.run(), name=f"webhook-image-config-informer-{i}")
        for i, informers in enumerate(image_config.informer_sets)
    ]
    if settings.generated_secret:
        try:
            wanted = GeneratedSecret.parse(
                settings.generated_secret, settings.generated_secret_keys
            )
        except ValueError as error:
            raise ConfigError(f"--generated-secret: {error}") from error
        generated = asyncio.Event()
        tasks.append(
            asyncio.create_task(
                ensure_until_done(kube, wanted, generated), name="webhook-generated-secret"
            )
        )

        # The files of generated keys appear once the kubelet has synced the new Secret
        # into the pod's volume (up to a minute or so): until then this replica would
        # refuse those receivers' senders, so it is not ready.
        generated_files = [
            path
            for receiver in receivers.values()
            for path in receiver.auth.secret_files
            if path.name in wanted.keys
        ]

        async def secret_generated() -> bool:
            return generated.is_set() and all(_has_content(path) for path in generated_files)

        checks["generated-secret"] = secret_generated
    routes = ReceiverRoutes(
        receivers=receivers,
        authenticators=authenticators,
        intake=intake,
        ready=ready,
        metrics=WebhookMetrics.create(collaborators.metrics),
        max_body_bytes=settings.max_body_bytes,
        limits=SenderLimits(
            {r.name: r.rate_limit for r in receivers.values() if r.rate_limit is not None}
        ),
    )
    try:
        runner = await serve(
            [
                *routes.routes(),
                *token_routes,
                *health_routes({"apiserver": kube.reachable, **checks}),
                *metrics_routes(collaborators.metrics),
            ],
            settings.webhook_addr,
            "webhook",
            client_max_size=settings.max_body_bytes,
        )
    except BaseException:
        # Not a component yet, so nobody else will close what it opened (an
        # address in use would otherwise end the process with warnings about
        # an unclosed session after the one-line error).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        raise
    admission = None
    if settings.admission_addr is not None:
        try:
            admission = await start_admission(collaborators, streams)
        except BaseException:
            await runner.cleanup()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()
            raise
    log.info("receivers_configured", receivers=sorted(receivers))
    return Webhook(
        admission=admission,
        runner=runner,
        streams=streams,
        recorder=recorder,
        session=session,
        tasks=tasks,
        readiness_checks=checks,
    )


async def token_service_routes(collaborators: Collaborators) -> list[web.RouteDef]:
    """The registry's token service (webhook/registry_token.py), its key loaded or made first:
    the route never answers without a key the registry trusts."""
    try:
        namespace, name = parse_secret_reference(
            collaborators.settings.registry_token_signing_secret
        )
    except ValueError as error:
        raise ConfigError(f"--registry-token-signing-secret: {error}") from error
    try:
        key = await ensure_signing_key(collaborators.kube, namespace, name)
    except SigningSecretError as error:
        raise ConfigError(f"--registry-token-signing-secret: {error}") from error
    except KubeError as error:
        # Refused (RBAC: get and create on that Secret) or unreachable: say which Secret.
        raise ConfigError(
            f"--registry-token-signing-secret: cannot read or create Secret "
            f"{namespace}/{name}: {error}"
        ) from error
    service = TokenService(
        kube=collaborators.kube, key=key, metrics=TokenMetrics.create(collaborators.metrics)
    )
    return service.routes()


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
