"""What the integrated registry should be, decided from its Config and the cluster's facts (pure).

`bootstrap_config(default_storage_class, bootstrap)` is the `cluster` Config the operator
creates when there is none (docs/openshift-behaviours.md#behaviour-32): the installer's
`Bootstrap` (state and storage) first; else a default StorageClass gives a claim the
operator provisions (`storage.pvc`, claim left empty, one replica, Recreate); no storage at
all gives `managementState: Removed`, whose StorageExists condition says what to configure.
`plan(options, facts)` turns one snapshot (the Config, the registry namespace's
Deployment, claim, Secrets, Service and Ingress as just read) into the writes that make the
registry follow it, the Config's status and the hostnames for
`images.config.openshift.io/cluster`. The reconciler performs them; nothing here does I/O.

Invariants:
- `Managed`: the Deployment `image-registry` of distribution, the Service `image-registry`
  (port 5000), the ConfigMap with its configuration and the Secret with its HTTP secret and
  notification token exist as planned; the pod template carries a checksum of everything
  the pods read at start (configuration, secrets), so a change of any rolls the pods.
  `Unmanaged`: no write at all to the registry's objects. `Removed`: every object above is
  deleted, and the claim too when the operator provisioned it (annotation
  `imageregistry.openshift.io`, `storage.managementState: Managed`); a claim it was given
  is never deleted.
- Nothing is guessed: storage that is missing, a claim that is absent or unusable, S3
  without its bucket, region or credentials, a notification endpoint without its token, a
  default route without a domain: each is a condition with its reason (Degraded, and
  StorageExists for storage), and no registry is started on a half-known configuration.
- Conditions keep their `lastTransitionTime` unless their status changes, and a converged
  registry plans the status it already has, so nothing is rewritten.
- The internal hostname is `image-registry.<namespace>.svc:5000` while the Service exists
  (as the plan leaves it), else empty, as OpenShift's operator publishes it.

Failures this prevents: a registry on storage nobody chose (an emptyDir that loses every
image at the first restart, silently), a pod still running the old configuration after a
change, `Removed` deleting a volume of someone else's, a registry whose pushes never reach
the webhook because the token was missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from imagestream.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    INGRESSES,
    PERSISTENTVOLUMECLAIMS,
    REGISTRY_CONFIGS,
    SECRETS,
    SERVICES,
    Resource,
)
from imagestream.objects import Obj

CLUSTER: Final = "cluster"
MANAGED: Final = "Managed"
UNMANAGED: Final = "Unmanaged"
REMOVED: Final = "Removed"
FORCE: Final = "Force"
"""OpenShift's fourth state; here the same as Managed (there is no upgrade to force)."""

NAME: Final = "image-registry"
"""The Deployment and the Service, as OpenShift names them."""
CONFIG_MAP: Final = "image-registry-config"
PRIVATE_SECRET: Final = "image-registry-private-configuration"  # noqa: S105 - a Secret's name
"""The operator's own Secret: the HTTP secret and the notification token."""
USER_SECRET: Final = "image-registry-private-configuration-user"  # noqa: S105 - a Secret's name
"""The S3 credentials a person gives (OpenShift's name and keys)."""
S3_ACCESS_KEY: Final = "REGISTRY_STORAGE_S3_ACCESSKEY"
S3_SECRET_KEY: Final = "REGISTRY_STORAGE_S3_SECRETKEY"  # noqa: S105 - a key's name
HTTP_SECRET_KEY: Final = "REGISTRY_HTTP_SECRET"  # noqa: S105 - a key's name
NOTIFICATION_TOKEN_KEY: Final = "NOTIFICATION_TOKEN"  # noqa: S105 - a key's name
TOKEN_CA_CONFIG_MAP: Final = "image-registry-token-ca"  # noqa: S105 - a ConfigMap's name
DEFAULT_CLAIM: Final = "image-registry-storage"
PVC_OWNER_ANNOTATION: Final = "imageregistry.openshift.io"
"""On a claim the operator provisioned (OpenShift's annotation): only those are deleted."""
CHECKSUM_ANNOTATION: Final = "imageregistry.operator.openshift.io/checksum"
DEFAULT_ROUTE: Final = "default-route"
PORT: Final = 5000
ROOT_DIRECTORY: Final = "/registry"
CONFIG_DIRECTORY: Final = "/etc/registry"
TOKEN_CA_DIRECTORY: Final = "/etc/registry-token-ca"  # noqa: S105 - a mount path
DEFAULT_CLASS_ANNOTATIONS: Final = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
POD_LABELS: Final = {"docker-registry": "default"}
LABELS: Final = {
    **POD_LABELS,
    "app.kubernetes.io/name": NAME,
    "app.kubernetes.io/managed-by": "imagestream-controller",
}
CLAIM_SIZE: Final = "100Gi"
NO_STORAGE_MESSAGE: Final = (
    "no storage is configured for the integrated registry: set spec.storage to emptyDir"
    " (images are lost when the pod restarts), pvc (a claim in the registry namespace, or"
    " none to have one provisioned from the default StorageClass) or s3, then"
    " managementState: Managed"
)

