"""The registry operator's reconciler: read the cluster fresh, plan, then write.

One queue key, `cluster`. A change of the Config, of the registry's Deployment or of
`images.config.openshift.io/cluster` enqueues it; the reconcile reads the Config and the
registry namespace's objects from the API server (not from a cache: a Config patched twice
in quick succession must never be planned from the older one, a mistake OpenShift's operator
made and then fixed the same way), plans (`plan.plan`) and writes, in this order:

    0. no Config at all: create it from what the cluster offers (`plan.bootstrap_config`);
    1. the registry namespace, if absent (Managed only);
    2. the objects, server-side applied as the operator's field manager (a converged object
       is not rewritten), the claim it provisions created once, the objects of a removed
       registry deleted;
    3. the Config's spec, only for the claim it provisioned (as OpenShift records it);
    4. the Config's status, when it differs;
    5. `images.config.openshift.io/cluster` status: `internalRegistryHostname` and
       `externalRegistryHostnames` (the object is created when absent, as OpenShift always
       has it), when they differ.

Invariant: everything written follows from one fresh snapshot; a write that fails leaves
the Config's status saying so (`Degraded`, reason `ApplyFailed`), and the key backs off.
A Degraded plan (a claim, a Secret or a certificate missing, none of which is watched) is
planned again after `DEGRADED_REQUEUE_S`, so it recovers without an edit of the Config.
With token auth, the signing certificate (`tls.crt` of the token service's Secret) is read
at every reconcile; configured but unreadable, no registry is started (it would be open).
Secrets' values are read and written, never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.loop.outcomes import Requeue, RetryLater
from controller.loop.queue import WorkQueue
from controller.registryoperator import plan as registry_plan
from controller.registryoperator.plan import (
    CLUSTER,
    DEFAULT_CLAIM,
    DEFAULT_ROUTE,
    NAME,
    PRIVATE_SECRET,
    USER_SECRET,
    Facts,
    Options,
    Plan,
    TokenAuth,
)
from imagestream.kube.client import APPLY_PATCH, Kube
from imagestream.kube.errors import Conflict, KubeError, NotFound, Retryable
from imagestream.kube.resources import (
    DEPLOYMENTS,
    IMAGE_CONFIGS,
    INGRESSES,
    NAMESPACES,
    PERSISTENTVOLUMECLAIMS,
    REGISTRY_CONFIGS,
    SECRETS,
    SERVICES,
    STORAGECLASSES,
    Resource,
)
from imagestream.objects import Obj, name_of
from imagestream.timestamps import rfc3339_seconds

log = structlog.get_logger(__name__)

FIELD_MANAGER = "imagestream-registry-operator"
DEGRADED_REQUEUE_S = 10.0
"""A Degraded registry is planned again this soon: the Secret or claim it lacks may appear."""
KEY = CLUSTER
SECRET_POLL_S = 5.0
"""How often a registry waiting for a Secret another process makes (the token service's
signing certificate, the notification token) looks again."""


@dataclass(frozen=True)
class SecretKey:
    """`namespace/name:key`, a value in a Secret (the notification token's, given as a setting)."""

    namespace: str
    name: str
    key: str

    @classmethod
    def parse(cls, text: str) -> SecretKey | None:
        """None for an empty setting; ValueError for one that is not `namespace/name:key`."""
        if not text:
            return None
        reference, _, key = text.partition(":")
        namespace, _, name = reference.partition("/")
        if not (namespace and name and key):
            raise ValueError(f"expected namespace/name:key, got {text!r}")
        return cls(namespace=namespace, name=name, key=key)


def decoded(secret: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A Secret's data as text; None for no Secret; undecodable values are left out."""
    if secret is None:
        return None
    values: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            continue
    return values


@dataclass(frozen=True)
class TokenAuthSource:
    """The token service the registry is told about; its certificate from a Secret.

    `certificate` is the `tls.crt` of the token service's signing Secret (a
    `kubernetes.io/tls` Secret the webhook keeps); realm, service and issuer are the token
    service's own names.
    """

    realm: str
    service: str
    issuer: str
    certificate: SecretKey


@dataclass
class RegistryOperator:
    kube: Kube
    queue: WorkQueue
    options: Options
    notification_secret: SecretKey | None = None
    token_auth: TokenAuthSource | None = None
    """Where the registry's token auth comes from; None: the registry has no auth section."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    degraded_requeue_s: float = DEGRADED_REQUEUE_S

    def on_change(self, key: str, old: Obj | None, new: Obj | None) -> None:
        """Handler for every cache the operator follows: any change means plan again."""
        if old is new:  # a resync: the Config's own resync requeues
            return
        self.queue.add(KEY)

    def on_deployment(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if key.rpartition("/")[2] == NAME:
            self.on_change(key, old, new)

    def on_config(self, key: str, old: Obj | None, new: Obj | None) -> None:
        # The Config's resyncs requeue too: the loop's periodic check of drifted objects.
        if key == CLUSTER:
            self.queue.add(KEY)

    async def reconcile(self, key: str) -> Requeue | None:
        if key != KEY:
            return None
        try:
            config = await self.kube.get(REGISTRY_CONFIGS, None, CLUSTER)
        except NotFound:
            await self._bootstrap()
            return None
        facts = await self._facts(config)
        options = self.options
        if self.token_auth is not None:
            options = dataclasses.replace(
                options, token_auth=await self._token_auth(), token_auth_required=True
            )
        decided = registry_plan.plan(options, facts)
        try:
            await self._perform(decided)
        except Retryable:
            raise
        except KubeError as error:
            await self._write_status(
                config, registry_plan.failed_status(decided.status, str(error), facts.now)
            )
            raise RetryLater(f"registry objects not written: {error}") from error
        await self._write_status(config, decided.status)
        await self._publish_hostnames(decided)
        if registry_plan.waiting_for_secret(decided.status):
            # No event comes when the webhook creates the Secret (the operator does not
            # watch Secrets: that would cache every Secret of the webhook's namespace).
            return Requeue(after_s=SECRET_POLL_S)
        if registry_plan.degraded(decided.status):
            # What else is missing is often a claim, which nothing here watches either.
            return Requeue(after_s=self.degraded_requeue_s)
        return None

    # --- reading ---------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        classes, _ = await self.kube.list(STORAGECLASSES)
        default = next((name_of(c) for c in classes if registry_plan.is_default_class(c)), "")
        body = registry_plan.bootstrap_config(default, self.options.bootstrap)
        try:
            await self.kube.create(REGISTRY_CONFIGS, None, body)
        except Conflict:
            self.queue.add(KEY)  # made meanwhile: plan from it
            return
        log.info(
            "registry_config_bootstrapped",
            key=CLUSTER,
            management_state=body["spec"]["managementState"],
            default_storage_class=default,
        )
        self.queue.add(KEY)

    async def _get(self, resource: Resource, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.kube.get(
                resource, self.options.namespace if namespace is None else namespace, name
            )
        except NotFound:
            return None

    async def _facts(self, config: Obj) -> Facts:
        spec = config.get("spec") or {}
        storage = spec.get("storage") or {}
        claim_name = str((storage.get("pvc") or {}).get("claim") or DEFAULT_CLAIM)
        ingress = await self._get(INGRESSES, DEFAULT_ROUTE)
        rules = ((ingress or {}).get("spec") or {}).get("rules") or [{}]
        token: str | None = None
        if self.notification_secret is not None:
            ref = self.notification_secret
            token = (decoded(await self._get(SECRETS, ref.name, ref.namespace)) or {}).get(
                ref.key
            ) or None
        return Facts(
            config=config,
            now=rfc3339_seconds(self.clock()),
            fresh_http_secret=secrets.token_urlsafe(32),
            deployment=await self._get(DEPLOYMENTS, NAME),
            service_exists=await self._get(SERVICES, NAME) is not None,
            ingress_host=str(rules[0].get("host") or ""),
            claim=await self._get(PERSISTENTVOLUMECLAIMS, claim_name)
            if storage.get("pvc") is not None or spec.get("managementState") == "Removed"
            else None,
            private_secret=decoded(await self._get(SECRETS, PRIVATE_SECRET)) or {},
            user_secret=decoded(await self._get(SECRETS, USER_SECRET))
            if storage.get("s3") is not None
            else None,
            notification_token=token,
        )

    async def _token_auth(self) -> TokenAuth | None:
        """The signing certificate, read at every reconcile: a new one reaches the pods."""
        assert self.token_auth is not None
        ref = self.token_auth.certificate
        pem = (decoded(await self._get(SECRETS, ref.name, ref.namespace)) or {}).get(ref.key)
        if not pem:
            log.warning("registry_token_certificate_missing", key=f"{ref.namespace}/{ref.name}")
            return None
        source = self.token_auth
        return TokenAuth(
            realm=source.realm, service=source.service, issuer=source.issuer, ca_pem=pem
        )

    # --- writing ---------------------------------------------------------------------------

    async def _perform(self, decided: Plan) -> None:
        namespace = self.options.namespace
        if decided.apply or decided.create:
            await self._ensure_namespace()
        for resource, body in decided.apply:
            await self.kube.patch(
                resource,
                namespace,
                name_of(body),
                body,
                patch_type=APPLY_PATCH,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        for resource, body in decided.create:
            try:
                await self.kube.create(resource, namespace, body)
                log.info("registry_storage_provisioned", key=f"{namespace}/{name_of(body)}")
            except Conflict:
                pass  # already there: created once, never changed
        for resource, name in decided.delete:
            try:
                await self.kube.delete(resource, namespace, name)
                log.info("registry_object_deleted", kind=resource.kind, key=f"{namespace}/{name}")
            except NotFound:
                pass
        if decided.spec_patch is not None:
            await self.kube.patch(REGISTRY_CONFIGS, None, CLUSTER, decided.spec_patch)

    async def _ensure_namespace(self) -> None:
        if await self._get(NAMESPACES, self.options.namespace, "") is not None:
            return
        with contextlib.suppress(Conflict):  # made meanwhile
            await self.kube.create(NAMESPACES, None, {"metadata": {"name": self.options.namespace}})

    async def _write_status(self, config: Obj, status: Obj) -> None:
        if (config.get("status") or {}) == status:
            return
        await self.kube.patch(
            REGISTRY_CONFIGS, None, CLUSTER, {"status": status}, subresource="status"
        )
        conditions = {c["type"]: c.get("reason", "") for c in status.get("conditions") or []}
        log.info(
            "registry_config_status", key=CLUSTER, **{k.lower(): v for k, v in conditions.items()}
        )

    async def _publish_hostnames(self, decided: Plan) -> None:
        """`images.config.openshift.io/cluster` status, as OpenShift's operator keeps it."""
        try:
            image_config = await self.kube.get(IMAGE_CONFIGS, None, CLUSTER)
        except NotFound:
            try:
                image_config = await self.kube.create(
                    IMAGE_CONFIGS,
                    None,
                    {
                        "apiVersion": IMAGE_CONFIGS.api_version,
                        "kind": IMAGE_CONFIGS.kind,
                        "metadata": {"name": CLUSTER},
                        "spec": {},
                    },
                )
            except Conflict:
                self.queue.add(KEY)
                return
        status = image_config.get("status") or {}
        wanted = {
            "internalRegistryHostname": decided.internal_hostname,
            "externalRegistryHostnames": list(decided.external_hostnames),
        }
        current = {
            "internalRegistryHostname": status.get("internalRegistryHostname") or "",
            "externalRegistryHostnames": list(status.get("externalRegistryHostnames") or []),
        }
        if current == wanted:
            return
        await self.kube.patch(
            IMAGE_CONFIGS, None, CLUSTER, {"status": wanted}, subresource="status"
        )
        log.info(
            "registry_hostnames_published",
            key=f"images.config.openshift.io/{CLUSTER}",
            internal=decided.internal_hostname,
            external=list(decided.external_hostnames),
        )
