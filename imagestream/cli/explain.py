"""`imagestream explain [-n NS] KIND/NAME [-o json]`: what each trigger resolves to, and why.

It runs the controller's own planner on the object and its ImageStreams as
they are in the cluster now, so what it prints is exactly what the
controller decides (the planner is pure; nothing is written).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from controller.triggers.outcomes import TriggerOutcome
from controller.triggers.pullaccess import PullAccess
from controller.triggers.reactors import REACTORS
from imagestream.cli import common
from imagestream.cli.common import CommandError, q
from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError, NotFound
from imagestream.kube.resources import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    IMAGESTREAMS,
    STATEFULSETS,
    Resource,
)

REACTORS_BY_PLURAL = {reactor.resource.plural: reactor for reactor in REACTORS}

KINDS: dict[str, Resource] = {
    "deployment": DEPLOYMENTS,
    "deploy": DEPLOYMENTS,
    "deployments": DEPLOYMENTS,
    "statefulset": STATEFULSETS,
    "sts": STATEFULSETS,
    "statefulsets": STATEFULSETS,
    "daemonset": DAEMONSETS,
    "ds": DAEMONSETS,
    "daemonsets": DAEMONSETS,
    "cronjob": CRONJOBS,
    "cj": CRONJOBS,
    "cronjobs": CRONJOBS,
    "deploymentconfig": DEPLOYMENTCONFIGS,
    "dc": DEPLOYMENTCONFIGS,
    "deploymentconfigs": DEPLOYMENTCONFIGS,
}


class ExplainError(Exception):
    """The object cannot be explained (unknown kind, not found); the message says why."""


async def _streams(kube: Kube, obj: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in keys:
        namespace, name = key.split("/", 1)
        try:
            found[key] = await kube.get(IMAGESTREAMS, namespace, name)
        except NotFound:
            continue
    return found


async def explain(
    kube: Kube, *, namespace: str, target: str, pull_access: PullAccess
) -> list[TriggerOutcome]:
    kind, _, name = target.partition("/")
    resource = KINDS.get(kind.lower())
    if resource is None or not name:
        raise ExplainError(
            f"expected KIND/NAME with KIND one of deployment, statefulset, daemonset, cronjob, "
            f"deploymentconfig; got {q(target)}"
        )
    try:
        obj = await kube.get(resource, namespace, name)
    except NotFound as error:
        raise ExplainError(f"{resource.kind} {namespace}/{name} not found") from error
    reactor = REACTORS_BY_PLURAL[resource.plural]
    streams = await _streams(kube, obj, reactor.named_streams(obj))

    def get_stream(stream_namespace: str, stream_name: str) -> Mapping[str, Any] | None:
        return streams.get(f"{stream_namespace}/{stream_name}")

    # The image-puller rule asked as the controller asks it (behaviour 16), with the
    # user's credentials: what the authorizer answers, not a guess.
    try:
        access = await pull_access.answers(namespace, reactor.named_streams(obj))
    except KubeError as error:
        raise ExplainError(
            f"cannot ask whether namespace {q(namespace)} may pull from its streams in other"
            f" namespaces: {error} (--allow-cross-namespace-triggers explains without asking)"
        ) from error
    # The controller's own reactor decides, so explain says what the controller does.
    reaction = reactor.react(obj, get_stream=get_stream, namespace_allowed=access.namespace_allowed)
    return list(reaction.outcomes)


def render(outcomes: list[TriggerOutcome]) -> str:
    if not outcomes:
        return "no image triggers on this object\n"
    lines = []
    for outcome in outcomes:
        lines.append(f"{outcome.target}")
        lines.append(f"  follows:   {outcome.source}")
        lines.append(f"  resolves:  {outcome.resolved_image or '(nothing)'}")
        lines.append(f"  decision:  {outcome.reason} - {outcome.message}")
    return "\n".join(lines) + "\n"


def as_json(outcomes: list[TriggerOutcome]) -> list[dict[str, Any]]:
    """`-o json`: one object per trigger, with stable keys (the reason as Events spell it)."""
    return [
        {
            "target": outcome.target,
            "source": outcome.source,
            "resolvedImage": outcome.resolved_image,
            "reason": str(outcome.reason),
            "message": outcome.message,
        }
        for outcome in outcomes
    ]


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    try:
        outcomes = await explain(
            kube,
            namespace=namespace,
            target=args.target,
            pull_access=(
                PullAccess.allow_all_namespaces()
                if args.allow_cross_namespace_triggers
                else PullAccess.reviewing(kube)
            ),
        )
    except ExplainError as error:
        raise CommandError(str(error)) from error
    if args.output == "json":
        return common.render(as_json(outcomes), "json")
    return render(outcomes)


def main(args: argparse.Namespace) -> int:
    return common.run_command(args, run)


def add_parser(
    commands: Any, add_flag: Callable[..., None], boolean: Callable[[str], bool]
) -> None:
    """Add `explain` to the `imagestream` command."""
    parser = commands.add_parser(
        "explain",
        help="say what each image trigger of an object resolves to, and why it acts or not",
    )
    parser.add_argument("target", metavar="KIND/NAME", help="e.g. deployment/web or dc/frontend")
    common.add_connection_flags(parser, add_flag)
    parser.add_argument(
        "-o", "--output", choices=("json",), default=None, help="print the outcomes as JSON"
    )
    add_flag(
        parser,
        "--allow-cross-namespace-triggers",
        "false",
        "explain as a controller that allows cross-namespace triggers",
        type=boolean,
    )
    parser.set_defaults(handler=main)
