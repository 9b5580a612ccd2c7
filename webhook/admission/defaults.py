"""The defaults and conversions OpenShift's API server applies, as pure functions.

OpenShift decodes `apps.openshift.io/v1`, `build.openshift.io/v1` and `image.openshift.io/v1`
objects into internal types, converting legacy spellings and filling defaults on the way,
and stores what comes out. A CRD stores what it is sent, and its schema refuses the legacy
spellings. Our mutating webhook runs these functions before schema validation, so a manifest
written for OpenShift is stored as OpenShift stores it (docs/openshift-behaviours.md#behaviour-26,
docs/openshift-behaviours.md#behaviour-27 and, for tag generations,
docs/openshift-behaviours.md#behaviour-28).

Invariant: each function takes an object and returns a new one (the input is never changed);
applying it twice gives what applying it once gives, so a re-admitted object (an update that
changes nothing) is not rewritten again. Anything it does not recognise it leaves alone, for
validation to refuse with the schema's message.

The failure it prevents: a legacy manifest that OpenShift accepts being refused here, or
being stored in a form our controller reads differently (a Source-only BuildConfig stored as
`type: Docker`, a `generation: 0` that re-imports only once).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

Obj = dict[str, Any]

DEFAULT_TAG: Final = "latest"
ROLLING_DEFAULTS: Final = {"updatePeriodSeconds": 1, "intervalSeconds": 1, "timeoutSeconds": 600}
"""OpenShift's `DefaultRolling*Seconds`."""
RECREATE_TIMEOUT_S: Final = 600
DEPLOYMENT_DEADLINE_S: Final = 21600
"""OpenShift's `MaxDeploymentDurationSeconds`: six hours."""
REVISION_HISTORY_LIMIT: Final = 10
"""OpenShift's default for the `apps.openshift.io` group (the legacy API had none)."""
DEPRECATED_BUILD_TRIGGER_TYPES: Final = {
    "imageChange": "ImageChange",
    "github": "GitHub",
    "generic": "Generic",
}
STRATEGY_TYPES: Final = (
    # The order OpenShift checks them in when it derives `type` from the strategy that is set.
    ("sourceStrategy", "Source"),
    ("dockerStrategy", "Docker"),
    ("customStrategy", "Custom"),
    ("jenkinsPipelineStrategy", "JenkinsPipeline"),
)


def _mapping(value: object) -> Obj | None:
    return value if isinstance(value, dict) else None


def _with_tag(name: str) -> str:
    """`stream` means `stream:latest`; any other name is left as written."""
    if "@" in name or ":" in name:
        return name
    return f"{name}:{DEFAULT_TAG}"


def _stream_reference(reference: Obj, *, join_tag: bool = False) -> None:
    """An image-stream reference in place, as OpenShift converts it.

    A missing kind means ImageStreamTag. `ImageStream` (and the older `ImageRepository`)
    becomes `ImageStreamTag`, and a name without a tag gets `:latest`; `join_tag` does that
    for a missing kind too (a build's `output.to`). `stream:` (an empty tag) is read as
    `stream:latest` everywhere in OpenShift; we store it so. A bare name of kind
    ImageStreamTag is left for validation to refuse, as OpenShift refuses it.
    """
    kind = reference.get("kind")
    name = reference.get("name")
    if not isinstance(name, str) or not name:
        if not kind:
            reference["kind"] = "ImageStreamTag"
        return
    if not kind:
        reference["kind"] = "ImageStreamTag"
        if join_tag:
            name = _with_tag(name)
    elif kind in ("ImageStream", "ImageRepository"):
        reference["kind"] = "ImageStreamTag"
        name = _with_tag(name)
    if reference["kind"] == "ImageStreamTag" and name.endswith(":") and name.count(":") == 1:
        name += DEFAULT_TAG
    reference["name"] = name


# --- DeploymentConfig -----------------------------------------------------------------------


