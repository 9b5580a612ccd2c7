"""Running `imagestream` commands as a person does: a subprocess, a kubeconfig, a HOME."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import System


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


async def imagestream(
    *args: str,
    kubeconfig: Path | None,
    home: Path,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 90.0,
) -> Ran:
    """`imagestream ARGS` with `$KUBECONFIG` (None: unset) and `$HOME`, nothing else of ours."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IMAGESTREAM_") and k not in ("KUBECONFIG", "HOME")
    }
    environment["HOME"] = str(home)
    if kubeconfig is not None:
        environment["KUBECONFIG"] = str(kubeconfig)
    environment |= extra_env or {}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imagestream.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


def kubeconfig_of(system: System) -> Path:
    path = system.running.settings.kubeconfig
    assert path is not None
    return path


def assert_one_error_line(ran: Ran) -> None:
    """A failed command: exit 1, one line on stderr, no traceback."""
    assert ran.code == 1, (ran.stdout, ran.stderr)
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert lines[0].startswith(("error: ", "Error from server (")), lines[0]
