"""`imagestream tag SOURCE DEST...` and `imagestream tag -d DEST...`, as `oc tag`.

Invariant: for the same arguments and the same streams, the spec tag written is the one
`oc tag` makes OpenShift store: the same `from` (kind, name, namespace), `reference`,
`importPolicy`, `referencePolicy`, and `generation: 0` for a container image (an import
request); and `-d` removes the tag from spec and status, as OpenShift's ImageStreamTag
delete does. A destination stream that does not exist is created.

Failure it prevents: a user's `oc tag` habit silently meaning something else here. The
rules that surprise are kept on purpose:

- `stream:tag` without `--alias` copies the image the tag points to *now*: the spec tag
  becomes an ImageStreamImage (`stream@sha256:...`), or a DockerImage when the source
  tag only holds a reference; `--alias` keeps following the tag, within one stream only;
- a source with a registry, or without a tag or digest, is a container image;
- `library/` as the namespace of an image stream source means the current namespace.

How the stream then changes (the copy, the import) is the controller's, as it is the
API server's on OpenShift; this command writes the spec only.

`parse_source`, `resolve_source`, `validate`, `spec_tag` and `message` decide (pure); `run`
reads and writes through `specwrite.write_spec`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagestream.cli.common import (
    CommandError,
    CommandParser,
    ServerSaid,
    add_connection_flags,
    q,
    run_command,
)
from imagestream.cli.pullspec import PullSpec, parse, split_stream_tag
from imagestream.cli.specwrite import (
    WRITE_ATTEMPTS,
    SpecWrite,
    StreamChanged,
    read_stream,
    spec_tag_list,
    spec_tag_writes,
    with_spec_tag,
    without_spec_tag,
    write_spec,
)
from imagestream.imagestreams import head
from imagestream.kube.client import JSON_PATCH, Kube
from imagestream.kube.errors import NotFound, PatchTestFailed
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.objects import Obj, mapping

DOCKER_IMAGE = "DockerImage"
IMAGE_STREAM_TAG = "ImageStreamTag"
IMAGE_STREAM_IMAGE = "ImageStreamImage"
SOURCE_HINTS = {
    "imagestreamtag": IMAGE_STREAM_TAG,
    "istag": IMAGE_STREAM_TAG,
    "imagestreamimage": IMAGE_STREAM_IMAGE,
    "isimage": IMAGE_STREAM_IMAGE,
    "docker": DOCKER_IMAGE,
    "dockerimage": DOCKER_IMAGE,
}
REFERENCE_POLICIES = {"source": "Source", "local": "Local"}
IMPORT_MODES = ("Legacy", "PreserveOriginal")
_TAG = re.compile(r"[\w][\w.-]{0,127}")


@dataclass(frozen=True)
class Source:
    kind: str
    ref: PullSpec
    text: str
    """SOURCE as given, for messages."""


@dataclass(frozen=True)
class Destination:
    namespace: str
    name_and_tag: str
    """`stream:tag` as given (without the namespace)."""


@dataclass(frozen=True)
class Flags:
    alias: bool = False
    reference: bool = False
    scheduled: bool = False
    insecure: bool = False
    reference_policy: str = "source"
    import_mode: str = ""
    delete: bool = False
    source_hint: str = ""


# --- deciding (pure) ------------------------------------------------------------------------


def parse_source(text: str, *, hint: str, namespace: str) -> Source:
    """SOURCE and `--source` as oc reads them: which kind, which parts."""
    kind = ""
    if hint:
        kind = SOURCE_HINTS.get(hint.lower(), "")
        if not kind:
            raise CommandError(
                f"invalid source {q(hint)}; valid values are {', '.join(sorted(SOURCE_HINTS))}"
            )
    try:
        ref = parse(text)
    except ValueError as error:
        raise CommandError(f"invalid SOURCE: {error}") from error
    if kind in (IMAGE_STREAM_TAG, IMAGE_STREAM_IMAGE):
        if ref.registry:
            raise CommandError("a registry in SOURCE is only allowed for a container image")
        if ref.namespace == "library":
            ref = PullSpec(namespace=namespace, name=ref.name, tag=ref.tag, id=ref.id)
        if kind == IMAGE_STREAM_TAG and not ref.tag:
            raise CommandError("--source=imagestreamtag needs <name>:<tag> in SOURCE")
        if kind == IMAGE_STREAM_IMAGE and not ref.id:
            raise CommandError("--source=imagestreamimage needs <name>@<id> in SOURCE")
    elif not kind:
        if ref.registry:
            kind = DOCKER_IMAGE
        elif ref.id:
            kind = IMAGE_STREAM_IMAGE
        elif ref.tag:
            kind = IMAGE_STREAM_TAG
        else:
            kind = DOCKER_IMAGE
    if not ref.exact():
        raise CommandError(f"invalid SOURCE {q(text)}: it names no image")
    return Source(kind=kind, ref=ref, text=text)


def resolve_source(source: Source, stream: Mapping[str, Any]) -> Source:
    """Without `--alias`, a tag source is the image it points to now (oc's copy)."""
    current = head(stream, source.ref.tag or "latest")
    if current is None:
        raise CommandError(
            f"{q(source.text)} is not currently pointing to an image, cannot use it as the"
            " source of a tag"
        )
    if not current.image:
        try:
            ref = parse(current.docker_image_reference)
        except ValueError as error:
            raise CommandError(
                f"the image stream tag {q(source.text)} has an invalid pull spec and cannot be"
                f" used to tag: {error}"
            ) from error
        return Source(kind=DOCKER_IMAGE, ref=ref, text=source.text)
    return Source(kind=IMAGE_STREAM_IMAGE, ref=source.ref.with_id(current.image), text=source.text)


def parse_destination(text: str, *, namespace: str) -> Destination:
    if "/" not in text:
        return Destination(namespace=namespace, name_and_tag=text)
    parts = text.split("/")
    if len(parts) != 2:
        raise CommandError(f"invalid image stream {q(text)}")
    if not parts[0]:
        raise CommandError(f"invalid namespace {q(parts[0])} for image stream {q(text)}")
    if not parts[1]:
        raise CommandError(f"invalid name {q(parts[1])} for image stream {q(text)}")
    return Destination(namespace=parts[0], name_and_tag=parts[1])


def validate(
    flags: Flags, source: Source | None, destinations: Sequence[Destination], namespace: str
) -> Flags:
    """oc's checks of the flags together; the flags with the import mode defaulted."""
    if flags.delete and flags.alias:
        raise CommandError("--alias and --delete may not be both specified")
    if flags.reference_policy not in REFERENCE_POLICIES:
        raise CommandError("reference policy must be set to 'source' or 'local'")
    if flags.delete:
        if flags.source_hint:
            raise CommandError("cannot specify a source kind when deleting")
        if flags.scheduled or flags.insecure:
            raise CommandError("cannot set flags for importing images when deleting a tag")
        if flags.import_mode:
            raise CommandError("cannot specify an import mode when deleting")
    elif source is None:
        raise CommandError("a source is required")
    if not destinations:
        raise CommandError("at least a destination is required")
    if source is not None and source.kind != DOCKER_IMAGE and (flags.scheduled or flags.insecure):
        raise CommandError("only container images can have importing flags set")
    if flags.alias and source is not None:
        if flags.scheduled or flags.insecure:
            raise CommandError(
                "cannot set a container image tag as an alias and also set import flags"
            )
        for destination in destinations:
            stream, _, ok = split_stream_tag(destination.name_and_tag)
            if destination.namespace != namespace:
                raise CommandError("cannot set alias across different Image Streams")
            if not ok:
                raise CommandError(
                    f"{q(destination.name_and_tag)} must be of the form <stream_name>:<tag>"
                )
            if stream != source.ref.name:
                raise CommandError("cannot set alias across different Image Streams")
    if flags.import_mode and flags.import_mode not in IMPORT_MODES:
        raise CommandError("valid ImportMode values are Legacy or PreserveOriginal")
    if not flags.import_mode and not flags.delete:
        return Flags(**{**flags.__dict__, "import_mode": "Legacy"})
    return flags


def validate_tag_name(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise CommandError(
            f"invalid tag {q(tag)}: a tag starts with a letter, digit or '_', continues with"
            " those, '.' or '-', and has at most 128 characters"
        )


def spec_tag(
    source: Source, destination: Destination, tag: str, flags: Flags, namespace: str
) -> Obj:
    """The spec tag oc sends (and OpenShift stores) for this source and destination."""
    import_policy: Obj = {"importMode": flags.import_mode or "Legacy"}
    if flags.insecure:
        import_policy["insecure"] = True
    if flags.scheduled:
        import_policy["scheduled"] = True
    source_ref: Obj = {"kind": source.kind}
    written: Obj = {"name": tag, "annotations": None, "from": source_ref}
    if flags.reference:
        written["reference"] = True
    if source.kind == DOCKER_IMAGE:
        source_ref["name"] = source.ref.exact()
        written["generation"] = 0  # a new import, whatever was imported before
    else:
        source_ref["name"] = source.ref.name_string()
        source_namespace = source.ref.namespace
        if not source_namespace and destination.namespace != namespace:
            source_namespace = namespace
        if source_namespace:
            source_ref["namespace"] = source_namespace
    written["importPolicy"] = import_policy
    written["referencePolicy"] = {"type": REFERENCE_POLICIES[flags.reference_policy]}
    return written


def message(source: Source, destination: Destination, flags: Flags, namespace: str) -> str:
    where = (
        destination.name_and_tag
        if destination.namespace == namespace
        else f"{destination.namespace}/{destination.name_and_tag}"
    )
    what = source.ref.exact()
    if flags.alias:
        return f"Tag {where} set up to track {what}."
    if flags.scheduled:
        return f"Tag {where} set to import {what} periodically."
    return f"Tag {where} set to {what}."


def delete_writes(stream: Mapping[str, Any], tag: str, label: str) -> tuple[list[Obj], bool]:
    """The spec tags after removing `tag`, and whether status holds it (pure).

    Raises when neither spec nor status has the tag, as OpenShift answers 404.
    """
    in_spec = any(t.get("name") == tag for t in spec_tag_list(stream))
    in_status = any(
        mapping(t).get("tag") == tag for t in mapping(stream.get("status")).get("tags") or []
    )
    if not in_spec and not in_status:
        raise ServerSaid("NotFound", f'imagestreamtags.image.openshift.io "{label}" not found')
    return without_spec_tag(spec_tag_list(stream), tag), in_status


# --- doing ------------------------------------------------------------------------------------


async def _status_without_tag(kube: Kube, namespace: str, name: str, tag: str) -> None:
    """Drop `tag` from status (history and conditions), guarded by the read."""
    for _ in range(WRITE_ATTEMPTS):
        stream = await read_stream(kube, namespace, name)
        if stream is None:
            return
        tags = [t for t in mapping(stream.get("status")).get("tags") or []]
        kept = [t for t in tags if mapping(t).get("tag") != tag]
        if len(kept) == len(tags):
            return
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": stream["metadata"]["resourceVersion"],
            },
            {"op": "replace", "path": "/status/tags", "value": kept},
        ]
        try:
            await kube.patch(
                IMAGESTREAMS, namespace, name, patch, patch_type=JSON_PATCH, subresource="status"
            )
            return
        except PatchTestFailed:
            continue
    raise StreamChanged(f"imagestream {namespace}/{name} kept changing; try again")


