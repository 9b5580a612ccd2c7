"""The default builder's script with Git sources and the Source (S2I) strategy.

The script runs in a real shell with real git, cloning a repository made here on the
local filesystem (git clones a path as it clones a URL); only `buildah` is a stand-in
that records its arguments (and answers `inspect` and `from` as buildah would), because
what these tests pin is what the script asks of buildah. That buildah does it is proven
on the real node (tests/node/test_build_sources.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.builds.jobs import BUILD_SCRIPT, EXIT_BUILD_FAILED, EXIT_FETCH_FAILED

pytestmark = pytest.mark.skipif(
    shutil.which("sh") is None or shutil.which("git") is None, reason="needs sh and git"
)

BASE = "registry.example/ns/base@sha256:" + "1" * 64
BUILDER = "registry.example/ns/s2i@sha256:" + "2" * 64
OUTPUT = "registry.example/ns/app:latest"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
MULTI_STAGE = (
    "FROM scratch AS notes\n"
    "COPY notes.txt /notes.txt\n"
    "  from nowhere.invalid/base:never AS final\n"
    "ARG GREETING\n"
    "COPY --from=notes /notes.txt /www/notes.txt\n"
)
FAKE_BUILDAH = """#!/bin/sh
for a in "$@"; do printf '%s\\n' "$a"; done >> "$CALLS"
echo --- >> "$CALLS"
case "$1" in
  inspect)
    case "$*" in
      *scripts-url*) printf '%s\\n' "${FAKE_SCRIPTS_URL:-}" ;;
      *destination*) echo ;;
      *User*) echo 1001 ;;
    esac
    ;;
  from) echo ctr-1 ;;
