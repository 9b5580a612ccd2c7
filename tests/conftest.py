"""Shared test configuration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

# Hypothesis times every example (200 ms by default) and fails a slow one: a timed
# assertion, which `make test` never makes (speed is measured in bench/). On a loaded
# two-core machine a parser example took longer and failed a correct test.
settings.register_profile(
    "imagestream", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("imagestream")

FAULTS_DIR = Path(__file__).parent / "faults"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`tests/faults` (minutes of injected faults) runs with `make test-faults`, or when named."""
    if collection_path != FAULTS_DIR or os.environ.get("IMAGESTREAM_FAULT_TESTS") == "1":
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return None if any(path.is_relative_to(FAULTS_DIR) for path in named) else True


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """A test that configures logging to a captured stream must not leave it configured:
    pytest closes that stream, and later log calls would fail."""
    yield
    structlog.reset_defaults()
