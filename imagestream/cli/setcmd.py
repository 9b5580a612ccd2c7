"""`imagestream set triggers KIND/NAME ...` and `imagestream set image-lookup STREAM...`, as oc.

Invariant: for the same object and flags, `set triggers` leaves what `oc set triggers`
leaves: on Deployments, StatefulSets, DaemonSets and CronJobs the
`image.openshift.io/triggers` annotation, serialised as oc serialises it (one entry per
container, `from` ImageStreamTag with a namespace only when it is another one, `paused`
only when true), and on Deployments `spec.paused` as the config-change trigger (oc's rule:
`--manual` alone pauses a Deployment); on DeploymentConfigs `spec.triggers`, with a
ConfigChange entry first and ImageChange entries (`automatic`, `from`, `containerNames`),
unchanged entries kept as they were (with their `lastTriggeredImage`, which oc drops).
`set image-lookup` sets `spec.lookupPolicy.local`. Each write is conditional on the
object as read (a JSON Patch testing the resourceVersion), so a concurrent change is
never overwritten; nothing is written when nothing changes (and, as oc, nothing is
printed then).

Failure it prevents: triggers that the controller reads differently from how the command
meant them, or an edit that silently drops another trigger or someone else's change.

Differences, on purpose: the kept `lastTriggeredImage` above; and a trigger on an init
container is written with an `initContainers[...]` fieldPath, where oc writes
`containers[...]` for every container (OpenShift finds a container by name in both lists;
our controller reads the list the fieldPath names). BuildConfig triggers and webhooks
are not handled here.

`definition_of`, `update`, `apply_annotation`, `apply_deploymentconfig` and
`trigger_table` decide (pure); `run_triggers` and `run_image_lookup` read and write.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.triggers.annotations import (
    TRIGGER_ANNOTATION,
    FieldPathError,
    UnsupportedKind,
    parse_field_path,
)
from controller.triggers.podspec import POD_SPEC_PATHS, containers_in, json_pointer, pod_spec_at
from imagestream.cli import common
from imagestream.cli.common import CommandError, q
from imagestream.cli.explain import KINDS
from imagestream.cli.pullspec import parse
from imagestream.cli.tabwriter import tabwrite
from imagestream.kube.client import JSON_PATCH, MERGE_PATCH, Kube
from imagestream.kube.errors import PatchTestFailed
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS, Resource
from imagestream.objects import Obj, annotations_of, mapping, metadata_of, namespace_of, string

PATCH_ATTEMPTS = 5


@dataclass(frozen=True)
class ImageTrigger:
    """oc's common view of one image trigger, whatever the object keeps it in."""

    source: str
    """`stream:tag`."""
    namespace: str
    """The stream's namespace; empty for the object's own."""
    auto: bool
    names: tuple[str, ...]


@dataclass(frozen=True)
class TriggerDefinition:
    config_change: bool = False
    images: tuple[ImageTrigger, ...] = ()


@dataclass(frozen=True)
class TriggerFlags:
    from_image: str = ""
    from_image_namespace: str = ""
    from_config: bool = False
    containers: tuple[str, ...] = ()
    auto: bool = False
    manual: bool = False
    remove: bool = False
    remove_all: bool = False
    reset: bool = False
    print_table: bool = False


@dataclass(frozen=True)
class Change:
    """A decided change to an object: the JSON Patch ops (after the precondition)."""

    ops: list[Obj] = field(default_factory=list)


# --- deciding (pure) ------------------------------------------------------------------------


def _relative(namespace: str, own: str) -> str:
    return "" if namespace == own else namespace


