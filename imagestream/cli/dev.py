"""`imagestream dev`: the whole system on one machine.

Starts a real local control plane (etcd, kube-apiserver,
kube-controller-manager, built from Go modules on first use), a real node
where the machine allows one (containerd, runc, CNI, kubelet,
kube-scheduler, kube-proxy, CoreDNS: `localdev.node`; it needs root),
installs our CRDs, registers our admission webhooks (a `url:` on loopback:
the API server runs on this host), starts a real distribution registry, and runs the
controller and the webhook in this process until Ctrl-C. When everything is up (the node
Ready, the integrated registry Available) it prints one line:

    READY {"kubeconfig": ..., "kubectl": ..., "registry": ..., "registry_hostname": ...,
           "webhook": ..., "admission": ..., "token_file": ..., "health": ...,
           "metrics": ..., "node": ...}

With a node, the integrated registry is the one OpenShift has: the controller runs the
Image Registry Operator's loop (and the pull-secret loop), which runs distribution as the
Deployment `image-registry` in `openshift-image-registry`, its pod on the node, on
`emptyDir` (the first `cluster` Config given as the chart gives it,
`--registry-bootstrap-management-state`/`--registry-bootstrap-spec`: this cluster has no
default StorageClass, which would bootstrap `Removed`). The host registry
(`localdev.registry`) then only holds the system's own images (pause, CoreDNS, the
builder, the registry image), as a release registry does; its notifications are off.
The operator's registry notifies the webhook, which therefore listens on the node's
host-only address (pods cannot reach loopback). Its token auth (`--registry-token-realm`)
is not turned on here: pushes and pulls are anonymous, as before.

How the host reaches that registry, decided: its Service gets a fixed clusterIP
(`REGISTRY_SERVICE_IP`, `--registry-cluster-ip`), the hostname published stays OpenShift's
`image-registry.openshift-image-registry.svc:5000`, and the node's containerd gets a
`hosts.toml` mirror of that name to the fixed address, as OpenShift's node DNS daemon makes
the name resolvable on nodes. Fixed, not learnt from the Service once it exists, because
three things need the address before the Service is made: containerd's mirror, the
webhook's receiver (distribution names the host the client used; a push from the host to
the Service address is only recorded if the receiver knows that address as a name of the
integrated registry) and the README's one address to push to. An IP-based hostname was
not chosen: ImageStreams would then show an address OpenShift never does.

With a node, Builds run the builder image made here from Debian packages
(`localdev.builder`: cached, pushed to the registry at start, given to the
controller by digest with the registry as a plain-HTTP one for builds).
Without a node (not root, no containerd) it says why and runs the rest:
pods (and Builds) then stay Pending.

Invariants:
- whatever happens (Ctrl-C during the build, a process that fails to start,
  SIGTERM), every process this command started is stopped before it returns;
- it never runs with a part missing: a port already in use is refused
  before anything starts, a part that does not start or later exits ends the
  command with exit code 1 and one line saying which and why (a registry
  that could not bind its port once went unnoticed, because another one
  answered there);
- the state directory and everything in it that can hold a secret (the
  token, the kubeconfig, keys, the registry's config and log) is readable by
  its owner only (`localdev.private`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from controller.registryoperator.plan import NAME as REGISTRY_NAME
from controller.registryoperator.plan import PORT as REGISTRY_PORT
from imagestream.cli.errors import CommandError, user_message
from imagestream.health import ListenError, StopSignal
from imagestream.kube.client import Kube, connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import DEPLOYMENTS, SECRETS
from imagestream.kube.roles import install_image_roles, load_image_roles
from imagestream.process import run_components
from imagestream.settings import HostPort, Settings
from localdev import debian_images
from localdev.admission import register_admission
from localdev.builder import push_builder
from localdev.controlplane import ControlPlane, binary_dir, free_port
from localdev.debian_images import ImageBuildError
from localdev.images import skopeo_push
from localdev.node import (
    HOST_ADDRESS,
    Node,
    NodeUnavailableError,
    node_binary_dir,
    preflight,
)
from localdev.private import private_dir, write_private
from localdev.processes import ManagedProcess, ProcessFailedError, stop_all
from localdev.registry import REGISTRY_BINARY, NotificationEndpoint, Registry

PART_CHECK_INTERVAL_S = 0.5
DEV_LISTEN_FLAGS = {"webhook": "--webhook-port"}


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _token_file(state_dir: Path) -> Path:
    path = state_dir / "webhook-token"
    if path.exists():
        path.chmod(0o600)  # an older .dev/ may have it wider
    else:
        write_private(path, secrets.token_urlsafe(32) + "\n")
    return path


ADMISSION_NAME = "imagestream-controller"
ADMISSION_TLS_SECRET = "kube-system/imagestream-admission-tls"  # noqa: S105 - a name
# Image lookup sees every Pod: kube-system's (CoreDNS) never name a stream.
LOOKUP_NAMESPACES = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
    ]
}


async def _install_crds(kubeconfig: Path, admission_url: str) -> list[str]:
    """The CRDs, OpenShift's image ClusterRoles the image-puller rule names, and our admission
    webhooks (before the webhook starts: it fills caBundle)."""
    kube = await connect(kubeconfig)
    try:
        applied = await install_crds(kube, load_crds()) + await install_image_roles(
            kube, load_image_roles()
        )
        await register_admission(
            kube, ADMISSION_NAME, admission_url, lookup_namespace_selector=LOOKUP_NAMESPACES
        )
        return applied
    finally:
        await kube.close()


REGISTRY_NAMESPACE = "openshift-image-registry"
INTERNAL_REGISTRY = f"{REGISTRY_NAME}.{REGISTRY_NAMESPACE}.svc:{REGISTRY_PORT}"
"""The integrated registry's hostname, as the operator publishes it (OpenShift's)."""
REGISTRY_SERVICE_IP = "10.0.0.12"
"""The registry Service's fixed clusterIP, in the node's Service CIDR (10.0.0.0/24) and
clear of the `kubernetes` (.1) and DNS (.10) Services."""
REGISTRY_SERVICE_ADDRESS = f"{REGISTRY_SERVICE_IP}:{REGISTRY_PORT}"
NOTIFICATION_SECRET = "kube-system/imagestream-registry-notification"  # noqa: S105 - a name
NOTIFICATION_KEY = "token"
REGISTRY_BOOTSTRAP_SPEC = {"storage": {"emptyDir": {}}, "replicas": 1}
"""emptyDir: images live as long as the registry pod, as dev's cluster lives as long as dev."""
REGISTRY_READY_TIMEOUT_S = 300.0
"""The registry pod's image is pulled from the host registry and started on the node."""
REGISTRY_POLL_S = 0.5


