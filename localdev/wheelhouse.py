"""The wheels our image's `pip install` needs, downloaded on the host, for builds that cannot.

The Dockerfile's builder stage runs `pip wheel .` and `pip install` against
PyPI. Inside a build on this machine that fails: in a pod there is no route
out at all, and on the host pip inside the build does not trust the TLS
proxy in front of PyPI ("CERTIFICATE_VERIFY_FAILED: self-signed certificate
in certificate chain"). So the host's pip, which does, downloads every wheel
once: the runtime dependencies of `pyproject.toml` and its build backend
(setuptools, wheel), pinned by `constraints.txt`, for CPython 3.11 on
x86_64 glibc (the Debian python-base image). A build then reads them with
two bind mounts and no change to the Dockerfile:

    buildah build -v WHEELS:/wheels:ro -v PIP_CONF:/etc/pip.conf:ro ...

(`PIP_CONF` says `no-index`, `find-links = /wheels`; pip reads
/etc/pip.conf in every RUN, also in its build-isolation subprocess.) Neither
mount ends up in a layer. Cached in `~/.cache/imagestream-controller/wheels/
<hash of the requirements and constraints>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from localdev.controlplane import REPO_ROOT
from localdev.debian_images import cache_root

PYTHON_VERSION = "3.11"  # Debian bookworm's python3, what python-base holds
# Bookworm's glibc is 2.36; pip does not widen an explicit --platform to
# older manylinux tags, so every tag the wheel may carry is listed.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
PIP_CONF = "[global]\nno-index = true\nfind-links = /wheels\n"
DOWNLOAD_TIMEOUT_S = 600.0


def requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """What `pip wheel .` and `pip install` of the project fetch: build backend and runtime."""
    data = tomllib.loads(pyproject.read_text())
    return [*data["build-system"]["requires"], "wheel", *data["project"]["dependencies"]]


def wheelhouse(
    pyproject: Path = REPO_ROOT / "pyproject.toml",
    constraints: Path = REPO_ROOT / "constraints.txt",
    *,
    root: Path | None = None,
) -> Path:
    """A directory of wheels (cached); `pip download` from PyPI on a miss."""
    wanted = requirements(pyproject)
    key = hashlib.sha256(
        json.dumps(
            {
                "requirements": wanted,
                "constraints": constraints.read_text(),
                "python": PYTHON_VERSION,
                "platforms": PLATFORMS,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    final = (root or cache_root().parent / "wheels") / key
    if (final / "pip.conf").is_file():
        return final
    temporary = final.with_name(f".tmp-{key}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--dest",
                str(temporary),
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
                "--constraint",
                str(constraints),
                *wanted,
            ],
            check=True,
            timeout=DOWNLOAD_TIMEOUT_S,
        )
        (temporary / "pip.conf").write_text(PIP_CONF)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final
