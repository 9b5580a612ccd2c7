"""`imagestream describe is/NAME`: an ImageStream's tags and their history, as `oc describe is`.

Invariant: for the same stream at the same moment, `describe_image_stream` prints what
`oc describe is` prints: the same lines, in the same order (tags ordered as oc orders
them: `latest`, then versions newest first, then the rest by name; tags that only point
at another tag of the stream listed beside it), padded with tabs by the same rules
(`tabwriter.py`), with the same relative times ("5 minutes ago").

Failure it prevents: people and scripts that read `oc describe is` output finding other
words here, or a difference in what the stream holds hidden behind a different layout.

One deliberate difference: OpenShift stamps each spec tag with a generation, and oc shows
"~ importing latest image ..." while that is newer than the tag's last result. Our CRD
keeps `generation: 0` as written and the controller keeps the tag's generation in
`status.observedTags` (docs/openshift-behaviours.md#behaviour-4); the line is shown by
the same rule, with that generation (and, before the controller has looked at a changed
spec, the stream's).

Pure but for `run`; `now` is passed in.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cmp_to_key
from typing import Any

from imagestream.cli import common
from imagestream.cli.common import CommandError, q
from imagestream.cli.pullspec import parse
from imagestream.cli.tabwriter import tabwrite
from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS
from imagestream.objects import mapping, string
from imagestream.timestamps import parse_rfc3339

KINDS = ("is", "imagestream", "imagestreams", "imagestream.image.openshift.io")
NONE = "<none>"


# --- oc's small helpers, in pure Python ---------------------------------------------------


def human_duration(seconds: float) -> str:
    """docker/go-units `HumanDuration`: "Less than a second", "5 minutes", "About an hour"."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _ago(timestamp: object, now: datetime) -> str:
    moment = parse_rfc3339(string(timestamp))
    # A missing timestamp is Go's zero time; the duration since saturates at 2^63 ns.
    seconds = (now - moment).total_seconds() if moment is not None else (2**63 - 1) / 1e9
    return human_duration(min(seconds, (2**63 - 1) / 1e9))


_NUMBER = r"(?:0|[1-9][0-9]*)"
_IDENTIFIER = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENTIFIER}(?:\.{_IDENTIFIER})*))?(?:\+{_IDENTIFIER}(?:\.{_IDENTIFIER})*)?"
)
_MINOR = re.compile(r"[\d]+\.[\d]+")
_MINOR_WITH_PATCH = re.compile(r"([\d]+\.[\d]+)-\w+")


def _semver(text: str) -> tuple[int, int, int, tuple[str, ...]] | None:
    found = _SEMVER.fullmatch(text)
    if found is None:
        return None
    pre = tuple(found["pre"].split(".")) if found["pre"] else ()
    if any(p.isdigit() and len(p) > 1 and p.startswith("0") for p in pre):
        return None  # blang/semver: no leading zeros in numeric prerelease parts
    return int(found["major"]), int(found["minor"]), int(found["patch"]), pre


