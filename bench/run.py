"""`python -m bench` (`make bench`): every figure of issues 7, 11 and 12 beside its floor.

Starts its own control plane (etcd + kube-apiserver, on loopback), installs
the CRDs, starts a real distribution registry whose notifications go to the
webhook, runs `imagestream controller` and `imagestream webhook` as real
processes, measures, prints a table and writes `bench/results.json`.
The `pods` section (issue 11) needs pods to run: after the others, with
their processes stopped, it starts a cluster of its own with a real node
(`localdev.node`: control plane with kube-controller-manager on the node's
host address, registry there, containerd, kubelet, scheduler, kube-proxy;
no CoreDNS), and a controller and webhook of its own, and stops them all.
The `builds` section (issue 12) does the same with a cluster of its own, and
the builder image made here (`localdev.builder`) for the controller's builds.
One node per machine: if another one runs, it waits up to BENCH_NODE_WAIT_S.

Environment:
    BENCH_SCALE      multiplies every size (default 1: the issue's sizes); 0.1 while developing
    BENCH_SECTIONS   comma-separated subset of:
                     latency,intake,fanout,convergence,scale,pods,builds;
                     or `peers` (push to patch beside Keel; `make bench-peers`), never by default
    BENCH_PROFILE    1: run the controller and webhook under pyinstrument; profiles go to
                     bench/profiles/ (figures from a profiled run are marked as such);
                     `cprofile`: under cProfile instead (bench/profiles/NAME.prof: call counts)
    BENCH_PROCESSES  `split` (default): `imagestream webhook` and `imagestream controller` as two
                     processes; `run`: one `imagestream run` process holding both (the
                     default of `imagestream dev`), whose webhook hands its writes to the
                     controller in-process
    BENCH_KCM        1: also run kube-controller-manager (off by default: its ReplicaSet
                     work on every rollout is noise on both sides of a ratio)
    BENCH_REPS       how many times each section is measured in the run (default 3): each
                     figure is the median, printed with its [min-max]; results keep every one
    BENCH_OUT        where to write the results (default bench/results.json)
    BENCH_KEEP       1: keep the work directory (logs of every process) and print its path
    BENCH_NODE_WAIT_S  how long `pods` waits for another node on this machine to stop
                     (default 600)

Invariant: every process started here is stopped by its PID before exit,
pass or fail (and by the kernel if this process is killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import builds, peers, pods, repetitions, sections
from bench.common import Sender, create_namespace
from imagestream.kube.client import connect
from imagestream.kube.crds import install_crds, load_crds
from localdev.builder import push_builder
from localdev.components import ComponentProcess, start_component
from localdev.controlplane import REPO_ROOT, ControlPlane, binary_dir, free_port
from localdev.node import Node, NodeUnavailableError, node_binary_dir, preflight
from localdev.private import write_private
from localdev.processes import stop_all
from localdev.registry import NotificationEndpoint, Registry

ORDER = ("latency", "intake", "fanout", "convergence", "peers", "scale", "pods", "builds")
"""Every section, in the order they run: `scale` stops the main processes, so it comes after
every section that uses them; `pods` and `builds` need a cluster of their own, so they come
last."""
PEER_SECTIONS = ("peers",)
"""Not in `make bench` (they need a peer built from Go first): `make bench-peers`."""
SECTIONS = tuple(s for s in ORDER if s not in PEER_SECTIONS)
NODE_SECTIONS = ("pods", "builds")
PLANE_SECTIONS = tuple(s for s in ORDER if s not in NODE_SECTIONS)
"""Measured on the loopback control plane; `pods` and `builds` have a cluster with a node."""
BENCH_DIR = REPO_ROOT / "bench"
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 - a loopback-only test token


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def etcd_version(bin_dir: Path) -> str:
    try:
        out = subprocess.run(
            [str(bin_dir / "etcd"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.lower().startswith("etcd version"):
            return line.split(":", 1)[1].strip()
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def repetitions_wanted() -> int:
    """BENCH_REPS: how many times each section is measured (default 3; at least 1)."""
    return max(1, int(os.environ.get("BENCH_REPS", "3") or 3))


def processes_mode() -> str:
    """BENCH_PROCESSES: `split` (two processes) or `run` (one process holding both)."""
    mode = os.environ.get("BENCH_PROCESSES", "split").strip() or "split"
    if mode not in ("split", "run"):
        raise SystemExit(f"unknown BENCH_PROCESSES {mode!r}; choose split or run")
    return mode


def selected_sections() -> list[str]:
    raw = os.environ.get("BENCH_SECTIONS", "").strip()
    if not raw:
        return list(SECTIONS)
    chosen = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ORDER]
    if unknown:
        raise SystemExit(f"unknown BENCH_SECTIONS {unknown}; choose from {', '.join(ORDER)}")
    return [s for s in ORDER if s in chosen]


class Launcher:
    """Starts component processes (optionally under pyinstrument), remembers them all."""

    def __init__(self, kubeconfig: Path, workdir: Path, token_file: Path, host: str) -> None:
        self.kubeconfig, self.workdir, self.token_file, self.host = (
            kubeconfig,
            workdir,
            token_file,
            host,
        )
        self.cprofile = os.environ.get("BENCH_PROFILE", "").strip() == "cprofile"
        self.profile = env_flag("BENCH_PROFILE") or self.cprofile
        """`BENCH_PROFILE=cprofile`: cProfile instead (every call counted: per-call costs)."""
        self.started: list[ComponentProcess] = []

    def _prefix(self, name: str) -> list[str]:
        if not self.profile:
            return []
        profiles = BENCH_DIR / "profiles"
        profiles.mkdir(exist_ok=True)
        if self.cprofile:
            return ["-m", "cProfile", "-o", str(profiles / f"{name}.prof")]
        return ["-m", "pyinstrument", "-r", "text", "-o", str(profiles / f"{name}.txt")]

    def start(
        self, command: str, name: str, args: list[str], *, webhook_addr: str | None = None
    ) -> ComponentProcess:
        # The default receiver is integrated: it records this host only.
        extra = [*args, "--integrated-registry", self.host]
        if command in ("webhook", "run"):
            extra += ["--webhook-token-file", str(self.token_file)]
        if command in ("controller", "run"):
            extra += ["--workers", str(sections.CONTROLLER_WORKERS)]
        process = start_component(
            command,
            kubeconfig=self.kubeconfig,
            log_path=self.workdir / "logs" / f"{name}.log",
            args=extra,
            name=name,
            webhook_addr=webhook_addr,
            python_prefix=self._prefix(name),
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


async def run_sections(
    plane: ControlPlane, registry: Registry, workdir: Path, scale: float, chosen: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    kube = await connect(plane.kubeconfig_path)
    launcher: Launcher | None = None
    try:
        await install_crds(kube, load_crds())
        reps = repetitions_wanted()
        base_names = {
            "latency": ("bench-latency", "bench-latency-floor"),
            "intake": ("bench-intake", "bench-intake-floor"),
            "fanout": ("bench-fanout", "bench-fanout-floor"),
            "convergence": ("bench-conv", "bench-conv-floor"),
            "peers": ("bench-peers", "bench-peers-keel", "bench-peers-floor"),
        }

        def names(section: str, rep: int) -> tuple[str, ...]:
            # Each repetition in namespaces of its own: it measures from the same start.
            return tuple(f"{name}-r{rep}" for name in base_names[section])

        watched = []
        for section in chosen:
            for rep in range(reps if section in base_names else 0):
                for namespace in names(section, rep):
                    await create_namespace(kube, namespace)
                watched.append(names(section, rep)[0])
        token_file = workdir / "token"
        launcher = Launcher(plane.kubeconfig_path, workdir, token_file, registry.host)
        # The main processes watch only the namespaces of our side: a floor's writes
        # must not make them work (and steal CPU from the floor).
        scope = ["--watch-namespaces", ",".join(watched)] if watched else []
        if processes_mode() == "run":
            # One process holding both: `webhook` and `controller` are the same process.
            webhook = controller = launcher.start(
                "run", "run", scope, webhook_addr=registry_webhook_addr(registry)
            )
            await webhook.wait_ready()
        else:
            webhook = launcher.start(
                "webhook", "webhook", scope, webhook_addr=registry_webhook_addr(registry)
            )
            controller = launcher.start("controller", "controller", scope)
            await asyncio.gather(webhook.wait_ready(), controller.wait_ready())
        figures: dict[str, Any] = {}
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=sections.BURST_CONCURRENCY + 16)
        ) as session:
            assert launcher is not None
            started_launcher = launcher
            ctx = sections.Context(
                kube=kube,
                session=session,
                sender=Sender(session=session, token=TOKEN),
                host=registry.host,
                webhook=webhook,
                controller=controller,
                scale=scale,
                workdir=workdir,
                start_webhook=lambda name, args: started_launcher.start("webhook", name, args),
                start_controller=lambda name, args: started_launcher.start(
                    "controller", name, args
                ),
                apiserver_metrics=lambda: plane.get_raw("/metrics"),
                system_pids={
                    "etcd": plane.etcd.pid,
                    "kube-apiserver": plane.apiserver.pid,
                    "bench": os.getpid(),
                },
            )
            scale_load: list[sections.ScaleLoad] = []

            async def scale_rep(rep: int) -> dict[str, Any]:
                if not scale_load:  # the load is made once; each repetition measures it
                    scale_load.append(await sections.scale_load(ctx))
                return await sections.scale(ctx, scale_load[0], rep)

            runners: dict[str, Callable[[int], Awaitable[dict[str, Any]]]] = {
                "latency": lambda rep: sections.push_to_patch(ctx, *names("latency", rep)),
                "intake": lambda rep: sections.intake(ctx, *names("intake", rep)),
                "fanout": lambda rep: sections.fan_out(ctx, *names("fanout", rep)),
                "convergence": lambda rep: sections.convergence(ctx, *names("convergence", rep)),
                "scale": scale_rep,
                "peers": lambda rep: peers.push_to_patch_beside_keel(
                    kube=kube,
                    session=session,
                    post_ours=lambda body: ctx.sender.post(webhook.webhook_url, body),
                    host=registry.host,
                    namespaces=names("peers", rep),
                    webhook=webhook,
                    controller=controller,
                    kubeconfig=plane.kubeconfig_path,
                    workdir=workdir / f"peers-r{rep}",
                    system_pids=ctx.system_pids,
                    scale=scale,
                ),
            }
            for section in chosen:
                if section == "scale":
                    # Measured on fresh processes; the main ones would only add their load.
                    ctx.note_process("webhook", webhook)
                    ctx.note_process("controller", controller)
                    webhook.stop()
                    controller.stop()
                began = time.monotonic()
                measured = []
                for rep in range(reps):
                    print(f"[bench] {section} {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
                    rep_began = time.monotonic()
                    try:
                        figure = await runners[section](rep)
                    except Exception as error:
                        figure = {"title": section, "error": f"{type(error).__name__}: {error}"}
                        print(f"[bench] {section} failed: {error}", file=sys.stderr, flush=True)
                    figure["section_seconds"] = round(time.monotonic() - rep_began, 1)
                    measured.append(figure)
                figures[section] = repetitions.combine(measured)
                figures[section]["section_seconds"] = round(time.monotonic() - began, 1)
            if "scale" not in chosen:
                ctx.note_process("webhook", webhook)
                ctx.note_process("controller", controller)
            ctx.processes["registry"] = {"sender_retries": ctx.sender.retries}
            ctx.processes["sender"] = {
                "answers": {str(k): v for k, v in ctx.sender.answers.items()}
            }
            return figures, ctx.processes
    finally:
        if launcher is not None:
            launcher.stop_all()
        await kube.close()


def registry_webhook_addr(registry: Registry) -> str:
    assert registry.notify is not None
    return registry.notify.url.split("//", 1)[1].split("/", 1)[0]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(figures: dict[str, Any]) -> str:
    rows = [("figure", "ours", "floor", "ratio", "goal", "met")]
    for section, figure in figures.items():
        if "error" in figure:
            rows.append((section, "ERROR", figure["error"][:60], "", "", "no"))
            continue
        ours, floor = figure.get("ours") or {}, figure.get("floor") or {}
        if section == "latency":
            rows.append(
                (
                    "push->patch p50/p95/p99 ms (ratio: p50, p99)",
                    f"{fmt(ours['p50_ms'])}/{fmt(ours['p95_ms'])}/{fmt(ours['p99_ms'])}",
                    f"{fmt(floor['p50_ms'])}/{fmt(floor['p95_ms'])}/{fmt(floor['p99_ms'])}",
                    f"{fmt(figure.get('ratio_p50'))}, {fmt(figure['ratio'])}"
                    + repetitions.spread(figure, "ratio"),
                    figure["goal"],
                    "yes" if figure["met"] else "no",
                )
            )
        elif section == "peers":
            keel = figure["keel"]
            ratio = figure["ratio"]
            rows.append(
                (
                    "push->patch p50/p95/p99 ms, beside Keel",
                    f"{fmt(ours['p50_ms'])}/{fmt(ours['p95_ms'])}/{fmt(ours['p99_ms'])}",
                    f"{fmt(floor['p50_ms'])}/{fmt(floor['p95_ms'])}/{fmt(floor['p99_ms'])}",
                    f"{fmt(ratio['ours_p50_to_floor'])}/{fmt(ratio['ours_p99_to_floor'])}"
                    + repetitions.spread(figure, "ratio.ours_p99_to_floor"),
                    figure["goal"],
                    "yes" if figure["met"] else "no",
                )
            )
            rows.append(
                (
                    f"  Keel {figure['keel_version']} p50/p95/p99 ms",
                    f"{fmt(keel['p50_ms'])}/{fmt(keel['p95_ms'])}/{fmt(keel['p99_ms'])}",
                    f"{fmt(floor['p50_ms'])}/{fmt(floor['p95_ms'])}/{fmt(floor['p99_ms'])}",
                    f"{fmt(ratio['keel_p50_to_floor'])}/{fmt(ratio['keel_p99_to_floor'])}"
                    + repetitions.spread(figure, "ratio.keel_p99_to_floor"),
                    "(the peer)",
                    "",
                )
            )
            cpu, rss = figure["cpu_seconds"], figure["peak_rss_mib"]
            ours_cpu = sum(cpu["ours"].values())
            rows.append(
                (
                    "  CPU s (run) / peak RSS MiB",
                    f"ours {fmt(round(ours_cpu, 2))} / wh {fmt(rss['webhook'])}"
                    f" + ctl {fmt(rss['controller'])}",
                    "-",
                    f"keel {fmt(cpu['keel']['keel'])} / {fmt(rss['keel'])}",
                    "(reported)",
                    "",
                )
            )
        elif section == "pods":
            rows.append(
                (
                    f"push->new pod Ready p50/p95/p99 ms ({figure['pushes']} pushes)",
                    f"{fmt(ours['p50_ms'])}/{fmt(ours['p95_ms'])}/{fmt(ours['p99_ms'])}",
                    f"{fmt(floor['p50_ms'])}/{fmt(floor['p95_ms'])}/{fmt(floor['p99_ms'])}",
                    fmt(figure["ratio"]) + repetitions.spread(figure, "ratio"),
                    figure["goal"],
                    "",
                )
            )
            keel = figure["keel"]
            rows.append(
                (
                    f"  Keel {keel['version']} p50/p95/p99 ms; ours/Keel p50, p99",
                    f"{fmt(keel['p50_ms'])}/{fmt(keel['p95_ms'])}/{fmt(keel['p99_ms'])}",
                    "-",
                    f"{fmt(figure['ratio_to_keel']['p50'])}, {fmt(figure['ratio_to_keel']['p99'])}"
                    + repetitions.spread(figure, "ratio_to_keel.p99"),
                    "(reported)",
                    "",
                )
            )
        elif section == "builds":
            rows.append(
                (
                    f"base push->rolled pod Ready p50/p95 ms ({figure['builds']} builds)",
                    f"{fmt(ours['p50_ms'])}/{fmt(ours['p95_ms'])}",
                    "-",
                    "-",
                    figure["goal"],
                    "",
                )
            )
            rows.append(
                (
                    "  of which the build (container started->output tagged) p50 ms, share p50",
                    f"{fmt(ours['container_started_to_output_tagged']['p50_ms'])}"
                    f", {fmt(figure['build_share_p50'])}",
                    "-",
                    "-",
                    "(reported)",
                    "",
                )
            )
        elif section == "intake":
            burst = figure["burst"]
            rows.append(
                (
                    "intake notifications/s",
                    fmt(ours["rate"]),
                    fmt(floor["rate"]),
                    fmt(figure["ratio"]) + repetitions.spread(figure, "ratio"),
                    f">= {sections.INTAKE_GOAL_RATIO} x floor",
                    "yes" if figure["ratio"] >= sections.INTAKE_GOAL_RATIO else "no",
                )
            )
            rows.append(
                (
                    f"burst {burst['events']} pushes: writes",
                    fmt(burst["status_writes"]),
                    fmt(burst["events"]),
                    fmt(burst["status_writes"] / burst["events"]),
                    "far fewer writes than events",
                    "yes" if burst["coalesced"] else "no",
                )
            )
        elif section == "fanout":
            rows.append(
                (
                    f"fan-out {figure['deployments']} Deployments s",
                    fmt(ours["seconds"]),
                    fmt(floor["seconds"]),
                    fmt(figure["ratio"]) + repetitions.spread(figure, "ratio"),
                    figure["goal"],
                    "yes" if figure["met"] else "no",
                )
            )
        elif section == "convergence":
            rows.append(
                (
                    f"convergence writes/event ({figure['events']} events)",
                    fmt(ours["writes_per_event"]),
                    fmt(floor["writes_per_event"]),
                    fmt(figure["ratio"]) + repetitions.spread(figure, "ratio"),
                    "final state = sequential model",
                    "yes" if figure["met"] else f"no ({len(ours['mismatches'])} mismatches)",
                )
            )
        elif section == "scale":
            rows.append(
                (
                    f"scale {figure['deployments']} Deploy/{figure['imagestreams']} IS: RSS MiB",
                    f"ctl {fmt(ours['controller_peak_rss_mib'])}"
                    f" / wh {fmt(ours['webhook_peak_rss_mib'])}",
                    "-",
                    "-",
                    f"< {sections.SCALE_RSS_GOAL_MIB} MiB per process",
                    "yes"
                    if max(ours["controller_peak_rss_mib"], ours["webhook_peak_rss_mib"])
                    < sections.SCALE_RSS_GOAL_MIB
                    else "no",
                )
            )
            synced = max(ours["controller_start_to_synced_s"], ours["webhook_start_to_synced_s"])
            rows.append(
                (
                    "scale: start to synced s",
                    f"ctl {fmt(ours['controller_start_to_synced_s'])}"
                    f" / wh {fmt(ours['webhook_start_to_synced_s'])}",
                    fmt((figure.get("floor") or {}).get("start_to_synced_s")),
                    fmt(figure.get("ratio")) + repetitions.spread(figure, "ratio"),
                    f"< {sections.SCALE_SYNCED_GOAL_S} s",
                    "yes" if synced < sections.SCALE_SYNCED_GOAL_S else "no",
                )
            )
            system = figure.get("system_peak_rss_mib") or {}
            rows.append(
                (
                    "scale: kube-apiserver / etcd peak RSS MiB (the machine's floor)",
                    f"{fmt(system.get('kube-apiserver', 0))} / {fmt(system.get('etcd', 0))}",
                    "-",
                    "-",
                    "(reported)",
                    "",
                )
            )
            latency, loaded_floor = ours["push_to_patch"], figure.get("floor_under_load") or {}
            rows.append(
                (
                    "scale: push->patch p50/p99 ms (floor: under the same load)",
                    f"{fmt(latency['p50_ms'])}/{fmt(latency['p99_ms'])}",
                    f"{fmt(loaded_floor.get('p50_ms'))}/{fmt(loaded_floor.get('p99_ms'))}",
                    fmt(figure.get("ratio_under_load"))
                    + repetitions.spread(figure, "ratio_under_load"),
                    "(reported)",
                    "",
                )
            )
            unloaded = figures.get("latency") or {}
            if "error" not in unloaded and unloaded.get("ours"):
                slower = latency["p99_ms"] / unloaded["ours"]["p99_ms"]
                rows.append(
                    (
                        "scale: push->patch p99 under load / unloaded p99 (latency section)",
                        f"{fmt(latency['p99_ms'])} / {fmt(unloaded['ours']['p99_ms'])}",
                        "-",
                        fmt(round(slower, 2)),
                        f"<= {sections.SCALE_LATENCY_GOAL_RATIO}",
                        "yes" if slower <= sections.SCALE_LATENCY_GOAL_RATIO else "no",
                    )
                )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def node_wait_s() -> float:
    return float(os.environ.get("BENCH_NODE_WAIT_S", "600") or 600)


def start_node_cluster(workdir: Path, webhook_port: int) -> tuple[Node, ControlPlane, Registry]:
    """A control plane, a registry and a real node, as tests/integration/nodecluster.py starts
    them; the registry notifies `webhook_port`. Waits (bounded) for another node to stop."""
    problems = preflight()
    if problems:
        raise NodeUnavailableError("; ".join(problems))
    node = Node(
        workdir=workdir / "node",
        bin_dir=node_binary_dir(build=True),
        with_dns=False,
        log_dir=workdir / "logs",
    )
    deadline = time.monotonic() + node_wait_s()
    while True:
        try:
            node.prepare()
            break
        except NodeUnavailableError as error:
            if time.monotonic() > deadline:
                raise
            print(f"[bench] node: {error}; waiting", file=sys.stderr, flush=True)
            time.sleep(5)
    plane: ControlPlane | None = None
    registry: Registry | None = None
    try:
        plane = ControlPlane(
            workdir=workdir / "plane", bin_dir=binary_dir(build=True), **node.controlplane_options()
        ).start()
        registry = Registry(
            workdir=workdir / "registry",
            address=node.registry_address,
            notify=NotificationEndpoint(
                url=f"http://127.0.0.1:{webhook_port}/v1/events/distribution",
                token=TOKEN,
                timeout="5s",
                threshold=3,
                backoff="500ms",
            ),
            log_dir=workdir / "logs",
        ).start()
        node.start(plane, registry)
    except BaseException:
        try:
            node.stop()
        finally:
            if registry is not None:
                registry.stop()
            if plane is not None:
                plane.stop()
        raise
    return node, plane, registry


async def run_on_node(
    plane: ControlPlane, registry: Registry, workdir: Path, scale: float, section: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A node section (`pods` or `builds`): its own webhook and controller, then the measure.

    The two differ only in their namespace, what the controller is told, and what is
    measured; `builds` also needs the builder image in the node's registry first.
    """
    controller_args: list[str] = []
    if section == "builds":
        builder = await asyncio.to_thread(push_builder, registry.host)
        controller_args = ["--builder-image", builder, "--build-insecure-registries", registry.host]
    namespace = pods.NAMESPACE if section == "pods" else builds.NAMESPACE
    kube = await connect(plane.kubeconfig_path)
    launcher = Launcher(plane.kubeconfig_path, workdir, workdir / "token", registry.host)
    try:
        await install_crds(kube, load_crds())
        scope = ["--watch-namespaces", namespace]
        webhook = launcher.start(
            "webhook", f"{section}-webhook", scope, webhook_addr=registry_webhook_addr(registry)
        )
        controller = launcher.start("controller", f"{section}-controller", scope + controller_args)
        await asyncio.gather(webhook.wait_ready(), controller.wait_ready())
        if section == "pods":
            figure = await pods.push_to_pod_ready(
                kube, registry.host, workdir, scale, plane.kubeconfig_path
            )
        else:
            figure = await builds.push_to_rolled_pod(kube, registry.host, workdir, scale)
        processes = {
            process.process.name: {"peak_rss_mib": round(process.peak_rss_kib() / sections.MIB, 1)}
            for process in (webhook, controller)
        }
        return figure, processes
    finally:
        launcher.stop_all()
        await kube.close()


