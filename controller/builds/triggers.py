"""Which BuildConfig trigger fires now (docs/openshift-behaviours.md#behaviour-25). Pure, no I/O.

Invariants:
- An ImageChange trigger (explicit `from`, else the strategy's `from` when that is an
  ImageStreamTag) fires when its tag resolves to a pull spec other than the one recorded
  for it: `status.imageChangeTriggers[].lastTriggeredImageID` (or the deprecated spec
  field). Paused triggers and paused BuildConfigs never fire.
- One reconcile asks for at most one Build, whatever number of triggers fire; the first
  firing trigger is the one the Build is "triggered by", every firing one is a cause.
- A ConfigChange trigger asks for a Build only while nothing has ever been built
  (`lastVersion` 0 and no Build exists).
- What a Build records is authoritative even before the BuildConfig status says so: a
  Build numbered above `status.lastVersion` (created, then the process died before the
  status write) counts as recorded, and the status is healed from it instead of building
  the same image again.

Failure it prevents: a second Build for the same image, whether from a repeated
reconcile, a trigger that fires while another's build is being recorded, or a crash
between the two writes of an instantiation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from controller.builds.model import (
    ImageReference,
    build_number,
    builds_of,
    image_stream_tag,
    is_paused,
    last_version,
    strategy_from,
)
from controller.triggers.outcomes import NamespacePolicy, StreamGetter, same_namespace_only
from controller.triggers.resolve import resolve_image_stream_tag
from imagestream.objects import Obj, mapping, namespace_of, spec_of, status_of, string

IMAGE_CHANGE_MESSAGE: Final = "Image change"
CONFIG_CHANGE_MESSAGE: Final = "Build configuration change"
MANUAL_MESSAGE: Final = "Manually triggered"


@dataclass(frozen=True, kw_only=True)
class ImageChangeTrigger:
    """One `spec.triggers[position]` of type ImageChange, with its effective `from`."""

    position: int
    source: ImageReference
    explicit: bool
    paused: bool
    spec_last_triggered: str
    """The deprecated `imageChange.lastTriggeredImageID` in spec (still honoured)."""


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """What starts a Build (OpenShift's BuildRequest): its causes and, for an image
    change, the image and the `from` that fired first."""

    causes: tuple[Obj, ...]
    triggered_by_image: str = ""
    from_ref: ImageReference | None = None


@dataclass(frozen=True, kw_only=True)
class BuildConfigPlan:
    request: BuildRequest | None = None
    heal_status: Obj | None = None
    """Status to record when Builds exist beyond `status.lastVersion` (nothing is built)."""
    waiting: tuple[str, ...] = field(default_factory=tuple)
    """Why triggers did not fire (for logs and `explain`-like output)."""


def image_change_triggers(bc: Mapping[str, Any]) -> tuple[ImageChangeTrigger, ...]:
    """The ImageChange triggers that follow an ImageStreamTag, in spec order.

    An explicit `from` of another kind, or a missing `from` whose strategy `from` is not
    an ImageStreamTag, follows nothing (OpenShift's validation rejects both).
    """
    namespace = namespace_of(bc)
    triggers = spec_of(bc).get("triggers")
    found = []
    for position, entry in enumerate(triggers if isinstance(triggers, list) else []):
        entry = mapping(entry)
        if entry.get("type") != "ImageChange":
            continue
        params = mapping(entry.get("imageChange"))
        explicit = mapping(params.get("from"))
        source = image_stream_tag(explicit or strategy_from(bc), namespace=namespace)
        if source is None:
            continue
        found.append(
            ImageChangeTrigger(
                position=position,
                source=source,
                explicit=bool(explicit),
                paused=params.get("paused") is True,
                spec_last_triggered=string(params.get("lastTriggeredImageID")),
            )
        )
    return tuple(found)


def has_config_change_trigger(bc: Mapping[str, Any]) -> bool:
    triggers = spec_of(bc).get("triggers")
    return isinstance(triggers, list) and any(
        mapping(t).get("type") == "ConfigChange" for t in triggers
    )


def index_keys(bc: Mapping[str, Any]) -> set[str]:
    """`<namespace>/<stream>` of every stream an ImageChange trigger follows."""
    return {trigger.source.stream_key for trigger in image_change_triggers(bc)}


def base_image(bc: Mapping[str, Any]) -> ImageReference | None:
    """The strategy's `from` when it is an ImageStreamTag: what every Build pulls first."""
    return image_stream_tag(strategy_from(bc), namespace=namespace_of(bc))


def pulled_stream_keys(bc: Mapping[str, Any]) -> set[str]:
    """`<namespace>/<stream>` of every stream a Build of this BuildConfig resolves: its
    ImageChange triggers' and its base image's (the image-puller rule, behaviour 16)."""
    base = base_image(bc)
    return index_keys(bc) | ({base.stream_key} if base is not None else set())


def recorded_images(
    bc: Mapping[str, Any], builds: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], str]:
    """`(namespace, stream:tag)` -> the pull spec last built for it.

    From `status.imageChangeTriggers`, overridden by the image-change causes of Builds
    numbered above `status.lastVersion` (not yet recorded in the status).
    """
    namespace = namespace_of(bc)
    recorded: dict[tuple[str, str], str] = {}
    for entry in status_of(bc).get("imageChangeTriggers") or []:
        source = mapping(mapping(entry).get("from"))
        image = string(mapping(entry).get("lastTriggeredImageID"))
        if image:
            recorded[(string(source.get("namespace")) or namespace, string(source.get("name")))] = (
                image
            )
    for build in builds_of(bc, builds):
        if build_number(build) <= last_version(bc):
            continue
        for cause in spec_of(build).get("triggeredBy") or []:
            change = mapping(mapping(cause).get("imageChangeBuild"))
            source = mapping(change.get("fromRef"))
            if change.get("imageID"):
                key = (string(source.get("namespace")) or namespace, string(source.get("name")))
                recorded[key] = string(change.get("imageID"))
    return recorded


def resolve(
    bc: Mapping[str, Any],
    reference: ImageReference,
    *,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy,
) -> str | None:
    resolved = resolve_image_stream_tag(
        workload_namespace=namespace_of(bc),
        stream_namespace=reference.namespace,
        stream=reference.stream,
        tag=reference.tag,
        get_stream=get_stream,
        namespace_allowed=namespace_allowed,
    )
    return resolved if isinstance(resolved, str) else None


def trigger_status(
    bc: Mapping[str, Any],
    builds: Iterable[Mapping[str, Any]],
    *,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy,
    fired: ImageReference | None = None,
    fired_image: str = "",
    now: str = "",
) -> list[Obj]:
    """`status.imageChangeTriggers` after an instantiation.

    See docs/openshift-behaviours.md#build-instantiation.

    The trigger that fired records its image and `now`; every other one records what it
    resolves to at this moment (its time untouched), so several tags moving together
    make one Build, not one each.
    """
    recorded = recorded_images(bc, builds)
    times = {
        (
            string(mapping(mapping(e).get("from")).get("namespace")) or namespace_of(bc),
            string(mapping(mapping(e).get("from")).get("name")),
        ): string(mapping(e).get("lastTriggerTime"))
        for e in status_of(bc).get("imageChangeTriggers") or []
    }
    entries = []
    for trigger in image_change_triggers(bc):
        key = (trigger.source.namespace, trigger.source.name)
        entry: Obj = {"from": {"namespace": key[0], "name": key[1]}}
        if fired is not None and trigger.source == fired:
            image, moment = fired_image, now
        else:
            image = (
                resolve(
                    bc, trigger.source, get_stream=get_stream, namespace_allowed=namespace_allowed
                )
                or recorded.get(key)
                or trigger.spec_last_triggered
            )
            moment = times.get(key, "")
        if image:
            entry["lastTriggeredImageID"] = image
        if moment:
            entry["lastTriggerTime"] = moment
        entries.append(entry)
    return entries


def plan_buildconfig(
    bc: Mapping[str, Any],
    builds: Iterable[Mapping[str, Any]],
    *,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy = same_namespace_only,
) -> BuildConfigPlan:
    """Whether a Build should start now, and for what (at most one per call)."""
    builds = list(builds)
    mine = builds_of(bc, builds)
    highest = max((build_number(b) for b in mine), default=0)
    if highest > last_version(bc):
        return BuildConfigPlan(
            heal_status={
                "lastVersion": highest,
                "imageChangeTriggers": trigger_status(
                    bc, builds, get_stream=get_stream, namespace_allowed=namespace_allowed
                ),
            }
        )
    if is_paused(bc):
        return BuildConfigPlan(waiting=("the BuildConfig is paused",))
    recorded = recorded_images(bc, builds)
    fired: list[tuple[ImageChangeTrigger, str]] = []
    waiting = []
    for trigger in image_change_triggers(bc):
        if trigger.paused:
            waiting.append(f"trigger {trigger.position} is paused")
            continue
        image = resolve(
            bc, trigger.source, get_stream=get_stream, namespace_allowed=namespace_allowed
        )
        if image is None:
            waiting.append(f"{trigger.source.namespace}/{trigger.source.name} does not resolve")
            continue
        last = recorded.get((trigger.source.namespace, trigger.source.name)) or (
            trigger.spec_last_triggered
        )
        if image == last:
            continue
        fired.append((trigger, image))
    if fired:
        causes: dict[ImageReference, Obj] = {}
        for trigger, image in fired:
            causes.setdefault(
                trigger.source,
                {
                    "message": IMAGE_CHANGE_MESSAGE,
                    "imageChangeBuild": {"imageID": image, "fromRef": trigger.source.to_json()},
                },
            )
        first, image = fired[0]
        return BuildConfigPlan(
            request=BuildRequest(
                causes=tuple(causes.values()), triggered_by_image=image, from_ref=first.source
            )
        )
    if has_config_change_trigger(bc) and last_version(bc) == 0 and not mine:
        return BuildConfigPlan(request=BuildRequest(causes=({"message": CONFIG_CHANGE_MESSAGE},)))
    return BuildConfigPlan(waiting=tuple(waiting))
