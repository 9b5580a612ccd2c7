"""`imagestream import-image NAME[:TAG] [--from=IMAGE] [--confirm] [--all]`, as `oc import-image`.

Invariant: the command leaves the spec tag as `oc import-image` leaves it on OpenShift
(`from` DockerImage, `importPolicy` with the flags merged into the tag's own, the tag's
`referencePolicy` kept or set, `generation: 0`), with oc's refusals (no stream without
`--confirm`, no tag that is not a container image, no silent change of a tag's source),
and returns only when the controller's import of that spec has landed in status: a new
head whose generation is the tag's, or an `ImportSuccess=False` condition of that
generation; or when the bound (`--timeout`) passes, which is an error.

Failure it prevents: a command that says "imported" while nothing was imported yet (or
while the controller is down), and an import that leaves the stream's spec different from
what the same command leaves on OpenShift. OpenShift imports inside its API server
(ImageStreamImport); here the controller does, so the command writes the spec and waits.

Differences, on purpose: `--all` re-imports the stream's container-image tags, but a
whole repository (`--all` with `--from`, or a stream with `spec.dockerImageRepository`)
is refused, because the controller imports tags, not repositories
(docs/openshift-behaviours.md#behaviour-6); and no Image objects are shown, because there
are none.

`parse_target`, `plan_import` and `import_result` decide (pure); `run` writes and waits.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imagestream.cli import common
from imagestream.cli.common import CommandError, Printed, ServerSaid, q
from imagestream.cli.describe import describe_image_stream, follow_tag_reference
from imagestream.cli.pullspec import parse
from imagestream.cli.specwrite import SpecWrite, spec_tag_list, spec_tag_writes, write_spec
from imagestream.imagestreams import head, status_tag
from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.objects import Obj, mapping, string

WAIT_TIMEOUT_S = 30.0
POLL_S = 0.2
REPOSITORY_CHECK_ANNOTATION = "openshift.io/image.dockerRepositoryCheck"
INSECURE_REPOSITORY_ANNOTATION = "openshift.io/image.insecureRepository"


@dataclass(frozen=True)
class ImportFlags:
    from_image: str = ""
    confirm: bool = False
    all: bool = False
    scheduled: bool = False
    insecure: bool | None = None
    """None: `--insecure` not given (the stream's annotation decides)."""
    reference_policy: str | None = None
    """None: `--reference-policy` not given (a tag keeps its own)."""
    import_mode: str = "Legacy"


@dataclass(frozen=True)
class ImportPlan:
    tags: list[Obj]
    """The stream's `spec.tags` as they must become."""
    imported: list[str] = field(default_factory=list)
    """The tags whose import the command waits for."""
    create: bool = False


# --- deciding (pure) ------------------------------------------------------------------------


def parse_target(text: str, *, all_tags: bool) -> tuple[str, str | None]:
    """NAME[:TAG] -> (stream, tag); the tag is None with `--all`, `latest` when left out."""
    if not text:
        raise CommandError("you must specify the name of an image stream")
    try:
        ref = parse(text)
    except ValueError as error:
        raise CommandError(
            "the image name must be a valid container image pull spec or reference to an"
            " image stream (e.g. myregistry/myteam/image:tag)"
        ) from error
    if ref.id:
        raise CommandError("to import images by ID, use the 'tag' command")
    if ref.tag and all_tags:
        raise CommandError(f"cannot specify a tag {q(text)} as well as --all")
    if not ref.name:
        raise CommandError(f"{q(text)} names no image stream")
    return ref.name, (None if all_tags else ref.tag or "latest")


def _reference_policy(flags: ImportFlags) -> Obj:
    return {"type": "Local" if flags.reference_policy == "local" else "Source"}


def _import_policy(
    stream: Mapping[str, Any], old: Mapping[str, Any] | None, flags: ImportFlags
) -> Obj:
    """oc's merge: the stream's insecure annotation (or `--insecure`) or the tag's own;
    `--scheduled` or the tag's own; the import mode from the flag."""
    annotations = mapping(mapping(stream.get("metadata")).get("annotations"))
    insecure = annotations.get(INSECURE_REPOSITORY_ANNOTATION) == "true"
    if flags.insecure is not None:
        insecure = flags.insecure
    old_policy = mapping(old.get("importPolicy")) if old is not None else {}
    policy: Obj = {"importMode": flags.import_mode}
    if insecure or old_policy.get("insecure"):
        policy["insecure"] = True
    if flags.scheduled or old_policy.get("scheduled"):
        policy["scheduled"] = True
    return policy


def _new_tag(stream: Mapping[str, Any], name: str, from_image: str, flags: ImportFlags) -> Obj:
    return {
        "name": name,
        "from": {"kind": "DockerImage", "name": from_image},
        "generation": 0,
        "importPolicy": _import_policy(stream, None, flags),
        "referencePolicy": _reference_policy(flags),
    }


def _reimported(stream: Mapping[str, Any], old: Mapping[str, Any], flags: ImportFlags) -> Obj:
    tag = dict(old)
    annotations = mapping(old.get("annotations"))
    if REPOSITORY_CHECK_ANNOTATION in annotations:
        tag["annotations"] = {
            k: v for k, v in annotations.items() if k != REPOSITORY_CHECK_ANNOTATION
        }
    tag["generation"] = 0
    tag["importPolicy"] = _import_policy(stream, old, flags)
    if not mapping(old.get("referencePolicy")).get("type"):
        tag["referencePolicy"] = _reference_policy(flags)
    return tag


def follow(stream: Mapping[str, Any], tag: str) -> tuple[str, Mapping[str, Any] | None, bool]:
    """Follow same-stream tag references: (final tag, its spec tag or None, followed any)."""
    final, multiple, error = follow_tag_reference(stream, tag)
    if error == "circular":
        raise CommandError(f"tag {q(tag)} on the image stream is a reference to same tag")
    if error == "cross":
        raise CommandError(f"tag {q(tag)} points to an imagestreamtag from another ImageStream")
    if error == "notfound":
        return final, None, multiple
    found = next((t for t in spec_tag_list(stream) if t.get("name") == final), None)
    return final, found, multiple


def plan_import(
    stream: Mapping[str, Any] | None, name: str, tag: str | None, flags: ImportFlags, target: str
) -> ImportPlan:
    """What `oc import-image` makes of the stream (as read; None: it does not exist)."""
    if stream is None:
        if not flags.confirm:
            raise CommandError(
                f"no image stream named {q(name)} exists, pass --confirm to create and import"
            )
        if tag is None:
            raise CommandError(_whole_repository(flags.from_image or target))
        new = _new_tag({}, tag, flags.from_image or target, flags)
        return ImportPlan(tags=[new], imported=[tag], create=True)
    tags = spec_tag_list(stream)
    spec = mapping(stream.get("spec"))
    if tag is None:  # --all
        repository = flags.from_image or string(spec.get("dockerImageRepository"))
        if repository:
            raise CommandError(_whole_repository(repository))
        names = [
            string(t.get("name"))
            for t in tags
            if mapping(t.get("from")).get("kind") == "DockerImage"
        ]
        if not names:
            raise CommandError(
                "image stream does not have tags pointing to external container images"
            )
        new_tags = [
            _reimported(stream, t, flags) if string(t.get("name")) in names else t for t in tags
        ]
        return ImportPlan(tags=new_tags, imported=names)
    final, existing, multiple = follow(stream, tag)
    from_image = flags.from_image
    if existing is None:
        if not from_image and tag == "latest":
            from_image = string(spec.get("dockerImageRepository"))
        if not from_image:
            raise CommandError(
                f"the tag {q(tag)} does not exist on the image stream - choose an existing tag to"
                " import or use the 'tag' command to create a new tag"
            )
        new = _new_tag(stream, tag, from_image, flags)
        return ImportPlan(tags=[*tags, new], imported=[tag])
    source = mapping(existing.get("from"))
    if not source:
        raise CommandError(
            f"tag {q(tag)} already exists - you must use the 'tag' command if you want to change"
            f" the source to {q(from_image)}"
        )
    if source.get("kind") != "DockerImage":
        raise CommandError(
            f"tag {q(tag)} points to existing {source.get('kind')} {q(source.get('name'))}, it"
            " cannot be re-imported"
        )
    if from_image and from_image != source.get("name"):
        if multiple:
            raise CommandError(
                f"the tag {q(tag)} points to the tag {q(final)} which points to"
                f" {q(source.get('name'))} - use the 'tag' command if you want to change the"
                f" source to {q(from_image)}"
            )
        raise CommandError(
            f"the tag {q(tag)} points to {q(source.get('name'))} - use the 'tag' command if you"
            f" want to change the source to {q(from_image)}"
        )
    updated = _reimported(stream, existing, flags)
    return ImportPlan(
        tags=[updated if t.get("name") == final else t for t in tags], imported=[final]
    )


def _whole_repository(repository: str) -> str:
    return (
        f"importing every tag of a repository ({repository}) is not supported: the controller"
        " imports tags; name one tag (NAME:TAG --from=REPOSITORY:TAG), or tag each with"
        " `imagestream tag --source=docker`"
    )


def import_result(stream: Mapping[str, Any], tag: str, written_generation: int) -> str | None:
    """None while the import asked for at `written_generation` has not landed; else
    "" for success, or the ImportSuccess=False message (pure)."""
    status = mapping(stream.get("status"))
    if int(status.get("observedGeneration") or 0) < written_generation:
        return None
    observed = next(
        (o for o in common.mapping_list(status.get("observedTags")) if o.get("name") == tag),
        None,
    )
    tag_generation = int((observed or {}).get("generation") or 0)
    if tag_generation < written_generation:
        return None
    current = head(stream, tag)
    if current is not None and current.generation >= tag_generation:
        return ""
    for condition in common.mapping_list((status_tag(stream, tag) or {}).get("conditions")):
        if (
            condition.get("type") == "ImportSuccess"
            and condition.get("status") == "False"
            and int(condition.get("generation") or 0) >= tag_generation
        ):
            return string(condition.get("message")) or string(condition.get("reason"))
    return None


# --- doing ------------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> None:
    """What can be refused before connecting."""
    if args.reference_policy not in (None, "source", "local"):
        raise CommandError("valid reference policy values are source or local")
    if args.import_mode not in ("Legacy", "PreserveOriginal"):
        raise CommandError("valid ImportMode values are Legacy or PreserveOriginal")
    parse_target(args.target, all_tags=args.all)


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> Printed:
    check(args)
    flags = ImportFlags(
        from_image=args.from_image or "",
        confirm=args.confirm,
        all=args.all,
        scheduled=args.scheduled,
        insecure=args.insecure,
        reference_policy=args.reference_policy,
        import_mode=args.import_mode,
    )
    name, tag = parse_target(args.target, all_tags=args.all)
    imported: list[str] = []

    def decide(stream: Obj | None) -> Sequence[SpecWrite]:
        plan = plan_import(stream, name, tag, flags, args.target)
        imported[:] = plan.imported
        return spec_tag_writes(None if plan.create else stream, plan.tags)

    written = await write_spec(kube, namespace, name, decide)
    if written is None:
        raise ServerSaid("NotFound", f'imagestreams.image.openshift.io "{name}" not found')
    generation = int(mapping(written.get("metadata")).get("generation") or 0)
    deadline = time.monotonic() + args.timeout
    results: dict[str, str] = {}
    stream = written
    while True:
        for each in imported:
            if each not in results:
                found = import_result(stream, each, generation)
                if found is not None:
                    results[each] = found
        if len(results) == len(imported):
            break
        if time.monotonic() >= deadline:
            waiting = ", ".join(f"{name}:{t}" for t in imported if t not in results)
            raise CommandError(
                f"the import of {waiting} was asked for, but no controller finished it within"
                f" {args.timeout:g}s (is imagestream-controller running?)"
            )
        await asyncio.sleep(POLL_S)
        stream = await kube.get(IMAGESTREAMS, namespace, name)
    failed = {t: m for t, m in results.items() if m}
    if args.output:
        text = common.render(stream, args.output)
    else:
        status = "imported with errors" if failed else "imported"
        text = f"{common.object_name(IMAGESTREAMS, name)} {status}\n\n"
        text += describe_image_stream(stream, datetime.now(UTC))
    if failed:
        tag_name, reason = sorted(failed.items())[0]
        more = f" (and {len(failed) - 1} more tags)" if len(failed) > 1 else ""
        return Printed(text, stderr=f"error: tag {tag_name} failed: {reason}{more}", code=1)
    return Printed(text)


def main(args: argparse.Namespace) -> int:
    return common.run_command(args, run, check=check)


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `import-image` to the `imagestream` command."""
    parser = commands.add_parser(
        "import-image",
        help="import an image from a registry into an image stream tag (like oc import-image)",
        description="Set NAME[:TAG] (default latest) to import its container image again, or "
        "from --from; wait for the controller's import and print the result.",
    )
    parser.add_argument("target", metavar="NAME[:TAG]")
    parser.add_argument("--from", dest="from_image", default=None, help="the image to import")
    parser.add_argument(
        "--confirm", action="store_true", help="create the image stream if it does not exist"
    )
    parser.add_argument(
        "--all", action="store_true", help="import every container-image tag of the stream"
    )
    parser.add_argument(
        "--scheduled", action="store_true", help="import the image again periodically"
    )
    parser.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="the registry is served over HTTP or without a valid certificate",
    )
    parser.add_argument(
        "--reference-policy", default=None, help="source (default) or local, for new tags"
    )
    parser.add_argument("--import-mode", default="Legacy", help="Legacy or PreserveOriginal")
    parser.add_argument(
        "--timeout",
        type=float,
        default=WAIT_TIMEOUT_S,
        help="seconds to wait for the controller's import",
    )
    common.add_connection_flags(parser, add_flag)
    common.add_output_flag(parser)
    parser.set_defaults(handler=main)