async def delete_tag(kube: Kube, destination: Destination) -> str:
    stream_name, tag, ok = split_stream_tag(destination.name_and_tag)
    if not ok:
        raise CommandError(f"{q(destination.name_and_tag)} must be of the form <stream_name>:<tag>")
    label = destination.name_and_tag
    status_too = False

    def decide(stream: Obj | None) -> list[SpecWrite]:
        nonlocal status_too
        if stream is None:
            raise ServerSaid(
                "NotFound", f'imagestreams.image.openshift.io "{stream_name}" not found'
            )
        tags, status_too = delete_writes(stream, tag, label)
        return [] if tags == spec_tag_list(stream) else [SpecWrite(tags=tags)]

    await write_spec(kube, destination.namespace, stream_name, decide)
    if status_too:
        await _status_without_tag(kube, destination.namespace, stream_name, tag)
    return f"Deleted tag {destination.namespace}/{destination.name_and_tag}.\n"


async def set_tag(
    kube: Kube, source: Source, destination: Destination, flags: Flags, namespace: str
) -> str:
    stream_name, tag, ok = split_stream_tag(destination.name_and_tag)
    if not ok:
        raise CommandError(f"{q(destination.name_and_tag)} must be of the form <stream_name>:<tag>")
    validate_tag_name(tag)
    written = spec_tag(source, destination, tag, flags, namespace)

    def decide(stream: Obj | None) -> list[SpecWrite]:
        return spec_tag_writes(stream, with_spec_tag(spec_tag_list(stream), written))

    try:
        await write_spec(kube, destination.namespace, stream_name, decide)
    except NotFound as error:  # the namespace itself does not exist
        raise CommandError(f'namespace "{destination.namespace}" not found') from error
    return message(source, destination, flags, namespace) + "\n"


