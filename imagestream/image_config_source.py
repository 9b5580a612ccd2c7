"""The live cluster image configuration: two informers and the policy they add up to.

Keeps `images.config.openshift.io` (the object `cluster`) and the ConfigMaps of
the trusted-CA namespace (`--image-config-namespace`, `openshift-config` by
default) in caches, and answers `policy()`, the flags merged with what those
caches hold now (`imagestream.image_config.RegistryPolicy`). Every import and
verification asks for it afresh, so an edit of the object or of its CA
ConfigMap applies to the next request, with no restart and no reload step.

Invariant: until both caches have synced, `synced()` is false; the
controller does not start its workers and readiness says so, so no import
runs under the flags alone while the cluster's policy is still unknown (a
blocked registry asked once at start is the failure this prevents). Where
the API group `config.openshift.io` is not served at all (no CRD installed,
not OpenShift), or `--image-config=false`, there are no informers and the
flags alone apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from imagestream.image_config import (
    CLUSTER,
    RegistryPolicy,
    ca_bundles,
    parse_image_config,
)
from imagestream.kube.client import Kube
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import CONFIGMAPS, IMAGE_CONFIGS
from imagestream.objects import Obj
from imagestream.settings import Settings

log = structlog.get_logger(__name__)


def _only_data(configmap: Obj) -> Obj:
    """ConfigMaps are cached with their data and identity only (no managed fields)."""
    metadata = configmap.get("metadata") or {}
    return {
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "resourceVersion")
            if key in metadata
        },
        "data": configmap.get("data") or {},
    }


@dataclass
class ClusterImageConfig:
    flag_allowed: tuple[str, ...]
    flag_integrated_registry: str
    namespace: str
    configs: InformerSet | None = None
    configmaps: InformerSet | None = None

    @classmethod
    def create(cls, kube: Kube, settings: Settings, *, served: set[str]) -> ClusterImageConfig:
        source = cls(
            flag_allowed=settings.allowed_registries,
            flag_integrated_registry=settings.integrated_registry,
            namespace=settings.image_config_namespace,
        )
        if not settings.image_config or IMAGE_CONFIGS.group not in served:
            log.info("image_config_not_read", served=IMAGE_CONFIGS.group in served)
            return source
        resync, timeout = settings.resync_period_s, settings.watch_timeout_s
        source.configs = InformerSet.create(
            kube, IMAGE_CONFIGS, None, resync_period_s=resync, watch_timeout_s=timeout
        )
        source.configmaps = InformerSet.create(
            kube,
            CONFIGMAPS,
            [settings.image_config_namespace],
            transform=_only_data,
            resync_period_s=resync,
            watch_timeout_s=timeout,
        )
        source.configs.add_handler(source._changed)
        return source

    @property
    def informer_sets(self) -> list[InformerSet]:
        return [s for s in (self.configs, self.configmaps) if s is not None]

    def synced(self) -> bool:
        return all(informers.has_synced() for informers in self.informer_sets)

    async def wait_synced(self) -> None:
        for informers in self.informer_sets:
            await informers.wait_synced()

    def policy(self) -> RegistryPolicy:
        config = parse_image_config(self.configs.get(CLUSTER) if self.configs else None)
        bundles = {}
        if config.trusted_ca and self.configmaps is not None:
            bundles = ca_bundles(self.configmaps.get(f"{self.namespace}/{config.trusted_ca}"))
        return RegistryPolicy(
            flag_allowed=self.flag_allowed,
            flag_integrated_registry=self.flag_integrated_registry,
            config=config,
            bundles=bundles,
        )

    def integrated_registry(self) -> str:
        return self.policy().integrated_registry

    def _changed(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if key != CLUSTER or old is new:  # a resync: nothing changed
            return
        config = parse_image_config(new)
        if config.invalid:
            log.warning("image_config_invalid", key=key, error=config.invalid)
        else:
            log.info(
                "image_config_changed",
                key=key,
                present=new is not None,
                allowed_for_import=len(config.allowed_for_import),
                blocked_registries=len(config.blocked_registries),
                allowed_registries=len(config.allowed_registries),
                insecure_registries=len(config.insecure_registries),
                trusted_ca=config.trusted_ca,
                internal_registry=config.internal_hostname,
            )