# Condition types (OpenShift's).
AVAILABLE: Final = "Available"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
REMOVED_CONDITION: Final = "Removed"
STORAGE_EXISTS: Final = "StorageExists"
CONDITION_ORDER: Final = (AVAILABLE, PROGRESSING, DEGRADED, REMOVED_CONDITION, STORAGE_EXISTS)
TOKEN_AUTH_NOT_READY: Final = "TokenAuthNotReady"  # noqa: S105 - a condition reason
NOTIFICATION_TOKEN_MISSING: Final = "NotificationTokenMissing"  # noqa: S105 - a reason
WAITING_FOR_SECRET: Final = frozenset({TOKEN_AUTH_NOT_READY, NOTIFICATION_TOKEN_MISSING})
"""Degraded reasons that end when another process (the webhook) makes a Secret."""


@dataclass(frozen=True)
class TokenAuth:
    """distribution's `auth.token` section, when the cluster's token service is configured."""

    realm: str
    service: str
    issuer: str
    ca_pem: str
    """The certificate that signs the tokens (the registry's rootcertbundle)."""


@dataclass(frozen=True)
class Options:
    """What the operator is told by its process settings."""

    namespace: str
    image: str
    notification_url: str = ""
    """The webhook's endpoint for the registry's events; empty: no notifications."""
    token_auth: TokenAuth | None = None
    token_auth_required: bool = False
    """Token auth is configured: without its `token_auth` (no certificate yet), no registry."""
    route_domain: str = ""
    """`defaultRoute` hosts are `default-route-<namespace>.<route_domain>`."""
    ingress_class: str = ""
    cluster_ip: str = ""
    """A fixed address for the Service (nodes are told of it before it exists); empty: any."""
    bootstrap: Bootstrap | None = None

    @property
    def internal_hostname(self) -> str:
        return f"{NAME}.{self.namespace}.svc:{PORT}"

    @property
    def route_host(self) -> str:
        return f"{DEFAULT_ROUTE}-{self.namespace}.{self.route_domain}" if self.route_domain else ""


@dataclass(frozen=True)
class Facts:
    """The cluster as the reconciler just read it."""

    config: Obj
    now: str
    """RFC 3339 seconds, for condition transitions."""
    fresh_http_secret: str
    """A random value, used only when no HTTP secret exists yet."""
    deployment: Obj | None = None
    service_exists: bool = False
    ingress_host: str = ""
    claim: Obj | None = None
    """The claim `spec.storage.pvc` names (or the default one), if it exists."""
    private_secret: Mapping[str, str] = field(default_factory=dict)
    """The operator's Secret, decoded."""
    user_secret: Mapping[str, str] | None = None
    """The S3 credentials Secret, decoded; None: absent."""
    notification_token: str | None = None
    """None: no token could be read (the setting names a Secret that is absent)."""


@dataclass(frozen=True)
class Plan:
    """The writes, in order: apply, create-if-absent, delete; then the spec and status."""

    apply: tuple[tuple[Resource, Obj], ...] = ()
    """Server-side applied (the operator's field manager): the objects as they should be."""
    create: tuple[tuple[Resource, Obj], ...] = ()
    """Created when absent, never changed after (a claim's spec is immutable)."""
    delete: tuple[tuple[Resource, str], ...] = ()
    spec_patch: Obj | None = None
    """A merge patch of the Config's spec (the claim it provisioned), or nothing."""
    status: Obj = field(default_factory=dict)
    internal_hostname: str = ""
    external_hostnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Condition:
    status: str
    reason: str
    message: str = ""


