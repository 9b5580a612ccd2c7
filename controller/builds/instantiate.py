"""A BuildConfig's next Build, as OpenShift's build generator makes it. Pure.

See docs/openshift-behaviours.md#build-instantiation.

`instantiate()` returns the Build to create and the BuildConfig status to record. The
caller creates the Build first and records the status second: the Build's fixed name
`<bc>-<number>` makes a repeated create fail instead of duplicating, and a Build that
exists before its number is recorded is found again by `triggers.recorded_images`.

Invariants:
- The Build's strategy `from` is a DockerImage pull spec: the image that fired when the
  trigger that fired follows the strategy's stream, else what the stream resolves to now.
  The output stays as the BuildConfig says (`ImageStreamTag` name); the push spec is
  resolved when the Build starts.
- Paused BuildConfigs are refused, as OpenShift's instantiate refuses them.

Failure it prevents: a Build that builds on a different base image than the one that
triggered it (the tag moved again between trigger and start).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.builds.model import (
    BUILD_NUMBER_ANNOTATION,
    BUILDCONFIG_LABEL,
    BUILDCONFIG_NAME,
    START_POLICY_LABEL,
    build_name,
    image_stream_tag,
    is_paused,
    label_value,
    next_number,
    run_policy,
    strategy_field,
    strategy_from,
)
from controller.builds.triggers import BuildRequest, resolve, trigger_status
from controller.triggers.outcomes import NamespacePolicy, StreamGetter, same_namespace_only
from imagestream.objects import Obj, labels_of, name_of, namespace_of, spec_of

COMMON_SPEC_FIELDS: Final = (
    "serviceAccount",
    "source",
    "revision",
    "strategy",
    "output",
    "resources",
    "postCommit",
    "completionDeadlineSeconds",
    "nodeSelector",
    "mountTrustedCA",
)


class InstantiateError(Exception):
    """The BuildConfig cannot start a Build now; the message says why (as OpenShift's)."""


@dataclass(frozen=True, kw_only=True)
class Instantiation:
    build: Obj
    number: int
    status: Obj
    """The BuildConfig status fields to record: `lastVersion`, `imageChangeTriggers`."""


def instantiate(
    bc: Mapping[str, Any],
    request: BuildRequest,
    builds: Iterable[Mapping[str, Any]],
    *,
    get_stream: StreamGetter,
    now: str,
    namespace_allowed: NamespacePolicy = same_namespace_only,
) -> Instantiation:
    name, namespace = name_of(bc), namespace_of(bc)
    if is_paused(bc):
        raise InstantiateError(
            f"can't instantiate from BuildConfig {namespace}/{name}: BuildConfig is paused"
        )
    builds = list(builds)
    number = next_number(bc, builds)
    spec = {
        key: copy.deepcopy(spec_of(bc)[key]) for key in COMMON_SPEC_FIELDS if key in spec_of(bc)
    }
    base = image_stream_tag(strategy_from(bc), namespace=namespace)
    if base is not None:
        if request.from_ref == base and request.triggered_by_image:
            image = request.triggered_by_image
        else:
            resolved = resolve(bc, base, get_stream=get_stream, namespace_allowed=namespace_allowed)
            if resolved is None:
                raise InstantiateError(
                    f"unable to resolve ImageStreamTag {base.namespace}/{base.name}: the tag has"
                    " no image yet"
                )
            image = resolved
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault(strategy_field(bc), {})["from"] = {"kind": "DockerImage", "name": image}
    spec["triggeredBy"] = [dict(cause) for cause in request.causes]
    build_id = build_name(name, number)
    build: Obj = {
        "apiVersion": "build.openshift.io/v1",
        "kind": "Build",
        "metadata": {
            "name": build_id,
            "namespace": namespace,
            "labels": dict(labels_of(bc))
            | {
                BUILDCONFIG_LABEL: label_value(name),
                BUILDCONFIG_NAME: label_value(name),
                START_POLICY_LABEL: run_policy(bc),
            },
            "annotations": {BUILDCONFIG_NAME: name, BUILD_NUMBER_ANNOTATION: str(number)},
            "ownerReferences": [
                {
                    "apiVersion": "build.openshift.io/v1",
                    "kind": "BuildConfig",
                    "name": name,
                    "uid": str((bc.get("metadata") or {}).get("uid", "")),
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }
    status = {
        "lastVersion": number,
        "imageChangeTriggers": trigger_status(
            bc,
            builds,
            get_stream=get_stream,
            namespace_allowed=namespace_allowed,
            fired=request.from_ref,
            fired_image=request.triggered_by_image,
            now=now,
        ),
    }
    return Instantiation(build=build, number=number, status=status)
