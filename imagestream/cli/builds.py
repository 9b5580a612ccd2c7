"""`imagestream logs build/NAME|bc/NAME` and `imagestream cancel-build`, as `oc` has them,
and the waits `start-build --follow/--wait` use.

A Build's log is its builder pod's: the `build` container of the Job's pod (label
`openshift.io/build.name`), streamed through the API server's `pods/NAME/log`
(`Kube.stream_log`), as `oc logs build/NAME` streams it through OpenShift's
`builds/NAME/log`. `bc/NAME` means its latest Build (the highest number). The log is
printed once the container has started (a New or Pending Build is waited for); `-f`
follows it until the container ends.

`cancel-build` sets `status.cancelled` (as oc does); the controller then deletes the Job
(and its pod) and marks the Build Cancelled with reason `CancelledBuild`. The command
waits for that phase, as oc waits, and prints `build.build.openshift.io/NAME cancelled`.

Invariant: every wait is bounded (`--timeout`, default `WAIT_DEFAULT_S`), and ends with
one line saying what did not happen; a command never hangs on a Build that cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from controller.builds.jobs import BUILD_CONTAINER
from controller.builds.model import (
    BUILD_NAME_LABEL,
    BUILDCONFIG_NAME,
    BuildPhase,
    build_number,
    build_phase,
    label_value,
)
from imagestream.cli import common
from imagestream.cli.common import CommandError, Printed
from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import BUILDS, PODS
from imagestream.objects import Obj, mapping, name_of, status_of

POLL_S: Final = 0.5
WAIT_DEFAULT_S: Final = 1800.0
CANCEL_WAIT_S: Final = 120.0
BUILD_KINDS: Final = ("build", "builds", "build.build.openshift.io")
CONFIG_KINDS: Final = ("bc", "buildconfig", "buildconfigs", "buildconfig.build.openshift.io")


class BuildCommandError(CommandError):
    """The build (or its log) is not there, or did not do what was waited for."""


def split_reference(text: str, *, default_kind: str) -> tuple[str, str]:
    """(`build` or `bc`, NAME) from `NAME`, `build/NAME`, `bc/NAME` (and kubectl's spellings)."""
    kind, slash, name = text.partition("/")
    if not slash:
        return default_kind, text
    if kind.lower() in BUILD_KINDS:
        return "build", name
    if kind.lower() in CONFIG_KINDS:
        return "bc", name
    raise BuildCommandError(f'expected build/NAME or bc/NAME, got "{text}"')


async def builds_of_config(kube: Kube, namespace: str, config: str) -> list[Obj]:
    """The BuildConfig's Builds, oldest first."""
    builds, _ = await kube.list(
        BUILDS, namespace, label_selector=f"{BUILDCONFIG_NAME}={label_value(config)}"
    )
    return sorted(builds, key=build_number)


async def resolve_build(kube: Kube, namespace: str, reference: str) -> str:
    """The Build's name; for `bc/NAME` its latest Build's."""
    kind, name = split_reference(reference, default_kind="build")
    if kind == "build":
        return name
    builds = await builds_of_config(kube, namespace, name)
    if not builds:
        raise BuildCommandError(f'no builds found for "{name}"')
    return name_of(builds[-1])


async def get_build(kube: Kube, namespace: str, name: str) -> Obj:
    try:
        return await kube.get(BUILDS, namespace, name)
    except NotFound as error:
        raise BuildCommandError(f'builds.build.openshift.io "{name}" not found') from error


def _container_started(pod: Mapping[str, Any]) -> bool:
    for status in mapping(pod.get("status")).get("containerStatuses") or []:
        status = mapping(status)
        if status.get("name") == BUILD_CONTAINER:
            state = mapping(status.get("state"))
            return bool(state.get("running") or state.get("terminated"))
    return False


async def started_pod(kube: Kube, namespace: str, build: str, *, timeout_s: float) -> str:
    """The name of the Build's pod once its build container has started."""
    deadline = time.monotonic() + timeout_s
    while True:
        pods, _ = await kube.list(
            PODS, namespace, label_selector=f"{BUILD_NAME_LABEL}={label_value(build)}"
        )
        started = [p for p in pods if _container_started(p)]
        if started:
            return name_of(started[-1])
        current = await get_build(kube, namespace, build)
        phase = build_phase(current)
        if phase.terminal:
            raise BuildCommandError(
                f'build "{build}" is {phase.value} and has no pod to read a log from'
                + (
                    f" ({status_of(current).get('reason')})"
                    if status_of(current).get("reason")
                    else ""
                )
            )
        if time.monotonic() > deadline:
            raise BuildCommandError(
                f'build "{build}" did not start within {timeout_s:.0f}s (phase {phase.value})'
            )
        await asyncio.sleep(POLL_S)


async def print_log(
    kube: Kube, namespace: str, build: str, *, follow: bool, timeout_s: float
) -> None:
    """Write the Build's log to stdout as it comes."""
    pod = await started_pod(kube, namespace, build, timeout_s=timeout_s)
    async for chunk in kube.stream_log(
        namespace, pod, container=BUILD_CONTAINER, follow=follow, timeout_s=timeout_s
    ):
        sys.stdout.write(chunk.decode("utf-8", errors="replace"))
        sys.stdout.flush()


async def wait_ended(kube: Kube, namespace: str, build: str, *, timeout_s: float) -> Obj:
    """The Build once its phase is terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = await get_build(kube, namespace, build)
        if build_phase(current).terminal:
            return current
        if time.monotonic() > deadline:
            raise BuildCommandError(
                f'build "{build}" did not finish within {timeout_s:.0f}s'
                f" (phase {build_phase(current).value})"
            )
        await asyncio.sleep(POLL_S)


def outcome(build: Mapping[str, Any]) -> Printed:
    """What `start-build --wait` ends with: nothing more when Complete, else oc's line, exit 1."""
    phase = build_phase(build)
    if phase is BuildPhase.COMPLETE:
        return Printed("")
    metadata = mapping(build.get("metadata"))
    return Printed(
        "",
        stderr=f"error: the build {metadata.get('namespace')}/{metadata.get('name')}"
        f' status is "{phase.value}"',
        code=1,
    )


# --- logs ----------------------------------------------------------------------------------


async def run_logs(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    build = await resolve_build(kube, namespace, args.reference)
    await print_log(kube, namespace, build, follow=args.follow, timeout_s=args.timeout)
    return ""


def check_logs(args: argparse.Namespace) -> None:
    kind, _ = split_reference(args.reference, default_kind="")
    if kind not in ("build", "bc"):
        raise BuildCommandError(
            f'logs needs build/NAME or bc/NAME (pod logs: kubectl logs), got "{args.reference}"'
        )


# --- cancel-build --------------------------------------------------------------------------


async def run_cancel(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    kind, name = split_reference(args.reference, default_kind="build")
    if kind == "bc":
        names = [
            name_of(b)
            for b in await builds_of_config(kube, namespace, name)
            if not build_phase(b).terminal
        ]
    else:
        names = [name]
    lines: list[str] = []
    for build in names:
        current = await get_build(kube, namespace, build)
        phase = build_phase(current)
        if phase.terminal:
            lines.append(f'build "{build}" is already {phase.value}\n')
            continue
        await kube.patch(
            BUILDS, namespace, build, {"status": {"cancelled": True}}, subresource="status"
        )
        ended = await wait_ended(kube, namespace, build, timeout_s=CANCEL_WAIT_S)
        if build_phase(ended) is BuildPhase.CANCELLED:
            lines.append(f"build.build.openshift.io/{build} cancelled\n")
        else:
            lines.append(
                f'build "{build}" ended {build_phase(ended).value} before it was cancelled\n'
            )
    return "".join(lines)


def add_parsers(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `logs` and `cancel-build` to the `imagestream` command."""
    logs = commands.add_parser(
        "logs",
        help="print the log of a build (build/NAME, or bc/NAME for its latest), like oc logs",
        description="Print the builder pod's log of build/NAME, or of the latest build of bc/NAME.",
    )
    logs.add_argument("reference", metavar="build/NAME|bc/NAME")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="follow the log until the build ends"
    )
    logs.add_argument(
        "--timeout",
        type=float,
        default=WAIT_DEFAULT_S,
        help="seconds to wait for the build (default %(default)s)",
    )
    common.add_connection_flags(logs, add_flag)
    logs.set_defaults(handler=lambda args: common.run_command(args, run_logs, check_logs))

    cancel = commands.add_parser(
        "cancel-build",
        help="cancel a build (NAME, build/NAME, or every unfinished build of bc/NAME)",
        description="Cancel a build as oc cancel-build does: set status.cancelled and wait "
        "until the controller has stopped its pod and marked it Cancelled.",
    )
    cancel.add_argument("reference", metavar="NAME|build/NAME|bc/NAME")
    common.add_connection_flags(cancel, add_flag)
    cancel.set_defaults(handler=lambda args: common.run_command(args, run_cancel))