class _StorageProblem(Exception):
    """Storage cannot be used as configured; the registry is not (re)started."""

    def __init__(self, reason: str, message: str, storage_reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.storage_reason = storage_reason or reason


def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = (storage_class.get("metadata") or {}).get("annotations") or {}
    return any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


@dataclass(frozen=True)
class Bootstrap:
    """What the first `cluster` Config is made of, beside what the cluster offers.

    Given by the installer (the chart's `registry.*` values) and used only when no Config
    exists: an existing one is never changed by it, so a person's later edits stay.
    """

    management_state: str = ""
    """Managed or Removed; empty: Managed when there is storage, else Removed (OpenShift)."""
    spec: Mapping[str, Any] = field(default_factory=dict)
    """More of the spec (storage, replicas, rolloutStrategy, resources, nodeSelector,
    tolerations...); its `storage` wins over the default StorageClass."""


BOOTSTRAP_STATES: Final = (MANAGED, REMOVED)


def bootstrap_config(default_storage_class: str, bootstrap: Bootstrap | None = None) -> Obj:
    """The `cluster` Config for a cluster that has none (OpenShift's bootstrap, behaviour 32)."""
    given = bootstrap or Bootstrap()
    spec: Obj = {"replicas": 1, **{k: v for k, v in given.spec.items() if k != "managementState"}}
    if not spec.get("storage"):
        if default_storage_class:
            spec["storage"] = {"pvc": {"claim": ""}}
            spec.setdefault("rolloutStrategy", "Recreate")
        else:
            spec["storage"] = {}
    elif "pvc" in spec["storage"]:
        spec.setdefault("rolloutStrategy", "Recreate")  # a ReadWriteOnce claim needs it
    spec["managementState"] = given.management_state or (MANAGED if spec["storage"] else REMOVED)
    return {
        "apiVersion": REGISTRY_CONFIGS.api_version,
        "kind": REGISTRY_CONFIGS.kind,
        "metadata": {"name": CLUSTER},
        "spec": spec,
    }


def plan(options: Options, facts: Facts) -> Plan:
    spec = facts.config.get("spec") or {}
    state = str(spec.get("managementState") or "")
    if state == UNMANAGED:
        return _unmanaged(options, facts)
    if state == REMOVED:
        return _removed(options, facts)
    if state in (MANAGED, FORCE):
        return _managed(options, facts)
    message = f"unknown managementState {state!r}: expected Managed, Unmanaged or Removed"
    return Plan(
        status=_status(
            facts,
            {
                AVAILABLE: _Condition("False", "InvalidManagementState", message),
                PROGRESSING: _Condition("False", "InvalidManagementState", message),
                DEGRADED: _Condition("True", "InvalidManagementState", message),
            },
        ),
        internal_hostname=options.internal_hostname if facts.service_exists else "",
        external_hostnames=(facts.ingress_host,) if facts.ingress_host else (),
    )


# --- the three states --------------------------------------------------------------------


def _unmanaged(options: Options, facts: Facts) -> Plan:
    message = "The registry configuration is set to unmanaged mode"
    return Plan(
        status=_status(
            facts,
            {
                AVAILABLE: _Condition("True", UNMANAGED, message),
                PROGRESSING: _Condition("False", UNMANAGED, message),
                DEGRADED: _Condition("False", UNMANAGED, message),
                REMOVED_CONDITION: _Condition("False", ""),
            },
        ),
        internal_hostname=options.internal_hostname if facts.service_exists else "",
        external_hostnames=(facts.ingress_host,) if facts.ingress_host else (),
    )


def _removed(options: Options, facts: Facts) -> Plan:
    spec = facts.config.get("spec") or {}
    storage = spec.get("storage") or {}
    deletes: list[tuple[Resource, str]] = [
        (DEPLOYMENTS, NAME),
        (SERVICES, NAME),
        (INGRESSES, DEFAULT_ROUTE),
        (CONFIGMAPS, CONFIG_MAP),
        (CONFIGMAPS, TOKEN_CA_CONFIG_MAP),
        (SECRETS, PRIVATE_SECRET),
    ]
    if facts.claim is not None and _provisioned_by_us(facts.claim, storage):
        deletes.append((PERSISTENTVOLUMECLAIMS, _name(facts.claim)))
    conditions = {
        AVAILABLE: _Condition("True", REMOVED, "The registry is removed"),
        PROGRESSING: _Condition("False", REMOVED, "All registry resources are removed"),
        DEGRADED: _Condition("False", REMOVED, "The registry is removed"),
        REMOVED_CONDITION: _Condition("True", REMOVED, "The registry is removed"),
    }
    if facts.deployment is not None:
        conditions[AVAILABLE] = _Condition(
            "False", "DeploymentDeleted", "The deployment is being deleted"
        )
        conditions[PROGRESSING] = _Condition(
            "True", "DeletingDeployment", "The deployment is being removed"
        )
    if _storage_kind(storage) == "":
        conditions[STORAGE_EXISTS] = _Condition("False", "StorageNotConfigured", NO_STORAGE_MESSAGE)
    return Plan(delete=tuple(deletes), status=_status(facts, conditions))


def _managed(options: Options, facts: Facts) -> Plan:
    spec = facts.config.get("spec") or {}
    storage = dict(spec.get("storage") or {})
    conditions: dict[str, _Condition] = {REMOVED_CONDITION: _Condition("False", "")}
    creates: list[tuple[Resource, Obj]] = []
    spec_patch: Obj | None = None
    try:
        volume, storage_config, env, storage_condition, claim_body, storage_patch = _storage(
            options, facts, spec, storage
        )
        problem = _other_problem(options, facts)
    except _StorageProblem as error:
        conditions[STORAGE_EXISTS] = _Condition("False", error.storage_reason, error.message)
        return _not_started(options, facts, conditions, error.reason, error.message)
    conditions[STORAGE_EXISTS] = storage_condition
    if claim_body is not None:
        creates.append((PERSISTENTVOLUMECLAIMS, claim_body))
    if storage_patch:
        spec_patch = {"spec": {"storage": storage_patch}}
    if problem is not None:
        return _not_started(options, facts, conditions, problem[0], problem[1], spec_patch)

    http_secret = (
        str(spec.get("httpSecret") or "")
        or facts.private_secret.get(HTTP_SECRET_KEY, "")
        or facts.fresh_http_secret
    )
    private = {HTTP_SECRET_KEY: http_secret}
    if options.notification_url and facts.notification_token is not None:
        private[NOTIFICATION_TOKEN_KEY] = facts.notification_token
    config = registry_config(spec, storage_config, options)
    config_text = yaml.safe_dump(config, sort_keys=True)
    endpoints = notification_endpoints(options.notification_url)
    checksum = _checksum(
        config_text,
        endpoints,
        private,
        facts.user_secret if _storage_kind(storage) == "s3" else None,
        options.token_auth.ca_pem if options.token_auth else "",
    )
    applies: list[tuple[Resource, Obj]] = [
        (SECRETS, _secret(options.namespace, private)),
        (CONFIGMAPS, _configmap(options.namespace, CONFIG_MAP, {"config.yml": config_text})),
    ]
    deletes: list[tuple[Resource, str]] = []
    if options.token_auth is not None:
        applies.append(
            (
                CONFIGMAPS,
                _configmap(
                    options.namespace, TOKEN_CA_CONFIG_MAP, {"ca.crt": options.token_auth.ca_pem}
                ),
            )
        )
    else:
        deletes.append((CONFIGMAPS, TOKEN_CA_CONFIG_MAP))
    applies.append((SERVICES, _service(options.namespace, options.cluster_ip)))
    applies.append(
        (
            DEPLOYMENTS,
            _deployment(options, spec, storage, volume, env, endpoints, checksum),
        )
    )
    external: tuple[str, ...] = ()
    route_problem = ""
    if spec.get("defaultRoute") is True:
        if options.route_host:
            applies.append((INGRESSES, _ingress(options)))
            external = (options.route_host,)
        else:
            route_problem = (
                "defaultRoute is true but no route domain is configured: start the"
                " controller with --registry-route-domain (the hosts' parent domain)"
            )
    elif facts.ingress_host:
        deletes.append((INGRESSES, DEFAULT_ROUTE))
    conditions.update(_deployment_conditions(facts.deployment, route_problem))
    status = _status(facts, conditions)
    status["storage"] = _applied_storage(storage, storage_patch)
    status["storageManaged"] = (storage_patch or storage).get("managementState") == MANAGED
    return Plan(
        apply=tuple(applies),
        create=tuple(creates),
        delete=tuple(deletes),
        spec_patch=spec_patch,
        status=status,
        internal_hostname=options.internal_hostname,
        external_hostnames=external,
    )


def _not_started(
    options: Options,
    facts: Facts,
    conditions: dict[str, _Condition],
    reason: str,
    message: str,
    spec_patch: Obj | None = None,
) -> Plan:
    """Managed, but something the registry needs is missing: say what, change nothing."""
    conditions[AVAILABLE] = (
        _Condition("False", reason, message)
        if facts.deployment is None
        else _deployment_conditions(facts.deployment, "")[AVAILABLE]
    )
    conditions[PROGRESSING] = _Condition("False", reason, f"Unable to apply resources: {message}")
    conditions[DEGRADED] = _Condition("True", reason, message)
    return Plan(
        spec_patch=spec_patch,
        status=_status(facts, conditions),
        internal_hostname=options.internal_hostname if facts.service_exists else "",
        external_hostnames=(facts.ingress_host,) if facts.ingress_host else (),
    )


def _other_problem(options: Options, facts: Facts) -> tuple[str, str] | None:
    if not options.image:
        return (
            "RegistryImageNotConfigured",
            "no registry image is configured: start the controller with --registry-image",
        )
    if options.token_auth_required and options.token_auth is None:
        return (
            TOKEN_AUTH_NOT_READY,
            "token auth is configured but its signing certificate (tls.crt of the token"
            " service's Secret) cannot be read; a registry without it would let anyone in",
        )
    if options.notification_url and facts.notification_token is None:
        return (
            NOTIFICATION_TOKEN_MISSING,
            "the notification token Secret (--registry-notification-secret) is absent or lacks"
            " its key; without it the webhook would refuse every push notification",
        )
    return None


# --- storage -------------------------------------------------------------------------------


def _storage_kind(storage: Mapping[str, Any]) -> str:
    kinds = [k for k in ("emptyDir", "pvc", "s3") if storage.get(k) is not None]
    return kinds[0] if len(kinds) == 1 else ("" if not kinds else "many")


def _storage(
    options: Options, facts: Facts, spec: Mapping[str, Any], storage: Mapping[str, Any]
) -> tuple[Obj | None, Obj, list[Obj], _Condition, Obj | None, Obj]:
    """(volume, distribution storage section, env, StorageExists, claim to create, spec patch)."""
    kind = _storage_kind(storage)
    filesystem: Obj = {"filesystem": {"rootdirectory": ROOT_DIRECTORY}}
    if kind == "":
        raise _StorageProblem("StorageNotConfigured", NO_STORAGE_MESSAGE)
    if kind == "many":
        raise _StorageProblem(
            "StorageNotConfigured", "spec.storage sets more than one of emptyDir, pvc and s3"
        )
    if kind == "emptyDir":
        return (
            {"name": "registry-storage", "emptyDir": {}},
            filesystem,
            [],
            _Condition("True", "Creation Successful", "EmptyDir storage successfully created"),
            None,
            {},
        )
    if kind == "s3":
        section, env = _s3(options, facts, storage.get("s3") or {})
        return (
            None,
            section,
            env,
            _Condition(
                "True",
                "S3 Bucket Configured",
                "the bucket is not created here; the registry's storage health check"
                " reports one it cannot use",
            ),
            None,
            {},
        )
    return _pvc(options, facts, spec, storage, filesystem)


def _pvc(
    options: Options,
    facts: Facts,
    spec: Mapping[str, Any],
    storage: Mapping[str, Any],
    filesystem: Obj,
) -> tuple[Obj | None, Obj, list[Obj], _Condition, Obj | None, Obj]:
    named = str((storage.get("pvc") or {}).get("claim") or "")
    claim_name = named or DEFAULT_CLAIM
    namespace = options.namespace
    patch: Obj = {}
    create: Obj | None = None
    ours = not named or (named == DEFAULT_CLAIM and storage.get("managementState") == MANAGED)
    if facts.claim is None:
        if not ours:
            raise _StorageProblem(
                "StorageNotFound",
                f"persistentvolumeclaim {namespace}/{named} does not exist",
                "PVC does not exist",
            )
        create = _claim(namespace)
        condition = _Condition("True", "PVC Created", "")
        access_modes: Sequence[str] = ["ReadWriteOnce"]
    else:
        if not named and PVC_OWNER_ANNOTATION not in _annotations(facts.claim):
            raise _StorageProblem(
                "StorageNotConfigured",
                f"could not create default PVC {namespace}/{DEFAULT_CLAIM}: it already exists"
                " and was not made by the operator",
                "PVC Already Exists",
            )
        condition = _Condition("True", "PVC Exists", "")
        access_modes = (facts.claim.get("spec") or {}).get("accessModes") or []
    if not named:
        patch = {"pvc": {"claim": DEFAULT_CLAIM}, "managementState": MANAGED}
    elif not storage.get("managementState"):
        patch = {"managementState": UNMANAGED}
    if "ReadWriteMany" not in access_modes:
        if "ReadWriteOnce" not in access_modes:
            raise _StorageProblem(
                "StorageNotConfigured",
                f"PVC {claim_name} does not contain the necessary access modes:"
                " ReadWriteMany or ReadWriteOnce",
                "PVC Issues Found",
            )
        if _replicas(spec) > 1:
            raise _StorageProblem(
                "StorageNotConfigured",
                "cannot use ReadWriteOnce access mode with more than one replica of the"
                " image registry",
                "PVC Issues Found",
            )
        if spec.get("rolloutStrategy", "Recreate") != "Recreate":
            raise _StorageProblem(
                "StorageNotConfigured",
                f"cannot use ReadWriteOnce access mode with {spec.get('rolloutStrategy')}"
                " rollout strategy",
                "PVC Issues Found",
            )
    volume = {"name": "registry-storage", "persistentVolumeClaim": {"claimName": claim_name}}
    return volume, filesystem, [], condition, create, patch


def _s3(options: Options, facts: Facts, s3: Mapping[str, Any]) -> tuple[Obj, list[Obj]]:
    bucket, region = str(s3.get("bucket") or ""), str(s3.get("region") or "")
    endpoint = str(s3.get("regionEndpoint") or "")
    missing = [n for n, v in (("bucket", bucket), ("region", region)) if not v]
    if missing:
        raise _StorageProblem(
            "StorageNotConfigured",
            f"spec.storage.s3 needs {' and '.join(missing)} here (OpenShift derives them from"
            " the cloud it runs on; there is none to ask)",
            "S3 Bucket Not Configured",
        )
    secret = facts.user_secret
    keys = (S3_ACCESS_KEY, S3_SECRET_KEY)
    if secret is None or any(not secret.get(k) for k in keys):
        raise _StorageProblem(
            "StorageNotConfigured",
            f"the S3 credentials Secret {options.namespace}/{USER_SECRET} is absent or lacks"
            f" {S3_ACCESS_KEY} or {S3_SECRET_KEY}",
            "S3 Credentials Missing",
        )
    section: Obj = {
        "bucket": bucket,
        "region": region,
        "encrypt": s3.get("encrypt") is True,
        # distribution 3's name; 2.8 uses path style whenever regionendpoint is set.
        "forcepathstyle": s3.get("virtualHostedStyle") is not True,
    }
    if endpoint:
        section["regionendpoint"] = endpoint
        section["secure"] = not endpoint.startswith("http://")
    env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": USER_SECRET, "key": key}}}
        for key in keys
    ]
    return {"s3": section}, env


