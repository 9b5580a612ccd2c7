"""Finding a kubectl of the server's version for tests that drive the cluster as a user does."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


async def kubectl_binary() -> str:
    """A kubectl of the server's version (k8s.io/kubernetes of localkube/kubernetes/go.mod).

    `localkube/build.sh node` builds it where that target exists; its cache directory is the
    same either way. A kubectl on PATH is the last resort (undo has behaved the same since
    apps/v1).
    """
    process = await asyncio.create_subprocess_exec(
        str(REPO / "localkube" / "build.sh"),
        "node",
        "--print-dir",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    candidates = [Path(out.decode().strip()) / "kubectl"] if process.returncode == 0 else []
    cache = Path(
        os.environ.get("IMAGESTREAM_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "imagestream-controller"
    )
    version = next(
        line.split()[1]
        for line in (REPO / "localkube" / "kubernetes" / "go.mod").read_text().splitlines()
        if line.strip().startswith("k8s.io/kubernetes ")
    )
    candidates += [
        Path(p) for p in sorted(glob.glob(f"{cache}/k8s-bins/node-kube-{version}-*/kubectl"))
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    pytest.fail("no kubectl: build it with `localkube/build.sh node` (or put one on PATH)")