def flags_of(args: argparse.Namespace) -> Flags:
    """The flags, checked as far as they can be without the cluster."""
    flags = Flags(
        alias=args.alias,
        reference=args.reference,
        scheduled=args.scheduled,
        insecure=args.insecure,
        reference_policy=args.reference_policy,
        import_mode=args.import_mode or "",
        delete=args.delete,
        source_hint=args.source or "",
    )
    if not args.arguments and not flags.delete:
        raise CommandError(
            "you must specify a source and at least one destination or one or more tags to delete"
        )
    if flags.delete and flags.alias:
        raise CommandError("--alias and --delete may not be both specified")
    if flags.reference_policy not in REFERENCE_POLICIES:
        raise CommandError("reference policy must be set to 'source' or 'local'")
    if flags.import_mode and flags.import_mode not in IMPORT_MODES:
        raise CommandError("valid ImportMode values are Legacy or PreserveOriginal")
    return flags


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    flags = flags_of(args)
    arguments = list(args.arguments)
    source: Source | None = None
    if not flags.delete:
        source = parse_source(arguments.pop(0), hint=flags.source_hint, namespace=namespace)
        if source.kind == IMAGE_STREAM_TAG and not flags.alias:
            source_namespace = source.ref.namespace or namespace
            stream = await kube.get(IMAGESTREAMS, source_namespace, source.ref.name)
            source = resolve_source(source, stream)
    destinations = [parse_destination(a, namespace=namespace) for a in arguments]
    flags = validate(flags, source, destinations, namespace)
    out = []
    for destination in destinations:
        if source is None:
            out.append(await delete_tag(kube, destination))
        else:
            out.append(await set_tag(kube, source, destination, flags, namespace))
    return "".join(out)