def _claim(namespace: str) -> Obj:
    return {
        "apiVersion": PERSISTENTVOLUMECLAIMS.api_version,
        "kind": PERSISTENTVOLUMECLAIMS.kind,
        "metadata": {
            "name": DEFAULT_CLAIM,
            "namespace": namespace,
            "labels": dict(LABELS),
            "annotations": {PVC_OWNER_ANNOTATION: "true"},
        },
        "spec": {
            # No storageClassName: the cluster's default class provisions it.
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": CLAIM_SIZE}},
        },
    }


def _provisioned_by_us(claim: Obj, storage: Mapping[str, Any]) -> bool:
    return PVC_OWNER_ANNOTATION in _annotations(claim) and storage.get("managementState") == MANAGED


def _applied_storage(storage: Mapping[str, Any], patch: Mapping[str, Any]) -> Obj:
    applied = {k: v for k, v in storage.items() if k != "managementState"}
    if "pvc" in patch:
        applied["pvc"] = patch["pvc"]
    return applied


# --- the registry's configuration ------------------------------------------------------------


def registry_config(spec: Mapping[str, Any], storage_config: Obj, options: Options) -> Obj:
    """distribution's config.yml (the chart's shape); secrets reach it through env only."""
    storage: Obj = {**storage_config, "delete": {"enabled": True}}
    if spec.get("readOnly") is True:
        storage["maintenance"] = {"readonly": {"enabled": True}}
    if spec.get("disableRedirect") is True:
        storage["redirect"] = {"disable": True}
    config: Obj = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
        "storage": storage,
        "http": {"addr": f":{PORT}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
        "notifications": {"events": {"includereferences": True}},
    }
    if options.token_auth is not None:
        config["auth"] = {
            "token": {
                "realm": options.token_auth.realm,
                "service": options.token_auth.service,
                "issuer": options.token_auth.issuer,
                "rootcertbundle": f"{TOKEN_CA_DIRECTORY}/ca.crt",
            }
        }
    return config


