"""The unit tier: no control plane, no network, so every test is short; a hung one must fail
in seconds, not at the 300 s that pyproject.toml gives the integration tier."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parent
UNIT_TIMEOUT_SECONDS = 10.0
"""Five times the slowest unit test today (a 400-example property, about 2 s)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each unit test `timeout(UNIT_TIMEOUT_SECONDS)`.

    This hook sees every collected item, the integration tier's too when both run, so it
    marks only the items under tests/unit. A test's own `timeout` mark wins, and so does an
    explicit `--timeout` (for example `--timeout=0` while stepping through a test).
    """
    if config.getoption("timeout") is not None:
        return
    for item in items:
        if item.path.is_relative_to(UNIT_DIR) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_SECONDS))
