"""Process settings: one frozen value built from flags and `IMAGESTREAM_*` variables.

Precedence is flag, then environment variable, then default, so a Helm chart
can set everything through `env:` and a developer can still override one
value on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """A flag or environment variable has a value we cannot use."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """`host:port`, `:port` (all interfaces) or `[::1]:port`."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise SettingsError(f"expected host:port, got {text!r}")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise SettingsError(f"port out of range in {text!r}")
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':8080' means every interface
        return cls(host=host, port=port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything a controller or webhook process is configured with."""

    kubeconfig: Path | None
    webhook_addr: HostPort
    health_addr: HostPort
    metrics_addr: HostPort
    log_format: str
    log_level: str
    webhook_token_file: Path | None = None
    webhook_config: Path | None = None
    watch_namespaces: tuple[str, ...] = ()
    """Empty: the whole cluster. Otherwise only these namespaces (Roles suffice)."""
    history_limit: int = 50
    """Tag history items kept per tag (OpenShift keeps all; we stay far below etcd's limit)."""
    max_body_bytes: int = 1024 * 1024
    registry_config: Path | None = None
    """A docker config.json with credentials for every registry (besides namespace Secrets)."""
    registry_ca_bundle: Path | None = None
    import_interval_s: float = 900.0
    """How often `importPolicy.scheduled` tags are imported again (OpenShift: 15 minutes)."""
    leader_elect: bool = False
    leader_election_namespace: str = ""
    """Where the Lease lives; empty: the pod's namespace, else `default`."""
    integrated_registry: str = ""
    """`host[:port]` of the cluster's integrated registry; fills status.dockerImageRepository."""
    workers: int = 8
    allowed_registries: tuple[str, ...] = ()
    """Registries imports and verification may contact (patterns); empty: any."""
    image_config: bool = True
    """Read `images.config.openshift.io/cluster` where the API is served (see image_config)."""
    image_config_namespace: str = "openshift-config"
    """Where the `additionalTrustedCA` ConfigMap of the cluster image configuration lives."""
    allow_cross_namespace_triggers: bool = False
    """No check of cross-namespace streams at all, as OpenShift's trigger controller."""
    pull_access_ttl_s: float = 30.0
    """How long an image-puller review (may A's service accounts pull from B?) is trusted."""
    resync_period_s: float = 600.0
    watch_timeout_s: int = 300
    """Server-side timeout of each watch; a stream silent for this plus 15 s is dead."""
    generated_secret: str = ""
    """`namespace/name` of a Secret the webhook completes at start with random tokens."""
    generated_secret_keys: tuple[str, ...] = ()
    """The keys it must hold; an existing key is never changed."""
    build_job_template: Path | None = None
    """A YAML Job manifest that runs Builds (a container named `build`); none: rootless buildah."""
    builder_image: str = ""
    """The image of the default template's `build` container; empty: the public buildah image."""
    build_insecure_registries: tuple[str, ...] = ()
    """Registries (`host[:port]`) builds pull from and push to over plain HTTP."""
    service_account_pull_secrets: bool = False
    """Keep a pull secret for the integrated registry in every ServiceAccount (behaviour 34)."""
    pull_secret_token_expiry_s: int = 3600
    """Lifetime asked for those Secrets' bound tokens (the API server's minimum is 600)."""
    admission_addr: HostPort | None = None
    """Where the admission webhook listens (HTTPS); none: no admission webhook."""
    admission_cert_dir: Path | None = None
    """A directory with `tls.crt` and `tls.key` (cert-manager's Secret); none: self-made."""
    admission_secret: str = ""
    """`namespace/name` of the Secret that keeps the self-made CA and serving certificate."""
    admission_hosts: tuple[str, ...] = ()
    """The DNS names and IPs the self-made serving certificate is for."""
    admission_webhook_configuration: str = "imagestream-controller"
    """The Mutating/ValidatingWebhookConfiguration whose caBundle the webhook keeps."""
    admission_cert_validity_s: float = 365 * 86400.0
    admission_cert_check_interval_s: float = 3600.0
    """How often the certificate (Secret or files) and the caBundle are checked."""
    registry_operator: bool = False
    """Run the Image Registry Operator's loop (configs.imageregistry.operator.openshift.io)."""
    registry_namespace: str = "openshift-image-registry"
    """Where the operator runs the integrated registry."""
    registry_image: str = ""
    """The distribution image the operator's registry Deployment runs."""
    registry_notification_url: str = ""
    """The webhook endpoint the managed registry notifies; empty: no notifications."""
    registry_notification_secret: str = ""
    """`namespace/name:key` of the notification token (copied to the registry namespace)."""
    registry_route_domain: str = ""
    """`defaultRoute` hosts are `default-route-<registry namespace>.<this domain>`."""
    registry_ingress_class: str = ""
    """The IngressClass of the default route's Ingress; empty: the cluster's default."""
    registry_token_signing_secret: str = ""
    """`namespace/name` of the `kubernetes.io/tls` Secret whose key signs registry tokens;
    set: the webhook serves the registry's token service (made when absent)."""
    registry_bootstrap_management_state: str = ""
    """The first `cluster` Config's managementState (Managed, Removed); empty: detected."""
    registry_bootstrap_spec: str = ""
    """JSON: more of the first Config's spec (storage, replicas...); empty: detected."""
    registry_cluster_ip: str = ""
    """A fixed cluster IP for the registry's Service; empty: one the cluster picks."""
    registry_token_realm: str = ""
    """The token service's URL the operator's registry sends clients to (`auth.token.realm`);
    with the signing Secret above, the operator's registry takes tokens only."""