def _push_registry_image(host: str) -> str:
    """Debian's docker-registry image (cached), pushed to the host registry; its reference."""
    built = debian_images.build(debian_images.REGISTRY, log=_progress)
    tag = built.digest.removeprefix("sha256:")[:16]
    skopeo_push(built.image, f"{host}/localdev/registry:{tag}")
    return f"{host}/localdev/registry@{built.digest}"


async def _install_notification_secret(kubeconfig: Path, token: str) -> None:
    """The webhook's token as the Secret the operator copies into the registry namespace."""
    namespace, name = NOTIFICATION_SECRET.split("/")
    kube = await connect(kubeconfig)
    try:
        await kube.create(
            SECRETS,
            namespace,
            {
                "metadata": {"name": name, "namespace": namespace},
                "type": "Opaque",
                "stringData": {NOTIFICATION_KEY: token},
            },
        )
    finally:
        await kube.close()


def _webhook_config(state_dir: Path, token_file: Path) -> Path:
    """One receiver for the operator's registry, which also knows the Service address the
    host pushes to as a name of the integrated registry (distribution names the host the
    client used; without this, a push from the host would be ignored as another host's)."""
    config = {
        "receivers": [
            {
                "name": "distribution",
                "type": "distribution",
                "integrated": True,
                "registry": REGISTRY_SERVICE_ADDRESS,
                "auth": {"type": "bearer", "secretFiles": [str(token_file)]},
            }
        ]
    }
    return write_private(state_dir / "webhook-config.yaml", json.dumps(config, indent=1) + "\n")