def notification_endpoints(url: str) -> list[Obj]:
    """The webhook endpoint; the token is expanded by the kubelet from the pod's env."""
    if not url:
        return []
    return [
        {
            "name": "imagestream-webhook",
            "url": url,
            "headers": {"Authorization": ["Bearer $(IMAGESTREAM_NOTIFICATION_TOKEN)"]},
            "timeout": "5s",
            "threshold": 5,
            "backoff": "1s",
            "ignoredmediatypes": ["application/octet-stream"],
            "ignore": {"actions": ["pull"]},
        }
    ]


def _checksum(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- the objects -----------------------------------------------------------------------------


def _metadata(name: str, namespace: str) -> Obj:
    return {"name": name, "namespace": namespace, "labels": dict(LABELS)}


def _secret(namespace: str, data: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": SECRETS.api_version,
        "kind": SECRETS.kind,
        "metadata": _metadata(PRIVATE_SECRET, namespace),
        "type": "Opaque",
        "stringData": dict(data),
    }


def _configmap(namespace: str, name: str, data: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": CONFIGMAPS.api_version,
        "kind": CONFIGMAPS.kind,
        "metadata": _metadata(name, namespace),
        "data": dict(data),
    }


def _service(namespace: str, cluster_ip: str = "") -> Obj:
    spec: Obj = {
        "type": "ClusterIP",
        "selector": dict(POD_LABELS),
        "ports": [{"name": f"{PORT}-tcp", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": SERVICES.api_version,
        "kind": SERVICES.kind,
        "metadata": _metadata(NAME, namespace),
        "spec": spec,
    }


def _ingress(options: Options) -> Obj:
    spec: Obj = {
        "tls": [{"hosts": [options.route_host]}],
        "rules": [
            {
                "host": options.route_host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": NAME, "port": {"number": PORT}}},
                        }
                    ]
                },
            }
        ],
    }
    if options.ingress_class:
        spec["ingressClassName"] = options.ingress_class
    return {
        "apiVersion": INGRESSES.api_version,
        "kind": INGRESSES.kind,
        "metadata": {
            **_metadata(DEFAULT_ROUTE, options.namespace),
            # Layers are large: no body limit at the proxy (ingress-nginx's annotation).
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
        },
        "spec": spec,
    }