def parse_trigger_flags(args: argparse.Namespace, namespace: str) -> TriggerFlags:
    """oc's reading of the flags, with its checks and defaults."""
    flags = TriggerFlags(
        from_config=args.from_config,
        containers=tuple(c for c in (args.containers or "").split(",") if c),
        auto=args.auto,
        manual=args.manual,
        remove=args.remove,
        remove_all=args.remove_all,
    )
    if args.from_image:
        try:
            ref = parse(args.from_image)
        except ValueError as error:
            raise CommandError(
                f"the value of --from-image does not appear to be a valid reference to an"
                f" image: {error}"
            ) from error
        if ref.registry or ref.id:
            raise CommandError(
                "the value of --from-image must point to an image stream tag on this server"
            )
        if not ref.tag:
            raise CommandError(
                "the value of --from-image must include the tag you wish to pull from"
            )
        flags = replace(
            flags,
            from_image=ref.name_string(),
            from_image_namespace=_relative(ref.namespace, namespace),
        )
    count = int(flags.from_config) + int(bool(flags.from_image))
    nothing = not (flags.remove or flags.remove_all or flags.auto or flags.manual)
    flags = replace(flags, reset=count == 0 and (flags.auto or flags.manual))
    if count == 0 and nothing:
        flags = replace(flags, print_table=True)
    elif not flags.remove_all and not flags.auto and not flags.manual:
        flags = replace(flags, auto=True)
    if flags.auto and flags.manual:
        raise CommandError("you must specify at most one of --auto or --manual")
    if flags.remove and flags.remove_all:
        raise CommandError("you must specify either --remove or --remove-all")
    if flags.remove_all and (count or flags.auto or flags.manual):
        raise CommandError("--remove-all may not be used with any other flag")
    if flags.remove and count < 1:
        raise CommandError("--remove requires a flag defining a trigger type to be specified")
    if count > 1:
        raise CommandError("you may only set one trigger type at a time")
    return flags


def _container_name(obj: Mapping[str, Any], kind: str, field_path: str) -> str | None:
    """The container a fieldPath names, by OpenShift's lookup (by name: either list)."""
    try:
        selector = parse_field_path(field_path, kind=kind)
    except (FieldPathError, UnsupportedKind):
        return None
    pod_spec = pod_spec_at(obj, POD_SPEC_PATHS[kind])
    if selector.index is not None:
        listed = containers_in(pod_spec, selector.container_kind)
        found = listed[selector.index] if selector.index < len(listed) else None
        return string(found.get("name")) if found is not None else None
    for container_kind in ("initContainers", "containers"):
        for container in containers_in(pod_spec, container_kind):
            if container.get("name") == selector.name:
                return selector.name
    return None


def definition_of(obj: Mapping[str, Any], kind: str) -> TriggerDefinition:
    """The object's triggers in oc's common form."""
    own = namespace_of(obj)
    if kind == "DeploymentConfig":
        config, images = False, []
        for trigger in common.mapping_list(mapping(obj.get("spec")).get("triggers")):
            if trigger.get("type") == "ConfigChange":
                config = True
            elif trigger.get("type") == "ImageChange":
                params = mapping(trigger.get("imageChangeParams"))
                source = mapping(params.get("from"))
                images.append(
                    ImageTrigger(
                        source=string(source.get("name")),
                        namespace=_relative(string(source.get("namespace")), own),
                        auto=params.get("automatic") is True,
                        names=tuple(str(n) for n in params.get("containerNames") or []),
                    )
                )
        return TriggerDefinition(config_change=config, images=tuple(images))
    config = not bool(mapping(obj.get("spec")).get("paused")) if kind == "Deployment" else True
    value = annotations_of(obj).get(TRIGGER_ANNOTATION)
    if value is None:
        return TriggerDefinition(config_change=config)
    try:
        entries = json.loads(value)
    except (TypeError, ValueError) as error:
        raise CommandError(f"{TRIGGER_ANNOTATION} is not valid JSON: {error}") from error
    images = []
    for entry in entries if isinstance(entries, list) else []:
        entry = mapping(entry)
        name = _container_name(obj, kind, string(entry.get("fieldPath")))
        if name is None:
            continue  # oc drops what does not name a container image
        source = mapping(entry.get("from"))
        images.append(
            ImageTrigger(
                source=string(source.get("name")),
                namespace=_relative(string(source.get("namespace")), own),
                auto=not entry.get("paused"),
                names=(name,),
            )
        )
    return TriggerDefinition(config_change=config, images=tuple(images))


def update(definition: TriggerDefinition, flags: TriggerFlags) -> TriggerDefinition:
    """oc's `updateTriggers`: only what the flags name changes."""
    if flags.remove_all:
        return TriggerDefinition()
    if flags.remove:
        config = False if flags.from_config else definition.config_change
        images = definition.images
        if flags.from_image:
            images = tuple(t for t in images if t.source != flags.from_image)
        return TriggerDefinition(config_change=config, images=images)
    if flags.reset:
        return TriggerDefinition(
            config_change=flags.auto,
            images=tuple(replace(t, auto=flags.auto) for t in definition.images),
        )
    config = True if flags.from_config else definition.config_change
    listed = list(definition.images)
    if flags.from_image:
        for index, trigger in enumerate(listed):
            if (trigger.source, trigger.namespace) == (
                flags.from_image,
                flags.from_image_namespace,
            ):
                listed[index] = replace(trigger, auto=not flags.manual, names=flags.containers)
                break
        else:
            listed.append(
                ImageTrigger(
                    source=flags.from_image,
                    namespace=flags.from_image_namespace,
                    auto=not flags.manual,
                    names=flags.containers,
                )
            )
    return TriggerDefinition(config_change=config, images=tuple(listed))


