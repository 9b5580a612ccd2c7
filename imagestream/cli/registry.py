"""`imagestream registry login`: the user's cluster token as registry credentials (oc's command).

The integrated registry accepts a cluster token as the password of basic auth (its token
service asks the API server who the token is: docs/openshift-behaviours.md#behaviour-33),
so logging in is writing one docker config entry, `auths[HOST].auth = base64("user:TOKEN")`,
with oc's user name `user` (any name does).

- the token: `--token`, else the one the kubeconfig's current user authenticates with; a
  user who authenticates with a client certificate has none, and is told so (oc's rule: a
  registry takes no client certificates);
- the host: `--registry`, else the cluster image configuration's (`images.config.openshift.io/
  cluster`) first external hostname (reachable from outside, as oc prefers the public one),
  else its `status.internalRegistryHostname`; a user who may not read that object (most
  users, as on OpenShift) gets oc's own rule: the first ImageStream of the namespace, else
  of `openshift`, its `status.publicDockerImageRepository`'s host, else its
  `status.dockerImageRepository`'s;
- the file: `--to` (`-` prints it instead), else `$REGISTRY_AUTH_FILE` (then the only file
  skopeo and podman read), else `~/.docker/config.json` (oc's default, which docker reads and
  skopeo and podman read when their own auth.json has no entry for the host).

Invariants: every other entry and key of an existing file is kept; the file is 0600 (its
directory 0700 when made here) from its first byte, and replaced atomically, so an interrupted
login never leaves a truncated file of credentials; the token is printed nowhere (`--to -`
prints the file, which the user asked for). A file that is not a docker config is refused and
left as it is.

`login_entry`, `updated_config`, `registry_host` and `default_auth_file` decide (pure);
`run` reads and writes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from imagestream.cli import common
from imagestream.cli.common import CommandError
from imagestream.cli.pullspec import parse
from imagestream.image_config import parse_image_config
from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound, Terminal
from imagestream.kube.resources import IMAGE_CONFIGS, IMAGESTREAMS

USERNAME = "user"
"""What oc writes; the token service ignores the user name."""
CLUSTER_CONFIG = "cluster"
OPENSHIFT_NAMESPACE = "openshift"
"""Where oc looks for a stream when the current namespace has none."""
T = TypeVar("T")


def login_entry(token: str, username: str = USERNAME) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{token}".encode()).decode()}


def updated_config(existing: str, host: str, entry: Mapping[str, str], where: str) -> str:
    """The docker config `existing` with `auths[host]` replaced by `entry` (CommandError if
    `existing` is not a docker config; its content is never quoted: it holds credentials)."""
    try:
        config = json.loads(existing) if existing.strip() else {}
    except json.JSONDecodeError:
        raise CommandError(f"{where} is not a docker config file (not valid JSON)") from None
    if not isinstance(config, dict):
        raise CommandError(f"{where} is not a docker config file (not a JSON object)")
    auths = config.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise CommandError(f"{where} is not a docker config file: `auths` is not an object")
    auths[host] = dict(entry)
    return json.dumps(config, indent=2) + "\n"


def registry_host(
    flag: str | None,
    image_config: Mapping[str, Any] | None,
    streams: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The host to log in to: the flag, else the cluster's public name, else its internal
    one, else the host of the first stream's public, else internal, repository."""
    if flag:
        return flag
    config = parse_image_config(image_config)
    host = next(iter(config.external_hostnames), "") or config.internal_hostname
    if not host and streams:
        host = stream_registry_host(streams[0])
    if not host:
        raise CommandError(
            "the integrated registry's hostname is not known (images.config.openshift.io/"
            "cluster has no status.internalRegistryHostname, or cannot be read, and no image "
            "stream names it): pass --registry HOST"
        )
    return host


def stream_registry_host(stream: Mapping[str, Any]) -> str:
    """oc's `findPublicHostname` for one stream: the registry of its public repository,
    else of its internal one."""
    status = stream.get("status")
    if not isinstance(status, Mapping):
        return ""
    repository = str(
        status.get("publicDockerImageRepository") or status.get("dockerImageRepository") or ""
    )
    try:
        return parse(repository).registry if repository else ""
    except ValueError:
        return ""


def default_auth_file(environ: Mapping[str, str], home: Path) -> Path:
    if environ.get("REGISTRY_AUTH_FILE"):
        return Path(environ["REGISTRY_AUTH_FILE"])
    return home / ".docker" / "config.json"


def write_private_atomically(path: Path, content: str) -> None:
    """`content` into `path`, 0600 from the first byte, by a rename (never half-written)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:  # mkstemp makes the file 0600
        with os.fdopen(descriptor, "w") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def _readable(read: Awaitable[T]) -> T | None:
    """`read`'s answer; None when it is not there, not served, or not readable by this user."""
    try:
        return await read
    except NotFound:
        return None
    except Terminal as error:
        if error.status == 403:
            return None
        raise


async def _host(kube: Kube, namespace: str, flag: str | None) -> str:
    if flag:
        return flag
    image_config = await _readable(kube.get(IMAGE_CONFIGS, None, CLUSTER_CONFIG))
    streams: list[Mapping[str, Any]] = []
    config = parse_image_config(image_config)
    if not config.external_hostnames and not config.internal_hostname:
        for where in dict.fromkeys((namespace, OPENSHIFT_NAMESPACE)):
            listed = await _readable(kube.list(IMAGESTREAMS, where))
            streams = list(listed[0]) if listed else []
            if streams:
                break
    return registry_host(None, image_config, streams)


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> common.CommandResult:
    token = args.token or await kube.bearer_token()
    if not token:
        raise CommandError(
            "no token is currently in use for this session (a client certificate cannot log "
            "in to a registry): log in with a token, or pass --token"
        )
    host = await _host(kube, namespace, args.registry)
    target = args.to or str(default_auth_file(os.environ, Path.home()))
    if target == "-":
        return updated_config("", host, login_entry(token), "-")
    path = Path(target)
    save(path, host, login_entry(token))
    return f"Saved credentials for {host} into {path}\n"


def save(path: Path, host: str, entry: Mapping[str, str]) -> None:
    """Add `entry` for `host` to the docker config at `path` (made if missing)."""
    try:
        existing = path.read_text() if path.exists() else ""
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    content = updated_config(existing, host, entry, str(path))
    try:
        write_private_atomically(path, content)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None


def main(args: argparse.Namespace) -> int:
    return common.run_command(args, run)


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `registry login` to the `imagestream` command."""
    registry = commands.add_parser(
        "registry", help="log in to the integrated registry (like oc registry login)"
    )
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    login = actions.add_parser(
        "login",
        help="write your cluster token as a docker config entry for the integrated registry",
        description="Write the current kubeconfig user's token (or --token) as a docker "
        "config auth entry for the integrated registry, which takes cluster tokens.",
    )
    login.add_argument(
        "--registry",
        default=None,
        help="registry host[:port] (default: the cluster image configuration's hostname)",
    )
    login.add_argument(
        "--to",
        default=None,
        help="file to write (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json); "
        "- prints it",
    )
    login.add_argument(
        "--token", default=None, help="the cluster token to log in with (default: the session's)"
    )
    common.add_connection_flags(login, add_flag)
    login.set_defaults(handler=main)
