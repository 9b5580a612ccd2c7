"""Asking the API server for a ServiceAccount token: one TokenRequest.

`POST .../serviceaccounts/NAME/token` issues a bound token (a JWT signed by the
API server's service-account key) with a bounded lifetime, optionally bound to
an object (here the Secret that will hold it: deleting the Secret invalidates
the token, as OpenShift binds its pull secrets' tokens). The API server may
shorten the lifetime (`--service-account-max-token-expiration`) and refuses
one under 10 minutes; the expiry it answers is the one to plan refreshes by.

Invariant: the token is returned to the caller and nowhere else: it is never
logged, and an API error keeps only the Status message (`errors.py`), which
never echoes it (the request carries no token; the answer's body is not kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from imagestream.kube.client import Kube
from imagestream.kube.errors import Retryable
from imagestream.kube.resources import SERVICEACCOUNTS

MIN_EXPIRATION_S: Final = 600
"""The API server refuses a TokenRequest for less (`expirationSeconds` validation)."""


@dataclass(frozen=True, kw_only=True)
class BoundObject:
    """What the token is bound to: `kind` (Secret, Pod), `name`, `uid`."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    token: str
    expires_at: float
    """Seconds since the epoch, as the API server answered (`status.expirationTimestamp`)."""

    def __repr__(self) -> str:  # a dataclass repr would print the token
        return f"IssuedToken(expires_at={self.expires_at})"


async def request_token(
    kube: Kube,
    namespace: str,
    service_account: str,
    *,
    expiration_s: int,
    bound_to: BoundObject | None = None,
    audiences: tuple[str, ...] = (),
) -> IssuedToken:
    """A token for `namespace/service_account`, valid about `expiration_s` seconds."""
    spec: dict[str, object] = {"expirationSeconds": max(expiration_s, MIN_EXPIRATION_S)}
    if audiences:
        spec["audiences"] = list(audiences)
    if bound_to is not None:
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": bound_to.kind,
            "name": bound_to.name,
            "uid": bound_to.uid,
        }
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name=service_account, subresource="token"),
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    status = answer.get("status")
    status = status if isinstance(status, dict) else {}
    token, expires = status.get("token"), status.get("expirationTimestamp")
    if not isinstance(token, str) or not token or not isinstance(expires, str):
        raise Retryable(f"TokenRequest for {namespace}/{service_account}: no token in the answer")
    try:
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise Retryable(
            f"TokenRequest for {namespace}/{service_account}: bad expirationTimestamp"
        ) from None
    return IssuedToken(token=token, expires_at=expires_at)