async def _registry_available(kubeconfig: Path) -> None:
    """The operator's Deployment Available and its Service answering from this host
    (kube-proxy's rules for it come a moment after the pod is Ready)."""
    _progress(f"dev: waiting for the integrated registry ({REGISTRY_NAMESPACE}/{REGISTRY_NAME})")
    kube = await connect(kubeconfig)
    deadline = time.monotonic() + REGISTRY_READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if await _deployment_available(kube) and await asyncio.to_thread(_answers):
                return
            await asyncio.sleep(REGISTRY_POLL_S)
    finally:
        await kube.close()
    raise TimeoutError(
        f"the integrated registry did not become available within {REGISTRY_READY_TIMEOUT_S}s"
        f" (kubectl -n {REGISTRY_NAMESPACE} describe pods; configs.imageregistry.operator."
        "openshift.io/cluster status)"
    )


async def _deployment_available(kube: Kube) -> bool:
    try:
        deployment = await kube.get(DEPLOYMENTS, REGISTRY_NAMESPACE, REGISTRY_NAME)
    except NotFound:
        return False
    conditions = (deployment.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def _answers() -> bool:
    try:
        url = f"http://{REGISTRY_SERVICE_ADDRESS}/v2/"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _check_port_free(port: int, what: str, flag: str) -> None:
    """Refuse a loopback port something listens on, before anything starts.

    SO_REUSEADDR as the servers bind (aiohttp, Go's net.Listen), so a port
    whose last connections are in TIME_WAIT counts as free, as it is for them.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            raise CommandError(
                f"cannot start the {what} on 127.0.0.1:{port}: {reason} (set {flag})"
            ) from None


def _part_failed(error: ProcessFailedError, *, starting: bool) -> CommandError:
    what = "did not start" if starting else "stopped"
    hint = ""
    if error.name == REGISTRY_BINARY and "address already in use" in error.reason:
        hint = " (set --registry-port)"
    how = (
        f"killed by {signal.Signals(-error.code).name}"
        if error.code < 0
        else f"exit code {error.code}"
    )
    return CommandError(
        f"{error.name} {what} ({how}): {error.reason}{hint}; its log is {error.log_path}"
    )


def run_dev(
    *, state_dir: Path, registry_port: int, webhook_port: int, log_format: str, log_level: str
) -> int:
    """Run the system until Ctrl-C (exit code 130) or SIGTERM (0).

    Raises `CommandError` (one line) when a part cannot start or stops.
    """
    _check_port_free(registry_port, "registry", "--registry-port")
    _check_port_free(webhook_port, "webhook", "--webhook-port")
    state_dir = private_dir(state_dir.resolve())
    logs = private_dir(state_dir / "logs")
    token_file = _token_file(state_dir)
    token = token_file.read_text().strip()
    starting = True
    node: Node | None = None
    try:
        _progress("dev: preparing the control plane binaries")
        bins = binary_dir(build=True, progress=_progress)
        node = _prepare_node(state_dir, logs)
        # Each run starts from an empty cluster, as a test would.
        shutil.rmtree(state_dir / "controlplane", ignore_errors=True)
        _progress("dev: starting etcd, kube-apiserver and kube-controller-manager")
        plane = ControlPlane(
            workdir=state_dir / "controlplane",
            bin_dir=bins,
            log_dir=logs,
            **(node.controlplane_options() if node is not None else {}),
        ).start()
        kubeconfig = write_private(state_dir / "kubeconfig", plane.kubeconfig_path.read_bytes())
        admission_addr = HostPort("127.0.0.1", free_port())
        admission_url = f"https://{admission_addr}"
        applied = asyncio.run(_install_crds(kubeconfig, admission_url))
        _progress(
            f"dev: installed CRDs and ClusterRoles {applied} and the admission webhooks"
            f" ({admission_url})"
        )

        # With a node, the webhook listens where pods reach it (the operator's registry
        # notifies it from a pod), the host registry holds only the system's images, and
        # the integrated registry is the operator's.
        webhook_host = HOST_ADDRESS if node is not None else "127.0.0.1"
        webhook_url = f"http://{webhook_host}:{webhook_port}"
        notify_url = f"{webhook_url}/v1/events/distribution"
        address = node.registry_address if node is not None else "127.0.0.1"
        _progress(f"dev: starting the registry on {address}:{registry_port}")
        registry = Registry(
            workdir=state_dir / "registry",
            port=registry_port,
            address=address,
            log_dir=logs,
            notify=None if node is not None else NotificationEndpoint(url=notify_url, token=token),
        ).start()
        parts = [*plane.processes, *([registry.process] if registry.process else [])]
        kubectl = "kubectl"
        if node is not None:
            _progress("dev: starting the node (containerd, kubelet, scheduler, proxy, CoreDNS)")
            node.start(plane, registry)
            kubectl = str(node.kubectl)
            parts += list(node.processes.values())

        builder_image = ""
        insecure: tuple[str, ...] = ()
        managed: dict[str, object] = {}
        if node is not None:
            _progress("dev: making (or finding cached) the builder image and pushing it")
            builder_image = push_builder(registry.host, log=_progress)
            insecure = (registry.host, INTERNAL_REGISTRY, REGISTRY_SERVICE_ADDRESS)
            _progress(f"dev: builds run {builder_image}")
            _progress("dev: making (or finding cached) the registry image and pushing it")
            registry_image = _push_registry_image(registry.host)
            asyncio.run(_install_notification_secret(kubeconfig, token))
            managed = {
                "webhook_config": _webhook_config(state_dir, token_file),
                "registry_operator": True,
                "registry_namespace": REGISTRY_NAMESPACE,
                "registry_image": registry_image,
                "registry_cluster_ip": REGISTRY_SERVICE_IP,
                # The installer's first Config, as the chart gives it: this cluster has no
                # default StorageClass, which would bootstrap `Removed`.
                "registry_bootstrap_management_state": "Managed",
                "registry_bootstrap_spec": json.dumps(REGISTRY_BOOTSTRAP_SPEC),
                "registry_notification_url": notify_url,
                "registry_notification_secret": f"{NOTIFICATION_SECRET}:{NOTIFICATION_KEY}",
                "service_account_pull_secrets": True,
            }
        settings = Settings(
            kubeconfig=kubeconfig,
            webhook_addr=HostPort(webhook_host, webhook_port),
            health_addr=HostPort("127.0.0.1", free_port()),
            metrics_addr=HostPort("127.0.0.1", free_port()),
            log_format=log_format,
            log_level=log_level,
            webhook_token_file=token_file,
            integrated_registry=INTERNAL_REGISTRY if node is not None else registry.host,
            builder_image=builder_image,
            build_insecure_registries=insecure,
            admission_addr=admission_addr,
            admission_secret=ADMISSION_TLS_SECRET,
            admission_hosts=("127.0.0.1",),
            admission_webhook_configuration=ADMISSION_NAME,
            **managed,  # type: ignore[arg-type]
        )
        ready = {
            "kubeconfig": str(kubeconfig),
            # Where to push from this host: the managed registry's Service with a node.
            "registry": REGISTRY_SERVICE_ADDRESS if node is not None else registry.host,
            "registry_hostname": INTERNAL_REGISTRY if node is not None else registry.host,
            "webhook": webhook_url,
            "admission": admission_url,
            "token_file": str(token_file),
            "health": f"http://{settings.health_addr}",
            "metrics": f"http://{settings.metrics_addr}/metrics",
            "kubectl": kubectl,
            "node": node.name if node is not None else None,
        }

        def announce() -> None:
            nonlocal starting
            starting = False
            print("READY " + json.dumps(ready), flush=True)

        before_ready = (lambda: _registry_available(kubeconfig)) if node is not None else None
        asyncio.run(_run(settings, announce, parts, before_ready=before_ready))
        return 0
    except KeyboardInterrupt:
        return 130
    except ProcessFailedError as error:
        raise _part_failed(error, starting=starting) from None
    except ListenError as error:
        raise CommandError(user_message(error, listen_flags=DEV_LISTEN_FLAGS)) from None
    except (FileNotFoundError, TimeoutError) as error:
        # A binary that is not installed or built; a part that never answered.
        raise CommandError(f"{error} (logs in {logs})") from None
    except (ImageBuildError, subprocess.CalledProcessError) as error:
        raise CommandError(
            f"an image (the builder's, the registry's) could not be made or pushed: {error}"
        ) from None
    finally:
        _progress("dev: stopping")
        if node is not None:
            node.stop()  # its workloads first, then the control plane and registry it used
        stop_all()


def _prepare_node(state_dir: Path, logs: Path) -> Node | None:
    """The node's host side, or None (and why) where this machine cannot run one."""
    problems = preflight()
    if problems:
        _progress("dev: no node, pods will stay Pending: " + "; ".join(problems))
        return None
    _progress("dev: preparing the node binaries")
    node = Node(
        workdir=state_dir / "node",
        bin_dir=node_binary_dir(build=True, progress=_progress),
        log_dir=logs,
        progress=_progress,
        # containerd pulls the integrated registry's images by its OpenShift name, which
        # this host's resolver does not know: a mirror of it to the Service's fixed address.
        plain_http_registries=(REGISTRY_SERVICE_ADDRESS,),
        registry_mirrors={INTERNAL_REGISTRY: REGISTRY_SERVICE_ADDRESS},
    )
    try:
        return node.prepare()
    except NodeUnavailableError as error:
        _progress(f"dev: no node, pods will stay Pending: {error}")
        return None


async def _run(
    settings: Settings,
    announce: Callable[[], None],
    parts: list[ManagedProcess],
    *,
    before_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run the components; `announce` once they are ready and `before_ready` has returned."""
    from controller import app as controller_app
    from webhook import app as webhook_app

    stop = StopSignal()
    stop.install_handlers()
    failed: list[BaseException] = []
    components_ready = asyncio.Event()
    watcher = asyncio.create_task(_watch_parts(parts, stop, failed), name="dev-parts")

    async def announce_when_ready() -> None:
        await components_ready.wait()
        try:
            if before_ready is not None:
                await before_ready()
        except TimeoutError as error:
            failed.append(error)
            stop.set()
            return
        announce()

    announcer = asyncio.create_task(announce_when_ready(), name="dev-announce")
    try:
        await run_components(
            settings,
            [controller_app.start, webhook_app.start],
            stop=stop,
            on_ready=components_ready.set,
        )
    finally:
        for task in (watcher, announcer):
            task.cancel()
        await asyncio.gather(watcher, announcer, return_exceptions=True)
    if failed:
        raise failed[0]


async def _watch_parts(
    parts: list[ManagedProcess], stop: StopSignal, failed: list[BaseException]
) -> None:
    """Stop everything when a part exits: a system without its registry only looks alive."""
    while not stop.is_set():
        for part in parts:
            try:
                part.check_running()
            except ProcessFailedError as error:
                failed.append(error)
                stop.set()
                return
        await asyncio.sleep(PART_CHECK_INTERVAL_S)
