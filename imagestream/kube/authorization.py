"""Asking the API server who a token is (TokenReview) and what they may do (local SARs).

The controller asks whether the service accounts of one namespace may pull
from an ImageStream of another (docs/openshift-behaviours.md#behaviour-16).
OpenShift's registry decides a pull with the same question, `get` on
`imagestreams/layers` (group `image.openshift.io`) of the stream, in the
stream's namespace. The answer comes from whatever authorizer the cluster
runs (RBAC here), so a RoleBinding added or removed changes it at once. It is
a *local* review, made in the namespace asked about (as OpenShift's registry
makes it), so a Role in that namespace grants the asking: the chart's
namespaced mode needs no cluster-wide grant for it.

Invariant: a review either answers (allowed or not, with the authorizer's
reason) or raises one of our API errors (`imagestream.kube.errors`): a 403
means the caller itself may not create LocalSubjectAccessReviews there
(`Terminal`; the chart grants it), a connection failure or a 5xx is `Retryable`. An answer
is never guessed: an error is never read as "not allowed", which would post
a Warning naming a RoleBinding that may already exist.

The registry's token service (docs/openshift-behaviours.md#behaviour-33) asks the same
question for the user a TokenReview names: `review_token` says who a cluster token
belongs to (or that it is no valid token: `None`), and `review_access` then asks for
that user, their groups and extra attributes. The token goes only into the TokenReview's
body, never into an error or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from imagestream.kube.client import Kube
from imagestream.kube.resources import Resource

LOCALSUBJECTACCESSREVIEWS: Final = Resource(
    "authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview"
)
TOKENREVIEWS: Final = Resource(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False
)


@dataclass(frozen=True, kw_only=True)
class ResourceAccess:
    """What is asked: `verb` on `group`'s `resource/subresource` named `name` in `namespace`."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def to_json(self) -> dict[str, str]:
        attributes = {
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
            "name": self.name,
        }
        return {key: value for key, value in attributes.items() if value}


@dataclass(frozen=True, kw_only=True)
class Review:
    """The authorizer's answer."""

    allowed: bool
    reason: str = ""
    """Why, in the authorizer's words (RBAC names the binding that allowed it)."""
    evaluation_error: str = ""
    """Set when the authorizer could not evaluate every rule (e.g. a binding to a missing
    role); `allowed` is still its answer."""


@dataclass(frozen=True, kw_only=True)
class UserInfo:
    """Who a token authenticates as (a TokenReview's `status.user`)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


async def review_token(kube: Kube, token: str) -> UserInfo | None:
    """The user `token` authenticates as, or None when the API server does not accept it."""
    answer = await kube.create(
        TOKENREVIEWS,
        None,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
    )
    status = answer.get("status")
    if not isinstance(status, dict) or status.get("authenticated") is not True:
        return None
    user = status.get("user")
    if not isinstance(user, dict) or not user.get("username"):
        return None
    extra = user.get("extra")
    return UserInfo(
        username=str(user["username"]),
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra={
            str(k): tuple(str(v) for v in values or ())
            for k, values in (extra.items() if isinstance(extra, dict) else ())
        },
    )


async def review_access(
    kube: Kube,
    access: ResourceAccess,
    *,
    groups: Sequence[str],
    user: str = "",
    uid: str = "",
    extra: Mapping[str, Sequence[str]] | None = None,
) -> Review:
    """Whether a subject with `groups` (and `user`, `uid`, `extra`, if given) may do
    `access`, asked in `access.namespace` (which must be set: a local review is about one
    namespace)."""
    if not access.namespace:
        raise ValueError("a local access review needs the namespace it is about")
    spec: dict[str, object] = {"resourceAttributes": access.to_json(), "groups": list(groups)}
    if user:
        spec["user"] = user
    if uid:
        spec["uid"] = uid
    if extra:
        spec["extra"] = {key: list(values) for key, values in extra.items()}
    answer = await kube.create(
        LOCALSUBJECTACCESSREVIEWS,
        access.namespace,
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": access.namespace},
            "spec": spec,
        },
    )
    status = answer.get("status")
    if not isinstance(status, dict):
        status = {}
    return Review(
        allowed=status.get("allowed") is True,
        reason=str(status.get("reason") or ""),
        evaluation_error=str(status.get("evaluationError") or ""),
    )
