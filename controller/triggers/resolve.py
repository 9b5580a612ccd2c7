"""Turn an ImageStream tag into the pull spec that triggers write (OpenShift's
`ResolveLatestTaggedImage`; behaviour 14, docs/openshift-behaviours.md#behaviour-14).

Invariant: the answer depends only on the head of the tag's history (`items[0]`), the tag's
`referencePolicy` and `status.dockerImageRepository`. Pending or failed imports are ignored,
so a workload keeps following the last image that was actually recorded.

Failure it prevents: resolving from anything but the head (an older history entry, the spec
`from`, a guessed repository) would make triggers write a pull spec other than the one
OpenShift writes for the same stream, and two controllers (or two reconciles) would flap
between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from controller.triggers.outcomes import NamespacePolicy, Reason, StreamGetter, Unresolved
from controller.triggers.podspec import quoted
from controller.triggers.pullaccess import denial_message

DEFAULT_TAG: Final = "latest"
"""The tag meant by an empty tag name, as in OpenShift."""


def resolve_latest_tagged_image(stream: Mapping[str, Any], tag: str) -> str | None:
    """The pull spec of `tag`'s current image in `stream`, or None when the tag has none.

    `referencePolicy.type: Local` yields `<status.dockerImageRepository>@<items[0].image>`
    (pull through the integrated registry) when both parts are known; every other case
    yields `items[0].dockerImageReference` verbatim.
    """
    tag = tag or DEFAULT_TAG
    head = _history_head(stream, tag)
    if head is None:
        return None
    reference = head.get("dockerImageReference")
    # NB: the API server rejects an empty reference; if one slips through anyway we report
    # the tag as unresolved rather than blank a container image (Kubernetes rejects "").
    if not isinstance(reference, str) or not reference:
        return None
    if _reference_policy(stream, tag) == "Local":
        repository = _mapping(stream.get("status")).get("dockerImageRepository")
        image = head.get("image")
        if isinstance(repository, str) and repository and isinstance(image, str) and image:
            return f"{repository}@{image}"
    return reference


def _history_head(stream: Mapping[str, Any], tag: str) -> Mapping[str, Any] | None:
    for status_tag in _mappings(_mapping(stream.get("status")).get("tags")):
        if status_tag.get("tag") == tag:
            items = status_tag.get("items")
            # Only the head counts: the API documents items[0] as the current image.
            if isinstance(items, list) and items and isinstance(items[0], Mapping):
                return items[0]
            return None
    return None


def _reference_policy(stream: Mapping[str, Any], tag: str) -> str | None:
    for spec_tag in _mappings(_mapping(stream.get("spec")).get("tags")):
        if spec_tag.get("name") == tag:
            policy = _mapping(spec_tag.get("referencePolicy")).get("type")
            return policy if isinstance(policy, str) else None
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def resolve_image_stream_tag(
    *,
    workload_namespace: str,
    stream_namespace: str,
    stream: str,
    tag: str,
    get_stream: StreamGetter,
    namespace_allowed: NamespacePolicy,
) -> str | Unresolved:
    """The pull spec of `<stream_namespace>/<stream>:<tag>` for a workload, or why not.

    The policy is asked before the cache, so a forbidden stream is never read and its
    existence never shows up in an outcome.
    """
    if not namespace_allowed(workload_namespace, stream_namespace, stream):
        return Unresolved(
            reason=Reason.NAMESPACE_NOT_ALLOWED,
            message=denial_message(workload_namespace, stream_namespace, stream),
        )
    image_stream = get_stream(stream_namespace, stream)
    if image_stream is None:
        return Unresolved(
            reason=Reason.STREAM_NOT_FOUND,
            message=f"ImageStream {stream_namespace}/{stream} not found",
        )
    image = resolve_latest_tagged_image(image_stream, tag)
    if image is None:
        return Unresolved(
            reason=Reason.TAG_NOT_FOUND,
            message=f"ImageStream {stream_namespace}/{stream} has no image for tag {quoted(tag)}",
        )
    return image
