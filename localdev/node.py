"""A real one-node Kubernetes node next to the local control plane.

containerd (Debian's 1.6) with runc, the CNI bridge plugins, a kubelet, the
scheduler, kube-proxy and CoreDNS as a Pod; Pods run images pulled by digest
from the local registry. The recipe this follows, with every failure and its
fix, is `docs/real-node.md` of the shared docs.

Invariant: `Node.stop()` undoes everything `prepare()`/`start()` did, in
reverse order, also after a half-failed start, and a crashed run is undone
too: by a reaper process that outlives the harness (it waits for the harness
to die, then tears down from the state file), and else by the next
`prepare()`, which finds the state file. What it undoes: processes (by PID,
and containerd's shims, found by our per-run state dir in their command
line), containers and Pod sandboxes (a CRI sweep), mounts under the run's
dirs, network namespaces, the bridges `cni0` and `isnode0`, every iptables
rule and chain that was not in the baseline and is ours or the kubelet's or
kube-proxy's, the sysctls the kubelet and the bridge plugin change
(`kernel.panic`, `kernel.panic_on_oops`, `vm.overcommit_memory`,
`net.ipv4.ip_forward`), the `kubepods` cgroups, and the fixed paths the
kubelet and containerd use whatever their config says. The failure this
prevents: a test run that leaves the machine routing, panicking on oops, or
holding a bridge, mounts and shims that break the next run.

One node per machine (a flock on `MACHINE_DIR/node.lock`): the bridge name,
the subnet, `/var/lib/kubelet/device-plugins/kubelet.sock` and containerd's
`/run/containerd/s` are fixed, so two nodes would share them.

Network design (everything stays on this machine):

* Pods live on the bridge `cni0` (10.244.0.0/24), with routes only for
  10.244.0.0/16 and the Service CIDR 10.0.0.0/24, never a default route; the
  bridge plugin does no masquerade (`ipMasq: false`).
* Pods must reach the API server through the `kubernetes` Service, and pull
  and push to the registry. Loopback cannot serve: Endpoints may not be
  loopback, and the kubelet's `KUBE-FIREWALL` drops traffic to 127.0.0.0/8
  from anything but loopback. So the node puts a host-only address,
  `HOST_ADDRESS` (10.244.255.1/32), on a link of its own, `isnode0`, and the
  API server and the registry listen there instead of 127.0.0.1 (one address
  each: kube-apiserver has a single `--bind-address`). The API server also
  advertises it, so it keeps the `kubernetes` Service's endpoints itself and
  kube-proxy DNATs 10.0.0.1:443 to it. The host reaches it locally (a local
  address never leaves the machine); Pods reach it through their gateway.
  A link of its own, not `cni0`, because the address must exist before the
  API server starts, and `cni0` only exists once the first Pod does; a
  bridge without ports, because this kernel has no `dummy` driver. The
  kubelet's node IP is that address too, so the node never advertises the
  uplink's address.
* The host routes 10.244.0.0/16 and 10.0.0.0/24 to `isnode0` (which drops
  what it is sent: it has no ports), so host traffic to a Pod or Service
  address with no Pod or kube-proxy rule behind it is dropped, never sent to
  the default gateway. (A blackhole route would not do: it fails the send
  before kube-proxy's OUTPUT DNAT sees it.)
* The egress guard, installed before any of that, in the mangle table (which
  kube-proxy does not reorder; its filter-table ACCEPTs would go ahead of
  ours): nothing is forwarded from or to an uplink (every interface but `lo`
  present at the baseline), nothing leaves an uplink from or to 10.244.0.0/16
  or 10.0.0.0/24, and nothing arriving on an uplink may reach those
  addresses. The bridge plugin turns `ip_forward` on; the guard is why that
  is harmless.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from localdev.certs import CertificateAuthority, KeyPair, make_certificate_authority
from localdev.controlplane import REPO_ROOT, ControlPlane, free_port, http_ok
from localdev.images import OciImage, make_binary_image, make_pause_image, skopeo_push
from localdev.private import open_private_append, private_dir
from localdev.processes import ManagedProcess, wait_until
from localdev.registry import Registry

BUILD_SCRIPT = REPO_ROOT / "localkube" / "build.sh"
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "kubectl", "crictl", "coredns")

POD_CIDR = "10.244.0.0/24"
NODE_NETWORK = "10.244.0.0/16"  # the Pod CIDR and HOST_ADDRESS
HOST_ADDRESS = "10.244.255.1"
SERVICE_CIDR = "10.0.0.0/24"  # the control plane's --service-cluster-ip-range
KUBERNETES_SERVICE_IP = "10.0.0.1"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "localhost"
BRIDGE = "cni0"
HOST_LINK = "isnode0"
GUARD_COMMENT = "imagestream-localdev-node-guard"

MACHINE_DIR = Path("/var/lib/imagestream-localdev")
LOCK_PATH = MACHINE_DIR / "node.lock"
STATE_PATH = MACHINE_DIR / "node-state.json"

CONTAINERD = Path("/usr/bin/containerd")
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")

# What the kubelet, the bridge plugin or kube-proxy may change; restored at stop.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
# Paths containerd 1.6 and the kubelet use whatever their config says; we
# remove those that did not exist before we started.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/containerd",
    "/var/log/containers",
    "/var/log/pods",
    "/run/netns",
    "/opt/containerd",
    "/etc/cni",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-")

LOCK_WAIT_S = float(os.environ.get("IMAGESTREAM_NODE_LOCK_WAIT_S", "60"))
"""How long a new node waits for the machine's node lock: by default a minute, long
enough for a reaper to tear down a crashed run; raised by whoever shares the machine
between several test runs on purpose, so that they queue for the node instead of failing."""
STARTUP_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 60.0

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
_CAP_SYS_RESOURCE = 24


class NodeUnavailableError(RuntimeError):
    """This machine cannot run a node; the message says why (tests skip with it)."""


class NodeCleanupError(RuntimeError):
    """Something the node made could not be removed; the message lists what."""


def node_binary_dir(*, build: bool, progress: Callable[[str], None] | None = None) -> Path:
    """Where the node binaries are (`localkube/build.sh node`); build them if asked."""
    override = os.environ.get("IMAGESTREAM_LOCALKUBE_NODE_BIN_DIR")
    if override:
        directory = Path(override)
    else:
        printed = subprocess.run(
            [str(BUILD_SCRIPT), "node", "--print-dir"], check=True, capture_output=True, text=True
        )
        directory = Path(printed.stdout.strip())
    missing = [name for name in NODE_BINARIES if not (directory / name).exists()]
    if missing and build and not override:
        report = progress or (lambda line: print(line, file=sys.stderr))
        with subprocess.Popen(
            [str(BUILD_SCRIPT), "node"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                report(line.rstrip())
        if proc.returncode != 0:
            raise RuntimeError(f"{BUILD_SCRIPT} node failed with exit code {proc.returncode}")
        missing = [name for name in NODE_BINARIES if not (directory / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"node binaries {missing} not found in {directory}; build them with {BUILD_SCRIPT} node"
        )
    return directory


def preflight() -> list[str]:
    """Why this machine cannot run a node (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("a node needs root (mounts, network namespaces, iptables)")
    caps = _effective_capabilities()
    for bit, name in ((_CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (_CAP_NET_ADMIN, "CAP_NET_ADMIN")):
        if not caps & (1 << bit):
            problems.append(f"{name} is missing")
    for path in (CONTAINERD, RUNC, Path("/usr/bin/containerd-shim-runc-v2")):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is missing (scripts/install-system-deps.sh)")
    problems.extend(
        f"CNI plugin {CNI_BIN_DIR / plugin} is missing (containernetworking-plugins)"
        for plugin in CNI_PLUGINS
        if not (CNI_BIN_DIR / plugin).exists()
    )
    for tool in ("iptables", "iptables-save", "ip6tables", "ip6tables-save", "ip", "umount"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not on PATH")
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("the kernel has no overlay filesystem (containerd's snapshotter)")
    if not Path("/proc/sys/net/bridge").is_dir():
        problems.append("br_netfilter is not loaded (modprobe br_netfilter)")
    if not [name for name in _links() if name != "lo"]:
        problems.append("no network interface besides lo (the kubelet needs one)")
    return problems


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _cgroup_v1() -> bool:
    return not (CGROUP_ROOT / "cgroup.controllers").exists()


# --- small host helpers ---------------------------------------------------------------------


def _run(argv: list[str], *, check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def _links() -> list[str]:
    return [
        line.split()[0].split("@")[0]
        for line in _run(["ip", "-br", "link"]).splitlines()
        if line.strip()
    ]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def iptables_rules(family: str) -> str:
    """`iptables-save` (family "4") or `ip6tables-save` ("6"), without counters or comments.

    What a test compares with the baseline: equal text means equal rules.
    """
    text = _run(["iptables-save" if family == "4" else "ip6tables-save"])
    lines: list[str] = []
    table: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(":"):
            line = line.rsplit(" ", 1)[0]  # ":INPUT ACCEPT [12:345]" -> ":INPUT ACCEPT"
        table.append(line)
        if line != "COMMIT":
            continue
        # A table with only its built-in chains, accepting, and no rules is
        # the same as no table: the nf_tables backend keeps a table once
        # anyone used it, and no iptables command drops it.
        if not all(
            entry.startswith("*") or entry == "COMMIT" or entry.endswith(" ACCEPT")
            for entry in table
        ):
            lines.extend(table)
        table = []
    return "\n".join(lines) + "\n"


def _parse_iptables(text: str) -> dict[str, tuple[set[str], list[str]]]:
    tables: dict[str, tuple[set[str], list[str]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = (set(), [])
        elif line.startswith(":"):
            tables[table][0].add(line[1:].split()[0])
        elif line.startswith("-A "):
            tables[table][1].append(line)
    return tables


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of `roots`, deepest first (from /proc/self/mountinfo)."""
    found = []
    prefixes = [str(root).rstrip("/") for root in roots]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Octal escapes (\040 for a space) are how mountinfo spells odd names.
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == prefix or point.startswith(prefix + "/") for prefix in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def nsfs_mounts() -> list[str]:
    """Bind-mounted namespaces (what `ip netns` and containerd's netns files are)."""
    return sorted(
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - nsfs " in line
    )


def _pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_pid(pid: int, *, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, one PID; the caller has checked it is ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pids_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (our per-run dir names: never a process name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != os.getpid()
            and text in _pid_cmdline(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


# --- the state that survives a crash ---------------------------------------------------------


@dataclass
class Baseline:
    iptables: dict[str, str]
    sysctls: dict[str, str]
    links: list[str]
    paths: dict[str, bool]
    cgroups: dict[str, bool]
    nsfs: list[str]

    @classmethod
    def take(cls) -> Baseline:
        return cls(
            iptables={family: iptables_rules(family) for family in ("4", "6")},
            sysctls=read_sysctls(),
            links=_links(),
            paths={path: os.path.lexists(path) for path in FIXED_PATHS},
            cgroups={str(path): path.exists() for path in _kubepods_cgroups()},
            nsfs=nsfs_mounts(),
        )


def _kubepods_cgroups() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    if not _cgroup_v1():
        return [CGROUP_ROOT / "kubepods"]
    return [
        hierarchy / "kubepods"
        for hierarchy in sorted(CGROUP_ROOT.iterdir())
        if hierarchy.is_dir() and not hierarchy.is_symlink()
    ]


@dataclass
class NodeState:
    """What a later process needs to undo this run (JSON in `STATE_PATH`)."""

    prefix: str
    owner_pid: int
    workdir: str
    bin_dir: str
    baseline: Baseline
    uplinks: list[str]
    pids: dict[str, int] = field(default_factory=dict)
    reaper_pid: int = 0

    @property
    def var_dir(self) -> Path:
        return Path("/var/lib") / self.prefix

    @property
    def run_dir(self) -> Path:
        return Path("/run") / self.prefix

    @property
    def containerd_config(self) -> Path:
        return self.var_dir / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    def save(self) -> None:
        MACHINE_DIR.mkdir(parents=True, exist_ok=True)
        partial = STATE_PATH.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=1))
        partial.replace(STATE_PATH)

    @classmethod
    def load(cls) -> NodeState | None:
        try:
            text = STATE_PATH.read_text()
        except FileNotFoundError:
            return None
        try:
            raw = json.loads(text)
            raw["baseline"] = Baseline(**raw["baseline"])
            return cls(**raw)
        except (TypeError, KeyError, ValueError) as error:
            # Never guess what a run we cannot read made; say where it is.
            raise NodeUnavailableError(
                f"{STATE_PATH} is unreadable ({error!r}): undo that run by hand, then delete it"
            ) from error


class _MachineLock:
    """The flock that makes this the one node on the machine."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def acquire(self, *, timeout_s: float) -> None:
        MACHINE_DIR.mkdir(parents=True, exist_ok=True)
        handle = LOCK_PATH.open("a+")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise NodeUnavailableError(
                        f"another node holds {LOCK_PATH} (one node per machine)"
                    ) from None
                time.sleep(0.2)
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


# --- teardown: one idempotent function for stop, crash and stale state ----------------------


class _Teardown:
    """Undo everything a node run made, in reverse order of startup.

    Every step checks what is there, so it is the same code after a clean run,
    a half-failed start, a harness killed with SIGKILL (the reaper) or a stale
    state file found by the next run. Failures are collected, not raised at
    once: a later step (unmount, iptables) must still run.
    """

    def __init__(
        self,
        state: NodeState,
        *,
        processes: dict[str, ManagedProcess] | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.state = state
        self.processes = processes or {}
        self.log = log
        self.errors: list[str] = []
        self.bin_dir = Path(state.bin_dir)

    def step(self, name: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            action()
        except Exception as error:
            self.errors.append(f"{name}: {error}")
        self.log(f"node teardown: {name} ({time.monotonic() - started:.1f}s)")

    def run(
        self,
        api: Callable[[], None] | None = None,
        listeners: Callable[[], None] | None = None,
    ) -> list[str]:
        """`api` deletes workloads first; `listeners` stops what listens on HOST_ADDRESS."""
        if api is not None:
            self.step("delete workloads through the API", api)
        for name in ("kube-proxy", "kube-scheduler", "kubelet"):
            self.step(f"stop {name}", functools.partial(self.stop_process, name))
        self.step("kube-proxy --cleanup", self.kube_proxy_cleanup)
        self.step("CRI sweep", self.cri_sweep)
        self.step("stop containerd", lambda: self.stop_process("containerd"))
        self.step("kill leftover shims and containers", self.kill_leftovers)
        self.step("unmount", self.unmount)
        if listeners is not None:
            # Before the address goes: an API server whose bind address
            # vanished talks to itself through it while shutting down, and
            # hangs until it is killed.
            self.step("stop the registry and control plane", listeners)
        self.step("network links", self.remove_links)
        self.step("iptables", self.restore_iptables)
        self.step("sysctls", self.restore_sysctls)
        self.step("cgroups", self.remove_cgroups)
        self.step("directories", self.remove_dirs)
        return self.errors

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()
        pid = self.state.pids.pop(name, 0)
        # After a crash the PID is only ours if it still runs our binary or
        # our config (PIDs are reused).
        if pid and _pid_alive(pid):
            cmdline = _pid_cmdline(pid)
            if self.state.prefix in cmdline or self.state.workdir in cmdline:
                _kill_pid(pid)

    def kube_proxy_cleanup(self) -> None:
        binary = self.bin_dir / "kube-proxy"
        if binary.exists():
            _run([str(binary), "--cleanup", "--proxy-mode=iptables"], check=False)

    def cri_sweep(self) -> None:
        state = self.state
        if not (state.run_dir / "containerd").exists() and not state.var_dir.exists():
            return
        running = state.pids.get("containerd", 0)
        if running and _pid_alive(running) and state.prefix in _pid_cmdline(running):
            pass  # still up (our harness died, it did not): sweep through it
        elif "containerd" not in self.processes and state.containerd_config.exists():
            # After a crash: containerd re-attaches to the shims still running
            # and lists their sandboxes, so the sweep can stop them properly
            # (CNI DEL, unmounts) instead of us killing PIDs.
            restarted = ManagedProcess(
                name="containerd",
                argv=[str(CONTAINERD), "--config", str(state.containerd_config)],
                log_path=Path(state.workdir) / "logs" / "containerd-teardown.log",
            ).start()
            self.processes["containerd"] = restarted
            wait_until(
                "containerd answers (teardown)",
                lambda: self.crictl("version") != "",
                timeout_s=30.0,
                processes=[restarted],
            )
        else:
            return
        for sandbox in self.crictl("pods", "-q").split():
            self.crictl("stopp", sandbox, check=False)
            self.crictl("rmp", "-f", sandbox, check=False)
        for container in self.crictl("ps", "-a", "-q").split():
            self.crictl("rm", "-f", container, check=False)

    def crictl(self, *args: str, check: bool = True) -> str:
        return _run(
            [
                str(self.bin_dir / "crictl"),
                f"--runtime-endpoint=unix://{self.state.containerd_socket}",
                f"--image-endpoint=unix://{self.state.containerd_socket}",
                "--timeout=20s",
                *args,
            ],
            check=check,
        )

    def kill_leftovers(self) -> None:
        # Shims outlive containerd; they carry our state dir in their argv.
        for pid in pids_mentioning(str(self.state.run_dir) + "/"):
            _kill_pid(pid, timeout_s=3.0)
        # Container processes the sweep could not stop (containerd would not
        # start): they are in the kubepods cgroups, which only our kubelet made.
        for cgroup in _kubepods_cgroups():
            if self.state.baseline.cgroups.get(str(cgroup)) or not cgroup.exists():
                continue
            for procs in cgroup.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for line in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(line), signal.SIGKILL)

    def _roots(self) -> list[Path]:
        roots = [self.state.var_dir, self.state.run_dir]
        roots += [Path(p) for p, existed in self.state.baseline.paths.items() if not existed]
        return roots

    def unmount(self) -> None:
        for _attempt in range(3):
            points = mounts_under(*self._roots())
            if not points:
                return
            for point in points:
                if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
                    subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        left = mounts_under(*self._roots())
        if left:
            raise NodeCleanupError(f"still mounted: {left}")

    def remove_links(self) -> None:
        baseline = set(self.state.baseline.links)
        for link in _links():
            if link in baseline:
                continue
            # Ours: the two bridges, and veths (pods' peers) left behind.
            if link in (BRIDGE, HOST_LINK) or link.startswith("veth"):
                _run(["ip", "link", "del", link], check=False)
        left = [link for link in _links() if link not in baseline]
        if left:
            raise NodeCleanupError(f"links not in the baseline: {left}")

    def restore_iptables(self) -> None:
        for family in ("4", "6"):
            self._restore_iptables(family)
        for family in ("4", "6"):
            if iptables_rules(family) != self.state.baseline.iptables[family]:
                raise NodeCleanupError(
                    f"ip{'' if family == '4' else '6'}tables differ from the baseline"
                )

    def _restore_iptables(self, family: str) -> None:
        tool = "iptables" if family == "4" else "ip6tables"
        baseline = _parse_iptables(self.state.baseline.iptables[family])
        current = _parse_iptables(iptables_rules(family))
        for table, (chains, rules) in current.items():
            base_chains, base_rules = baseline.get(table, (set(), []))
            for rule in rules:
                if rule in base_rules:
                    continue
                words = shlex.split(rule)
                chain = words[1]
                if chain.startswith(OWNED_CHAIN_PREFIXES):
                    continue  # flushed with its chain below
                target = words[words.index("-j") + 1] if "-j" in words else ""
                if target.startswith(OWNED_CHAIN_PREFIXES) or GUARD_COMMENT in rule:
                    _run([tool, "-w", "-t", table, "-D", *words[1:]], check=False)
            ours = [c for c in chains - base_chains if c.startswith(OWNED_CHAIN_PREFIXES)]
            for chain in ours:
                _run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in ours:
                _run([tool, "-w", "-t", table, "-X", chain], check=False)

    def restore_sysctls(self) -> None:
        for name, value in self.state.baseline.sysctls.items():
            path = _sysctl_path(name)
            with contextlib.suppress(FileNotFoundError):
                if path.read_text().strip() != value:
                    path.write_text(value)

    def remove_cgroups(self) -> None:
        for cgroup in _kubepods_cgroups():
            if self.state.baseline.cgroups.get(str(cgroup)) or not cgroup.exists():
                continue
            # Deepest first: a cgroup dir goes with rmdir once it is empty.
            for directory in sorted(
                (p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            cgroup.rmdir()

    def remove_dirs(self) -> None:
        left = mounts_under(*self._roots())
        if left:
            # rmtree across a bind mount would delete what it shows (a
            # hostPath); never do that.
            raise NodeCleanupError(f"not removing dirs, still mounted: {left}")
        for root in self._roots():
            if root.is_symlink() or root.is_file():
                root.unlink()
            elif root.exists():
                shutil.rmtree(root)


def teardown_stale(log: Callable[[str], None] = lambda line: None) -> list[str]:
    """Undo a crashed run found in the state file; the caller holds the machine lock."""
    state = NodeState.load()
    if state is None:
        return []
    log(f"node: undoing a previous run that did not stop ({state.prefix}, pid {state.owner_pid})")
    errors = _Teardown(state, log=log).run()
    if not errors:
        STATE_PATH.unlink(missing_ok=True)
    return errors


# --- the node ------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd + kubelet + kube-scheduler + kube-proxy (+ CoreDNS) on this machine.

    Use:

        node = Node(workdir=..., bin_dir=node_binary_dir(build=True)).prepare()
        plane = ControlPlane(workdir=..., bin_dir=..., **node.controlplane_options()).start()
        registry = Registry(workdir=..., address=node.registry_address).start()
        node.start(plane, registry)
        ...
        node.stop()  # also stops plane and registry, before their address goes
        registry.stop(); plane.stop()  # no-ops then; needed if start() was never called
    """

    workdir: Path
    bin_dir: Path
    with_dns: bool = True
    # More registries containerd pulls from over plain HTTP, `host:port`: a
    # registry the cluster runs itself, at a fixed Service address the host
    # reaches through kube-proxy (the chart's integrated registry).
    plain_http_registries: tuple[str, ...] = ()
    # Names containerd pulls from through a plain-HTTP address of the cluster's, as
    # `name -> host:port`: the integrated registry's Service name, which this host's
    # resolver does not know (OpenShift's node DNS daemon makes it resolvable on nodes).
    registry_mirrors: dict[str, str] = field(default_factory=dict)
    # Pods get their ServiceAccount's token mounted (the control plane's
    # ServiceAccount admission on), as in-cluster processes need: the chart's.
    service_account_tokens: bool = False
    log_dir: Path | None = None
    progress: Callable[[str], None] = field(default=lambda line: None)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    state: NodeState | None = None
    pause_image: str = ""
    coredns_image: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _lock: _MachineLock = field(default_factory=_MachineLock)
    _plane: ControlPlane | None = None
    _registry: Registry | None = None
    _reaper: subprocess.Popen[bytes] | None = None

    # -- what callers need ------------------------------------------------------------------

    @property
    def host_address(self) -> str:
        """The host-only address the API server and registry listen on, for host and Pods."""
        return HOST_ADDRESS

    @property
    def registry_address(self) -> str:
        """Pass to `Registry(address=...)`: containerd pulls from there, Pods reach it there."""
        return HOST_ADDRESS

    pod_cidr = POD_CIDR
    service_cidr = SERVICE_CIDR
    dns_service_ip = DNS_SERVICE_IP
    cluster_domain = CLUSTER_DOMAIN
    name = NODE_NAME

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubectl(self) -> Path:
        """A kubectl of the server's version."""
        return self.bin_dir / "kubectl"

    @property
    def apiserver_args(self) -> tuple[str, ...]:
        """kube-apiserver flags: reach the kubelet with a client cert, authorize nodes."""
        return (
            f"--kubelet-client-certificate={self.pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={self.pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={self.pki / 'kubelet-ca.crt'}",
            # The node is "localhost"; its InternalIP is HOST_ADDRESS, where
            # the kubelet does not listen.
            "--kubelet-preferred-address-types=Hostname",
            # A list flag: this appends Node to the control plane's RBAC.
            "--authorization-mode=Node",
            "--enable-admission-plugins=NodeRestriction",
        )

    def controlplane_options(self) -> dict[str, Any]:
        """Keyword arguments for `ControlPlane(...)` so that this node can join it."""
        return {
            "bind_address": HOST_ADDRESS,
            "serving_ips": (KUBERNETES_SERVICE_IP,),
            "serving_dns": (
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ),
            "apiserver_args": self.apiserver_args,
            "service_account_admission": self.service_account_tokens,
            # Claims bind to the volumes the local system makes (hostPath), as pods mount them.
            "persistent_volumes": True,
        }

    # -- start ----------------------------------------------------------------------------

    def prepare(self) -> Node:
        """Host side, before the control plane starts: lock, baseline, guard, address, certs."""
        if self.state is not None:
            return self
        problems = preflight()
        needed = [n for n in NODE_BINARIES if self.with_dns or n != "coredns"]
        missing = [n for n in needed if not (self.bin_dir / n).exists()]
        if missing:
            problems.append(f"node binaries {missing} missing in {self.bin_dir}")
        if problems:
            raise NodeUnavailableError("; ".join(problems))
        try:
            self._prepare()
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        self.progress(f"node: {name} ({self.timings[name]:.1f}s)")

    def _prepare(self) -> None:
        started = time.monotonic()
        self._lock.acquire(timeout_s=LOCK_WAIT_S)
        errors = teardown_stale(self.progress)
        if errors:
            raise NodeUnavailableError(f"a previous node run could not be undone: {errors}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = NodeState(
            prefix=f"isnode-{secrets.token_hex(3)}",
            owner_pid=os.getpid(),
            workdir=str(self.workdir),
            bin_dir=str(self.bin_dir),
            baseline=Baseline.take(),
            uplinks=[link for link in _links() if link != "lo"],
        )
        # Saved before the first change, so every change is undoable.
        self.state.save()
        self._start_reaper()
        self._install_guard()
        self._add_host_address()
        self._make_certificates()
        self._timed("prepared", started)

    def _start_reaper(self) -> None:
        assert self.state is not None
        log = (self.log_dir or self.workdir / "logs") / "node-reaper.log"
        private_dir(log.parent)
        with open_private_append(log) as out:  # 0600: logs may quote credentials
            # Not a ManagedProcess: it must outlive us (no parent-death
            # signal), to undo the node if we are killed. We stop it by PID.
            self._reaper = subprocess.Popen(
                [sys.executable, "-m", "localdev.node", "reap", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        self.state.reaper_pid = self._reaper.pid
        self.state.save()

    def _install_guard(self) -> None:
        assert self.state is not None
        tag = ["-m", "comment", "--comment", GUARD_COMMENT, "-j", "DROP"]
        rules: list[tuple[str, str, list[str]]] = []
        for uplink in self.state.uplinks:
            for tool in ("iptables", "ip6tables"):
                rules += [
                    (tool, "FORWARD", ["-o", uplink]),
                    (tool, "FORWARD", ["-i", uplink]),
                ]
            for network in (NODE_NETWORK, SERVICE_CIDR):
                rules += [
                    ("iptables", "PREROUTING", ["-i", uplink, "-d", network]),
                    ("iptables", "POSTROUTING", ["-o", uplink, "-d", network]),
                    ("iptables", "POSTROUTING", ["-o", uplink, "-s", network]),
                ]
        for tool, chain, match in rules:
            _run([tool, "-w", "-t", "mangle", "-I", chain, "1", *match, *tag])

    def _add_host_address(self) -> None:
        # A bridge with no ports, not a `dummy` link: this VM's kernel has no
        # dummy driver ("Unknown device type"), and a portless bridge does the
        # same here: it holds a local address and drops what is sent to it.
        _run(["ip", "link", "add", HOST_LINK, "type", "bridge"])
        # No IPv6 link-local address (and no router solicitations) on it; the
        # setting goes with the link.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{HOST_LINK}/disable_ipv6").write_text("1")
        _run(["ip", "addr", "add", f"{HOST_ADDRESS}/32", "dev", HOST_LINK])
        _run(["ip", "link", "set", HOST_LINK, "up"])
        # A portless bridge drops what it is sent: Pod and Service addresses with
        # nothing behind them end here, not at the default gateway.
        for network in (NODE_NETWORK, SERVICE_CIDR):
            _run(["ip", "route", "add", network, "dev", HOST_LINK])

    def _make_certificates(self) -> None:
        # The kubelet's own CA: it signs the kubelet's serving certificate and
        # the API server's client certificate for the kubelet API.
        kubelet_ca = make_certificate_authority(self.pki, "kubelet-ca", "imagestream-kubelet-ca")
        kubelet_ca.issue(
            self.pki,
            "kubelet-serving",
            common_name=NODE_NAME,
            server=True,
            dns=(NODE_NAME,),
            ips=("127.0.0.1", "::1"),
        )
        kubelet_ca.issue(
            self.pki,
            "apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )

    def start(self, plane: ControlPlane, registry: Registry) -> Node:
        """Join `plane` (started with `controlplane_options()`), with images from `registry`."""
        if self.state is None:
            self.prepare()
        self._plane, self._registry = plane, registry
        try:
            self._start(plane, registry)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, plane: ControlPlane, registry: Registry) -> None:
        assert self.state is not None
        began = time.monotonic()
        if plane.bind_address != HOST_ADDRESS:
            raise ValueError("start the control plane with **node.controlplane_options()")
        self._write_kubeconfigs(plane)

        started = time.monotonic()
        pause = make_pause_image(self.workdir / "images" / "pause")
        self.pause_image = self._push(registry, pause, "localdev-node/pause")
        self._timed("pause image pushed", started)

        self._write_cni_config()
        started = time.monotonic()
        self._start_containerd(registry)
        self._timed("containerd up", started)

        started = time.monotonic()
        self._start_kubelet()
        self._wait_node_ready(plane)
        self._untaint(plane)
        self._timed("node Ready", started)

        started = time.monotonic()
        self._start_scheduler(plane)
        self._start_kube_proxy()
        self._timed("scheduler and kube-proxy up", started)
        if self.with_dns:
            started = time.monotonic()
            self._start_coredns(plane, registry)
            self._timed("CoreDNS Ready", started)
        self._timed("started", began)

    def _push(self, registry: Registry, image: OciImage, repo: str) -> str:
        skopeo_push(image, f"{registry.host}/{repo}:latest")
        return f"{registry.host}/{repo}@{image.manifest_digest}"

    def _write_kubeconfigs(self, plane: ControlPlane) -> None:
        ca = CertificateAuthority(
            cert_path=plane.ca_path, key_path=plane.ca_path.with_name("ca.key")
        )
        identities = {
            "kubelet": ("system:node:" + NODE_NAME, ("system:nodes",)),
            "kube-proxy": ("system:kube-proxy", ()),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "coredns": ("system:coredns", ()),
        }
        for name, (user, groups) in identities.items():
            pair = ca.issue(self.pki, name, common_name=user, organizations=groups, client=True)
            server = f"https://{KUBERNETES_SERVICE_IP}:443" if name == "coredns" else plane.server
            self._kubeconfig(name).write_text(
                yaml.safe_dump(_kubeconfig(server, plane.ca_path, pair))
            )
            self._kubeconfig(name).chmod(0o600)

    def _kubeconfig(self, name: str) -> Path:
        return self.workdir / f"{name}.kubeconfig"

    def _logs(self) -> Path:
        return self.log_dir or self.workdir / "logs"

    def _start_process(self, name: str, argv: list[str]) -> ManagedProcess:
        assert self.state is not None
        process = ManagedProcess(name=name, argv=argv, log_path=self._logs() / f"{name}.log")
        self.processes[name] = process.start()
        self.state.pids[name] = process.pid
        self.state.save()
        return process

    def _write_cni_config(self) -> None:
        # Written before containerd and the kubelet start: the node only turns
        # Ready once the runtime reports NetworkReady, which needs a config.
        assert self.state is not None
        conf_dir = self.state.var_dir / "cni-conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "cniVersion": "0.4.0",
            "name": self.state.prefix,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # nothing is NATed out
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        # No default route: Pods reach only Pods, HOST_ADDRESS
                        # and Services.
                        "routes": [{"dst": NODE_NETWORK}, {"dst": SERVICE_CIDR}],
                        "dataDir": str(self.state.var_dir / "cni" / "networks"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-pods.conflist").write_text(json.dumps(config, indent=1))

    def _start_containerd(self, registry: Registry) -> None:
        assert self.state is not None
        state = self.state
        certs_d = state.var_dir / "certs.d"
        # The local registry is plain HTTP; containerd needs to be told.
        servers = {host: host for host in (registry.host, *self.plain_http_registries)}
        for name, server in {**servers, **self.registry_mirrors}.items():
            hosts = certs_d / name
            hosts.mkdir(parents=True, exist_ok=True)
            (hosts / "hosts.toml").write_text(
                f'server = "http://{server}"\n'
                f'[host."http://{server}"]\n'
                '  capabilities = ["pull", "resolve"]\n'
            )
        run = state.run_dir / "containerd"
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        state.containerd_config.write_text(
            f"""version = 2
root = "{state.var_dir / "containerd"}"
state = "{run}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{state.containerd_socket}"
[ttrpc]
  address = "{state.containerd_socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state.var_dir / "opt"}"
{cri}]
  sandbox_image = "{self.pause_image}"
  # This VM's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # (-998 for sandboxes) and every Pod fails with "can't get final child's
  # PID from pipe: EOF". Clamp every adj to containerd's own instead.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  {cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    {cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      {cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNC}"
        Root = "{state.run_dir / "runc"}"
  {cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{state.var_dir / "cni-conf"}"
    max_conf_num = 1
  {cri}.registry]
    config_path = "{certs_d}"
"""
        )
        containerd = self._start_process(
            "containerd", [str(CONTAINERD), "--config", str(state.containerd_config)]
        )
        teardown = _Teardown(state)
        wait_until(
            "containerd answers CRI Version",
            lambda: "RuntimeApiVersion" in teardown.crictl("version"),
            timeout_s=STARTUP_TIMEOUT_S,
            interval_s=0.1,
            processes=[containerd],
        )

    def _start_kubelet(self) -> None:
        assert self.state is not None
        state = self.state
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # Kubelet 1.35+ refuses cgroup v1 unless told; this VM has v1.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",  # no systemd here
            "containerRuntimeEndpoint": f"unix://{state.containerd_socket}",
            "address": "127.0.0.1",  # the kubelet API only on loopback
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki / "kubelet-ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            "resolvConf": "",  # Pods never get the host's resolvers
            "podLogsDir": str(state.var_dir / "pod-logs"),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 50,
        }
        if self.with_dns:
            config["clusterDNS"] = [DNS_SERVICE_IP]
            config["clusterDomain"] = CLUSTER_DOMAIN
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config))
        self._start_process(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={self._kubeconfig('kubelet')}",
                f"--root-dir={state.var_dir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                # Not the uplink's address (the kubelet's default pick).
                f"--node-ip={HOST_ADDRESS}",
                "--v=2",
            ],
        )

    def _wait_node_ready(self, plane: ControlPlane) -> None:
        def ready() -> bool:
            node = json.loads(plane.get_raw(f"/api/v1/nodes/{NODE_NAME}"))
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(
            "node Ready",
            ready,
            timeout_s=STARTUP_TIMEOUT_S,
            interval_s=0.2,
            processes=list(self.processes.values()),
        )

    def _untaint(self, plane: ControlPlane) -> None:
        # The node-lifecycle controller (off in this control plane) would
        # remove the taint the kubelet registers with; without it nothing is
        # ever scheduled.
        self.kubectl_run(
            plane,
            "taint",
            "node",
            NODE_NAME,
            "node.kubernetes.io/not-ready:NoSchedule-",
            check=False,
        )

    def kubectl_run(
        self, plane: ControlPlane, *args: str, check: bool = True, stdin: str = ""
    ) -> str:
        done = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={plane.kubeconfig_path}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S + 30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {shlex.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _start_scheduler(self, plane: ControlPlane) -> None:
        kubeconfig = self._kubeconfig("kube-scheduler")
        port = free_port()
        scheduler = self._start_process(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler'}",
                "--leader-elect=false",
            ],
        )
        wait_until(
            "kube-scheduler healthy",
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", insecure=True),
            timeout_s=STARTUP_TIMEOUT_S,
            processes=[scheduler],
        )

    def _start_kube_proxy(self) -> None:
        healthz = free_port()
        proxy = self._start_process(
            "kube-proxy",
            [
                str(self.bin_dir / "kube-proxy"),
                f"--kubeconfig={self._kubeconfig('kube-proxy')}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                f"--hostname-override={NODE_NAME}",
                "--bind-address=127.0.0.1",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--healthz-bind-address=127.0.0.1:{healthz}",
                # No NodePorts anywhere (and so no route_localnet).
                "--nodeport-addresses=127.0.0.1/32",
                "--iptables-localhost-nodeports=false",
                # 0 = leave the host's conntrack sysctls alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
            ],
        )
        wait_until(
            "kube-proxy synced",
            lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            timeout_s=STARTUP_TIMEOUT_S,
            processes=[proxy],
        )

    def _start_coredns(self, plane: ControlPlane, registry: Registry) -> None:
        image = make_binary_image(
            self.workdir / "images" / "coredns",
            self.bin_dir / "coredns",
            entrypoint=["-conf", "/etc/coredns/Corefile"],
        )
        self.coredns_image = self._push(registry, image, "localdev-node/coredns")
        corefile = f"""{CLUSTER_DOMAIN}:53 {{
    errors
    ready :8181
    kubernetes {CLUSTER_DOMAIN} {{
        kubeconfig /etc/coredns/kubeconfig
    }}
    cache 5
}}
"""
        objects = coredns_objects(
            image=self.coredns_image,
            corefile=corefile,
            kubeconfig=self._kubeconfig("coredns").read_text(),
        )
        self.kubectl_run(plane, "apply", "-f", "-", stdin=json.dumps(objects))
        self.kubectl_run(
            plane,
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(STARTUP_TIMEOUT_S)}s",
        )

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Undo everything; raises NodeCleanupError (after trying every step) if something stays.

        It also stops the control plane and registry given to `start()`: they
        listen on the host address, which goes with the node, so they must
        stop first (their own `stop()` afterwards is a no-op).
        """
        errors: list[str] = []
        if self.state is not None:
            api = None
            if self._plane is not None and self.processes.get("kubelet") is not None:
                plane = self._plane
                api = lambda: self._delete_workloads(plane)  # noqa: E731
            errors = _Teardown(self.state, processes=self.processes, log=self.progress).run(
                api, self._stop_listeners
            )
            if not errors:
                STATE_PATH.unlink(missing_ok=True)
        self._stop_reaper()
        self._lock.release()
        self.state = None
        self._plane = None
        self._registry = None
        if errors:
            raise NodeCleanupError("; ".join(errors))

    def _stop_listeners(self) -> None:
        if self._registry is not None:
            self._registry.stop()
        if self._plane is not None:
            self._plane.stop()

    def _delete_workloads(self, plane: ControlPlane) -> None:
        # Through the API first, so the kubelet stops containers and CNI DEL
        # frees addresses, veths and netns the proper way; the CRI sweep is
        # for whatever is left.
        self.kubectl_run(
            plane,
            "delete",
            "deployments,replicasets,statefulsets,daemonsets,jobs,cronjobs,"
            "replicationcontrollers,pods",
            "--all",
            "--all-namespaces",
            "--wait=true",
            "--timeout=30s",
            check=False,
        )

    def _stop_reaper(self) -> None:
        reaper = self._reaper
        self._reaper = None
        if reaper is not None and reaper.poll() is None:
            reaper.send_signal(signal.SIGTERM)
            try:
                reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()


def coredns_objects(*, image: str, corefile: str, kubeconfig: str) -> dict[str, Any]:
    """RBAC, config, Deployment and the `kube-dns` Service for CoreDNS (a v1 List)."""
    labels = {"k8s-app": "kube-dns"}
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["endpoints", "services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:coredns",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": "system:coredns",
                    }
                ],
            },
            {
                # Its kubeconfig holds a client key, so a Secret, not a ConfigMap.
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
                "stringData": {"Corefile": corefile, "kubeconfig": kubeconfig},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "dnsPolicy": "Default",
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                {
                                    "name": "coredns",
                                    "image": image,
                                    "ports": [
                                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                    ],
                                    "readinessProbe": {
                                        "httpGet": {"path": "/ready", "port": 8181},
                                        "periodSeconds": 1,
                                    },
                                    "volumeMounts": [
                                        {
                                            "name": "config",
                                            "mountPath": "/etc/coredns",
                                            "readOnly": True,
                                        }
                                    ],
                                }
                            ],
                            "volumes": [{"name": "config", "secret": {"secretName": "coredns"}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "selector": labels,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ],
                },
            },
        ],
    }


def _kubeconfig(server: str, ca_path: Path, pair: KeyPair) -> dict[str, Any]:
    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localdev",
                "cluster": {"server": server, "certificate-authority-data": data(ca_path)},
            }
        ],
        "users": [
            {
                "name": "localdev",
                "user": {
                    "client-certificate-data": data(pair.cert_path),
                    "client-key-data": data(pair.key_path),
                },
            }
        ],
        "contexts": [{"name": "localdev", "context": {"cluster": "localdev", "user": "localdev"}}],
        "current-context": "localdev",
    }


# --- the reaper ----------------------------------------------------------------------------


def _reap(parent_pid: int) -> int:
    """Wait for `parent_pid` to die, then undo its node (unless it stopped it itself).

    SIGTERM (the parent's normal `stop()`) ends the wait without a teardown.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # It must not die with the harness's terminal or session either.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while _pid_alive(parent_pid):
        time.sleep(0.2)
    # Our turn now: the parent's flock went with it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lock = _MachineLock()
    lock.acquire(timeout_s=600.0)
    try:
        state = NodeState.load()
        if state is None or state.owner_pid != parent_pid:
            return 0  # stopped cleanly, or another run already undid it
        print(f"node reaper: pid {parent_pid} died; undoing {state.prefix}", flush=True)
        errors = _Teardown(state, log=lambda line: print(line, flush=True)).run()
        for error in errors:
            print(f"node reaper: {error}", flush=True)
        if not errors:
            STATE_PATH.unlink(missing_ok=True)
        return 1 if errors else 0
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "reap":
        return _reap(int(args[1]))
    if args == ["teardown-stale"]:
        lock = _MachineLock()
        lock.acquire(timeout_s=LOCK_WAIT_S)
        try:
            errors = teardown_stale(print)
        finally:
            lock.release()
        for error in errors:
            print(error, file=sys.stderr)
        return 1 if errors else 0
    print("usage: python -m localdev.node reap PARENT_PID | teardown-stale", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