def default_deploymentconfig(dc: Mapping[str, Any], namespace: str) -> Obj:
    """A DeploymentConfig as OpenShift stores it (apps/v1 defaults and conversion)."""
    out: Obj = copy.deepcopy(dict(dc))
    spec = out.setdefault("spec", {})
    if not isinstance(spec, dict):
        return out
    if "triggers" not in spec or spec["triggers"] is None:
        spec["triggers"] = [{"type": "ConfigChange"}]
    template = _mapping(spec.get("template"))
    if not spec.get("selector") and template is not None:
        labels = _mapping((_mapping(template.get("metadata")) or {}).get("labels"))
        if labels:
            spec["selector"] = dict(labels)
    spec.setdefault("revisionHistoryLimit", REVISION_HISTORY_LIMIT)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        _default_strategy(strategy)
    for trigger in spec.get("triggers") or []:
        params = _mapping((_mapping(trigger) or {}).get("imageChangeParams"))
        source = _mapping((params or {}).get("from"))
        if source is None:
            continue
        _stream_reference(source)
        if not source.get("namespace") and namespace:
            source["namespace"] = namespace
    return out


def _default_strategy(strategy: Obj) -> None:
    if not strategy.get("type"):
        strategy["type"] = "Rolling"
    if strategy["type"] == "Rolling":
        params = strategy.get("rollingParams")
        if not isinstance(params, dict):
            params = strategy["rollingParams"] = {}
        _default_rolling(params)
    elif strategy["type"] == "Recreate":
        params = strategy.get("recreateParams")
        if not isinstance(params, dict):
            params = strategy["recreateParams"] = {}
        params.setdefault("timeoutSeconds", RECREATE_TIMEOUT_S)
    strategy.setdefault("activeDeadlineSeconds", DEPLOYMENT_DEADLINE_S)


def _is_zero(value: object) -> bool:
    return value in (0, "0%")


def _default_rolling(params: Obj) -> None:
    for key, value in ROLLING_DEFAULTS.items():
        params.setdefault(key, value)
    unavailable, surge = params.get("maxUnavailable"), params.get("maxSurge")
    # Both omitted: 25% each. One given as zero: the other 25%, so a rollout can move.
    if unavailable is None and (surge is None or _is_zero(surge)):
        params["maxUnavailable"] = "25%"
    if surge is None and (unavailable is None or _is_zero(unavailable)):
        params["maxSurge"] = "25%"


# --- BuildConfig and Build ------------------------------------------------------------------


def default_buildconfig(bc: Mapping[str, Any]) -> Obj:
    """A BuildConfig as OpenShift stores it (build/v1 defaults and conversion)."""
    out: Obj = copy.deepcopy(dict(bc))
    spec = _mapping(out.get("spec"))
    if spec is None:
        return out
    spec.setdefault("runPolicy", "Serial")
    _default_build_spec(spec)
    triggers = spec.get("triggers")
    for trigger in triggers if isinstance(triggers, list) else []:
        if not isinstance(trigger, dict):
            continue
        kind = trigger.get("type")
        if isinstance(kind, str) and kind in DEPRECATED_BUILD_TRIGGER_TYPES:
            trigger["type"] = DEPRECATED_BUILD_TRIGGER_TYPES[kind]
        if trigger.get("type") == "ImageChange":
            if not isinstance(trigger.get("imageChange"), dict):
                trigger["imageChange"] = {}
            source = _mapping(trigger["imageChange"].get("from"))
            if source is not None:
                _stream_reference(source)
    return out


def default_build(build: Mapping[str, Any]) -> Obj:
    """A Build as OpenShift stores it: the parts it shares with a BuildConfig's spec."""
    out: Obj = copy.deepcopy(dict(build))
    spec = _mapping(out.get("spec"))
    if spec is not None:
        _default_build_spec(spec)
    return out


def _default_build_spec(spec: Obj) -> None:
    source = _mapping(spec.get("source"))
    if source is not None and source.get("type") == "Binary" and source.get("binary") is None:
        source["binary"] = {}
    strategy = _mapping(spec.get("strategy"))
    if strategy is not None:
        _default_build_strategy(strategy)
    output = _mapping(spec.get("output"))
    to = _mapping((output or {}).get("to"))
    if to is not None:
        _stream_reference(to, join_tag=True)


