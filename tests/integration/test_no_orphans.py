"""Nothing the harness starts outlives it: not on stop, and not when it is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localdev.controlplane import ControlPlane, binary_dir
from localdev.node import (
    NODE_BINARIES,
    STATE_PATH,
    Node,
    NodeState,
    node_binary_dir,
    pids_mentioning,
)
from localdev.processes import ProcessFailedError
from localdev.registry import Registry
from tests.integration.nodecluster import (
    HostSnapshot,
    NodeCluster,
    deploy_app,
    node_cluster,
    skip_unless_node_can_run,
)
from tests.integration.proctree import is_alive, wait_all_gone

GONE_BUDGET_S = 20.0


def test_stopping_the_control_plane_and_registry_leaves_no_process(tmp_path: Path) -> None:
    plane = ControlPlane(workdir=tmp_path / "plane", bin_dir=binary_dir(build=True))
    registry = Registry(workdir=tmp_path / "registry")
    try:
        plane.start()
        registry.start()
        pids = {process.pid for process in plane.processes}
        assert registry.process is not None
        pids.add(registry.process.pid)
        assert len(pids) == 4
        assert all(is_alive(pid) for pid in pids)
    finally:
        registry.stop()
        plane.stop()
    assert wait_all_gone(pids, timeout_s=GONE_BUDGET_S) == set()


def test_children_die_when_the_harness_is_killed(tmp_path: Path) -> None:
    """A test runner killed with SIGKILL runs no cleanup; the kernel stops its children."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from localdev.registry import Registry
        registry = Registry(workdir=Path({str(tmp_path / "registry")!r})).start()
        print(registry.process.pid, flush=True)
        time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as harness:
        try:
            assert harness.stdout is not None
            registry_pid = int(harness.stdout.readline())
            assert is_alive(registry_pid)
            os.kill(harness.pid, signal.SIGKILL)
            harness.wait(timeout=GONE_BUDGET_S)
            assert wait_all_gone({registry_pid}, timeout_s=GONE_BUDGET_S) == set()
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()


# --- a real node ---------------------------------------------------------------------------
# It makes far more than processes: shims that outlive containerd, containers,
# mounts, netns, bridges, iptables rules, sysctls, cgroups. All of it goes on
# stop(), and, when the harness is SIGKILLed, the node's reaper undoes it.

NODE_REAPED_BUDGET_S = 90.0


def _running_app(cluster: NodeCluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "namespace", "orphans")
    digest = cluster.push_app(tmp_path, "orphans/app", "orphans")
    deploy_app(cluster, "orphans", "app", f"{cluster.registry.host}/orphans/app@{digest}")


def test_stopping_a_node_leaves_nothing(tmp_path: Path) -> None:
    skip_unless_node_can_run()
    before = HostSnapshot.take()
    with node_cluster(tmp_path) as cluster:
        _running_app(cluster, tmp_path)
        pids = cluster.pids()
        # containerd, kubelet, scheduler, kube-proxy, the reaper, 2 shims
        # (CoreDNS, app), 2 pause + 2 containers at least.
        assert len(pids) >= 11, pids
        assert all(is_alive(pid) for pid in pids)
        during = HostSnapshot.take()
        assert during.differences(before), "the node changed nothing?"
    assert wait_all_gone(pids, timeout_s=GONE_BUDGET_S) == set()
    assert HostSnapshot.take().differences(before) == []
    assert not STATE_PATH.exists()


def test_a_node_is_undone_when_the_harness_is_killed(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the kernel stops our children, the reaper the rest."""
    skip_unless_node_can_run()
    before = HostSnapshot.take()
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from tests.integration.nodecluster import node_cluster
        from tests.integration.test_no_orphans import _running_app
        workdir = Path({str(tmp_path)!r})
        with node_cluster(workdir) as cluster:
            _running_app(cluster, workdir)
            print(json.dumps({{
                "pids": sorted(cluster.pids()),
                "reaper": cluster.node.state.reaper_pid,
                "plane": [p.pid for p in cluster.plane.processes],
            }}), flush=True)
            time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as harness:
        try:
            assert harness.stdout is not None
            line = harness.stdout.readline()
            if not line:
                pytest.fail("the harness died before the node was up")
            started = json.loads(line)
            pids = set(started["pids"]) | set(started["plane"])
            assert all(is_alive(pid) for pid in pids)
            os.kill(harness.pid, signal.SIGKILL)
            harness.wait(timeout=GONE_BUDGET_S)
            # The reaper exits once it has undone the node.
            assert wait_all_gone({started["reaper"]}, timeout_s=NODE_REAPED_BUDGET_S) == set()
            assert wait_all_gone(pids, timeout_s=GONE_BUDGET_S) == set()
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()
    assert HostSnapshot.take().differences(before) == []
    assert not STATE_PATH.exists()


def test_a_half_failed_node_start_leaves_nothing(tmp_path: Path) -> None:
    """The kubelet dies at once: start() fails after guard, links and containerd exist."""
    skip_unless_node_can_run()
    real = node_binary_dir(build=True)
    broken = tmp_path / "bin"
    broken.mkdir()
    for name in NODE_BINARIES:
        (broken / name).symlink_to(real / name)
    (broken / "kubelet").unlink()
    (broken / "kubelet").write_text("#!/bin/sh\necho 'kubelet: broken on purpose' >&2\nexit 3\n")
    (broken / "kubelet").chmod(0o755)
    before = HostSnapshot.take()
    node = Node(workdir=tmp_path / "node", bin_dir=broken, with_dns=False).prepare()
    plane = ControlPlane(
        workdir=tmp_path / "plane", bin_dir=binary_dir(build=True), **node.controlplane_options()
    )
    registry = Registry(workdir=tmp_path / "registry", address=node.registry_address)
    try:
        plane.start()
        registry.start()
        with pytest.raises(ProcessFailedError, match="kubelet exited with code 3"):
            node.start(plane, registry)
        assert node.state is None  # start() already undid itself
    finally:
        node.stop()
        registry.stop()
        plane.stop()
    assert HostSnapshot.take().differences(before) == []
    assert not STATE_PATH.exists()


def test_the_next_node_undoes_a_run_whose_reaper_died_too(tmp_path: Path) -> None:
    """Harness and reaper both SIGKILLed: the state file lets the next prepare() undo it."""
    skip_unless_node_can_run()
    before = HostSnapshot.take()
    script = textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from tests.integration.nodecluster import node_cluster
        from tests.integration.test_no_orphans import _running_app
        workdir = Path({str(tmp_path / "crashed")!r})
        with node_cluster(workdir) as cluster:
            _running_app(cluster, workdir)
            print(json.dumps({{"reaper": cluster.node.state.reaper_pid}}), flush=True)
            time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as harness:
        try:
            assert harness.stdout is not None
            line = harness.stdout.readline()
            if not line:
                pytest.fail("the harness died before the node was up")
            os.kill(json.loads(line)["reaper"], signal.SIGKILL)
            os.kill(harness.pid, signal.SIGKILL)
            harness.wait(timeout=GONE_BUDGET_S)
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()
    stale = NodeState.load()
    assert stale is not None, "the crashed run left no state file"
    # Its shims and containers outlive everything that was killed.
    assert pids_mentioning(str(stale.run_dir) + "/")

    node = Node(workdir=tmp_path / "next", bin_dir=node_binary_dir(build=True)).prepare()
    node.stop()

    assert not pids_mentioning(str(stale.run_dir) + "/")
    assert HostSnapshot.take().differences(before) == []
    assert not STATE_PATH.exists()