def _check_names(definition: TriggerDefinition, pod_spec: Mapping[str, Any]) -> None:
    known = {
        string(c.get("name"))
        for kind in ("containers", "initContainers")
        for c in containers_in(pod_spec, kind)
    }
    for trigger in definition.images:
        if not trigger.names:
            raise CommandError("you must specify --containers when setting --from-image")
        missing = sorted(set(trigger.names) - known)
        if missing:
            raise CommandError(
                f"not all container names exist: {', '.join(missing)}"
                f" (accepts: {', '.join(sorted(known))})"
            )


def annotation_value(obj: Mapping[str, Any], kind: str, definition: TriggerDefinition) -> str:
    """The triggers annotation oc writes for `definition` (pure)."""
    pod_path = POD_SPEC_PATHS[kind]
    pod_spec = pod_spec_at(obj, pod_path)
    _check_names(definition, pod_spec)
    init_names = {string(c.get("name")) for c in containers_in(pod_spec, "initContainers")}
    plain_names = {string(c.get("name")) for c in containers_in(pod_spec, "containers")}
    taken: set[str] = set()
    entries: list[Obj] = []
    own = namespace_of(obj)
    for trigger in definition.images:
        twice = sorted(taken & set(trigger.names))
        if twice:
            raise CommandError(f"only one trigger may reference each container: {', '.join(twice)}")
        taken.update(trigger.names)
        for name in trigger.names:
            source: Obj = {"kind": "ImageStreamTag", "name": trigger.source}
            if trigger.namespace and trigger.namespace != own:
                source["namespace"] = trigger.namespace
            listed = (
                "initContainers" if name in init_names and name not in plain_names else "containers"
            )
            entry: Obj = {
                "from": source,
                "fieldPath": ".".join(pod_path) + f'.{listed}[?(@.name=="{name}")].image',
            }
            if not trigger.auto:
                entry["paused"] = True
            entries.append(entry)
    return json.dumps(entries or None, separators=(",", ":"))


def apply_annotation(obj: Mapping[str, Any], kind: str, definition: TriggerDefinition) -> Change:
    """The ops that write `definition` onto an annotation-triggered object (pure)."""
    value = annotation_value(obj, kind, definition)
    ops: list[Obj] = []
    annotations = annotations_of(obj)
    if annotations.get(TRIGGER_ANNOTATION) != value:
        if isinstance(metadata_of(obj).get("annotations"), Mapping):
            path = json_pointer("metadata", "annotations", TRIGGER_ANNOTATION)
            ops.append({"op": "add", "path": path, "value": value})
        else:
            ops.append(
                {"op": "add", "path": "/metadata/annotations", "value": {TRIGGER_ANNOTATION: value}}
            )
    if kind == "Deployment":
        paused = bool(mapping(obj.get("spec")).get("paused"))
        if paused != (not definition.config_change):
            ops.append({"op": "add", "path": "/spec/paused", "value": not definition.config_change})
    return Change(ops=ops)


def _canonical_dc_trigger(trigger: Mapping[str, Any]) -> Obj:
    """A DeploymentConfig trigger as OpenShift's typed struct holds it, for equality;
    without `lastTriggeredImage` (see `deploymentconfig_triggers`)."""
    canonical: Obj = {"type": string(trigger.get("type"))}
    params = trigger.get("imageChangeParams")
    if isinstance(params, Mapping):
        source = mapping(params.get("from"))
        canonical["imageChangeParams"] = {
            "automatic": params.get("automatic") is True,
            "containerNames": [str(n) for n in params.get("containerNames") or []],
            "from": {k: string(v) for k, v in source.items() if string(v)},
        }
    return canonical


