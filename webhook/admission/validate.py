"""The checks OpenShift's API server makes that need a lookup, with its messages
(docs/openshift-behaviours.md#behaviour-29).

OpenShift's image stream strategy follows each new or changed spec tag whose `from` is an
ImageStreamTag or ImageStreamImage of another stream, and refuses the write when that
stream does not exist. It reports that as an internal error wrapping the field error (what
`oc` users have seen for years):

    The ImageStream "cart" is invalid: []: Internal error: imagestreams "cart" is invalid:
    spec.tags[prod].from.name: Not found: "cart:prod"

Invariant: a tag that did not change (same effective source namespace and name) is never
checked again, so deleting a source stream never makes its followers unwritable; only a
definite NotFound refuses, never a lookup that failed for another reason (that is answered
by the webhook's failure policy instead).

The failure it prevents: a tag following a misspelt stream being stored and never
resolving, silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from webhook.admission.review import FieldError, not_found

StreamExists = Callable[[str, str], Awaitable[bool]]
"""(namespace, name) -> whether the ImageStream exists."""


def _source(tag: Mapping[str, Any]) -> Mapping[str, Any] | None:
    source = tag.get("from")
    return source if isinstance(source, Mapping) else None


def referenced_streams(
    stream: Mapping[str, Any], old: Mapping[str, Any] | None, namespace: str
) -> list[tuple[str, str, str, str]]:
    """(tag, from.name, namespace, stream) for each new or changed tag naming another stream."""
    name = str((stream.get("metadata") or {}).get("name") or "")
    old_sources: dict[str, tuple[str, str]] = {}
    for tag in ((old or {}).get("spec") or {}).get("tags") or []:
        source = _source(tag) if isinstance(tag, Mapping) else None
        if source is not None:
            old_sources[str(tag.get("name"))] = (
                str(source.get("namespace") or namespace),
                str(source.get("name") or ""),
            )
    found: list[tuple[str, str, str, str]] = []
    for tag in (stream.get("spec") or {}).get("tags") or []:
        source = _source(tag) if isinstance(tag, Mapping) else None
        if source is None:
            continue
        separator = {"ImageStreamTag": ":", "ImageStreamImage": "@"}.get(str(source.get("kind")))
        from_name = str(source.get("name") or "")
        if separator is None or not from_name:
            continue
        source_namespace = str(source.get("namespace") or namespace)
        if old_sources.get(str(tag.get("name"))) == (source_namespace, from_name):
            continue
        parts = from_name.split(separator)
        if len(parts) != 2:
            continue  # the schema refuses it, with its own message
        source_stream = parts[0]
        if source_namespace == namespace and source_stream == name:
            continue
        found.append((str(tag.get("name")), from_name, source_namespace, source_stream))
    return found


async def missing_sources(
    stream: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    namespace: str,
    exists: StreamExists,
) -> list[FieldError]:
    """OpenShift's errors for the tags whose source stream does not exist (none: allowed)."""
    name = str((stream.get("metadata") or {}).get("name") or "")
    inner: list[FieldError] = []
    for tag, from_name, source_namespace, source_stream in referenced_streams(
        stream, old, namespace
    ):
        if not await exists(source_namespace, source_stream):
            inner.append(not_found(f"spec.tags[{tag}].from.name", from_name))
    if not inner:
        return []
    text = str(inner[0]) if len(inner) == 1 else f"[{', '.join(map(str, inner))}]"
    # OpenShift wraps the field errors in one internal error at the path "" (printed `[]`).
    return [
        FieldError(
            "[]", "InternalError", f'Internal error: imagestreams "{name}" is invalid: {text}'
        )
    ]
