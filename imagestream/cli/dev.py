"""`imagestream dev`: the whole system on one machine.

Starts a real local control plane (etcd, kube-apiserver,
kube-controller-manager, built from Go modules on first use), installs our
CRDs, starts a real distribution registry whose notifications go to the
webhook, and runs the controller and the webhook in this process until
Ctrl-C. When everything is up it prints one line:

    READY {"kubeconfig": ..., "registry": ..., "webhook": ..., "token_file": ...}

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
    try:
        _progress("dev: preparing the control plane binaries")
        bins = binary_dir(build=True, progress=_progress)
        # Each run starts from an empty cluster, as a test would.
        shutil.rmtree(state_dir / "controlplane", ignore_errors=True)
        _progress("dev: starting etcd, kube-apiserver and kube-controller-manager")
        plane = ControlPlane(workdir=state_dir / "controlplane", bin_dir=bins, log_dir=logs).start()
        kubeconfig = state_dir / "kubeconfig"
        shutil.copyfile(plane.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o600)
        applied = asyncio.run(_install_crds(kubeconfig))
        _progress(f"dev: installed CRDs {applied}")

        webhook_url = f"http://127.0.0.1:{webhook_port}"
        _progress(f"dev: starting the registry on 127.0.0.1:{registry_port}")
        registry = Registry(
            workdir=state_dir / "registry",
            port=registry_port,
            log_dir=logs,
            notify=NotificationEndpoint(url=f"{webhook_url}/v1/events/distribution", token=token),
        ).start()

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
        }

        def announce() -> None:
            print("READY " + json.dumps(ready), flush=True)

        asyncio.run(_run(settings, announce))
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        _progress("dev: stopping")
        stop_all()


async def _run(settings: Settings, announce: object) -> None:
    from controller import app as controller_app
    from webhook import app as webhook_app

    assert callable(announce)
    stop = StopSignal()
    stop.install_handlers()
    await run_components(
        settings, [controller_app.start, webhook_app.start], stop=stop, on_ready=announce
    )