def deploymentconfig_triggers(dc: Mapping[str, Any], definition: TriggerDefinition) -> list[Obj]:
    """`spec.triggers` as oc leaves it for `definition` (pure).

    ConfigChange first when wanted, then the existing entries that are still wanted (as
    they were), then the new ones. Unlike oc, an existing image trigger that is otherwise
    unchanged keeps its `lastTriggeredImage`: oc compares whole entries, so it drops the
    field from every image trigger and OpenShift's trigger controller writes it back;
    here, an emptied `lastTriggeredImage` could make the next write look like an image
    change.
    """
    pod_spec = pod_spec_at(dc, POD_SPEC_PATHS["DeploymentConfig"])
    _check_names(definition, pod_spec)
    existing = [
        dict(t)
        for t in common.mapping_list(mapping(dc.get("spec")).get("triggers"))
        if t.get("type") != "ConfigChange"
    ]
    wanted: list[Obj] = [{"type": "ConfigChange"}] if definition.config_change else []
    for trigger in definition.images:
        source: Obj = {"kind": "ImageStreamTag", "name": trigger.source}
        if trigger.namespace:
            source["namespace"] = trigger.namespace
        wanted.append(
            {
                "type": "ImageChange",
                "imageChangeParams": {
                    "automatic": trigger.auto,
                    "from": source,
                    "containerNames": list(trigger.names),
                },
            }
        )
    wanted_canonical = [_canonical_dc_trigger(t) for t in wanted]
    result = [t for t in existing if _canonical_dc_trigger(t) in wanted_canonical]
    result_canonical = [_canonical_dc_trigger(t) for t in result]
    result += [
        t for t, c in zip(wanted, wanted_canonical, strict=True) if c not in result_canonical
    ]
    return result


def apply_deploymentconfig(dc: Mapping[str, Any], definition: TriggerDefinition) -> Change:
    triggers = deploymentconfig_triggers(dc, definition)
    if triggers == list(mapping(dc.get("spec")).get("triggers") or []):
        return Change()
    return Change(ops=[{"op": "add", "path": "/spec/triggers", "value": triggers}])


def trigger_table(rows: Sequence[tuple[str, TriggerDefinition]]) -> str:
    """oc's table of triggers (NAME TYPE VALUE AUTO)."""
    lines = ["NAME\tTYPE\tVALUE\tAUTO"]
    for name, definition in rows:
        lines.append(f"{name}\tconfig\t\t{str(definition.config_change).lower()}")
        for trigger in definition.images:
            source = (
                f"{trigger.namespace}/{trigger.source}" if trigger.namespace else trigger.source
            )
            details = f"{source} ({', '.join(trigger.names)})" if trigger.names else source
            lines.append(f"{name}\timage\t{details}\t{str(trigger.auto).lower()}")
    return tabwrite("\n".join(lines) + "\n", minwidth=0, tabwidth=2, padding=2, padchar=" ")


# --- doing ------------------------------------------------------------------------------------


def _resource_for(target: str) -> tuple[Resource, str]:
    kind, _, name = target.partition("/")
    resource = KINDS.get(kind.lower())
    if resource is None or not name:
        if kind.lower() in ("bc", "buildconfig", "buildconfigs"):
            raise CommandError("BuildConfig triggers are not supported by this command")
        raise CommandError(
            "expected KIND/NAME with KIND one of deployment, statefulset, daemonset, cronjob,"
            f" deploymentconfig; got {q(target)}"
        )
    return resource, name


async def _patch_guarded(
    kube: Kube,
    resource: Resource,
    namespace: str,
    name: str,
    decide: Callable[[Obj], Change],
) -> tuple[Obj, bool]:
    """Read, decide, patch with the read's resourceVersion; again on a concurrent change."""
    for _ in range(PATCH_ATTEMPTS):
        obj = await kube.get(resource, namespace, name)
        change = decide(copy.deepcopy(obj))
        if not change.ops:
            return obj, False
        version = metadata_of(obj).get("resourceVersion")
        patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        try:
            return (
                await kube.patch(
                    resource, namespace, name, patch + change.ops, patch_type=JSON_PATCH
                ),
                True,
            )
        except PatchTestFailed:
            continue
    raise CommandError(f"{resource.kind} {namespace}/{name} kept changing; try again")


