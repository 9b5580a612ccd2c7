"""Which processes are alive, by PID, read from /proc (no process names involved)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` in the process tree."""
    children: dict[int, list[int]] = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_path.parent.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def wait_all_gone(pids: set[int], *, timeout_s: float) -> set[int]:
    """Wait until none of `pids` is alive; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if is_alive(pid)}
        if not alive:
            return set()
        time.sleep(0.1)
    return {pid for pid in pids if is_alive(pid)}


READY_BUDGET_S = 300.0 + float(os.environ.get("IMAGESTREAM_NODE_LOCK_WAIT_S", "0"))
"""Start-up (with a node: the operator's registry pod too), after any wait for the node."""


def read_ready_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON of `imagestream dev`'s READY line, within READY_BUDGET_S; fail if it ends first."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_BUDGET_S
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            assert process.poll() is None, f"imagestream dev exited with {process.returncode}"
            continue
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"imagestream dev closed stdout (exit {process.wait()})")
        if line.startswith("READY "):
            return dict(json.loads(line.removeprefix("READY ")))
    raise AssertionError(f"no READY line within {READY_BUDGET_S}s")