def main(args: argparse.Namespace) -> int:
    return run_command(args, run, check=flags_of)


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `tag` to the `imagestream` command."""
    parser: CommandParser = commands.add_parser(
        "tag",
        help="tag existing images into image streams (like oc tag)",
        description="Set DEST tags (STREAM:TAG, or NAMESPACE/STREAM:TAG) to the image of "
        "SOURCE: an image stream tag (copied now; --alias to follow it), an image stream "
        "image (STREAM@sha256:...), or a container image (--source=docker, or any pull spec "
        "with a registry). -d deletes the DEST tags.",
    )
    parser.add_argument("arguments", nargs="*", metavar="SOURCE DEST", help="SOURCE DEST [DEST...]")
    parser.add_argument(
        "--source",
        default=None,
        help="the source's kind: imagestreamtag (istag), imagestreamimage (isimage), or docker",
    )
    parser.add_argument("-d", "--delete", action="store_true", help="delete the DEST spec tags")
    parser.add_argument(
        "--alias",
        action="store_true",
        help="follow the source tag as it changes (within one image stream only)",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="the tag refers to its source as is (pulls keep going to the source)",
    )
    parser.add_argument(
        "--scheduled",
        action="store_true",
        help="import the container image again periodically",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="the container image's registry is served over HTTP or without a valid certificate",
    )
    parser.add_argument(
        "--reference-policy",
        default="source",
        help="source (pull from where the image is) or local (through the integrated registry)",
    )
    parser.add_argument("--import-mode", default=None, help="Legacy (default) or PreserveOriginal")
    add_connection_flags(parser, add_flag)
    parser.set_defaults(handler=main)
