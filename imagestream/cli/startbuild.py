"""`imagestream start-build NAME|bc/NAME [-n NS] [--follow] [--wait]`: start a Build of a
BuildConfig, as `oc start-build`. `--follow` prints the builder pod's log as it runs;
`--wait` waits for the Build to end and exits 1 unless it is Complete (with `--follow`
alone, as with oc, the exit code does not say how the build ended).

It makes the Build with the controller's own `instantiate` (cause "Manually triggered"),
creates it, then records `lastVersion` on the BuildConfig. The Build's name is fixed by
its number, so when the controller (or another start-build) takes that number first the
create fails and the command takes the next one; the controller heals `lastVersion` from
the Builds if the second write is lost. Paused BuildConfigs are refused, as OpenShift's
instantiate refuses them. On OpenShift it calls `buildconfigs/NAME/instantiate`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from controller.builds.instantiate import InstantiateError, instantiate
from controller.builds.model import BUILDCONFIG_NAME, image_stream_tag, label_value, strategy_from
from controller.builds.triggers import MANUAL_MESSAGE, BuildRequest, image_change_triggers
from imagestream.cli import builds, common
from imagestream.cli.common import CommandError, Printed
from imagestream.kube.client import Kube
from imagestream.kube.crds import natively_served_groups
from imagestream.kube.errors import Conflict, KubeError, NotFound
from imagestream.kube.resources import BUILDCONFIGS, BUILDS, IMAGESTREAMS
from imagestream.objects import Obj
from imagestream.timestamps import rfc3339_seconds

CREATE_ATTEMPTS = 5


class StartBuildError(CommandError):
    """The build cannot be started; the message says why."""


async def _streams(kube: Kube, bc: Mapping[str, Any]) -> dict[str, Obj]:
    namespace = str((bc.get("metadata") or {}).get("namespace", ""))
    references = [t.source for t in image_change_triggers(bc)]
    base = image_stream_tag(strategy_from(bc), namespace=namespace)
    if base is not None:
        references.append(base)
    found: dict[str, Obj] = {}
    for reference in references:
        if reference.stream_key in found:
            continue
        try:
            found[reference.stream_key] = await kube.get(
                IMAGESTREAMS, reference.namespace, reference.stream
            )
        except NotFound:
            continue
    return found


async def start_build(kube: Kube, namespace: str, name: str) -> str:
    try:
        if BUILDCONFIGS.group in await natively_served_groups(kube):
            build = await kube.request(
                "POST",
                BUILDCONFIGS.path(namespace=namespace, name=name, subresource="instantiate"),
                body={
                    "kind": "BuildRequest",
                    "apiVersion": "build.openshift.io/v1",
                    "metadata": {"name": name},
                },
            )
            return f"build.build.openshift.io/{build['metadata']['name']} started\n"
    except KubeError:
        pass  # cannot tell (CRDs not listable): build the way our controller does
    request = BuildRequest(causes=({"message": MANUAL_MESSAGE},))
    for _ in range(CREATE_ATTEMPTS):
        try:
            bc = await kube.get(BUILDCONFIGS, namespace, name)
        except NotFound as error:
            raise StartBuildError(
                f'buildconfig "{name}" not found in namespace {namespace}'
            ) from error
        builds, _ = await kube.list(
            BUILDS, namespace, label_selector=f"{BUILDCONFIG_NAME}={label_value(name)}"
        )
        streams = await _streams(kube, bc)

        def get_stream(ns: str, stream: str, streams: dict[str, Obj] = streams) -> Obj | None:
            return streams.get(f"{ns}/{stream}")

        try:
            made = instantiate(
                bc,
                request,
                builds,
                get_stream=get_stream,
                now=rfc3339_seconds(datetime.now(UTC)),
            )
        except InstantiateError as error:
            raise StartBuildError(str(error)) from error
        try:
            await kube.create(BUILDS, namespace, made.build)
        except Conflict:
            continue  # that number was just taken; take the next
        version = (bc.get("metadata") or {}).get("resourceVersion", "")
        # On a conflict the controller records lastVersion from the Build itself.
        with contextlib.suppress(Conflict):
            await kube.patch(
                BUILDCONFIGS,
                namespace,
                name,
                {"metadata": {"resourceVersion": version}, "status": made.status},
                subresource="status",
            )
        return f"build.build.openshift.io/{made.build['metadata']['name']} started\n"
    raise StartBuildError(f'could not take a build number for "{name}"; try again')


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> str | Printed:
    kind, name = builds.split_reference(args.name, default_kind="bc")
    if kind != "bc":
        raise StartBuildError(
            f'start-build takes a BuildConfig (NAME or bc/NAME), got "{args.name}"'
        )
    text = await start_build(kube, namespace, name)
    build_name = text.split("/", 1)[1].split(" ", 1)[0]
    if args.output:  # oc prints the Build it started
        text = common.render(await kube.get(BUILDS, namespace, build_name), args.output)
    if not (args.follow or args.wait):
        return text
    print(text, end="", flush=True)
    if args.follow:  # as oc: the log, then (only with --wait) the outcome as exit code
        await builds.print_log(kube, namespace, build_name, follow=True, timeout_s=args.timeout)
    if not args.wait:
        return ""
    ended = await builds.wait_ended(kube, namespace, build_name, timeout_s=args.timeout)
    return builds.outcome(ended)


def main(args: argparse.Namespace) -> int:
    return common.run_command(args, run)


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `start-build` to the `imagestream` command."""
    parser = commands.add_parser(
        "start-build",
        help="start a build of a BuildConfig now (like oc start-build)",
        description="Start a Build of a BuildConfig now, with cause 'Manually triggered'.",
    )
    parser.add_argument("name", metavar="NAME|bc/NAME", help="the BuildConfig")
    parser.add_argument(
        "-F", "--follow", action="store_true", help="print the build's log as it runs"
    )
    parser.add_argument(
        "-w",
        "--wait",
        action="store_true",
        help="wait for the build to end; exit code 1 unless it completes",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=builds.WAIT_DEFAULT_S,
        help="seconds --follow/--wait wait at most (default %(default)s)",
    )
    common.add_connection_flags(parser, add_flag)
    common.add_output_flag(parser)
    parser.set_defaults(handler=main)