def _compare_semver(a: tuple[int, int, int, tuple[str, ...]], b: Any) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    if a[3] == b[3]:
        return 0
    if not a[3] or not b[3]:
        return 1 if not a[3] else -1  # a release is newer than its prereleases
    for x, y in zip(a[3], b[3], strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return -1 if len(a[3]) < len(b[3]) else 1


def _priority(tag: str) -> tuple[int, Any, str]:
    if tag == "latest":
        return 0, None, ""
    prefix, short = ("v", tag[1:]) if tag.startswith("v") else ("", tag)
    version = _semver(short)
    if version is not None:
        return 2, version, prefix
    if _MINOR.fullmatch(short):
        version = _semver(short + ".0")
        if version is not None:
            return 1, version, prefix
    found = _MINOR_WITH_PATCH.fullmatch(short)
    if found is not None:
        version = _semver(short.replace(found[1], found[1] + ".0", 1))
        if version is not None:
            return 1, version, prefix
    return 3, None, prefix


def prioritize_tags(tags: Sequence[str]) -> list[str]:
    """OpenShift's `PrioritizeTags`: `latest`, minor versions, full versions (newest
    first), then the rest by name."""

    def compare(a: str, b: str) -> int:
        pa, pb = _priority(a), _priority(b)
        if pa[0] != pb[0]:
            return -1 if pa[0] < pb[0] else 1
        if pa[0] == 3:
            return (a > b) - (a < b)
        if pa[0] == 0:
            return 0
        by_version = _compare_semver(pa[1], pb[1])
        if by_version:
            return -by_version
        return (pa[2] > pb[2]) - (pa[2] < pb[2])

    return sorted(tags, key=cmp_to_key(compare))


def _spec_tags(stream: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return common.mapping_list(mapping(stream.get("spec")).get("tags"))


def _status_tags(stream: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return common.mapping_list(mapping(stream.get("status")).get("tags"))


def _spec_tag(stream: Mapping[str, Any], tag: str) -> Mapping[str, Any] | None:
    return next((t for t in _spec_tags(stream) if t.get("name") == tag), None)


def _status_tag(stream: Mapping[str, Any], tag: str) -> Mapping[str, Any] | None:
    return next((t for t in _status_tags(stream) if t.get("tag") == tag), None)


def follow_tag_reference(stream: Mapping[str, Any], tag: str) -> tuple[str, bool, str | None]:
    """OpenShift's `FollowTagReference`: (final tag, followed at least one, error or None)."""
    metadata = mapping(stream.get("metadata"))
    seen: set[str] = set()
    multiple = False
    while True:
        if tag in seen:
            return tag, multiple, "circular"
        seen.add(tag)
        spec = _spec_tag(stream, tag)
        if spec is None:
            return tag, multiple, "notfound"
        source = mapping(spec.get("from"))
        if source.get("kind") != "ImageStreamTag":
            return tag, multiple, None
        if source.get("namespace") and source.get("namespace") != metadata.get("namespace"):
            return tag, multiple, "cross"
        name = string(source.get("name"))
        if ":" in name:
            stream_name, _, next_tag = name.partition(":")
            if stream_name != metadata.get("name"):
                return tag, multiple, "cross"
            tag = next_tag or "latest"
        else:
            tag = name
        multiple = True


def _map_lines(label: str, items: Mapping[str, Any]) -> list[str]:
    if not items:
        return [f"{label}:\t{NONE}"]
    keys = sorted(items)
    lines = [f"{label}:\t{keys[0]}={items[keys[0]]}"]
    lines += [f"\t{key}={items[key]}" for key in keys[1:]]
    return lines


def _string_lines(label: str, value: str) -> list[str]:
    parts = (value or NONE).split("\n")
    return [f"{label}:\t{parts[0]}"] + [f"\t{part}" for part in parts[1:]]


def _tag_generation(stream: Mapping[str, Any], spec: Mapping[str, Any]) -> int | None:
    """The tag's generation as OpenShift would have stamped it (see the module docstring)."""
    written = spec.get("generation")
    if isinstance(written, int) and not isinstance(written, bool) and written > 0:
        return written
    status = mapping(stream.get("status"))
    observed = {string(o.get("name")): o for o in common.mapping_list(status.get("observedTags"))}
    generation = int(mapping(stream.get("metadata")).get("generation") or 0)
    if written == 0 and generation > int(status.get("observedGeneration") or 0):
        return generation  # asked for again, and the controller has not looked yet
    entry = observed.get(string(spec.get("name")))
    if entry is not None and isinstance(entry.get("generation"), int):
        return int(entry["generation"])
    return None if written is None else int(written)


def _latest_observed_generation(entry: Mapping[str, Any] | None) -> int:
    if entry is None:
        return 0
    generation = 0
    items = common.mapping_list(entry.get("items"))
    if items:
        generation = max(generation, int(items[0].get("generation") or 0))
    for condition in common.mapping_list(entry.get("conditions")):
        if condition.get("type") == "ImportSuccess":
            generation = max(generation, int(condition.get("generation") or 0))
            break
    return generation


def _tag_lines(stream: Mapping[str, Any], now: datetime) -> list[str]:
    spec_tags, status_tags = _spec_tags(stream), _status_tags(stream)
    if not spec_tags and not status_tags:
        return [f"Tags:\t{NONE}"]
    namespace = string(mapping(stream.get("metadata")).get("namespace"))
    images: dict[str, str] = {}
    for entry in status_tags:
        for item in common.mapping_list(entry.get("items")):
            image, reference = string(item.get("image")), string(item.get("dockerImageReference"))
            if image:
                images.setdefault(image, string(entry.get("tag")))
            elif reference and reference not in images:
                images[image] = reference  # oc keys these by the empty image: they count once
    ordered = [string(entry.get("tag")) for entry in status_tags]
    local_references: set[str] = set()
    referential: dict[str, set[str]] = {}
    for spec in spec_tags:
        name = string(spec.get("name"))
        target, multiple, error = follow_tag_reference(stream, name)
        if error is None and multiple:
            local_references.add(name)
            referential.setdefault(target, set()).add(name)
        if _status_tag(stream, name) is None:
            ordered.append(name)
    lines = [f"Unique Images:\t{len(images)}", f"Tags:\t{len(ordered)}", ""]
    first = True
    for tag in prioritize_tags(ordered):
        if tag in local_references:
            continue
        if not first:
            lines.append("")
        first = False
        tag_status = _status_tag(stream, tag)
        tag_spec = _spec_tag(stream, tag)
        source: Mapping[str, Any] = mapping(tag_spec.get("from")) if tag_spec is not None else {}
        policy: Mapping[str, Any] = (
            mapping(tag_spec.get("importPolicy")) if tag_spec is not None else {}
        )
        scheduled, insecure, importing = (
            bool(policy.get("scheduled")),
            bool(policy.get("insecure")),
            False,
        )
        name = ""
        if tag_spec is not None and source:
            name = string(source.get("name"))
            if source.get("namespace") and source.get("namespace") != namespace:
                name = f"{source.get('namespace')}/{name}"
            generation = _tag_generation(stream, tag_spec)
            importing = (
                not tag_spec.get("reference")
                and generation is not None
                and generation > _latest_observed_generation(tag_status)
            )
        references = referential.get(tag)
        lines.append(
            f"{tag} ({', '.join(prioritize_tags(sorted(references)))})" if references else tag
        )
        lines.append(_source_line(tag_spec, source, name, scheduled))
        if insecure:
            lines.append("    will use insecure HTTPS or HTTP connections")
        if tag_spec is not None and mapping(tag_spec.get("referencePolicy")).get("type") == "Local":
            lines.append("    prefer registry pullthrough when referencing this tag")
        lines.append("")
        annotations = mapping(tag_spec.get("annotations")) if tag_spec is not None else {}
        extra = []
        if annotations.get("description"):
            extra.append(f"  {annotations['description']}")
        if annotations.get("tags"):
            extra.append(f"  Tags: {', '.join(str(annotations['tags']).split(','))}")
        if annotations.get("supports"):
            extra.append(f"  Supports: {', '.join(str(annotations['supports']).split(','))}")
        if annotations.get("sampleRepo"):
            extra.append(f"  Example Repo: {annotations['sampleRepo']}")
        if extra:
            lines += [*extra, ""]
        if importing:
            lines.append("  ~ importing latest image ...")
        for condition in common.mapping_list((tag_status or {}).get("conditions")):
            if condition.get("type") == "ImportSuccess" and condition.get("status") == "False":
                lines.append(
                    f"  ! error: Import failed ({string(condition.get('reason'))}):"
                    f" {string(condition.get('message'))}"
                )
                lines.append(f"      {_ago(condition.get('lastTransitionTime'), now)} ago")
        for index, item in enumerate(common.mapping_list((tag_status or {}).get("items"))):
            reference = string(item.get("dockerImageReference"))
            lines.append(f"  * {reference}" if index == 0 else f"    {reference}")
            image, ago = string(item.get("image")), _ago(item.get("created"), now)
            try:
                reference_id: str | None = parse(reference).id
            except ValueError:
                reference_id = None
            if image and reference_id is not None and reference_id != image:
                lines.append(f"      {ago} ago\t{image}")
            else:
                lines.append(f"      {ago} ago")
    return lines


def _source_line(
    spec: Mapping[str, Any] | None, source: Mapping[str, Any], name: str, scheduled: bool
) -> str:
    if spec is None:
        return "  no spec tag"
    if not source:
        return "  tag without source image"
    kind, reference = source.get("kind"), bool(spec.get("reference"))
    if kind == "ImageStreamTag":
        if reference:
            return f"  reference to {name}"
        return f"  updates automatically from {name}" if scheduled else f"  tagged from {name}"
    if kind == "DockerImage":
        if reference:
            return f"  reference to registry {name}"
        if scheduled:
            return f"  updates automatically from registry {name}"
        return f"  tagged from {name}"
    if kind == "ImageStreamImage":
        return f"  reference to image {name}" if reference else f"  tagged from {name}"
    return f"  reference to {kind} {name}" if reference else f"  updates from {kind} {name}"


def describe_image_stream(stream: Mapping[str, Any], now: datetime) -> str:
    """What `oc describe is` prints for `stream` at `now`."""
    metadata = mapping(stream.get("metadata"))
    status = mapping(stream.get("status"))
    lines = _string_lines("Name", string(metadata.get("name")))
    if metadata.get("namespace"):
        lines += _string_lines("Namespace", string(metadata.get("namespace")))
    if metadata.get("creationTimestamp"):
        lines.append(f"Created:\t{_ago(metadata.get('creationTimestamp'), now)} ago")
    lines += _map_lines("Labels", mapping(metadata.get("labels")))
    annotations = dict(mapping(metadata.get("annotations")))
    description = string(annotations.pop("description", ""))
    if description:
        lines += _string_lines("Description", description)
    lines += _map_lines("Annotations", annotations)
    repository = string(status.get("publicDockerImageRepository")) or string(
        status.get("dockerImageRepository")
    )
    lines += _string_lines("Image Repository", repository)
    local = bool(mapping(mapping(stream.get("spec")).get("lookupPolicy")).get("local"))
    lines.append(f"Image Lookup:\tlocal={'true' if local else 'false'}")
    lines += _tag_lines(stream, now)
    return tabwrite("\n".join(lines) + "\n", minwidth=0, tabwidth=8, padding=1, padchar="\t")


# --- the command ------------------------------------------------------------------------------


def parse_targets(words: Sequence[str]) -> tuple[list[str], bool]:
    """`is/a is/b` or `is a b` or `is` (every stream): (names, all)."""
    if not words:
        raise CommandError("you must specify the type of resource to describe: is/NAME")
    names: list[str] = []
    if "/" in words[0]:
        for word in words:
            kind, _, name = word.partition("/")
            if kind.lower() not in KINDS or not name:
                raise CommandError(
                    f"only image streams can be described here (is/NAME), not {q(word)}"
                )
            names.append(name)
        return names, False
    if words[0].lower() not in KINDS:
        raise CommandError(f"only image streams can be described here (is/NAME), not {q(words[0])}")
    return list(words[1:]), len(words) == 1


async def run(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    names, every = parse_targets(args.targets)
    now = datetime.now(UTC)
    if every:
        streams, _ = await kube.list(IMAGESTREAMS, namespace)
    else:
        streams = [await kube.get(IMAGESTREAMS, namespace, name) for name in names]
    return "\n\n".join(describe_image_stream(stream, now) for stream in streams)


def main(args: argparse.Namespace) -> int:
    return common.run_command(args, run, check=lambda a: parse_targets(a.targets))


def add_parser(commands: Any, add_flag: Callable[..., None]) -> None:
    """Add `describe` to the `imagestream` command."""
    parser = commands.add_parser(
        "describe",
        help="show an image stream's tags and their history (like oc describe is)",
        description="Show image streams as `oc describe is` does: is/NAME, or is NAME..., "
        "or is (every stream in the namespace).",
    )
    parser.add_argument("targets", nargs="+", metavar="is/NAME")
    common.add_connection_flags(parser, add_flag)
    parser.set_defaults(handler=main)
