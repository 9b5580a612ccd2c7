"""The chart's README values table is generated, current, and documents every value."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "values_table.py"
CHART = REPO_ROOT / "charts" / "imagestream-controller"


def test_the_readme_values_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr + "\nrun: scripts/values_table.py"


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    for name in ("values.yaml", "values.schema.json", "README.md"):
        (tmp_path / name).write_text((CHART / name).read_text())
    return tmp_path


def _run(chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--chart", str(chart), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_uncommented_value_is_an_error(chart_copy: Path) -> None:
    values = chart_copy / "values.yaml"
    values.write_text(
        values.read_text().replace(
            "  # Image tag; empty means the chart's appVersion, which is the project's\n"
            "  # version (pyproject.toml) and the Dockerfile's VERSION.\n",
            "",
        )
    )
    result = _run(chart_copy)
    assert result.returncode == 1
    assert "image.tag: no comment above it" in result.stderr


def test_a_value_missing_from_the_schema_is_an_error(chart_copy: Path) -> None:
    schema_path = chart_copy / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    del schema["properties"]["logging"]["properties"]["level"]
    schema_path.write_text(json.dumps(schema))
    result = _run(chart_copy)
    assert result.returncode == 1
    assert "logging.level: in values.yaml but not in values.schema.json" in result.stderr


def test_a_stale_table_is_found_and_rewritten(chart_copy: Path) -> None:
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text().replace("Number of pods; at least two", "Pods; two", 1))
    assert _run(chart_copy, "--check").returncode == 1
    assert _run(chart_copy).returncode == 0
    assert "Pods; two" in (chart_copy / "README.md").read_text()
    assert _run(chart_copy, "--check").returncode == 0


def test_the_charts_app_version_is_the_package_version() -> None:
    """The chart's default image tag is its appVersion: the version the image is built from."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
