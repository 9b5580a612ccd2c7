"""The AdmissionReview protocol (admission.k8s.io/v1): reading a request, writing an answer.

Invariant: every answer names the request's uid; a mutation is sent as a JSON Patch that
replaces whole top-level sections (`/spec`, `/metadata/annotations`) the mutation changed,
so the patch cannot address a path that does not exist; a refusal carries a Status with
OpenShift's 422 Invalid shape (`<Kind>.<group> "<name>" is invalid: <field>: <message>`).

The failure it prevents: an answer the API server cannot use (wrong uid, a patch to a
missing path) fails the request for the user with an opaque "webhook failed" error.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class ReviewError(ValueError):
    """The body is not an AdmissionReview request we can answer."""


@dataclass(frozen=True)
class Request:
    uid: str
    kind: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    operation: str
    object: Obj
    old_object: Obj | None
    api_version: str


def parse_review(body: object) -> Request:
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise ReviewError("expected an AdmissionReview")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise ReviewError("AdmissionReview without request.uid")
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    obj = request.get("object")
    old = request.get("oldObject")
    return Request(
        uid=request["uid"],
        kind=str(kind.get("kind", "")),
        group=str(kind.get("group", "")),
        resource=str(resource.get("resource", "")),
        subresource=str(request.get("subResource") or ""),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or (obj or {}).get("metadata", {}).get("name") or ""),
        operation=str(request.get("operation", "")),
        object=obj if isinstance(obj, dict) else {},
        old_object=old if isinstance(old, dict) else None,
        api_version=str(body.get("apiVersion") or "admission.k8s.io/v1"),
    )


def json_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Obj]:
    """Operations turning `before` into `after`, one per changed section."""
    operations: list[Obj] = []
    for key in sorted(set(before) | set(after)):
        if key == "metadata":
            continue
        if key not in after:
            operations.append({"op": "remove", "path": f"/{key}"})
        elif before.get(key) != after[key]:
            op = "replace" if key in before else "add"
            operations.append({"op": op, "path": f"/{key}", "value": after[key]})
    old_meta, new_meta = before.get("metadata") or {}, after.get("metadata") or {}
    for key in ("annotations", "labels"):
        if old_meta.get(key) != new_meta.get(key) and key in new_meta:
            op = "replace" if key in old_meta else "add"
            operations.append({"op": op, "path": f"/metadata/{key}", "value": new_meta[key]})
    return operations


def _response(request: Request, response: Obj) -> Obj:
    return {
        "apiVersion": request.api_version,
        "kind": "AdmissionReview",
        "response": {"uid": request.uid, **response},
    }


def allow(request: Request, mutated: Mapping[str, Any] | None = None) -> Obj:
    response: Obj = {"allowed": True}
    if mutated is not None:
        patch = json_patch(request.object, mutated)
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _response(request, response)


@dataclass(frozen=True)
class FieldError:
    """One field error, as Kubernetes' `field.Error` prints: `<field>: <kind>: <detail>`."""

    field: str
    reason: str
    """The cause's reason: FieldValueNotFound, InternalError, ..."""
    detail: str
    """What follows the field: `Not found: "x:y"`."""

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def not_found(field: str, value: str) -> FieldError:
    return FieldError(field, "FieldValueNotFound", f"Not found: {json.dumps(value)}")


def refuse_invalid(request: Request, errors: Sequence[FieldError], *, group: str) -> Obj:
    """422 Invalid, worded as the API server words it (kubectl prints the causes)."""
    kind = request.kind
    text = str(errors[0]) if len(errors) == 1 else f"[{', '.join(map(str, errors))}]"
    return _response(
        request,
        {
            "allowed": False,
            "status": {
                "status": "Failure",
                "code": 422,
                "reason": "Invalid",
                "message": f'{kind}.{group} "{request.name}" is invalid: {text}',
                "details": {
                    "name": request.name,
                    "group": group,
                    "kind": kind,
                    "causes": [
                        {"reason": e.reason, "message": e.detail, "field": e.field} for e in errors
                    ],
                },
            },
        },
    )