def _deployment(
    options: Options,
    spec: Mapping[str, Any],
    storage: Mapping[str, Any],
    volume: Obj | None,
    storage_env: list[Obj],
    endpoints: list[Obj],
    checksum: str,
) -> Obj:
    def from_private(name: str, key: str) -> Obj:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": PRIVATE_SECRET, "key": key}}}

    env = [from_private(HTTP_SECRET_KEY, HTTP_SECRET_KEY)]
    if endpoints:
        env.append(from_private("IMAGESTREAM_NOTIFICATION_TOKEN", NOTIFICATION_TOKEN_KEY))
        # The whole list as YAML (distribution reads a list override that way); the token is
        # a $(VAR) the kubelet expands, so it is in neither the ConfigMap nor the pod spec.
        env.append({"name": "REGISTRY_NOTIFICATIONS_ENDPOINTS", "value": yaml.safe_dump(endpoints)})
    env.extend(storage_env)
    mounts: list[Obj] = [{"name": "config", "mountPath": CONFIG_DIRECTORY, "readOnly": True}]
    volumes: list[Obj] = [
        {
            "name": "config",
            "configMap": {
                "name": CONFIG_MAP,
                "items": [{"key": "config.yml", "path": "config.yml"}],
            },
        }
    ]
    if volume is not None:
        volumes.append(volume)
        mounts.append({"name": volume["name"], "mountPath": ROOT_DIRECTORY})
    if options.token_auth is not None:
        volumes.append({"name": "token-ca", "configMap": {"name": TOKEN_CA_CONFIG_MAP}})
        mounts.append({"name": "token-ca", "mountPath": TOKEN_CA_DIRECTORY, "readOnly": True})
    probe = {"httpGet": {"path": "/", "port": PORT}, "timeoutSeconds": 5}
    container: Obj = {
        "name": "registry",
        "image": options.image,
        "args": ["serve", f"{CONFIG_DIRECTORY}/config.yml"],
        "env": env,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "livenessProbe": {**probe, "periodSeconds": 10},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    if isinstance(spec.get("resources"), Mapping):
        container["resources"] = dict(spec["resources"])
    pod: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.get("nodeSelector"):
        pod["nodeSelector"] = dict(spec["nodeSelector"])
    if spec.get("tolerations"):
        pod["tolerations"] = list(spec["tolerations"])
    strategy = spec.get("rolloutStrategy") or (
        "Recreate" if storage.get("pvc") is not None else "RollingUpdate"
    )
    return {
        "apiVersion": DEPLOYMENTS.api_version,
        "kind": DEPLOYMENTS.kind,
        "metadata": _metadata(NAME, options.namespace),
        "spec": {
            "replicas": _replicas(spec),
            "selector": {"matchLabels": dict(POD_LABELS)},
            "strategy": _strategy(str(strategy)),
            "template": {
                "metadata": {
                    "labels": dict(LABELS),
                    "annotations": {CHECKSUM_ANNOTATION: checksum},
                },
                "spec": pod,
            },
        },
    }


# --- status ----------------------------------------------------------------------------------


def _deployment_conditions(deployment: Obj | None, route_problem: str) -> dict[str, _Condition]:
    """Available, Progressing and Degraded from the Deployment, as OpenShift's operator says."""
    if deployment is None:
        return {
            AVAILABLE: _Condition("False", "DeploymentNotFound", "The deployment does not exist"),
            PROGRESSING: _Condition(
                "True",
                "WaitingForDeployment",
                "All resources are successfully applied, but the deployment does not exist",
            ),
            DEGRADED: _Condition("True", "RouteDegraded", route_problem)
            if route_problem
            else _Condition("False", "AsExpected"),
        }
    status = deployment.get("status") or {}
    available, replicas = (
        int(status.get("availableReplicas") or 0),
        int(status.get("replicas") or 0),
    )
    if (deployment.get("metadata") or {}).get("deletionTimestamp"):
        availability = _Condition("False", "DeploymentDeleted", "The deployment is being deleted")
    elif available == 0:
        availability = _Condition(
            "False", "NoReplicasAvailable", "The deployment does not have available replicas"
        )
    elif available != replicas:
        availability = _Condition(
            "True", "MinimumAvailability", "The registry has minimum availability"
        )
    else:
        availability = _Condition("True", "Ready", "The registry is ready")
    progressing_condition: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    observed = int(status.get("observedGeneration") or 0) >= int(
        (deployment.get("metadata") or {}).get("generation") or 0
    )
    complete = (
        observed
        and progressing_condition.get("status") == "True"
        and progressing_condition.get("reason") == "NewReplicaSetAvailable"
    )
    progressing = (
        _Condition("False", "Ready", "The registry is ready")
        if complete
        else _Condition("True", "DeploymentNotCompleted", "The deployment has not completed")
    )
    if progressing_condition.get("reason") == "ProgressDeadlineExceeded":
        degraded = _Condition(
            "True",
            "ProgressDeadlineExceeded",
            "Registry deployment has timed out progressing: "
            + str(progressing_condition.get("message") or ""),
        )
    elif route_problem:
        degraded = _Condition("True", "RouteDegraded", route_problem)
    else:
        degraded = _Condition("False", "AsExpected")
    return {AVAILABLE: availability, PROGRESSING: progressing, DEGRADED: degraded}


def waiting_for_secret(status: Mapping[str, Any]) -> bool:
    """Whether the registry is held back only until a Secret appears (no event will say so)."""
    return any(
        c.get("type") == DEGRADED
        and c.get("status") == "True"
        and c.get("reason") in WAITING_FOR_SECRET
        for c in status.get("conditions") or []
    )


def degraded(status: Mapping[str, Any]) -> bool:
    """Whether the planned status says Degraded (for any reason: a claim, a Secret, a route)."""
    return any(
        c.get("type") == DEGRADED and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def failed_status(status: Obj, message: str, now: str) -> Obj:
    """`status` after a write of the planned objects failed: Progressing and Degraded say so."""
    failed = {
        PROGRESSING: _Condition("True", "Error", f"Unable to apply resources: {message}"),
        DEGRADED: _Condition("True", "ApplyFailed", f"Unable to apply resources: {message}"),
    }
    return _status(Facts(config={"status": status}, now=now, fresh_http_secret=""), failed) | {
        key: status[key] for key in ("observedGeneration", "readyReplicas") if key in status
    }


def _status(facts: Facts, wanted: Mapping[str, _Condition]) -> Obj:
    """The Config's status with `wanted` conditions set (others kept), timestamps kept."""
    current = facts.config.get("status") or {}
    by_type = {
        str(c.get("type")): c for c in current.get("conditions") or [] if isinstance(c, Mapping)
    }
    conditions: list[Obj] = []
    types = list(CONDITION_ORDER) + sorted(set(by_type) - set(CONDITION_ORDER))
    for type_ in types:
        existing = by_type.get(type_)
        condition = wanted.get(type_)
        if condition is None:
            if existing is not None:
                conditions.append(dict(existing))
            continue
        transition = facts.now
        if existing is not None and existing.get("status") == condition.status:
            transition = str(existing.get("lastTransitionTime") or facts.now)
        entry: Obj = {"type": type_, "status": condition.status, "lastTransitionTime": transition}
        if condition.reason:
            entry["reason"] = condition.reason
        if condition.message:
            entry["message"] = condition.message
        conditions.append(entry)
    status: Obj = {
        key: value
        for key, value in current.items()
        if key not in ("conditions", "observedGeneration", "readyReplicas")
    }
    status["conditions"] = conditions
    generation = (facts.config.get("metadata") or {}).get("generation")
    if generation is not None:
        status["observedGeneration"] = int(generation)
    deployment_status = (facts.deployment or {}).get("status") or {}
    status["readyReplicas"] = int(deployment_status.get("readyReplicas") or 0)
    return status


def _strategy(kind: str) -> Obj:
    """The Deployment strategy; RollingUpdate's parameters are ours, stated.

    Applied, they are owned by the operator, so a change to Recreate drops them (the API
    server refuses Recreate beside the `rollingUpdate` it would otherwise have defaulted).
    """
    if kind == "RollingUpdate":
        return {"type": kind, "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    return {"type": kind}


def _replicas(spec: Mapping[str, Any]) -> int:
    replicas = spec.get("replicas")
    return replicas if isinstance(replicas, int) else 1


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _annotations(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}
