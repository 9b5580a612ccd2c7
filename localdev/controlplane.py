"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from Go modules by `localkube/build.sh` (never a fake
API server). Everything listens on free loopback ports with a temporary data
dir, so two runs on one machine never share state, and nothing is reachable
from outside the machine.

With a node (`localdev.node`), Pods must reach the API server through the
`kubernetes` Service, whose endpoints may not be loopback: the node then
passes `bind_address` (a host-only address on its dummy interface, guarded
against the uplink), which is also advertised, so the API server keeps that
Service's endpoints itself.

Invariant: `ControlPlane.stop()` stops every process `start()` started, in
reverse order, also when `start()` itself fails half way.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localdev.certs import make_service_account_key, make_serving_certificate
from localdev.private import private_dir, write_private
from localdev.processes import ManagedProcess, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "localkube" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
KUBECONFIG_CONTEXT = "imagestream-localdev"
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    """A loopback port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary_dir(*, build: bool, progress: Callable[[str], None] | None = None) -> Path:
    """Where the control plane binaries are; build them first if asked and missing.

    `IMAGESTREAM_LOCALKUBE_BIN_DIR` points at binaries built elsewhere (for an
    installation without this repository's `localkube/`).
    """
    override = os.environ.get("IMAGESTREAM_LOCALKUBE_BIN_DIR")
    if override:
        directory = Path(override)
    else:
        printed = subprocess.run(
            [str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
        )
        directory = Path(printed.stdout.strip())
    missing = [name for name in BINARIES if not (directory / name).exists()]
    if missing and build and not override:
        _run_build(progress or (lambda line: print(line, file=sys.stderr)))
        missing = [name for name in BINARIES if not (directory / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"control plane binaries {missing} not found in {directory}; "
            f"build them with {BUILD_SCRIPT}"
        )
    return directory


def _run_build(progress: Callable[[str], None]) -> None:
    with subprocess.Popen(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as build:
        assert build.stdout is not None
        for line in build.stdout:
            progress(line.rstrip())
    if build.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {build.returncode}")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, in `workdir`."""

    workdir: Path
    bin_dir: Path
    with_controller_manager: bool = True
    log_dir: Path | None = None
    apiserver_args: tuple[str, ...] = ()
    # Pods get ServiceAccount tokens (admission adds the projected volume):
    # only where a kubelet runs them and mounts it (`Node(service_account_tokens=True)`).
    service_account_admission: bool = False
    """Extra kube-apiserver flags (e.g. a short `--etcd-compaction-interval` for 410 tests)."""
    bind_address: str = "127.0.0.1"
    """Where kube-apiserver listens (and what it advertises); loopback unless a node needs more."""
    serving_ips: tuple[str, ...] = ()
    """More IP SANs for the serving certificate (e.g. the `kubernetes` Service's ClusterIP)."""
    serving_dns: tuple[str, ...] = ()
    persistent_volumes: bool = False
    """Run the PersistentVolume binder, which binds claims to volumes (a node mounts them)."""
    etcd_port: int = 0
    apiserver_port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.apiserver_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def etcd(self) -> ManagedProcess:
        return self._process("etcd")

    @property
    def apiserver(self) -> ManagedProcess:
        return self._process("kube-apiserver")

    def _process(self, name: str) -> ManagedProcess:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def start(self) -> ControlPlane:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        private_dir(self.workdir)  # keys, the admin token, etcd's data
        pki = self.workdir / "pki"
        serving = make_serving_certificate(
            pki,
            extra_ips=tuple(
                ip for ip in (self.bind_address, *self.serving_ips) if ip != "127.0.0.1"
            ),
            extra_dns=self.serving_dns,
        )
        sa_key = make_service_account_key(pki / "service-account.key")
        token_file = pki / "tokens.csv"
        write_private(token_file, f'{self.token},admin,admin-uid,"system:masters"\n')
        self.etcd_port = self.etcd_port or free_port()
        self.apiserver_port = self.apiserver_port or free_port()
        etcd_peer_port = free_port()
        logs = self.log_dir or self.workdir / "logs"

        etcd = ManagedProcess(
            name="etcd",
            argv=[
                str(self.bin_dir / "etcd"),
                "--name=localdev",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=localdev=http://127.0.0.1:{etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log_path=logs / "etcd.log",
        )
        self.processes.append(etcd.start())
        wait_until(
            "etcd healthy",
            lambda: http_ok(f"http://127.0.0.1:{self.etcd_port}/health"),
            timeout_s=STARTUP_TIMEOUT_S,
            processes=[etcd],
        )

        apiserver = ManagedProcess(
            name="kube-apiserver",
            argv=[
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={serving.cert_path}",
                f"--tls-private-key-file={serving.key_path}",
                f"--client-ca-file={serving.ca_path}",
                f"--token-auth-file={token_file}",
                f"--service-account-issuer=https://127.0.0.1:{self.apiserver_port}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                # No kubelet runs here, so nothing would mount the token a
                # ServiceAccount admission adds; envtest disables it too.
                *(
                    ()
                    if self.service_account_admission
                    else ("--disable-admission-plugins=ServiceAccount",)
                ),
                "--allow-privileged=true",
                # The "kubernetes" Service endpoints may not be loopback; on
                # any other address the API server keeps them (a lease).
                "--endpoint-reconciler-type="
                + ("none" if self.bind_address == "127.0.0.1" else "lease"),
                f"--cert-dir={pki}",
                *self.apiserver_args,
            ],
            log_path=logs / "kube-apiserver.log",
        )
        self.processes.append(apiserver.start())
        wait_until(
            "kube-apiserver ready",
            lambda: self.get_raw("/readyz") == "ok",
            timeout_s=STARTUP_TIMEOUT_S,
            interval_s=0.25,
            processes=[etcd, apiserver],
        )
        self._write_kubeconfig()
        wait_until(
            "namespace default exists",
            lambda: bool(self.get_raw("/api/v1/namespaces/default")),
            timeout_s=STARTUP_TIMEOUT_S,
            processes=[etcd, apiserver],
        )

        if self.with_controller_manager:
            manager = ManagedProcess(
                name="kube-controller-manager",
                argv=[
                    str(self.bin_dir / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig_path}",
                    f"--authentication-kubeconfig={self.kubeconfig_path}",
                    f"--authorization-kubeconfig={self.kubeconfig_path}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--cert-dir={pki / 'kcm'}",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={sa_key}",
                    f"--root-ca-file={serving.ca_path}",
                    f"--cluster-signing-cert-file={serving.ca_path}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    # Controllers that need cloud or node agents only add noise here;
                    # the volume binder only where a node mounts what it binds.
                    "--controllers=*,-node-ipam-controller,-node-lifecycle-controller"
                    + ("" if self.persistent_volumes else ",-persistentvolume-binder-controller"),
                ],
                log_path=logs / "kube-controller-manager.log",
            )
            self.processes.append(manager.start())
            wait_until(
                "kube-controller-manager running",
                lambda: self._lease_exists_or_healthy(manager),
                timeout_s=STARTUP_TIMEOUT_S,
                processes=self.processes,
            )

    def _lease_exists_or_healthy(self, manager: ManagedProcess) -> bool:
        # Without leader election there is no lease; "running" means its
        # secure port answers /healthz. We read the port back from argv.
        port = next(a.split("=", 1)[1] for a in manager.argv if a.startswith("--secure-port="))
        return http_ok(f"https://127.0.0.1:{port}/healthz", insecure=True)

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def get_raw(self, path: str) -> str:
        """GET `path` from the API server as the admin (e.g. `/metrics`), as text."""
        # The URL is always our own https://127.0.0.1 API server.
        request = urllib.request.Request(  # noqa: S310
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        context = self._ssl_context()
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
                return str(response.read().decode())
        except urllib.error.HTTPError as error:
            error.close()  # it holds the socket; an unclosed one warns at exit
            raise

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": KUBECONFIG_CONTEXT,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_path.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": KUBECONFIG_CONTEXT,
                    "context": {"cluster": KUBECONFIG_CONTEXT, "user": "admin"},
                }
            ],
            "current-context": KUBECONFIG_CONTEXT,
        }
        write_private(self.kubeconfig_path, yaml.safe_dump(config))

    def version(self) -> dict[str, str]:
        return dict(json.loads(self.get_raw("/version")))

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def http_ok(url: str, *, insecure: bool = False) -> bool:
    """Whether `url` (one of our own loopback components) answers 200 now."""
    context = None
    if insecure:
        # Our components serve /healthz with self-signed certs; we only ask
        # whether they are up, on loopback.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        error.close()
        return False
