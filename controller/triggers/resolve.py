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

from controller.triggers.outcomes import NamespacePolicy, Reason, StreamGetter, Unresolved
from controller.triggers.podspec import quoted
from controller.triggers.pullaccess import denial_message
from imagestream.imagestreams import DEFAULT_TAG, resolve_latest_tagged_image

__all__ = ["DEFAULT_TAG", "resolve_image_stream_tag", "resolve_latest_tagged_image"]


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
