"""Nothing the harness starts outlives it: not on stop, and not when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from localdev.controlplane import ControlPlane, binary_dir
from localdev.registry import Registry
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
