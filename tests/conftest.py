"""Shared test configuration: every test has a time budget (pytest-timeout)."""
