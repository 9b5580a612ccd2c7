"""The pure parts of localdev.project_image: what the build context holds, and references."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev.controlplane import REPO_ROOT
from localdev.project_image import context_files, dockerignore_rules, dockerignored, repository_of

OURS = dockerignore_rules((REPO_ROOT / ".dockerignore").read_text())


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("controller/app.py", False),
        ("webhook/config.py", False),
        ("controller/__pycache__/app.cpython-311.pyc", True),
        ("imagestream/x.pyc", True),
        ("tests/unit/test_cli.py", True),
        ("docs/architecture.md", True),
        ("charts/imagestream-controller/values.yaml", True),
        ("Makefile", True),
        ("localdev/node.py", True),  # the image holds only what runs in production
    ],
)
def test_our_dockerignore(path: str, ignored: bool) -> None:
    assert dockerignored(path, OURS) is ignored


def test_the_last_matching_rule_decides() -> None:
    rules = dockerignore_rules("# comment\n\n*\n!src/\nsrc/secret.txt\n")
    assert dockerignored("src/a.py", rules) is False
    assert dockerignored("src/secret.txt", rules) is True
    assert dockerignored("other.txt", rules) is True


def test_the_context_of_this_repository() -> None:
    files = context_files(REPO_ROOT)
    assert "Dockerfile" in files and ".dockerignore" in files  # read by the builder itself
    assert {name.split("/")[0] for name in files} <= {
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "imagestream",
        "controller",
        "webhook",
    }
    assert all((REPO_ROOT / name).is_file() for name in files)
    assert not any(Path(name).suffix == ".pyc" for name in files)


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("10.244.255.1:5000/tilt/app:tilt-0123", "10.244.255.1:5000/tilt/app"),
        ("10.244.255.1:5000/tilt/app", "10.244.255.1:5000/tilt/app"),
        ("localhost:30500/a/b/c:v1", "localhost:30500/a/b/c"),
        ("app:latest", "app"),
    ],
)
def test_repository_of(reference: str, repository: str) -> None:
    assert repository_of(reference) == repository
