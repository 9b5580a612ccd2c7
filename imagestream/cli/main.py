"""The `imagestream` command.

    imagestream run          controller and webhook in one process
    imagestream controller   the controller alone (watches, triggers)
    imagestream webhook      the webhook alone (registry push intake)
    imagestream dev          the whole system on this machine (local control plane, registry)
    imagestream version      print the version

and the commands a person runs against a cluster, with oc's spelling and kubectl's
connection rules (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, `--context`, `-n`):
explain, rollout, start-build, tag, import-image, set triggers, set image-lookup,
describe, registry login. Each prints its result, or one `error:` line and exits 1.

Every flag also reads an environment variable: `--webhook-addr` reads
`IMAGESTREAM_WEBHOOK_ADDR`, and so on. A flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imagestream.cli.common import CommandParser
from imagestream.health import StopSignal
from imagestream.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from imagestream.process import ComponentStarter, run_components
from imagestream.settings import HostPort, Settings, SettingsError
from imagestream.version import package_version

ENV_PREFIX = "IMAGESTREAM_"
MIN_TOKEN_EXPIRY_S = 600


def env_default(flag: str, default: str | None) -> str | None:
    """The default of `--some-flag`: `$IMAGESTREAM_SOME_FLAG`, else `default`."""
    name = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
    return os.environ.get(name, default)


def add_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    default: str | None,
    help_text: str,
    **kwargs: object,
) -> None:
    env_name = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
    parser.add_argument(
        flag,
        default=env_default(flag, default),
        help=f"{help_text} (env {env_name}; default: {default})",
        **kwargs,  # type: ignore[arg-type]
    )


def add_process_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--kubeconfig",
        None,
        "kubeconfig file; without it $KUBECONFIG, then the in-cluster service account",
    )
    add_flag(parser, "--webhook-addr", "0.0.0.0:8080", "address the webhook listens on")
    add_flag(parser, "--health-addr", "0.0.0.0:8081", "address serving /healthz and /readyz")
    add_flag(parser, "--metrics-addr", "0.0.0.0:9090", "address serving Prometheus /metrics")
    add_flag(parser, "--webhook-config", None, "YAML file listing the webhook's receivers")
    add_flag(
        parser,
        "--webhook-token-file",
        None,
        "file holding the token of the default distribution receiver",
    )
    add_flag(
        parser,
        "--generated-secret",
        "",
        "namespace/name of a Secret the webhook creates or completes at start with a random"
        " token for each of --generated-secret-keys (existing keys are kept)",
    )
    add_flag(
        parser,
        "--generated-secret-keys",
        "",
        "comma-separated keys of --generated-secret",
    )
    add_flag(
        parser,
        "--watch-namespaces",
        "",
        "comma-separated namespaces to watch; empty means the whole cluster",
    )
    add_flag(parser, "--history-limit", "50", "tag history items kept per tag", type=int)
    add_flag(
        parser, "--max-body-bytes", str(1024 * 1024), "largest notification body accepted", type=int
    )
    add_flag(
        parser,
        "--registry-config",
        None,
        "docker config.json with registry credentials used for every namespace",
    )
    add_flag(parser, "--registry-ca-bundle", None, "extra CA certificates for registries")
    add_flag(
        parser,
        "--import-interval",
        "900",
        "seconds between scheduled imports (importPolicy.scheduled)",
        type=float,
    )
    add_flag(
        parser,
        "--leader-elect",
        "false",
        "elect one active controller through a Lease (true for more than one replica)",
        type=_boolean,
    )
    add_flag(
        parser,
        "--allow-cross-namespace-triggers",
        "false",
        "let triggers follow ImageStreams in any namespace with no check, as OpenShift's"
        " trigger controller (default: only where the object's service accounts may pull)",
        type=_boolean,
    )
    add_flag(
        parser,
        "--pull-access-cache-ttl",
        "30",
        "seconds an image-puller review of a cross-namespace stream is trusted",
        type=float,
    )
    add_flag(parser, "--resync-period", "600", "seconds between full resyncs", type=float)
    add_flag(
        parser,
        "--watch-timeout",
        "300",
        "seconds each watch lasts; a silent stream is dropped 15 s after",
        type=int,
    )
    add_flag(
        parser,
        "--leader-election-namespace",
        "",
        "namespace of the leader election Lease (default: the pod's, else default)",
    )
    add_flag(
        parser,
        "--integrated-registry",
        "",
        "host[:port] of the integrated registry, for status.dockerImageRepository",
    )
    add_flag(parser, "--workers", "8", "concurrent reconciles per queue", type=int)
    add_flag(
        parser,
        "--build-job-template",
        None,
        "YAML Job manifest that runs Builds (container `build`); default: rootless buildah",
    )
    add_flag(
        parser,
        "--builder-image",
        "",
        "image the default build Job template runs (default: a public buildah image)",
    )
    add_flag(
        parser,
        "--build-insecure-registries",
        "",
        "comma-separated host[:port] of registries builds reach over plain HTTP",
    )
    add_flag(
        parser,
        "--allowed-registries",
        "",
        "comma-separated registry host patterns imports may contact (e.g. "
        "quay.io,*.example.com); empty: any",
    )
    add_flag(
        parser,
        "--image-config",
        "true",
        "read the cluster image configuration (images.config.openshift.io/cluster) where"
        " its API is served; it adds to --allowed-registries, never widens it",
        type=_boolean,
    )
    add_flag(
        parser,
        "--image-config-namespace",
        "openshift-config",
        "namespace of the cluster image configuration's additionalTrustedCA ConfigMap",
    )
    add_flag(
        parser,
        "--service-account-pull-secrets",
        "false",
        "keep a pull secret for the integrated registry (a bound token, refreshed) in every"
        " ServiceAccount's imagePullSecrets, and create builder and deployer accounts",
        type=_boolean,
    )
    add_flag(
        parser,
        "--pull-secret-token-expiry",
        "3600",
        "seconds those pull secrets' tokens are valid (at least 600); renewed with 40% left",
        type=int,
    )
    add_flag(
        parser,
        "--admission-addr",
        "",
        "address the admission webhook listens on (HTTPS); empty: no admission webhook",
    )
    add_flag(
        parser,
        "--admission-cert-dir",
        None,
        "directory with tls.crt and tls.key for the admission webhook (e.g. cert-manager's"
        " Secret); without it the webhook makes its own CA in --admission-secret",
    )
    add_flag(
        parser,
        "--admission-secret",
        "",
        "namespace/name of the Secret keeping the self-made admission CA and certificate",
    )
    add_flag(
        parser,
        "--admission-hosts",
        "",
        "comma-separated DNS names and IPs of the self-made admission certificate",
    )
    add_flag(
        parser,
        "--admission-webhook-configuration",
        "imagestream-controller",
        "name of the Mutating/ValidatingWebhookConfiguration whose caBundle the webhook keeps",
    )
    add_flag(
        parser,
        "--admission-cert-validity",
        str(365 * 86400),
        "seconds a self-made serving certificate is valid (renewed with a third left)",
        type=float,
    )
    add_flag(
        parser,
        "--admission-cert-check-interval",
        "3600",
        "seconds between checks of the admission certificate and caBundle",
        type=float,
    )
    add_flag(
        parser,
        "--registry-operator",
        "false",
        "run the Image Registry Operator's loop: reconcile configs.imageregistry.operator"
        ".openshift.io/cluster into a registry in --registry-namespace",
        type=_boolean,
    )
    add_flag(
        parser,
        "--registry-namespace",
        "openshift-image-registry",
        "namespace of the operator's integrated registry",
    )
    add_flag(parser, "--registry-image", "", "distribution image the operator's registry runs")
    add_flag(
        parser,
        "--registry-notification-url",
        "",
        "webhook endpoint the operator's registry sends push notifications to",
    )
    add_flag(
        parser,
        "--registry-notification-secret",
        "",
        "namespace/name:key of the notification token the operator's registry sends",
    )
    add_flag(
        parser,
        "--registry-route-domain",
        "",
        "parent domain of the registry's default route (defaultRoute: true)",
    )
    add_flag(
        parser,
        "--registry-ingress-class",
        "",
        "IngressClass of the registry's default route (default: the cluster's)",
    )
    add_flag(
        parser,
        "--registry-token-signing-secret",
        "",
        "namespace/name of the kubernetes.io/tls Secret whose EC key signs the integrated"
        " registry's tokens; set: the webhook serves GET /v1/registry/token (creating the"
        " Secret with a fresh key when absent)",
    )
    add_flag(
        parser,
        "--registry-bootstrap-management-state",
        "",
        "managementState (Managed or Removed) of the configs.imageregistry.operator.openshift.io"
        "/cluster the operator creates when there is none; empty: Managed when it finds storage"
        " (a default StorageClass), else Removed. An existing Config is never changed",
        choices=("", "Managed", "Removed"),
    )
    add_flag(
        parser,
        "--registry-bootstrap-spec",
        "",
        'JSON object: more of that first Config\'s spec, e.g. \'{"storage": {"emptyDir": {}},'
        ' "replicas": 1}\'; its storage wins over the default StorageClass',
    )
    add_flag(
        parser,
        "--registry-cluster-ip",
        "",
        "a fixed cluster IP for the operator's registry Service (nodes can be told to pull"
        " from it before it exists); empty: one the cluster picks",
    )
    add_flag(
        parser,
        "--registry-token-realm",
        "",
        "URL of the token service (the webhook's /v1/registry/token) that the operator's"
        " registry sends clients to; with --registry-token-signing-secret the registry takes"
        " cluster tokens only. Clients resolve it themselves: the node's containerd, pods and"
        " host-side pushes must all reach it (an IP address or an Ingress host, not a .svc name)",
    )
    add_log_flags(parser)


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--log-format", "json", "log format", choices=LOG_FORMATS)
    add_flag(parser, "--log-level", "info", "log level", choices=LOG_LEVELS)


def _boolean(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def settings_from(args: argparse.Namespace) -> Settings:
    def optional_path(value: str | None) -> Path | None:
        return Path(value) if value else None

    if args.pull_secret_token_expiry < MIN_TOKEN_EXPIRY_S:
        raise SettingsError(
            f"--pull-secret-token-expiry must be at least {MIN_TOKEN_EXPIRY_S} seconds (the"
            f" API server's minimum for a TokenRequest), got {args.pull_secret_token_expiry}"
        )

    return Settings(
        kubeconfig=optional_path(args.kubeconfig),
        webhook_addr=HostPort.parse(args.webhook_addr),
        health_addr=HostPort.parse(args.health_addr),
        metrics_addr=HostPort.parse(args.metrics_addr),
        log_format=args.log_format,
        log_level=args.log_level,
        webhook_config=optional_path(args.webhook_config),
        webhook_token_file=optional_path(args.webhook_token_file),
        watch_namespaces=tuple(n.strip() for n in args.watch_namespaces.split(",") if n.strip()),
        history_limit=args.history_limit,
        max_body_bytes=args.max_body_bytes,
        registry_config=optional_path(args.registry_config),
        registry_ca_bundle=optional_path(args.registry_ca_bundle),
        import_interval_s=args.import_interval,
        leader_elect=args.leader_elect,
        allow_cross_namespace_triggers=args.allow_cross_namespace_triggers,
        pull_access_ttl_s=args.pull_access_cache_ttl,
        resync_period_s=args.resync_period,
        watch_timeout_s=args.watch_timeout,
        leader_election_namespace=args.leader_election_namespace,
        integrated_registry=args.integrated_registry,
        workers=args.workers,
        build_job_template=optional_path(args.build_job_template),
        builder_image=args.builder_image,
        build_insecure_registries=tuple(
            r.strip() for r in args.build_insecure_registries.split(",") if r.strip()
        ),
        generated_secret=args.generated_secret,
        generated_secret_keys=tuple(
            k.strip() for k in args.generated_secret_keys.split(",") if k.strip()
        ),
        allowed_registries=tuple(
            p.strip() for p in args.allowed_registries.split(",") if p.strip()
        ),
        image_config=args.image_config,
        image_config_namespace=args.image_config_namespace,
        service_account_pull_secrets=args.service_account_pull_secrets,
        pull_secret_token_expiry_s=args.pull_secret_token_expiry,
        admission_addr=HostPort.parse(args.admission_addr) if args.admission_addr else None,
        admission_cert_dir=optional_path(args.admission_cert_dir),
        admission_secret=args.admission_secret,
        admission_hosts=tuple(h.strip() for h in args.admission_hosts.split(",") if h.strip()),
        admission_webhook_configuration=args.admission_webhook_configuration,
        admission_cert_validity_s=args.admission_cert_validity,
        admission_cert_check_interval_s=args.admission_cert_check_interval,
        registry_operator=args.registry_operator,
        registry_namespace=args.registry_namespace,
        registry_image=args.registry_image,
        registry_notification_url=args.registry_notification_url,
        registry_notification_secret=args.registry_notification_secret,
        registry_route_domain=args.registry_route_domain,
        registry_ingress_class=args.registry_ingress_class,
        registry_token_signing_secret=args.registry_token_signing_secret,
        registry_token_realm=args.registry_token_realm,
        registry_bootstrap_management_state=args.registry_bootstrap_management_state,
        registry_bootstrap_spec=args.registry_bootstrap_spec,
        registry_cluster_ip=args.registry_cluster_ip,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="imagestream",
        description="OpenShift ImageStreams and image-change triggers on any Kubernetes cluster.",
    )
    from imagestream.cli.common import add_global_connection_flags

    add_global_connection_flags(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run the controller and the webhook in one process"),
        ("controller", "run the controller"),
        ("webhook", "run the webhook that registries send push notifications to"),
    ):
        add_process_flags(commands.add_parser(name, help=help_text, description=help_text))

    dev = commands.add_parser(
        "dev",
        help="run the whole system on this machine",
        description="Start a local control plane and registry, then the controller and "
        "webhook against them, until Ctrl-C.",
    )
    add_flag(dev, "--state-dir", ".dev", "directory for the kubeconfig, token and logs")
    add_flag(dev, "--registry-port", "5000", "loopback port of the registry", type=int)
    add_flag(dev, "--webhook-port", "8080", "loopback port of the webhook", type=int)
    add_log_flags(dev)

    from imagestream.cli import (
        builds,
        describe,
        explain,
        importimage,
        registry,
        rollout,
        setcmd,
        startbuild,
        tag,
    )

    explain.add_parser(commands, add_flag, _boolean)
    rollout.add_parser(commands, add_flag)
    startbuild.add_parser(commands, add_flag)
    builds.add_parsers(commands, add_flag)
    tag.add_parser(commands, add_flag)
    importimage.add_parser(commands, add_flag)
    setcmd.add_parser(commands, add_flag)
    describe.add_parser(commands, add_flag)
    registry.add_parser(commands, add_flag)
    commands.add_parser("version", help="print the version")
    return parser


def starters_for(command: str) -> list[ComponentStarter]:
    from controller import app as controller_app
    from webhook import app as webhook_app

    starters: dict[str, list[ComponentStarter]] = {
        "run": [controller_app.start, webhook_app.start],
        "controller": [controller_app.start],
        "webhook": [webhook_app.start],
    }
    return starters[command]


async def _serve(settings: Settings, starters: list[ComponentStarter]) -> None:
    stop = StopSignal()
    stop.install_handlers()
    await run_components(settings, starters, stop=stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a failure the user can fix is one line on stderr and exit code 1."""
    from imagestream.cli.errors import user_message

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        return 130  # as a shell reports SIGINT; kubectl prints nothing either
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if getattr(args, "handler", None) is not None:  # the commands a person runs
        return int(args.handler(args))
    if args.global_kubeconfig or args.global_context or args.global_namespace:
        parser.error(
            f"--kubeconfig, --context and -n before `{args.command}` are for the commands "
            "that talk to a cluster (tag, describe, ...); pass --kubeconfig after it"
        )
    if args.command == "version":
        print(package_version())
        return 0
    configure_logging(log_format=args.log_format, log_level=args.log_level)
    if args.command == "dev":
        try:
            from imagestream.cli.dev import run_dev
        except ModuleNotFoundError as error:
            if error.name != "localdev" and not str(error.name).startswith("localdev."):
                raise
            print(
                "error: `imagestream dev` needs the local development system: "
                "run it from a source checkout after `make install` (pip install -e ./localdev)",
                file=sys.stderr,
            )
            return 1
        return run_dev(
            state_dir=Path(args.state_dir),
            registry_port=args.registry_port,
            webhook_port=args.webhook_port,
            log_format=args.log_format,
            log_level=args.log_level,
        )
    try:
        settings = settings_from(args)
    except SettingsError as error:
        parser.error(str(error))
    asyncio.run(_serve(settings, starters_for(args.command)))
    return 0
