"""`imagestream dev`: the whole system on one machine.

Starts a real local control plane (etcd, kube-apiserver,
kube-controller-manager, built from Go modules on first use), a real node
where the machine allows one (containerd, runc, CNI, kubelet,
kube-scheduler, kube-proxy, CoreDNS: `localdev.node`; it needs root),
installs our CRDs, starts a real distribution registry whose notifications
go to the webhook, and runs the controller and the webhook in this process
until Ctrl-C. When everything is up (the node Ready) it prints one line:

    READY {"kubeconfig": ..., "kubectl": ..., "registry": ..., "webhook": ...,
           "token_file": ..., "health": ..., "metrics": ..., "node": ...}

Without a node (not root, no containerd) it says why and runs the rest:
pods then stay Pending.

Invariant: whatever happens (Ctrl-C during the build, a process that fails
to start, SIGTERM), every process this command started is stopped before it
returns.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import sys
from pathlib import Path

from imagestream.health import StopSignal
from imagestream.kube.client import connect
from imagestream.kube.crds import install_crds, load_crds
from imagestream.process import run_components
from imagestream.settings import HostPort, Settings
from localdev.controlplane import ControlPlane, binary_dir, free_port
from localdev.node import Node, NodeUnavailableError, node_binary_dir, preflight
from localdev.processes import stop_all
from localdev.registry import NotificationEndpoint, Registry


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _token_file(state_dir: Path) -> Path:
    path = state_dir / "webhook-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path


async def _install_crds(kubeconfig: Path) -> list[str]:
    kube = await connect(kubeconfig)
    try:
        return await install_crds(kube, load_crds())
    finally:
        await kube.close()


def run_dev(
    *, state_dir: Path, registry_port: int, webhook_port: int, log_format: str, log_level: str
) -> int:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    token_file = _token_file(state_dir)
    token = token_file.read_text().strip()
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
        kubeconfig = state_dir / "kubeconfig"
        shutil.copyfile(plane.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o600)
        applied = asyncio.run(_install_crds(kubeconfig))
        _progress(f"dev: installed CRDs {applied}")

        webhook_url = f"http://127.0.0.1:{webhook_port}"
        address = node.registry_address if node is not None else "127.0.0.1"
        _progress(f"dev: starting the registry on {address}:{registry_port}")
        registry = Registry(
            workdir=state_dir / "registry",
            port=registry_port,
            address=address,
            log_dir=logs,
            notify=NotificationEndpoint(url=f"{webhook_url}/v1/events/distribution", token=token),
        ).start()
        kubectl = "kubectl"
        if node is not None:
            _progress("dev: starting the node (containerd, kubelet, scheduler, proxy, CoreDNS)")
            node.start(plane, registry)
            kubectl = str(node.kubectl)

        settings = Settings(
            kubeconfig=kubeconfig,
            webhook_addr=HostPort("127.0.0.1", webhook_port),
            health_addr=HostPort("127.0.0.1", free_port()),
            metrics_addr=HostPort("127.0.0.1", free_port()),
            log_format=log_format,
            log_level=log_level,
            webhook_token_file=token_file,
            integrated_registry=registry.host,
        )
        ready = {
            "kubeconfig": str(kubeconfig),
            "registry": registry.host,
            "webhook": webhook_url,
            "token_file": str(token_file),
            "health": f"http://{settings.health_addr}",
            "metrics": f"http://{settings.metrics_addr}/metrics",
            "kubectl": kubectl,
            "node": node.name if node is not None else None,
        }

        def announce() -> None:
            print("READY " + json.dumps(ready), flush=True)

        asyncio.run(_run(settings, announce))
        return 0
    except KeyboardInterrupt:
        return 130
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
    )
    try:
        return node.prepare()
    except NodeUnavailableError as error:
        _progress(f"dev: no node, pods will stay Pending: {error}")
        return None


async def _run(settings: Settings, announce: object) -> None:
    from controller import app as controller_app
    from webhook import app as webhook_app

    assert callable(announce)
    stop = StopSignal()
    stop.install_handlers()
    await run_components(
        settings, [controller_app.start, webhook_app.start], stop=stop, on_ready=announce
    )