esac
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd)} | GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def repository(path: Path) -> dict[str, str]:
    """main and release, different files in web/; the commit ids by branch."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    commits = {}
    for branch, page in (("main", "from main"), ("release", "from release")):
        if branch != "main":
            git(path, "checkout", "--quiet", "-b", branch)
        (path / "web" / "build").mkdir(parents=True, exist_ok=True)
        (path / "web" / "build" / "Containerfile").write_text(MULTI_STAGE)
        (path / "web" / "notes.txt").write_text(page)
        git(path, "add", "--all")
        git(path, "commit", "--quiet", "-m", f"the {branch} page")
        commits[branch] = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    return commits


def run_script(
    tmp_path: Path, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """BUILD_SCRIPT with `variables`; its result and buildah's calls (workdir as <w>)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "buildah"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_BUILDAH)
    fake.chmod(0o755)
    environment = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "CALLS": str(calls),
        "OUTPUT_IMAGE": OUTPUT,
        "DIGEST_FILE": str(tmp_path / "digest"),
        "BUILD_NAME": "web-1",
        "BUILD_NAMESPACE": "team",
    } | variables
    ran = subprocess.run(
        ["sh", "-c", BUILD_SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    text = calls.read_text() if calls.exists() else ""
    workdir = str(tmp_path / "build")
    return ran, [c.replace(workdir, "<w>").splitlines() for c in text.split("---\n")[:-1]]


def test_a_git_source_is_cloned_at_its_ref_and_the_dockerfile_rewritten_as_openshift_does(
    tmp_path: Path,
) -> None:
    commits = repository(tmp_path / "repo")
    ran, calls = run_script(
        tmp_path,
        BUILD_STRATEGY="Docker",
        SOURCE_URI=str(tmp_path / "repo"),
        SOURCE_REF="release",
        SOURCE_CONTEXT_DIR="web",
        DOCKERFILE_PATH="build/Containerfile",
        FROM_IMAGE=BASE,
        BUILD_ARGS="GREETING=hello there",
        BUILD_ENV_NAMES="COLOUR QUOTE",
        COLOUR="blue",
        QUOTE='say "hi"',
        TLS_VERIFY="false",
    )
    assert ran.returncode == 0, ran.stderr
    assert f"Commit:\t{commits['release']} (the release page)" in ran.stdout
    assert (tmp_path / "build" / "source" / "web" / "notes.txt").read_text() == "from release"
    pull, build, push = calls
    assert pull == ["pull", "--tls-verify=false", BASE]
    assert build == [
        "build",
        "--tag",
        OUTPUT,
        "--file",
        "<w>/Dockerfile",
        "--tls-verify=false",
        "--build-arg",
        "GREETING=hello there",
        "<w>/source/web",
    ]
    assert push[0] == "push"
    env = 'ENV "COLOUR"="blue" "QUOTE"="say \\"hi\\""'
    assert (tmp_path / "build" / "Dockerfile").read_text().splitlines() == [
        "FROM scratch AS notes",  # not the last FROM: left as written
        env,
        "COPY notes.txt /notes.txt",
        f"FROM {BASE} AS final",  # the last FROM: the strategy's `from`, alias kept
        env,
        "ARG GREETING",
        "COPY --from=notes /notes.txt /www/notes.txt",
        'ENV "OPENSHIFT_BUILD_NAME"="web-1"',
        'ENV "OPENSHIFT_BUILD_NAMESPACE"="team"',
        f'ENV "OPENSHIFT_BUILD_SOURCE"="{tmp_path / "repo"}"',
        'ENV "OPENSHIFT_BUILD_REFERENCE"="release"',
        f'ENV "OPENSHIFT_BUILD_COMMIT"="{commits["release"]}"',
        'LABEL "io.openshift.build.name"="web-1"',
        'LABEL "io.openshift.build.namespace"="team"',
        f'LABEL "io.openshift.build.source-location"="{tmp_path / "repo"}"',
        f'LABEL "io.openshift.build.commit.id"="{commits["release"]}"',
        'LABEL "io.openshift.build.commit.ref"="release"',
        'LABEL "io.openshift.build.source-context-dir"="web"',
    ]


def test_without_a_ref_the_clone_is_shallow_and_the_default_branch(tmp_path: Path) -> None:
    commits = repository(tmp_path / "repo")
    ran, _ = run_script(
        tmp_path,
        SOURCE_URI=f"file://{tmp_path / 'repo'}",
        SOURCE_CONTEXT_DIR="web",
        DOCKERFILE_PATH="build/Containerfile",
    )
    assert ran.returncode == 0, ran.stderr
    source = tmp_path / "build" / "source"
    assert git(source, "rev-parse", "HEAD") == commits["main"]
    assert git(source, "rev-parse", "--is-shallow-repository") == "true"
    # No `from`: every FROM stays as written.
    assert (
        "  from nowhere.invalid/base:never AS final"
        in (tmp_path / "build" / "Dockerfile").read_text().splitlines()
    )


@pytest.mark.parametrize(
    ("variables", "code", "said"),
    [
        ({"SOURCE_REF": "no-such-branch"}, EXIT_FETCH_FAILED, "no-such-branch"),
        ({"SOURCE_URI": "/nowhere/at/all"}, EXIT_FETCH_FAILED, "/nowhere/at/all"),
        ({"SOURCE_CONTEXT_DIR": "../web"}, EXIT_BUILD_FAILED, "inside the source"),
        ({"SOURCE_CONTEXT_DIR": "gone"}, EXIT_BUILD_FAILED, "not a directory"),
        ({"DOCKERFILE_PATH": "/etc/passwd"}, EXIT_BUILD_FAILED, "inside the source"),
        ({"DOCKERFILE_PATH": "Dockerfile"}, EXIT_BUILD_FAILED, "no Dockerfile"),
    ],
)
def test_a_source_that_cannot_be_had_fails_before_buildah_runs(
    tmp_path: Path, variables: dict[str, str], code: int, said: str
) -> None:
    repository(tmp_path / "repo")
    given = {
        "SOURCE_URI": str(tmp_path / "repo"),
        "SOURCE_CONTEXT_DIR": "web",
        "DOCKERFILE_PATH": "build/Containerfile",
        "FROM_IMAGE": BASE,
    } | variables
    ran, calls = run_script(tmp_path, **given)
    assert ran.returncode == code, (ran.stdout, ran.stderr)
    assert said in ran.stderr
    assert calls == []


def test_source_strategy_runs_the_builders_assemble_and_commits_with_its_run(
    tmp_path: Path,
) -> None:
    commits = repository(tmp_path / "repo")
    ran, calls = run_script(
        tmp_path,
        BUILD_STRATEGY="Source",
        SOURCE_URI=str(tmp_path / "repo"),
        SOURCE_REF=commits["release"],
        SOURCE_CONTEXT_DIR="web",
        FROM_IMAGE=BUILDER,
        BUILD_ENV_NAMES="WELCOME",
        WELCOME="hello",
        FAKE_SCRIPTS_URL="image:///usr/libexec/s2i",
    )
    assert ran.returncode == 0, ran.stderr
    names = [call[0] for call in calls]
    assert names == ["pull", "inspect", "inspect", "inspect", "from", "copy", "run", "config",
                     "commit", "push"]  # fmt: skip
    by_name = dict(zip(names, calls, strict=True))
    assert by_name["from"] == ["from", "--quiet", BUILDER]
    assert by_name["copy"] == [
        "copy", "--quiet", "--chown", "1001:0", "ctr-1", "<w>/source/web", "/tmp/src",
    ]  # fmt: skip
    info = [
        "OPENSHIFT_BUILD_NAME=web-1",
        "OPENSHIFT_BUILD_NAMESPACE=team",
        f"OPENSHIFT_BUILD_SOURCE={tmp_path / 'repo'}",
        f"OPENSHIFT_BUILD_REFERENCE={commits['release']}",
        f"OPENSHIFT_BUILD_COMMIT={commits['release']}",
    ]
    env = [flag for pair in ["WELCOME=hello", *info] for flag in ("--env", pair)]
    assert by_name["run"] == [
        "run", "--user", "1001:0", *env, "ctr-1", "--", "/usr/libexec/s2i/assemble",
    ]  # fmt: skip
    config = by_name["config"]
    assert config[:3] == ["config", "--cmd", '["/usr/libexec/s2i/run"]']
    assert config[3 : 3 + len(env)] == env
    labels = dict(zip(config[3 + len(env) : -1 : 2], config[4 + len(env) : -1 : 2], strict=True))
    assert set(labels) == {"--label"}
    assert f"io.openshift.build.commit.id={commits['release']}" in config
    assert f"io.openshift.build.image={BUILDER}" in config
    assert config[-1] == "ctr-1"
    assert by_name["commit"] == ["commit", "--quiet", "ctr-1", OUTPUT]


@pytest.mark.parametrize(
    ("scripts_url", "said"),
    [
        ("", "no io.openshift.s2i.scripts-url label"),
        ("https://scripts.example/s2i", "only image:///<dir> is supported"),
    ],
)
def test_a_builder_image_without_image_scripts_fails_the_build(
    tmp_path: Path, scripts_url: str, said: str
) -> None:
    ran, calls = run_script(
        tmp_path, BUILD_STRATEGY="Source", FROM_IMAGE=BUILDER, FAKE_SCRIPTS_URL=scripts_url
    )
    assert ran.returncode == EXIT_BUILD_FAILED
    assert said in ran.stderr
    assert "from" not in [call[0] for call in calls]
