"""Shared test configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """A test that configures logging to a captured stream must not leave it configured:
    pytest closes that stream, and later log calls would fail."""
    yield
    structlog.reset_defaults()
