"""The helm and tilt binaries built by localkube/build.sh; helm run with its state out of $HOME.

Shared by the chart tests on the bare control plane (tests/integration/
test_chart.py) and the in-cluster tier (tests/incluster/), so both run the
same helm the same way: the failure this prevents is a test that passes with
a helm, or a helm home, other than the one the other tier checked.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "imagestream-controller"
BUILD_SCRIPT = REPO_ROOT / "localkube" / "build.sh"
HELM_TIMEOUT_S = 120.0
HELM_BUILD_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class Helm:
    """The helm binary from localkube/build.sh, with its state kept out of $HOME."""

    binary: Path
    home: Path

    def run(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout_s: float = HELM_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        argv = [str(self.binary), *args]
        if kubeconfig is not None:
            argv += ["--kubeconfig", str(kubeconfig)]
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def template(self, *args: str, release: str = "rel", namespace: str = "ns") -> list[Any]:
        rendered = self.run("template", release, str(CHART), "--namespace", namespace, *args)
        return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def tool(name: str) -> Path:
    """A binary localkube/build.sh makes (`helm`, `tilt`), built first if it is missing."""
    directory = Path(
        subprocess.run(
            [str(BUILD_SCRIPT), name, "--print-dir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    if not (directory / name).exists():  # `make test` builds them first; a bare pytest may not
        subprocess.run(
            [str(BUILD_SCRIPT), name],
            check=True,
            capture_output=True,
            timeout=HELM_BUILD_TIMEOUT_S,
        )
    return directory / name


def helm_dir() -> Path:
    """The directory holding the cached helm binary."""
    return tool("helm").parent
