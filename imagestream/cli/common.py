"""What every command a person runs shares: kubectl's connection flags, `-o`, and errors.

Invariant: such a command connects as kubectl would (`--kubeconfig`, `$KUBECONFIG`,
`~/.kube/config`, `--context`, `-n`, the context's namespace: `imagestream.kube.kubeconfig`)
and ends in one of two ways: it prints its result and exits with its own code, or it
prints exactly one line starting with `error:` (or kubectl's `Error from server (...)`)
on stderr and exits 1.

Failure it prevents: a Python traceback, or a wall of text, where `oc` prints one line a
script can show and a person can read; and a command that silently acts on another
namespace than the one `kubectl get` shows.

No credential is ever printed: API errors carry only the server's Status message
(`imagestream.kube.errors`), and kubeconfig errors name files and contexts, not their
contents.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagestream.cli.errors import CommandError as CommandError  # one class, re-exported
from imagestream.kube.client import Kube, connect_as_user
from imagestream.kube.errors import KubeError, Unreachable
from imagestream.kube.kubeconfig import KubeconfigError
from imagestream.kube.resources import Resource
from imagestream.logs import LOG_LEVELS, configure_logging

OUTPUT_FORMATS = ("json", "yaml")

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ServerSaid(CommandError):
    """What OpenShift's API server would answer (e.g. NotFound), which our CRDs cannot.

    Printed as kubectl prints an API error, so scripts that match oc's lines still match.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CommandParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 1, as for every other error."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        self.exit(1, f"error: {message} (see `{self.prog} --help`)\n")


def add_connection_flags(parser: argparse.ArgumentParser, add_flag: Callable[..., None]) -> None:
    """`--kubeconfig`, `--context` and `-n/--namespace`, as kubectl spells them."""
    add_flag(
        parser,
        "--kubeconfig",
        None,
        "kubeconfig file; without it $KUBECONFIG, then ~/.kube/config, then in-cluster",
    )
    parser.add_argument(
        "--context", default=None, help="kubeconfig context to use (default: current-context)"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace (default: the context's namespace, else default)",
    )


def add_global_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The same flags before the command (`imagestream -n NS tag ...`), as kubectl takes them.

    They live under their own names: a subcommand's defaults would otherwise overwrite
    them. A flag after the command wins.
    """
    parser.add_argument("--kubeconfig", dest="global_kubeconfig", default=None, help="as below")
    parser.add_argument("--context", dest="global_context", default=None, help="as below")
    parser.add_argument("-n", "--namespace", dest="global_namespace", default=None, help="as below")


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default=None,
        help="print the resulting object as json or yaml instead of the message",
    )


def render(value: object, output: str) -> str:
    """`value` as kubectl prints it with `-o json` (4-space indent) or `-o yaml`."""
    if output == "json":
        return json.dumps(value, indent=4) + "\n"
    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


def error_line(error: BaseException) -> str:
    """The one line a failed command prints (pure)."""
    if isinstance(error, ServerSaid):
        return f"Error from server ({error.reason}): {error}"
    if isinstance(error, KubeconfigError | Unreachable):
        # Nothing was contacted, or nothing answered: the one line names the file to fix.
        from imagestream.cli.errors import user_message

        return f"error: {user_message(error)}"
    if isinstance(error, KubeError):
        text = re.sub(r"^\d{3}: ", "", str(error)).strip() or type(error).__name__
        if error.status is None:
            return f"error: cannot reach the API server: {text}"
        reason = _REASONS.get(error.status, str(error.status))
        return f"Error from server ({reason}): {text}"
    message = " ".join(str(error).split()) or type(error).__name__
    return f"error: {message}"


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[tuple[Kube, str]]:
    """The connection and namespace the command's flags and environment name."""

    def flag(name: str) -> str | None:
        value = getattr(args, name, None) or getattr(args, f"global_{name}", None)
        return str(value) if value else None

    kubeconfig = flag("kubeconfig")
    kube, namespace = await connect_as_user(
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=flag("context"),
        namespace=flag("namespace"),
    )
    try:
        yield kube, namespace
    finally:
        await kube.close()


@dataclass(frozen=True)
class Printed:
    """A command's result: what goes to stdout, an error line for stderr, the exit code."""

    stdout: str
    stderr: str = ""
    code: int = 0


CommandResult = str | tuple[str, int] | Printed
Command = Callable[[Kube, str, argparse.Namespace], Awaitable[CommandResult]]


def run_command(
    args: argparse.Namespace,
    command: Command,
    check: Callable[[argparse.Namespace], object] | None = None,
) -> int:
    """Connect, run `command(kube, namespace, args)`, print its text; errors as one line.

    `check(args)` runs first, before any connection: arguments that cannot work are
    refused without touching the kubeconfig or the cluster.
    """

    # Logs go to stderr, warnings and up unless asked: stdout is the command's result.
    level = os.environ.get("IMAGESTREAM_LOG_LEVEL", "warning").lower()
    configure_logging(log_format="console", log_level=level if level in LOG_LEVELS else "warning")

    async def go() -> CommandResult:
        async with connected(args) as (kube, namespace):
            return await command(kube, namespace, args)

    try:
        if check is not None:
            check(args)
        result = asyncio.run(go())
    except (CommandError, KubeError, KubeconfigError) as error:
        print(error_line(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    if isinstance(result, str):
        result = Printed(result)
    elif isinstance(result, tuple):
        result = Printed(result[0], code=result[1])
    print(result.stdout, end="")
    if result.stderr:
        print(result.stderr, file=sys.stderr)
    return result.code


def q(value: object) -> str:
    """`value` double-quoted, as Go's `%q` quotes it in oc's messages."""
    return json.dumps(str(value))


def namespaced_name(namespace: str, name: str, own_namespace: str) -> str:
    """`name` in the command's namespace, `namespace/name` elsewhere (oc's messages)."""
    return name if namespace == own_namespace else f"{namespace}/{name}"


def object_name(resource: Resource, name: str) -> str:
    """kubectl's name printer: `deployment.apps/web`, `imagestream.image.openshift.io/app`."""
    kind = resource.kind.lower()
    return f"{kind}.{resource.group}/{name}" if resource.group else f"{kind}/{name}"


def mapping_list(value: object) -> list[Mapping[str, Any]]:
    """The JSON objects of a list; anything else reads as empty."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]
