"""BuildConfig and Build names, labels, annotations and field access (no I/O).

Invariant: a Build belongs to a BuildConfig exactly when it carries the
`openshift.io/build-config.name` annotation (and label) naming it and a numeric
`openshift.io/build.number`; its name is `<buildconfig>-<number>`. Numbers are never
reused: the next one is one more than both `status.lastVersion` and every existing Build's.

Failure it prevents: two Builds for one number (the fixed name makes the second create
fail), and a number reused after a crash between creating a Build and recording
`lastVersion` (the existing Builds count too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from controller.triggers.annotations import IMAGE_STREAM_TAG, split_stream_tag
from imagestream.objects import (
    Obj,
    annotations_of,
    labels_of,
    mapping,
    name_of,
    namespace_of,
    spec_of,
    status_of,
    string,
)

BUILDCONFIG_LABEL: Final = "buildconfig"
BUILDCONFIG_NAME: Final = "openshift.io/build-config.name"
"""Label and annotation on a Build: its BuildConfig."""
BUILD_NUMBER_ANNOTATION: Final = "openshift.io/build.number"
BUILD_NAME_LABEL: Final = "openshift.io/build.name"
"""On the Job and its pod: the Build they run."""
START_POLICY_LABEL: Final = "openshift.io/build.start-policy"
PAUSED_ANNOTATION: Final = "openshift.io/build-config.paused"
LABEL_MAX: Final = 63

RUN_POLICIES: Final = ("Serial", "Parallel", "SerialLatestOnly")


class BuildPhase(StrEnum):
    NEW = "New"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    ERROR = "Error"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            BuildPhase.COMPLETE,
            BuildPhase.FAILED,
            BuildPhase.ERROR,
            BuildPhase.CANCELLED,
        )


def label_value(text: str) -> str:
    """OpenShift truncates label values to 63 characters (names may be longer)."""
    return text[:LABEL_MAX]


# --- BuildConfigs ---------------------------------------------------------------------------


def is_paused(bc: Mapping[str, Any]) -> bool:
    return string(annotations_of(bc).get(PAUSED_ANNOTATION)).lower() == "true"


def last_version(bc: Mapping[str, Any]) -> int:
    value = status_of(bc).get("lastVersion")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_policy(obj: Mapping[str, Any]) -> str:
    """The BuildConfig's `runPolicy` (or a Build's start-policy label); Serial by default."""
    value = spec_of(obj).get("runPolicy") or labels_of(obj).get(START_POLICY_LABEL)
    return value if value in RUN_POLICIES else "Serial"


def strategy_type(obj: Mapping[str, Any]) -> str:
    return string(mapping(spec_of(obj).get("strategy")).get("type")) or "Docker"


_STRATEGY_FIELDS: Final = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}


def strategy_params(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """`spec.strategy.<type>Strategy`."""
    strategy = mapping(spec_of(obj).get("strategy"))
    return mapping(strategy.get(_STRATEGY_FIELDS.get(strategy_type(obj), "dockerStrategy")))


def strategy_field(obj: Mapping[str, Any]) -> str:
    return _STRATEGY_FIELDS.get(strategy_type(obj), "dockerStrategy")


@dataclass(frozen=True, kw_only=True)
class ImageReference:
    """An ImageStreamTag reference with defaults applied: `<namespace>/<stream>:<tag>`."""

    namespace: str
    stream: str
    tag: str

    @property
    def name(self) -> str:
        return f"{self.stream}:{self.tag}"

    @property
    def stream_key(self) -> str:
        return f"{self.namespace}/{self.stream}"

    def to_json(self) -> Obj:
        return {"kind": IMAGE_STREAM_TAG, "namespace": self.namespace, "name": self.name}


def image_stream_tag(reference: Mapping[str, Any], *, namespace: str) -> ImageReference | None:
    """`from`/`to` of kind ImageStreamTag (`<stream>:<tag>`), else None."""
    if string(reference.get("kind")) != IMAGE_STREAM_TAG:
        return None
    parts = split_stream_tag(string(reference.get("name")))
    if parts is None:
        return None
    return ImageReference(
        namespace=string(reference.get("namespace")) or namespace, stream=parts[0], tag=parts[1]
    )


def strategy_from(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The strategy's `from` (the builder or base image)."""
    return mapping(strategy_params(obj).get("from"))


def output_to(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(mapping(spec_of(obj).get("output")).get("to"))


# --- Builds ---------------------------------------------------------------------------------


def build_name(bc_name: str, number: int) -> str:
    return f"{bc_name}-{number}"


def build_number(build: Mapping[str, Any]) -> int:
    try:
        return int(string(annotations_of(build).get(BUILD_NUMBER_ANNOTATION)))
    except ValueError:
        return 0


def buildconfig_of(build: Mapping[str, Any]) -> str | None:
    name = annotations_of(build).get(BUILDCONFIG_NAME) or labels_of(build).get(BUILDCONFIG_NAME)
    return name if isinstance(name, str) and name else None


def build_phase(build: Mapping[str, Any]) -> BuildPhase:
    try:
        return BuildPhase(string(status_of(build).get("phase")))
    except ValueError:
        return BuildPhase.NEW


def builds_of(
    bc: Mapping[str, Any], builds: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The BuildConfig's Builds, oldest first."""
    mine = [
        build
        for build in builds
        if buildconfig_of(build) == name_of(bc)
        and namespace_of(build) == namespace_of(bc)
        and build_number(build) > 0
    ]
    return sorted(mine, key=build_number)


def next_number(bc: Mapping[str, Any], builds: Iterable[Mapping[str, Any]]) -> int:
    highest = max((build_number(b) for b in builds_of(bc, builds)), default=0)
    return max(last_version(bc), highest) + 1