def _default_build_strategy(strategy: Obj) -> None:
    none_set = not any(isinstance(strategy.get(key), dict) for key, _ in STRATEGY_TYPES)
    if strategy.get("type") == "Docker" and none_set:
        strategy["dockerStrategy"] = {}
    for key, _ in STRATEGY_TYPES[:3]:
        settings = _mapping(strategy.get(key))
        source = _mapping((settings or {}).get("from"))
        if source is not None:
            _stream_reference(source)
    # OpenShift's internal type has no `type`: it is derived from the strategy that is set
    # when the object is stored and read.
    for key, kind in STRATEGY_TYPES:
        if isinstance(strategy.get(key), dict):
            strategy["type"] = kind
            break


# --- ImageStream ----------------------------------------------------------------------------


def _spec(stream: Mapping[str, Any] | None) -> Obj:
    spec = (stream or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _tags(stream: Mapping[str, Any] | None) -> dict[str, Obj]:
    tags = _spec(stream).get("tags")
    if not isinstance(tags, list):
        return {}
    return {t["name"]: t for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str)}


def _effective_from(tag: Mapping[str, Any], namespace: str) -> tuple[str, str] | None:
    source = _mapping(tag.get("from"))
    if source is None:
        return None
    return (str(source.get("namespace") or namespace), str(source.get("name") or ""))


def _tag_changed(old: Mapping[str, Any], new: Mapping[str, Any], namespace: str) -> bool:
    """OpenShift's `tagRefChanged`: a new source namespace or name, or generation set to 0."""
    source = _mapping(new.get("from"))
    if source is None or (not source.get("kind") and not source.get("name")):
        return False
    if _effective_from(old, namespace) != _effective_from(new, namespace):
        return True
    old_generation, new_generation = old.get("generation"), new.get("generation")
    return (
        old_generation is not None
        and new_generation is not None
        and old_generation != new_generation
        and new_generation == 0
    )


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stamp_tag_generations(
    stream: Mapping[str, Any], old: Mapping[str, Any] | None, namespace: str
) -> Obj:
    """`spec.tags[].generation` as OpenShift's image stream strategy keeps it.

    On create every tag gets 1 (the stream's first generation). On update a client cannot
    change a tag's generation except to 0; the stream's generation goes up by one when the
    spec changed (the API server does the same for our CRD, after this); and every tag that
    is new, changed or at 0 gets the new stream generation. So `generation: 0` always asks
    for one more import, however often it is sent.
    """
    out: Obj = copy.deepcopy(dict(stream))
    new_tags = _tags(out)
    if old is None:
        for tag in new_tags.values():
            tag["generation"] = 1
        return out
    old_tags = _tags(old)
    for name, tag in new_tags.items():
        if tag.get("generation") == 0:
            continue
        if name in old_tags:
            previous = old_tags[name].get("generation")
            if previous is None:
                tag.pop("generation", None)
            else:
                tag["generation"] = previous
    old_generation = int((_mapping(old.get("metadata")) or {}).get("generation") or 0)
    changed = _canonical(_spec(out)) != _canonical(_spec(old))
    generation = old_generation + 1 if changed else old_generation
    for name, tag in new_tags.items():
        before = old_tags.get(name)
        if before is None or _tag_changed(before, tag, namespace):
            tag.pop("generation", None)
        current = tag.get("generation")
        if current is None or current == 0:
            tag["generation"] = generation
    return out


def default_imagestream(stream: Mapping[str, Any]) -> Obj:
    """Spec tags following `stream:` (an empty tag) follow `stream:latest`, as OpenShift reads."""
    out: Obj = copy.deepcopy(dict(stream))
    for tag in _tags(out).values():
        source = _mapping(tag.get("from"))
        if source is not None and source.get("kind") == "ImageStreamTag":
            _stream_reference(source)
    return out
