"""Asking registries what a tag points to, politely and with the right credentials.

Used by the webhook (`verify: registry`, and payloads without a digest) and
by the controller's imports. Three things are added around
`registry_client.resolve_digest`:
- credentials: `kubernetes.io/dockerconfigjson` Secrets in the ImageStream's
  namespace (cached briefly), then one global docker config file;
- a global rate limit on registry requests, and per-registry back-off after
  a 429 that honours `Retry-After`, so a scheduled-import storm cannot get
  us banned by a registry;
- one shared HTTP session and bearer-token cache;
- the one decision of whether a registry is spoken to over plain HTTP
  (`plain_http`): when asked for (a tag's `importPolicy.insecure`, a
  receiver's `insecure: true`), and for the configured integrated registry
  when it is a loopback address, as `imagestream dev` and the tests run it
  (and as Docker treats 127.0.0.0/8). Never for any other registry unasked:
  plain HTTP lets anyone on the path choose the digest we record. Before
  this, `verify: registry` against the system's own registry insisted on
  TLS, failed the handshake and recorded nothing.
- the cluster image configuration (`imagestream.image_config`): each request
  asks the current `RegistryPolicy` (flags merged with
  `images.config.openshift.io/cluster`) whether the registry may be asked,
  over what transport and with which extra CAs, so a change to the object
  or its CA ConfigMap applies to the next request without a restart.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from imagestream.image_config import (
    RegistryPolicy,
    is_loopback_host,
    plain_http,
    registry_allowed,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError
from imagestream.kube.resources import SECRETS
from imagestream.ratelimit import TokenBucket
from imagestream.registry_client import (
    RegistryCredentials,
    ResolvedManifest,
    ResolveError,
    ResolveReason,
    TokenCache,
    credentials_from_dockerconfigjson,
    resolve_digest,
)
from imagestream.settings import Settings

log = structlog.get_logger(__name__)

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
SECRET_CACHE_TTL_S = 30.0


@dataclass
class RegistryAccess:
    session: aiohttp.ClientSession
    kube: Kube | None = None
    global_config_file: Path | None = None
    ca_bundle: Path | None = None
    timeout_s: float = 10.0
    limiter: TokenBucket = field(default_factory=lambda: TokenBucket(rate=20.0, burst=40.0))
    read_namespace_secrets: bool = True
    allowed_registries: tuple[str, ...] = ()
    """Host patterns (`*.example.com`, `127.0.0.1:*`) we may ask; empty: any."""
    integrated_registry: str = ""
    """`--integrated-registry` (`host[:port]`): plain HTTP for it if it is on loopback."""
    policy: Callable[[], RegistryPolicy] | None = None
    """The current merged policy (the cluster image configuration's informers); none: the
    flags above alone."""
    _tokens: TokenCache = field(default_factory=TokenCache)
    _secrets: dict[str, tuple[float, list[Mapping[str, Any]]]] = field(default_factory=dict)
    _backoff_until: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session: aiohttp.ClientSession,
        kube: Kube,
        policy: Callable[[], RegistryPolicy] | None = None,
    ) -> RegistryAccess:
        return cls(
            session=session,
            kube=kube,
            global_config_file=settings.registry_config,
            ca_bundle=settings.registry_ca_bundle,
            allowed_registries=settings.allowed_registries,
            integrated_registry=settings.integrated_registry,
            policy=policy,
        )

    def current_policy(self) -> RegistryPolicy:
        if self.policy is not None:
            return self.policy()
        return RegistryPolicy(
            flag_allowed=self.allowed_registries,
            flag_integrated_registry=self.integrated_registry,
        )

    async def resolve(
        self,
        *,
        registry: str,
        repository: str,
        tag: str,
        namespace: str,
        insecure: bool,
        importing: bool = False,
    ) -> ResolvedManifest:
        """`importing`: a spec tag's import (`allowedRegistriesForImport` applies too)."""
        access = self.current_policy().decide(
            registry, repository=repository, insecure=insecure, importing=importing
        )
        if access.refused:
            raise ResolveError(ResolveReason.FORBIDDEN, access.refused)
        until = self._backoff_until.get(registry, 0.0)
        if until > time.monotonic():
            raise ResolveError(
                ResolveReason.TOO_MANY_REQUESTS,
                f"{registry} asked us to wait; retrying in {until - time.monotonic():.0f}s",
                retry_after_s=until - time.monotonic(),
            )
        await self.limiter.acquire()
        credentials = await self.credentials(
            namespace=namespace, registry=registry, repository=repository
        )
        try:
            return await resolve_digest(
                session=self.session,
                registry=registry,
                repository=repository,
                tag=tag,
                credentials=credentials,
                insecure=access.plain_http,
                ca_bundle=self.ca_bundle,
                extra_ca_pem=access.ca_pem,
                timeout_s=self.timeout_s,
                token_cache=self._tokens,
            )
        except ResolveError as error:
            if error.reason == ResolveReason.TOO_MANY_REQUESTS:
                self._backoff_until[registry] = time.monotonic() + (error.retry_after_s or 60.0)
            raise

    async def credentials(
        self, *, namespace: str, registry: str, repository: str
    ) -> RegistryCredentials | None:
        for config in [*await self._namespace_configs(namespace), *self._global_configs()]:
            found = credentials_from_dockerconfigjson(config, registry, repository=repository)
            if found is not None:
                return found
        return None

    def _global_configs(self) -> list[Mapping[str, Any]]:
        if self.global_config_file is None:
            return []
        try:
            return [json.loads(self.global_config_file.read_bytes())]
        except (OSError, ValueError):
            log.warning("registry_config_unreadable", path_file=str(self.global_config_file))
            return []

    async def _namespace_configs(self, namespace: str) -> list[Mapping[str, Any]]:
        if self.kube is None or not self.read_namespace_secrets or not namespace:
            return []
        cached = self._secrets.get(namespace)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        configs: list[Mapping[str, Any]] = []
        try:
            secrets = await self.kube.request(
                "GET",
                SECRETS.path(namespace=namespace),
                params={"fieldSelector": f"type={DOCKERCONFIGJSON}"},
            )
        except KubeError as error:
            # Not allowed to read Secrets here (namespaced RBAC), or the API is
            # away: anonymous access may still work.
            log.debug("registry_secrets_unavailable", namespace=namespace, error=str(error))
        else:
            for secret in secrets.get("items") or []:
                encoded = (secret.get("data") or {}).get(".dockerconfigjson")
                if not encoded:
                    continue
                try:
                    configs.append(json.loads(base64.b64decode(encoded)))
                except ValueError:
                    continue
        self._secrets[namespace] = (time.monotonic() + SECRET_CACHE_TTL_S, configs)
        return configs


__all__ = ["RegistryAccess", "is_loopback_host", "plain_http", "registry_allowed"]