async def run_triggers(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    resource, name = _resource_for(args.target)
    flags = parse_trigger_flags(args, namespace)
    if flags.print_table:
        obj = await kube.get(resource, namespace, name)
        return trigger_table([(f"{resource.plural}/{name}", definition_of(obj, resource.kind))])

    def decide(obj: Obj) -> Change:
        definition = update(definition_of(obj, resource.kind), flags)
        if resource is DEPLOYMENTCONFIGS:
            return apply_deploymentconfig(obj, definition)
        return apply_annotation(obj, resource.kind, definition)

    obj, changed = await _patch_guarded(kube, resource, namespace, name, decide)
    if not changed:
        return ""  # as oc: an unchanged object prints nothing
    if args.output:
        return common.render(obj, args.output)
    return f"{common.object_name(resource, name)} triggers updated\n"


def _stream_names(arguments: Sequence[str]) -> list[str]:
    names = []
    for argument in arguments:
        kind, slash, name = argument.partition("/")
        if not slash:
            names.append(argument)
        elif kind.lower() in ("is", "imagestream", "imagestreams") and name:
            names.append(name)
        else:
            raise CommandError(
                f"only image streams (NAME or is/NAME) are supported, not {q(argument)}"
            )
    return names


async def run_image_lookup(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    names = _stream_names(args.streams)
    if args.list or (not names and not args.all and not args.output):
        if names:
            streams = [await kube.get(IMAGESTREAMS, namespace, n) for n in names]
        else:
            streams, _ = await kube.list(IMAGESTREAMS, namespace)
        lines = ["NAME\tLOCAL"]
        for stream in streams:
            local = bool(mapping(mapping(stream.get("spec")).get("lookupPolicy")).get("local"))
            lines.append(f"{metadata_of(stream).get('name')}\t{str(local).lower()}")
        return tabwrite("\n".join(lines) + "\n", minwidth=0, tabwidth=2, padding=2, padchar=" ")
    if args.all:
        listed, _ = await kube.list(IMAGESTREAMS, namespace)
        names = [string(metadata_of(s).get("name")) for s in listed]
    out = []
    for name in names:
        stream = await kube.get(IMAGESTREAMS, namespace, name)
        current = mapping(mapping(stream.get("spec")).get("lookupPolicy")).get("local")
        if bool(current) == args.enabled:
            continue  # unchanged: oc prints nothing
        patched = await kube.patch(
            IMAGESTREAMS,
            namespace,
            name,
            {"spec": {"lookupPolicy": {"local": args.enabled}}},
            patch_type=MERGE_PATCH,
        )
        if args.output:
            out.append(common.render(patched, args.output))
        else:
            out.append(f"{common.object_name(IMAGESTREAMS, name)} image lookup updated\n")
    return "".join(out)


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `set triggers` and `set image-lookup` to the `imagestream` command."""
    set_parser = commands.add_parser(
        "set", help="update image triggers and image lookup (like oc set)"
    )
    actions = set_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    triggers = actions.add_parser(
        "triggers",
        help="show or change the image triggers of a workload or DeploymentConfig",
        description="Without flags, list the triggers. --from-image=STREAM:TAG -c CONTAINER "
        "adds or changes an image trigger (--manual: paused); --auto/--manual alone switch "
        "every trigger; --remove removes the named trigger; --remove-all every trigger.",
    )
    triggers.add_argument("target", metavar="KIND/NAME")
    triggers.add_argument("--from-image", default=None, help="an image stream tag, STREAM:TAG")
    triggers.add_argument(
        "-c", "--containers", default=None, help="comma-separated container names"
    )
    triggers.add_argument("--from-config", action="store_true", help="the config change trigger")
    triggers.add_argument("--auto", action="store_true", help="make the trigger(s) automatic")
    triggers.add_argument("--manual", action="store_true", help="make the trigger(s) manual")
    triggers.add_argument("--remove", action="store_true", help="remove the named trigger")
    triggers.add_argument("--remove-all", action="store_true", help="remove every trigger")
    common.add_connection_flags(triggers, add_flag)
    common.add_output_flag(triggers)
    triggers.set_defaults(
        handler=lambda args: common.run_command(
            args,
            run_triggers,
            check=lambda a: (_resource_for(a.target), parse_trigger_flags(a, "")),
        )
    )

    lookup = actions.add_parser(
        "image-lookup",
        help="let pods name the stream's tags directly (spec.lookupPolicy.local)",
        description="Without names, list the image streams and whether they resolve local "
        "names; with names, set spec.lookupPolicy.local (--enabled=false to clear).",
    )
    lookup.add_argument("streams", nargs="*", metavar="STREAM")
    lookup.add_argument(
        "--enabled",
        nargs="?",
        const=True,
        default=True,
        type=_boolean,
        help="true (default) or false",
    )
    lookup.add_argument("--all", action="store_true", help="every image stream in the namespace")
    lookup.add_argument("--list", action="store_true", help="show the current state only")
    common.add_connection_flags(lookup, add_flag)
    common.add_output_flag(lookup)
    lookup.set_defaults(handler=lambda args: common.run_command(args, run_image_lookup))