def measure_pods(
    workdir: Path, scale: float, versions: dict[str, Any], section: str = "pods"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `pods` (or `builds`) section on a cluster of its own; an unmeasurable run is an
    error figure."""
    print(f"[bench] {section} ...", file=sys.stderr, flush=True)
    began = time.monotonic()
    workdir.mkdir(parents=True)
    processes: dict[str, Any] = {}
    try:
        node, plane, registry = start_node_cluster(workdir, free_port())
        try:
            (workdir / "token").write_text(TOKEN)
            versions.setdefault("kube", plane.version().get("gitVersion", "unknown"))
            versions["node"] = node_versions(node)
            figure, processes = asyncio.run(run_on_node(plane, registry, workdir, scale, section))
        finally:
            node.stop()  # also the control plane and registry, before their address goes
    except Exception as error:
        figure = {"title": section, "error": f"{type(error).__name__}: {error}"}
        print(f"[bench] {section} failed: {error}", file=sys.stderr, flush=True)
    figure["section_seconds"] = round(time.monotonic() - began, 1)
    return figure, processes


def node_versions(node: Node) -> str:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"

    return (
        f"{first_line(['containerd', '--version'])}; {first_line(['runc', '--version'])}; "
        f"{first_line([str(node.bin_dir / 'kubelet'), '--version'])}"
    )


def main() -> int:
    scale = float(os.environ.get("BENCH_SCALE", "1") or 1)
    chosen = selected_sections()
    on_plane = [s for s in chosen if s in PLANE_SECTIONS]
    out = Path(os.environ.get("BENCH_OUT", str(BENCH_DIR / "results.json")))
    keep = env_flag("BENCH_KEEP")
    workdir = Path(tempfile.mkdtemp(prefix="imagestream-bench-"))
    began = time.monotonic()
    machine_info = machine()
    bin_dir = binary_dir(build=True)
    versions: dict[str, Any] = {
        "python": platform.python_version(),
        "etcd": etcd_version(bin_dir),
        "registry": "docker-registry (Debian, CNCF distribution)",
    }
    figures: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    try:
        if on_plane:
            figures, processes, versions["kube"] = measure_on_plane(
                workdir / "plane-run", bin_dir, scale, on_plane
            )
        for section in NODE_SECTIONS:
            if section in chosen:
                figures[section], node_processes = measure_pods(
                    workdir / f"{section}-run", scale, versions, section
                )
                processes.update(node_processes)
    finally:
        stop_all()
        if keep:
            print(f"[bench] work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": scale,
        "sections": chosen,
        "profiled": os.environ.get("BENCH_PROFILE", "").strip() not in ("", "0"),
        "kube_controller_manager": env_flag("BENCH_KCM"),
        "processes_mode": processes_mode(),
        "duration_s": round(time.monotonic() - began, 1),
        "machine": machine_info,
        "versions": versions,
        "figures": figures,
        "processes": processes,
        "goals_met": {name: bool(f.get("met")) for name, f in figures.items() if "met" in f},
    }
    out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(table(figures))
    box = machine_info
    print(
        f"\nscale {scale}; machine: {box['cpu']}, {box['cores']} cores, {box['memory_gib']} GiB; "
        f"kube {versions.get('kube', '?')}, etcd {versions['etcd']}, python {versions['python']}; "
        f"{results['duration_s']} s; results in {out}"
    )
    # Benchmarks, not tests: an unmet goal is reported, not a failure; a section that
    # could not be measured is.
    return 1 if any("error" in f for f in figures.values()) else 0


def measure_on_plane(
    workdir: Path, bin_dir: Path, scale: float, chosen: list[str]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The sections of issue 7, on a loopback control plane (no node); and its version."""
    workdir.mkdir(parents=True)
    plane = ControlPlane(
        workdir=workdir / "plane", bin_dir=bin_dir, with_controller_manager=env_flag("BENCH_KCM")
    )
    webhook_port = free_port()
    registry = Registry(
        workdir=workdir / "registry",
        notify=NotificationEndpoint(
            url=f"http://127.0.0.1:{webhook_port}/v1/events/distribution",
            token=TOKEN,
            timeout="5s",
            threshold=3,
            backoff="500ms",
        ),
        log_dir=workdir / "logs",
    )
    write_private(workdir / "token", TOKEN)
    try:
        plane.start()
        registry.start()
        kube_version = plane.version().get("gitVersion", "unknown")
        figures, processes = asyncio.run(run_sections(plane, registry, workdir, scale, chosen))
    finally:
        registry.stop()
        plane.stop()
    return figures, processes, kube_version


if __name__ == "__main__":
    sys.exit(main())
