"""Which cluster, user and namespace a command run by a person talks to: kubectl's rules.

Invariant: from the same shell, an `imagestream` command reaches the same cluster, as the
same user, in the same namespace as `kubectl` (and `oc`) would:

- the files: `--kubeconfig` (that one file, which must exist); else every file listed in
  `$KUBECONFIG` that exists (merged: for each cluster, context and user name the first
  file that defines it wins, and `current-context` comes from the first file that sets
  it); else `~/.kube/config`; else, inside a pod, the service account;
- the context: `--context`, else `current-context`;
- the namespace: `-n/--namespace`, else the context's `namespace`, else `default` (in a
  pod: `$POD_NAMESPACE`, then the service account's namespace file).

Failure it prevents: a command that writes somewhere other than where `kubectl get`
looks. The first CLI read only `--kubeconfig` and `$KUBECONFIG`, ignored
`~/.kube/config` and the context's namespace, and wrote to `default`.

`choose_target` decides from already-read documents and is pure; `read_documents` and
`connect_as_user` (in `imagestream.kube.client`) do the reading and connecting.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagestream.kube import errors as kube_errors

DEFAULT_NAMESPACE = "default"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


KubeconfigError = kube_errors.KubeconfigError
"""One error for every way a kubeconfig can be unusable; it lives with the other API errors."""


@dataclass(frozen=True)
class Target:
    """Where a command connects: kubeconfig files and context, or the service account."""

    files: tuple[Path, ...]
    """The kubeconfig files, in precedence order; empty: the in-cluster service account."""
    context: str | None
    """The context to use (None in a pod)."""
    namespace: str
    origin: str = ""
    """Where the files were named (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`)."""


def kubeconfig_files(
    flag: Path | None, environ: Mapping[str, str], home: Path
) -> tuple[tuple[Path, ...], str]:
    """The files to read, and where they came from (for messages); pure but for `exists`.

    `$KUBECONFIG` replaces `~/.kube/config` entirely when it is set, as with kubectl:
    a missing file in it is skipped, and when none exists there is no kubeconfig.
    """
    if flag is not None:
        if not flag.exists():
            raise KubeconfigError(
                f"kubeconfig {flag} (from --kubeconfig) does not exist: no such file"
            )
        return (flag,), "--kubeconfig"
    listed = environ.get("KUBECONFIG", "")
    if listed:
        paths = [Path(os.path.expanduser(p)) for p in listed.split(os.pathsep) if p]
        return tuple(p for p in paths if p.exists()), "$KUBECONFIG"
    default = home / ".kube" / "config"
    return ((default,) if default.exists() else ()), "~/.kube/config"


def read_documents(files: Sequence[Path]) -> list[Mapping[str, Any]]:
    """The parsed kubeconfig files, in order; an unreadable one is an error naming it."""
    documents: list[Mapping[str, Any]] = []
    for path in files:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            # Never the content: a kubeconfig holds credentials.
            raise KubeconfigError(f"kubeconfig {path} cannot be read: not valid YAML") from error
        except OSError as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise KubeconfigError(f"kubeconfig {path} cannot be read: {first}") from error
        if not isinstance(loaded, Mapping):
            raise KubeconfigError(f"kubeconfig {path} is not a YAML mapping")
        documents.append(loaded)
    return documents


def _named(documents: Sequence[Mapping[str, Any]], section: str, name: str) -> Mapping[str, Any]:
    """The first entry called `name` in `section` across the files (kubectl's merge)."""
    for document in documents:
        for entry in document.get(section) or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                value = entry.get(section[:-1])  # contexts -> context, ...
                return value if isinstance(value, Mapping) else {}
    raise KubeconfigError(f'context "{name}" not found in the kubeconfig')


def choose_target(
    *,
    files: Sequence[Path],
    documents: Sequence[Mapping[str, Any]],
    context_flag: str | None,
    namespace_flag: str | None,
) -> Target:
    """The context and namespace for these kubeconfig documents and flags (pure)."""
    context = context_flag or next(
        (str(d["current-context"]) for d in documents if d.get("current-context")), None
    )
    if context is None:
        named = ", ".join(str(path) for path in files) or "the kubeconfig"
        raise KubeconfigError(
            f"{named} sets no current-context; pass --context "
            "(or run `kubectl config use-context NAME`)"
        )
    entry = _named(documents, "contexts", context)
    namespace = namespace_flag or str(entry.get("namespace") or "") or DEFAULT_NAMESPACE
    return Target(files=tuple(files), context=context, namespace=namespace)


def in_cluster_namespace(
    namespace_flag: str | None, environ: Mapping[str, str], service_account_dir: Path
) -> str:
    """`-n`, else `$POD_NAMESPACE`, else the service account's namespace, else `default`."""
    if namespace_flag:
        return namespace_flag
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return (service_account_dir / "namespace").read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def resolve_target(
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> Target:
    """kubectl's choice of files, context and namespace for this environment and flags."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    files, origin = kubeconfig_files(kubeconfig, environ, home)
    if files:
        chosen = choose_target(
            files=files,
            documents=read_documents(files),
            context_flag=context,
            namespace_flag=namespace,
        )
        return dataclasses.replace(chosen, origin=origin)
    in_pod = environ.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").exists()
    if not in_pod:
        where = (
            f"none of the files in $KUBECONFIG ({environ.get('KUBECONFIG')}) exists: no such file"
            if origin == "$KUBECONFIG"
            else "~/.kube/config does not exist"
        )
        raise KubeconfigError(f"no kubeconfig: {where}; set $KUBECONFIG or pass --kubeconfig")
    if context:
        raise KubeconfigError(f'context "{context}" not found: no kubeconfig (running in a pod)')
    return Target(
        files=(),
        context=None,
        namespace=in_cluster_namespace(namespace, environ, service_account_dir),
    )
