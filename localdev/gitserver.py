"""A Git server inside the local cluster, so builder pods clone as from a real Git host.

What runs: the `git-server` image made from Debian packages
(`localdev.debian_images.GIT_SERVER`: git 2.39) in a pod, `git daemon` serving
`/srv/git/<repo>.git` over the git:// protocol on port 9418, behind a Service. A Build's
`source.git.uri` is then `git://<service>.<namespace>.svc.cluster.local/<repo>.git`: the
builder pod resolves it through CoreDNS and reaches the pod through kube-proxy's Service
rules, as it would reach a Git host.

Why `git daemon`, not `git http-backend` (docs/images-from-debian.md#the-git-server): the
daemon is in the `git` package and speaks Git's smart protocol itself (clone, shallow
fetch, push); http-backend is a CGI program and would need a web server in the image as
well. What git:// lacks (TLS, authentication) does not matter on a cluster network
no one else is on; a real cluster's Git host is https:// or ssh://, which the builder's
git speaks just the same.

How a repository gets its content: the pod starts with empty bare repositories and
`--enable=receive-pack`; the test (or a user) pushes over git:// from the host to the
pod's address (`push_branch`), with git, as to any Git host. Anyone who reaches the pod
may push: this is the local system's server, never a real cluster's.

Invariant: a repository's commits are made from their inputs only (fixed author, committer
and dates), so the same files give the same commit id on every run.
Failure it prevents: builds that clone from the host's filesystem or a context packed by the
test, which would never exercise a clone over the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from localdev import debian_images
from localdev.images import skopeo_push

GIT_PORT = 9418
REPOSITORY = "localdev/git-server"
GIT_TIMEOUT_S = 60.0
SERVE_DIR = "/srv/git"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "imagestream localdev",
    "GIT_AUTHOR_EMAIL": "localdev@imagestream.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "imagestream localdev",
    "GIT_COMMITTER_EMAIL": "localdev@imagestream.invalid",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def push_git_server(registry: str) -> str:
    """`<registry>/localdev/git-server@<digest>`: the image, made (or cached) and pushed."""
    built = debian_images.build(debian_images.GIT_SERVER)
    skopeo_push(built.image, f"{registry}/{REPOSITORY}:latest")
    return f"{registry}/{REPOSITORY}@{built.digest}"


def manifests(name: str, image: str, repositories: Sequence[str]) -> list[dict[str, Any]]:
    """The pod (`git daemon` serving empty bare `repositories`) and its Service, `name`.

    Restricted pod security: non-root, no capabilities, RuntimeDefault seccomp, a read-only
    root; the repositories live in an emptyDir.
    """
    for repository in repositories:
        if not repository or "/" in repository or repository.startswith("."):
            raise ValueError(f"repository name {repository!r}: one path segment, no leading dot")
    init = " && ".join(
        f"git init --quiet --bare --initial-branch=main {SERVE_DIR}/{r}.git" for r in repositories
    )
    daemon = (
        f"exec git daemon --reuseaddr --verbose --informative-errors --export-all"
        f" --enable=receive-pack --port={GIT_PORT} --base-path={SERVE_DIR} {SERVE_DIR}"
    )
    labels = {"app": name}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": debian_images.GIT_USER.uid,
                "runAsGroup": debian_images.GIT_USER.uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "git",
                    "image": image,
                    "command": ["/bin/sh", "-c", f"{init} && {daemon}"],
                    "env": [{"name": "HOME", "value": SERVE_DIR}],
                    "ports": [{"name": "git", "containerPort": GIT_PORT}],
                    "readinessProbe": {
                        "tcpSocket": {"port": GIT_PORT},
                        "periodSeconds": 1,
                        "failureThreshold": 5,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                    "volumeMounts": [{"name": "repositories", "mountPath": SERVE_DIR}],
                }
            ],
            "volumes": [{"name": "repositories", "emptyDir": {}}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "git", "port": GIT_PORT, "targetPort": GIT_PORT}],
        },
    }
    return [pod, service]


def repository_url(name: str, namespace: str, repository: str) -> str:
    """The clone URL a pod uses: by the Service's DNS name, as a Git host's."""
    return f"git://{name}.{namespace}.svc.cluster.local/{repository}.git"


def _git(*args: str, cwd: Path) -> str:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        **_IDENTITY,
    }
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def push_branch(url: str, branch: str, files: Mapping[str, str], *, message: str) -> str:
    """Commit `files` (path: text) as `branch`, one root commit, and push it to `url`;
    the commit id.

    `url` is what the host reaches (`git://<pod IP>/<repo>.git`). Made in a private
    temporary directory, removed after.
    """
    if shutil.which("git") is None:
        raise RuntimeError("git is missing on the host (apt-get install git)")
    work = Path(tempfile.mkdtemp(prefix="gitserver-"))
    try:
        _git("init", "--quiet", "--initial-branch", branch, ".", cwd=work)
        for path, text in files.items():
            target = work / path
            if not target.resolve().is_relative_to(work.resolve()) or ".git" in Path(path).parts:
                raise ValueError(f"file {path!r} is outside the repository")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        _git("add", "--all", cwd=work)
        _git("commit", "--quiet", "--message", message, cwd=work)
        _git("push", "--quiet", url, f"HEAD:refs/heads/{branch}", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
