"""Child processes that never outlive the process that started them.

Invariant: every process started here is stopped by its PID, and only by its
PID: on `stop()`, on interpreter exit (atexit), and, if we are killed with
SIGKILL and get no chance to clean up, by the kernel (PR_SET_PDEATHSIG), so a
failed or interrupted test run cannot leave an etcd or a registry behind to
hold ports and confuse the next run.

NB: PR_SET_PDEATHSIG fires when the *thread* that forked the child exits.
Start processes from the main thread (or one that lives as long as they do).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from localdev.private import open_private_append

_PR_SET_PDEATHSIG = 1
_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessFailedError(RuntimeError):
    """A managed process exited while we still needed it.

    `str()` carries the last lines of its log; `reason` is the one line a
    command prints (its last log message).
    """

    def __init__(self, *, name: str, code: int, log_path: Path, tail: str) -> None:
        super().__init__(f"{name} exited with code {code}; last lines of {log_path}:\n{tail}")
        self.name = name
        self.code = code
        self.log_path = log_path
        self.reason = last_message(tail)


_LOGFMT_MSG_RE = re.compile(r'\bmsg="((?:[^"\\]|\\.)*)"')


def last_message(log_text: str) -> str:
    """The last non-empty line of a log, as a person would read it.

    distribution writes logfmt (`level=fatal msg="listen tcp ...: bind: address already in
    use"`) and etcd JSON (`{"msg": ...}`): their message, not the whole line.
    """
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and isinstance(record.get("msg"), str):
                    detail = record.get("error")
                    return str(record["msg"]) + (f": {detail}" if isinstance(detail, str) else "")
        match = _LOGFMT_MSG_RE.search(line)
        if match:
            return match.group(1).replace('\\"', '"')
        return line[:300]
    return "(nothing in its log)"


class ManagedProcess:
    """One child process with its output in a log file."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: a process may log a secret (distribution logs its notification
        # headers, the webhook token, at level info).
        with open_private_append(self.log_path) as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                # Its own process group, so a Ctrl-C in the terminal reaches us
                # first and we stop children in order (API server before etcd).
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        with _live_lock:
            _live[self._popen.pid] = self
        return self

    def poll(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def check_running(self) -> None:
        code = self.poll()
        if code is not None:
            raise ProcessFailedError(
                name=self.name, code=code, log_path=self.log_path, tail=self.tail()
            )

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def send_signal(self, sig: int) -> None:
        if self._popen is not None and self._popen.poll() is None:
            os.kill(self._popen.pid, sig)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL; always reaps the child."""
        popen = self._popen
        if popen is None:
            return
        try:
            if popen.poll() is None:
                # A paused process (fault tests send SIGSTOP) ignores SIGTERM
                # until continued.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGCONT)
                    os.kill(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(popen.pid, signal.SIGKILL)
                    popen.wait(timeout=timeout_s)
        finally:
            with _live_lock:
                _live.pop(popen.pid, None)


def wait_until(
    condition_name: str,
    check: object,
    *,
    timeout_s: float,
    interval_s: float = 0.1,
    processes: Sequence[ManagedProcess] = (),
) -> None:
    """Poll `check()` until it returns true; fail early if a process died."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for process in processes:
            process.check_running()
        try:
            if check():
                return
        except Exception as error:  # the service is not up yet; keep polling
            last_error = error
        time.sleep(interval_s)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"{condition_name} not reached within {timeout_s}s{detail}")


def live_pids() -> list[int]:
    """PIDs of processes started here that have not been stopped yet."""
    with _live_lock:
        return list(_live)


def stop_all() -> None:
    """Stop every process still running, newest first."""
    with _live_lock:
        processes = list(_live.values())
    for process in reversed(processes):
        process.stop()


atexit.register(stop_all)
