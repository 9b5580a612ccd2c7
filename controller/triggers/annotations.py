"""The `image.openshift.io/triggers` annotation, its fieldPath grammar, and our bookkeeping
annotations (behaviours 15-17 and 21, docs/openshift-behaviours.md#behaviour-15 to
#behaviour-17 and #behaviour-21).

Invariant: an annotation either parses completely into `ObjectFieldTrigger`s or raises
`InvalidTriggers`, which disables every trigger of the object. Nothing else escapes
`parse_triggers`, whatever the string holds.

Failure it prevents: acting on half of a broken annotation. With duplicate fieldPaths two
triggers would fight over one container on every reconcile; with a partly parsed list a
typo would silently switch some triggers off while others keep rolling the workload.
OpenShift refuses the whole annotation in both cases, and so do we.

The fieldPath grammar is deliberately narrow (`<pod spec>.containers[N].image` or
`...[?(@.name=="NAME")].image`), exactly what OpenShift accepts: a general JSONPath engine
would accept manifests that OpenShift rejects, and the other way round.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.triggers.podspec import POD_SPEC_PATHS, ContainerKind
from controller.triggers.resolve import DEFAULT_TAG
from imagestream.objects import annotations_of, namespace_of

TRIGGER_ANNOTATION: Final = "image.openshift.io/triggers"
"""Metadata annotation holding the JSON array of triggers (OpenShift's key)."""

ON_MANUAL_CHANGE_ANNOTATION: Final = "imagestream.dev/on-manual-change"
"""Opt-in: with value `ON_MANUAL_CHANGE_PAUSE`, a hand-made image change pauses the trigger
instead of being reverted. Any other value (or none) keeps OpenShift's revert behaviour."""

ON_MANUAL_CHANGE_PAUSE: Final = "pause"
"""The only value of `ON_MANUAL_CHANGE_ANNOTATION` that changes behaviour."""

LAST_APPLIED_IMAGES_ANNOTATION: Final = "imagestream.dev/last-applied-images"
"""JSON object `{"generation": G, "images": {fieldPath: image}}`: the image this controller
last wrote (or, after a pause, accepted) for each trigger, and the object's
`metadata.generation` when it wrote the record. Maintained only while the manual-change
opt-in is set. The earlier form, a bare `{fieldPath: image}` object, still reads."""

ANNOTATION_TRIGGER_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
"""The kinds that honour the triggers annotation (DeploymentConfigs have `spec.triggers`)."""

IMAGE_STREAM_TAG: Final = "ImageStreamTag"
"""The only `from.kind` that triggers follow."""


_INDEX = re.compile(r"[0-9]+")
_NAME_SELECTOR = re.compile(r'\?\(@\.name=="(?P<name>[^"]*)"\)')


class InvalidTriggers(ValueError):
    """The triggers annotation is unusable as a whole: every trigger of the object is off."""


class UnsupportedKind(ValueError):
    """The object's kind does not honour the triggers annotation.

    See docs/openshift-behaviours.md#behaviour-15.
    """


class FieldPathError(ValueError):
    """A fieldPath that does not name a container image."""


class PathOutsidePodSpec(FieldPathError):
    """The fieldPath does not start with the kind's pod spec path: the trigger is ignored."""


class InvalidFieldPath(FieldPathError):
    """The fieldPath is inside the pod spec but does not follow the grammar."""


@dataclass(frozen=True, kw_only=True)
class ObjectFieldTrigger:
    """One entry of the triggers annotation, with the namespace already defaulted."""

    kind: str
    name: str
    namespace: str
    """`from.namespace`, or the object's own namespace when that is empty."""
    api_version: str
    field_path: str
    paused: bool

    @property
    def stream(self) -> str | None:
        """The ImageStream name, or None when `from.name` is not `<stream>:<tag>`."""
        parts = split_stream_tag(self.name)
        return parts[0] if parts else None

    @property
    def tag(self) -> str | None:
        """The tag (`<stream>:` means `latest`), or None when `from.name` has no `:`."""
        parts = split_stream_tag(self.name)
        return parts[1] if parts else None

    @property
    def follows_image_stream_tag(self) -> bool:
        """Whether `from` names an ImageStreamTag at all (kind and empty apiVersion)."""
        return self.kind == IMAGE_STREAM_TAG and not self.api_version

    @property
    def active(self) -> bool:
        """Watched and applied: an ImageStreamTag `<stream>:<tag>`, not paused.

        See docs/openshift-behaviours.md#behaviour-16.
        """
        return self.follows_image_stream_tag and self.stream is not None and not self.paused

    @property
    def stream_key(self) -> str | None:
        """`<namespace>/<stream>`, the reverse-index key; None without a stream name."""
        stream = self.stream
        return None if stream is None else f"{self.namespace}/{stream}"


@dataclass(frozen=True, kw_only=True)
class ContainerSelector:
    """The container a fieldPath names: by position or by name, in one of the two lists."""

    container_kind: ContainerKind
    index: int | None = None
    name: str | None = None

    def describe(self) -> str:
        """`containers[0]` or `containers entry named "web"`, for messages."""
        if self.name is not None:
            return f"{self.container_kind} entry named {json.dumps(self.name)}"
        return f"{self.container_kind}[{self.index}]"


def split_stream_tag(name: str) -> tuple[str, str] | None:
    """`"app:v1"` -> `("app", "v1")`; `"app:"` -> `("app", "latest")`; None without `:`.

    Without a `:` OpenShift never indexes nor resolves the trigger (no `latest` defaulting
    here, unlike BuildConfigs); an empty stream name cannot name a stream either.
    """
    stream, separator, tag = name.partition(":")
    if not separator or not stream:
        return None
    return stream, tag or DEFAULT_TAG


def pod_spec_path(kind: str) -> tuple[str, ...]:
    """The path of the pod spec inside an object of `kind`, as field names."""
    if kind not in ANNOTATION_TRIGGER_KINDS:
        raise UnsupportedKind(
            f"{kind or 'an object without kind'} does not honour {TRIGGER_ANNOTATION}"
            f" (only {', '.join(ANNOTATION_TRIGGER_KINDS)} do)"
        )
    return POD_SPEC_PATHS[kind]


def object_triggers(obj: Mapping[str, Any]) -> tuple[ObjectFieldTrigger, ...]:
    """The object's triggers; empty without the annotation; `InvalidTriggers` if unusable."""
    value = annotations_of(obj).get(TRIGGER_ANNOTATION)
    if value is None:
        return ()
    if not isinstance(value, str):
        raise InvalidTriggers(f"{TRIGGER_ANNOTATION} must be a string")
    return parse_triggers(value, namespace=namespace_of(obj))


PARSED_TRIGGERS_REMEMBERED: Final = 4096
"""Annotation values whose parse is kept (`parse_triggers`): one object's value is parsed
several times per event (indexing it, naming its streams, planning it), and a fan-out's
workloads often carry the same one."""


@functools.lru_cache(maxsize=PARSED_TRIGGERS_REMEMBERED)
def parse_triggers(value: str, *, namespace: str) -> tuple[ObjectFieldTrigger, ...]:
    """Parse the annotation value of an object living in `namespace`.

    Mirrors Go's `encoding/json` into OpenShift's struct: `null` anywhere means the zero
    value, unknown fields are ignored, a wrong JSON type is an error. On top, duplicate
    fieldPaths are an error (behaviour 21, docs/openshift-behaviours.md#behaviour-21). Only
    `InvalidTriggers` is ever raised.

    Pure, and its result immutable (frozen triggers in a tuple), so it is remembered by
    value; a refusal is not (it is parsed again each time, as rare as it is cheap).
    """
    try:
        document = json.loads(value, parse_constant=_reject_constant)
    # RecursionError: absurdly nested input must not escape as anything but InvalidTriggers.
    except (ValueError, RecursionError) as error:
        raise InvalidTriggers(f"{TRIGGER_ANNOTATION} is not valid JSON: {error}") from None
    if document is None:
        return ()
    if not isinstance(document, list):
        raise InvalidTriggers(f"{TRIGGER_ANNOTATION} must be a JSON array")
    triggers = tuple(
        _parse_trigger(entry, position=position, namespace=namespace)
        for position, entry in enumerate(document)
    )
    seen: set[str] = set()
    for trigger in triggers:
        if trigger.field_path in seen:
            raise InvalidTriggers(
                f'{TRIGGER_ANNOTATION} has two triggers for fieldPath "{trigger.field_path}";'
                " duplicate triggers are not allowed"
            )
        seen.add(trigger.field_path)
    return triggers


def pause_triggers(value: str, field_paths: Collection[str]) -> str:
    """The annotation `value` with `"paused": true` on the triggers at `field_paths`.

    Edits the JSON as written, so fields we do not model survive the round trip.
    `value` must already have parsed with `parse_triggers`.
    """
    document = json.loads(value)
    for entry in document:
        if isinstance(entry, dict) and entry.get("fieldPath") in field_paths:
            entry["paused"] = True
    return json.dumps(document, separators=(",", ":"))


def parse_field_path(field_path: str, *, kind: str) -> ContainerSelector:
    """Parse `<pod spec of kind>.(containers|initContainers)[SEL].image` (behaviour 17).

    Raises `PathOutsidePodSpec` when the path does not start with the kind's pod spec (the
    trigger is to be ignored) and `InvalidFieldPath` for anything else that is not the
    grammar. `SEL` is a decimal index or exactly `?(@.name=="NAME")`. See
    docs/openshift-behaviours.md#behaviour-17.
    """
    prefix = ".".join(pod_spec_path(kind)) + "."
    if not field_path.startswith(prefix):
        raise PathOutsidePodSpec(
            f'fieldPath "{field_path}" is outside the {kind} pod spec (it must start with'
            f' "{prefix}")'
        )
    rest = field_path.removeprefix(prefix)
    container_kind: ContainerKind
    if rest.startswith("containers["):
        container_kind = "containers"
    elif rest.startswith("initContainers["):
        container_kind = "initContainers"
    else:
        raise InvalidFieldPath(
            f'fieldPath "{field_path}" must continue with "containers[" or "initContainers["'
            f' after "{prefix}"'
        )
    rest = rest.removeprefix(container_kind + "[")
    selector, bracket, remainder = rest.partition("]")
    if not bracket:
        raise InvalidFieldPath(f'fieldPath "{field_path}" has no closing "]"')
    if remainder != ".image":
        raise InvalidFieldPath(
            f'fieldPath "{field_path}" must end with ".image" right after the container selector'
        )
    if _INDEX.fullmatch(selector):
        return ContainerSelector(container_kind=container_kind, index=int(selector))
    by_name = _NAME_SELECTOR.fullmatch(selector)
    if by_name is None:
        raise InvalidFieldPath(
            f'fieldPath "{field_path}": selector "[{selector}]" must be a decimal index or'
            ' exactly ?(@.name=="NAME")'
        )
    return ContainerSelector(container_kind=container_kind, name=by_name["name"])


def manual_change_pauses(obj: Mapping[str, Any]) -> bool:
    """Whether the object opted in to pausing (not reverting) hand-made image changes."""
    return annotations_of(obj).get(ON_MANUAL_CHANGE_ANNOTATION) == ON_MANUAL_CHANGE_PAUSE


@dataclass(frozen=True, kw_only=True)
class LastApplied:
    """What `LAST_APPLIED_IMAGES_ANNOTATION` says, as read."""

    images: Mapping[str, str]
    """fieldPath -> the image last written or accepted."""
    generation: int | None = None
    """The object's generation when the record was written; None in the earlier form."""
    present: bool = False
    """Whether the object carries the annotation at all."""


def read_last_applied(obj: Mapping[str, Any]) -> LastApplied:
    """The record of `LAST_APPLIED_IMAGES_ANNOTATION`.

    A missing or unreadable value reads as no images: it is our own bookkeeping, and the next
    plan rewrites it, so a hand-mangled value must not stop the triggers.
    """
    value = annotations_of(obj).get(LAST_APPLIED_IMAGES_ANNOTATION)
    if not isinstance(value, str):
        return LastApplied(images={})
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return LastApplied(images={}, present=True)
    if not isinstance(document, dict):
        return LastApplied(images={}, present=True)
    generation = document.get("generation")
    images = document.get("images")
    if not isinstance(images, dict):  # the earlier form: the images map itself
        images, generation = document, None
    return LastApplied(
        images={
            path: image
            for path, image in images.items()
            if isinstance(path, str) and isinstance(image, str)
        },
        generation=generation if type(generation) is int else None,
        present=True,
    )


def format_last_applied(images: Mapping[str, str], *, generation: int) -> str:
    """The annotation value; sorted and compact, so equal records give equal text.

    Why the generation: it only grows, so each record we write differs from every earlier
    one, also from a copy of an old one that `kubectl rollout undo` restored with the same
    images. Writing a different value is what moves a field's ownership (managedFields) to
    the writer, and `controller.triggers.ownership` reads that ownership.
    """
    return json.dumps(
        {"generation": generation, "images": dict(sorted(images.items()))},
        separators=(",", ":"),
    )


def _parse_trigger(entry: object, *, position: int, namespace: str) -> ObjectFieldTrigger:
    where = f"{TRIGGER_ANNOTATION}[{position}]"
    fields = _object(entry, where=where)
    source = _object(fields.get("from"), where=f"{where}.from")
    paused = fields.get("paused")
    if paused is not None and not isinstance(paused, bool):
        raise InvalidTriggers(f"{where}.paused must be true or false")
    return ObjectFieldTrigger(
        kind=_string(source.get("kind"), where=f"{where}.from.kind"),
        name=_string(source.get("name"), where=f"{where}.from.name"),
        namespace=_string(source.get("namespace"), where=f"{where}.from.namespace") or namespace,
        api_version=_string(source.get("apiVersion"), where=f"{where}.from.apiVersion"),
        field_path=_string(fields.get("fieldPath"), where=f"{where}.fieldPath"),
        paused=bool(paused),
    )


def _object(value: object, *, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidTriggers(f"{where} must be a JSON object")
    return value


def _string(value: object, *, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidTriggers(f"{where} must be a string")
    return value


def _reject_constant(constant: str) -> object:
    # Python's json accepts NaN and Infinity; Go's (and the JSON spec) do not.
    raise ValueError(f"{constant} is not JSON")
