"""`imagestream rollout latest|status|history|undo [-n NS] dc/NAME`, like `oc rollout`.

    latest   resolve every ImageChange trigger once (manual ones too) and start a new
             version with cause Manual ("manual change")
    status   say how the latest rollout is doing (`--watch` waits for the end; exit code 1
             if it has not ended within `--timeout`, as `oc rollout status` does)
    history  list the versions with their status and cause, from the ReplicationControllers
    undo     roll back to the previous complete version (or `--to-revision N`): its pod
             template, image triggers disabled so they do not roll forward again at once

Where our CRD serves apps.openshift.io there is no `instantiate` subresource, so `latest`
and `undo` write their spec change and a rollout request (annotation
`imagestream.dev/rollout-request`, asking for version N+1) in one JSON Patch guarded by the
resourceVersion; the controller starts that version, with that cause, and the command waits
until it has. One write: a trigger cannot turn one request into two rollouts, and a
concurrent edit makes the patch fail rather than be overwritten. On OpenShift, `latest`
calls `instantiate` (latest, force) as `oc` does.

The decisions (manual resolution, the status line, the history table, the rollback
template) are pure functions; only `run_rollout` and the `_` helpers talk to the API.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.rollouts.model import (
    ROLLOUT_REQUEST_ANNOTATION,
    Phase,
    RolloutRequest,
    all_image_triggers_fired,
    has_blank_image,
    has_image_change_trigger,
    latest_version,
    owns,
    paused,
    rc_cancelled,
    rc_details,
    rc_phase,
    rc_template,
    rc_version,
)
from controller.rollouts.plan import (
    NEW_RC_AVAILABLE,
    PAUSED,
    PROGRESS_DEADLINE_EXCEEDED,
    PROGRESSING,
    ROLLOUT_CANCELLED,
)
from controller.triggers import deploymentconfigs as dc_triggers
from controller.triggers.outcomes import NamespacePolicy, same_namespace_only
from controller.triggers.podspec import JsonPatch, json_pointer
from controller.triggers.pullaccess import PullAccess
from imagestream.cli import common
from imagestream.cli.common import CommandError, q
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.crds import natively_served_groups
from imagestream.kube.errors import KubeError, NotFound, PatchTestFailed
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS, REPLICATIONCONTROLLERS
from imagestream.objects import Obj, mapping

RESOURCE_NAME = "deploymentconfig.apps.openshift.io"
TARGET_KINDS = ("dc", "deploymentconfig", "deploymentconfigs", RESOURCE_NAME)
WAIT_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 600.0
POLL_S = 0.2
PATCH_ATTEMPTS = 3


class RolloutError(CommandError):
    """The command cannot do what was asked; the message says why."""


class WatchTimeout(RolloutError):
    """`status --watch`: the rollout had not ended by the timeout; `text` is what was shown."""

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_DURATION_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number of seconds (`30`) or a Go/kubectl duration (`30s`, `1m30s`).

    Raises `argparse.ArgumentTypeError` (argparse prints it as a usage error).
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_RE.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise argparse.ArgumentTypeError(
                f"expected seconds or a duration like 30s, 5m or 1m30s; got {text!r}"
            ) from None
        seconds = sum(float(number) * _DURATION_UNITS_S[unit] for number, unit in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a duration of 0 or more; got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    return f"{seconds:g}s"


def parse_target(target: str) -> str:
    kind, _, name = target.partition("/")
    if kind.lower() not in TARGET_KINDS or not name:
        raise RolloutError(f"expected dc/NAME (a DeploymentConfig), got {q(target)}")
    return name


# --- pure: what to print, what to write -------------------------------------------------------


def status_message(dc: Mapping[str, Any]) -> tuple[str, bool, bool]:
    """(message, finished, failed) for the latest rollout, in `oc rollout status` words."""
    name = str(mapping(dc.get("metadata")).get("name", ""))
    status = mapping(dc.get("status"))
    generation = mapping(dc.get("metadata")).get("generation") or 0
    if int(status.get("observedGeneration") or 0) < int(generation):
        return "Waiting for the latest spec to be observed by the controller...", False, False
    if latest_version(dc) == 0:
        if has_image_change_trigger(dc):
            return f'deploymentconfig "{name}" waiting on image update', False, False
        return (
            f'deploymentconfig "{name}" waiting on manual update'
            f" (use 'imagestream rollout latest dc/{name}')",
            False,
            True,
        )
    progressing = next(
        (
            mapping(c)
            for c in status.get("conditions") or []
            if mapping(c).get("type") == PROGRESSING
        ),
        {},
    )
    reason, message = progressing.get("reason"), str(progressing.get("message", ""))
    if reason == NEW_RC_AVAILABLE:
        return message, True, False
    if reason in (PROGRESS_DEADLINE_EXCEEDED, ROLLOUT_CANCELLED):
        return message, True, True
    if reason == PAUSED:
        return f'deploymentconfig "{name}" is paused; resume it to continue', True, True
    desired = int(mapping(dc.get("spec")).get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < desired:
        return (
            f"Waiting for rollout to finish: {updated} out of {desired} new replicas have been"
            " updated...",
            False,
            False,
        )
    if replicas > updated:
        return (
            f"Waiting for rollout to finish: {replicas - updated} old replicas are pending"
            " termination...",
            False,
            False,
        )
    if available < updated:
        return (
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are"
            " available...",
            False,
            False,
        )
    return "Waiting for the rollout to be marked complete...", False, False


def owned_versions(
    dc: Mapping[str, Any], rcs: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    return sorted((rc for rc in rcs if owns(dc, rc)), key=rc_version)


def _phase_label(rc: Mapping[str, Any]) -> str:
    return "Cancelled" if rc_cancelled(rc) else rc_phase(rc).value


def history_table(dc: Mapping[str, Any], rcs: Sequence[Mapping[str, Any]]) -> str:
    """`oc rollout history`: one line per version, cause from the version's recorded config."""
    name = str(mapping(dc.get("metadata")).get("name", ""))
    versions = owned_versions(dc, rcs)
    if not versions:
        return "No rollout history found.\n"
    rows = [("REVISION", "STATUS", "CAUSE")] + [
        (
            str(rc_version(rc)),
            _phase_label(rc),
            str(rc_details(rc).get("message") or "<unknown>"),
        )
        for rc in versions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f'deploymentconfigs "{name}"']
    lines += [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def revision_details(dc: Mapping[str, Any], rcs: Sequence[Mapping[str, Any]], revision: int) -> str:
    """`oc rollout history --revision N`: the version's template and why it happened."""
    name = str(mapping(dc.get("metadata")).get("name", ""))
    rc = next((rc for rc in owned_versions(dc, rcs) if rc_version(rc) == revision), None)
    if rc is None:
        raise RolloutError(f'revision {revision} of deploymentconfig "{name}" not found')
    template = rc_template(rc)
    details = rc_details(rc)
    lines = [
        f'deploymentconfigs "{name}" with revision #{revision}',
        f"Status:  {_phase_label(rc)}",
        f"Cause:   {details.get('message') or '<unknown>'}",
    ]
    for cause in details.get("causes") or []:
        image = mapping(mapping(mapping(cause).get("imageTrigger")).get("from")).get("name")
        lines.append(f"  - {mapping(cause).get('type')}" + (f": {image}" if image else ""))
    lines.append("Containers:")
    for container in mapping(template.get("spec")).get("containers") or []:
        lines.append(f"  {mapping(container).get('name')}:  {mapping(container).get('image')}")
    return "\n".join(lines) + "\n"


def rollback_target(
    dc: Mapping[str, Any], rcs: Sequence[Mapping[str, Any]], to_revision: int | None
) -> Mapping[str, Any]:
    """The version to roll back to: `to_revision`, else the newest complete older one."""
    name = str(mapping(dc.get("metadata")).get("name", ""))
    current = latest_version(dc)
    versions = owned_versions(dc, rcs)
    if to_revision is not None:
        if to_revision == current:
            raise RolloutError(f"revision {to_revision} is the current revision of {name}")
        found = next((rc for rc in versions if rc_version(rc) == to_revision), None)
        if found is None:
            raise RolloutError(f'revision {to_revision} of deploymentconfig "{name}" not found')
        return found
    complete = [
        rc for rc in versions if rc_version(rc) < current and rc_phase(rc) is Phase.COMPLETE
    ]
    if not complete:
        raise RolloutError(
            f'no earlier complete rollout of deploymentconfig "{name}" to roll back to'
        )
    return complete[-1]


def rollback_patch(dc: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[JsonPatch, list[str]]:
    """The guarded patch of `undo`, and the image triggers it disables.

    The pod template becomes the target version's; ImageChange triggers become manual
    (OpenShift's rollback does the same, so the next image does not undo the rollback);
    the rollout request asks for the next version with the rollback as its cause.
    """
    template = rc_template(target)
    triggers = copy.deepcopy(list(mapping(dc.get("spec")).get("triggers") or []))
    disabled = []
    for trigger in triggers:
        params = trigger.get("imageChangeParams") if isinstance(trigger, dict) else None
        if isinstance(params, dict) and params.get("automatic") is True:
            params["automatic"] = False
            disabled.append(str(mapping(params.get("from")).get("name", "")))
    request = RolloutRequest(
        version=latest_version(dc) + 1,
        message=f"rollback to revision {rc_version(target)}",
        causes=({"type": "Manual"},),
    )
    patch: JsonPatch = [
        _resource_version_test(dc),
        {
            "op": "replace" if "template" in mapping(dc.get("spec")) else "add",
            "path": "/spec/template",
            "value": template,
        },
    ]
    if disabled:
        patch.append({"op": "replace", "path": "/spec/triggers", "value": triggers})
    patch.append(_request_op(dc, request))
    return patch, disabled


def latest_patch(
    dc: Mapping[str, Any],
    streams: Mapping[str, Mapping[str, Any]],
    *,
    namespace_allowed: NamespacePolicy = same_namespace_only,
) -> JsonPatch:
    """The guarded patch of `latest`: manual triggers resolved once, and the request.

    `namespace_allowed`: the image-puller answers for the DeploymentConfig's namespace
    (behaviour 16), asked as the controller asks them."""
    name = str(mapping(dc.get("metadata")).get("name", ""))
    if paused(dc):
        raise RolloutError(f'cannot deploy a paused deployment config "{name}"; resume it first')

    def get_stream(namespace: str, stream: str) -> Mapping[str, Any] | None:
        return streams.get(f"{namespace}/{stream}")

    plan = dc_triggers.plan_deploymentconfig(
        dc, get_stream=get_stream, include_manual=True, namespace_allowed=namespace_allowed
    )
    after = dc_triggers.apply_deploymentconfig_plan(dc, plan)
    if not all_image_triggers_fired(after) or has_blank_image(after):
        raise RolloutError(
            f'cannot trigger a deployment for "{name}" because it contains unresolved images'
        )
    request = RolloutRequest(
        version=latest_version(dc) + 1, message="manual change", causes=({"type": "Manual"},)
    )
    patch: JsonPatch = [_resource_version_test(dc)]
    patch += dc_triggers.build_deploymentconfig_json_patch(dc, plan)
    patch.append(_request_op(dc, request))
    return patch


def _resource_version_test(dc: Mapping[str, Any]) -> Obj:
    version = mapping(dc.get("metadata")).get("resourceVersion", "")
    return {"op": "test", "path": "/metadata/resourceVersion", "value": version}


def _request_op(dc: Mapping[str, Any], request: RolloutRequest) -> Obj:
    if isinstance(mapping(dc.get("metadata")).get("annotations"), Mapping):
        return {
            "op": "add",
            "path": json_pointer("metadata", "annotations", ROLLOUT_REQUEST_ANNOTATION),
            "value": request.to_annotation(),
        }
    return {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {ROLLOUT_REQUEST_ANNOTATION: request.to_annotation()},
    }


# --- I/O ----------------------------------------------------------------------------------------


async def _get(kube: Kube, namespace: str, name: str) -> Obj:
    try:
        return await kube.get(DEPLOYMENTCONFIGS, namespace, name)
    except NotFound as error:
        raise RolloutError(
            f'deploymentconfig "{name}" not found in namespace {namespace}'
        ) from error


async def _versions(kube: Kube, namespace: str, name: str) -> list[Obj]:
    rcs, _ = await kube.list(
        REPLICATIONCONTROLLERS,
        namespace,
        label_selector=f"openshift.io/deployment-config.name={name}",
    )
    return rcs


async def _streams(kube: Kube, dc: Mapping[str, Any]) -> dict[str, Obj]:
    found: dict[str, Obj] = {}
    for trigger in dc_triggers.image_change_triggers(dc):
        stream = trigger.name.rpartition(":")[0]
        key = f"{trigger.namespace}/{stream}"
        if stream and key not in found:
            try:
                found[key] = await kube.get(IMAGESTREAMS, trigger.namespace, stream)
            except NotFound:
                continue
    return found


async def _served_natively(kube: Kube) -> bool:
    try:
        return DEPLOYMENTCONFIGS.group in await natively_served_groups(kube)
    except KubeError:
        return False


async def _patch_and_wait(
    kube: Kube,
    namespace: str,
    name: str,
    make_patch: Callable[[Obj], Any],
    *,
    timeout_s: float,
) -> tuple[int, Any]:
    """Patch (re-reading and re-deciding on a concurrent change), then wait for the version."""
    for _ in range(PATCH_ATTEMPTS):
        dc = await _get(kube, namespace, name)
        patch, extra = make_patch(dc)
        try:
            await kube.patch(DEPLOYMENTCONFIGS, namespace, name, patch, patch_type=JSON_PATCH)
        except PatchTestFailed:
            continue  # the DeploymentConfig changed under us: decide again
        wanted = latest_version(dc) + 1
        break
    else:
        raise RolloutError(f'deploymentconfig "{name}" kept changing; try again')
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if latest_version(await _get(kube, namespace, name)) >= wanted:
            return wanted, extra
        await asyncio.sleep(POLL_S)
    raise RolloutError(
        f"version {wanted} of {name} was requested, but no controller started it within"
        f" {timeout_s:g}s (is imagestream-controller running?)"
    )


async def latest(
    kube: Kube, namespace: str, name: str, *, timeout_s: float = WAIT_TIMEOUT_S
) -> str:
    if await _served_natively(kube):
        body = {
            "kind": "DeploymentRequest",
            "apiVersion": "apps.openshift.io/v1",
            "name": name,
            "latest": True,
            "force": True,
        }
        await kube.request(
            "POST",
            DEPLOYMENTCONFIGS.path(namespace=namespace, name=name, subresource="instantiate"),
            body=body,
        )
        return f"{RESOURCE_NAME}/{name} rolled out\n"

    config = await _get(kube, namespace, name)
    streams = await _streams(kube, config)
    # Streams of other namespaces only where its service accounts may pull (behaviour 16).
    keys = {
        f"{t.namespace}/{t.name.rpartition(':')[0]}"
        for t in dc_triggers.image_change_triggers(config)
    }
    try:
        access = await PullAccess.reviewing(kube).answers(namespace, keys)
    except KubeError as error:
        raise RolloutError(
            f"cannot ask whether namespace {namespace!r} may pull from its streams in other"
            f" namespaces: {error}"
        ) from error

    def make_patch(dc: Obj) -> tuple[JsonPatch, None]:
        return latest_patch(dc, streams, namespace_allowed=access.namespace_allowed), None

    await _patch_and_wait(kube, namespace, name, make_patch, timeout_s=timeout_s)
    return f"{RESOURCE_NAME}/{name} rolled out\n"


async def undo(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    to_revision: int | None = None,
    timeout_s: float = WAIT_TIMEOUT_S,
) -> str:
    rcs = await _versions(kube, namespace, name)

    def make_patch(dc: Obj) -> tuple[JsonPatch, list[str]]:
        return rollback_patch(dc, rollback_target(dc, rcs, to_revision))

    _, disabled = await _patch_and_wait(kube, namespace, name, make_patch, timeout_s=timeout_s)
    text = f"{RESOURCE_NAME}/{name} rolled back\n"
    if disabled:
        text += (
            f"Warning: the following images triggers were disabled: {', '.join(disabled)}\n"
            "  You can re-enable them by setting imageChangeParams.automatic: true\n"
        )
    return text


async def status(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    watch: bool = False,
    timeout_s: float = STATUS_TIMEOUT_S,
    on_line: Callable[[str], None] | None = None,
) -> tuple[str, int]:
    """The status lines and exit code; with `watch`, until the rollout ends.

    `on_line` sees each new line as it appears (the command prints them at
    once, as `oc rollout status -w` does). Raises `WatchTimeout` when
    watching and the rollout has not ended within `timeout_s`: a script
    that waits for a rollout must not go on as if it had finished.
    """
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []
    while True:
        message, finished, failed = status_message(await _get(kube, namespace, name))
        if not lines or lines[-1] != message:
            lines.append(message)
            if on_line is not None:
                on_line(message)
        text = "\n".join(lines) + "\n"
        if finished or failed or not watch:
            return text, 1 if failed else 0
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WatchTimeout(
                f"timed out waiting for the rollout of dc/{name} to finish"
                f" (--timeout {format_duration(timeout_s)})",
                text=text,
            )
        await asyncio.sleep(min(POLL_S * 5, remaining))


async def history(kube: Kube, namespace: str, name: str, *, revision: int | None = None) -> str:
    dc = await _get(kube, namespace, name)
    rcs = await _versions(kube, namespace, name)
    if revision is not None:
        return revision_details(dc, rcs, revision)
    return history_table(dc, rcs)


async def run_rollout(kube: Kube, namespace: str, args: argparse.Namespace) -> tuple[str, int]:
    name = parse_target(args.target)
    output = getattr(args, "output", None)
    if args.action in ("latest", "undo"):
        if args.action == "latest":
            text = await latest(kube, namespace, name, timeout_s=args.timeout)
        else:
            text = await undo(
                kube, namespace, name, to_revision=args.to_revision, timeout_s=args.timeout
            )
        if output:  # oc prints the DeploymentConfig as it is after the request
            return common.render(await _get(kube, namespace, name), output), 0
        return text, 0
    if args.action == "status":
        # Each line as it appears, as `oc rollout status -w` prints them.
        _, code = await status(
            kube,
            namespace,
            name,
            watch=args.watch,
            timeout_s=args.timeout,
            on_line=lambda line: print(line, flush=True),
        )
        return "", code
    return await history(kube, namespace, name, revision=args.revision), 0


def main(args: argparse.Namespace) -> int:
    """Entry point of `imagestream rollout ...` (after argument parsing)."""
    return common.run_command(args, run_rollout)


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `rollout` and its actions to the `imagestream` command."""
    rollout = commands.add_parser(
        "rollout",
        help="start, follow, list and roll back DeploymentConfig rollouts (like oc rollout)",
    )
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (
        ("latest", "start a new rollout now, resolving manual image triggers once"),
        ("status", "show how the latest rollout is doing"),
        ("history", "list the rollouts with their status and cause"),
        ("undo", "roll back to the previous complete rollout (or --to-revision)"),
    ):
        parser = actions.add_parser(action, help=help_text, description=help_text)
        parser.add_argument("target", metavar="dc/NAME")
        common.add_connection_flags(parser, add_flag)
        if action in ("latest", "undo"):
            common.add_output_flag(parser)
        if action == "status":
            parser.add_argument("-w", "--watch", action="store_true", help="wait until it ends")
        if action == "history":
            parser.add_argument(
                "--revision", type=int, default=None, help="details of one revision"
            )
        if action == "undo":
            parser.add_argument(
                "--to-revision", type=int, default=None, help="the revision to go back to"
            )
        if action in ("latest", "undo"):
            parser.add_argument(
                "--timeout",
                type=parse_duration,
                default=WAIT_TIMEOUT_S,
                help="how long to wait for the controller to start the version "
                "(seconds, or a duration like 30s or 2m)",
            )
        if action == "status":
            parser.add_argument(
                "--timeout",
                type=parse_duration,
                default=STATUS_TIMEOUT_S,
                help="with --watch: how long to wait for the rollout to end before failing "
                "with exit code 1 (seconds, or a duration like 30s or 5m)",
            )
        parser.set_defaults(handler=main)
