"""`GET /v1/registry/token`: the integrated registry's token service (distribution's `auth.token`).

A client (skopeo, podman, a kubelet) that the registry sends here with a `scope` gets a JWT
listing what the cluster lets it do (docs/openshift-behaviours.md#behaviour-33):

| request                                                  | answer |
|----------------------------------------------------------|--------|
| no Authorization header                                  | 200, for `system:anonymous` (1) |
| basic auth (any user name) or bearer: a cluster token    | 200, for the token's user |
| a token the API server does not accept (TokenReview)     | 401, `details` says so |
| an Authorization header with no token in it              | 401 |
| a bad repository name, another `service`, too many (2)   | 400, `details` says why |
| this webhook may not ask about a namespace (403)         | 200, nothing granted there; logged |
| the API server cannot be asked now                       | 503 + Retry-After |

(1) in the group `system:unauthenticated`: RBAC alone decides what anonymous clients get.
(2) a repository name must be `namespace/name`; at most `MAX_REPOSITORIES` resources.

A 200 lists only the actions the authorizer allowed; the registry refuses the rest itself
(`insufficient_scope`), as it does for any token server. The decisions are
`imagestream.registry_tokens` (pure); this module reads the request, asks the API server
(through `imagestream.kube.authorization`) and writes the answer.

The signing key lives in a `kubernetes.io/tls` Secret (`--registry-token-signing-secret`):
created with a fresh key when absent, read when present, never replaced (the registry's
rootcertbundle holds its certificate), so every webhook replica signs with the same key and
a restart invalidates no token.

Invariant: no token (the cluster token asked with, or the one issued) is logged or echoed;
a refused request changes nothing (a TokenReview and SubjectAccessReviews write nothing).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from imagestream.kube.authorization import UserInfo, review_access, review_token
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, KubeError, NotFound, Terminal
from imagestream.kube.resources import IMAGESTREAMS, SECRETS
from imagestream.registry_tokens import (
    ANONYMOUS_USER,
    PUSH,
    SERVICE,
    TOKEN_LIFETIME_S,
    TOKEN_PATH,
    UNAUTHENTICATED_GROUP,
    RequestedAccess,
    SigningKey,
    TokenRequestError,
    claims,
    credential_from,
    granted,
    load_signing_key,
    new_signing_material,
    parse_scopes,
    questions,
    sign,
    token_response,
)

log = structlog.get_logger(__name__)

TLS_SECRET = "kubernetes.io/tls"  # noqa: S105 - a Secret type
ATTEMPTS = 5
RETRY_AFTER_S = "2"
MAX_REPOSITORIES = 16
"""Resources one request may ask about: a push with a cross-repository mount asks two."""
LABELS = {
    "app.kubernetes.io/part-of": "imagestream-controller",
    "app.kubernetes.io/managed-by": "imagestream-webhook",
}
ANONYMOUS = UserInfo(username=ANONYMOUS_USER, groups=(UNAUTHENTICATED_GROUP,))


class SigningSecretError(RuntimeError):
    """The signing Secret exists but cannot be used (never overwritten: the registry trusts it)."""


async def ensure_signing_key(kube: Kube, namespace: str, name: str) -> SigningKey:
    """The key in Secret `namespace/name`, creating the Secret (a fresh key) when absent."""
    where = f"{namespace}/{name}"
    for _ in range(ATTEMPTS):
        try:
            secret = await kube.get(SECRETS, namespace, name)
        except NotFound:
            cert, key = new_signing_material(datetime.datetime.now(datetime.UTC))
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": TLS_SECRET,
                "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
                "data": {
                    "tls.crt": base64.b64encode(cert).decode(),
                    "tls.key": base64.b64encode(key).decode(),
                },
            }
            try:
                await kube.create(SECRETS, namespace, body)
            except Conflict:
                continue  # another replica created it first: use theirs
            log.info("registry_token_key_created", secret=where)
            return load_signing_key(cert, key)
        data = secret.get("data") or {}
        try:
            cert, key = (base64.b64decode(data[k], validate=True) for k in ("tls.crt", "tls.key"))
            signing = load_signing_key(cert, key)
        except (KeyError, ValueError, TypeError) as error:
            detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
            raise SigningSecretError(f"Secret {where}: {detail}") from None
        log.info("registry_token_key_loaded", secret=where)
        return signing
    raise SigningSecretError(f"Secret {where}: contended past {ATTEMPTS} attempts")


@dataclass
class TokenMetrics:
    tokens: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TokenMetrics:
        return cls(
            tokens=Counter(
                "imagestream_registry_tokens",
                "Registry token requests, by answer.",
                ["outcome"],
                registry=registry,
            )
        )


@dataclass
class TokenService:
    kube: Kube
    key: SigningKey
    metrics: TokenMetrics
    lifetime_s: int = TOKEN_LIFETIME_S

    def routes(self) -> list[web.RouteDef]:
        return [web.get(TOKEN_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        response, outcome = await self._answer(request)
        self.metrics.tokens.labels(outcome).inc()
        return response

    async def _answer(self, request: web.Request) -> tuple[web.Response, str]:
        try:
            parsed = parse_scopes(request.query.getall("scope", []))
            if len(parsed.requested) > MAX_REPOSITORIES:
                raise TokenRequestError(
                    f"{len(parsed.requested)} resources in one request: at most "
                    f"{MAX_REPOSITORIES} (each is a question to the API server)"
                )
            service = request.query.get("service")
            if service is not None and service != SERVICE:
                raise TokenRequestError(
                    f"service {service!r}: this token service issues tokens for {SERVICE!r}"
                )
        except TokenRequestError as error:
            log.info("registry_token_refused", reason="bad_request", error=str(error))
            return _details(400, str(error)), "bad_request"
        if parsed.ignored:
            log.info("registry_token_scopes_ignored", scopes=list(parsed.ignored))
        try:
            credential = credential_from(request.headers.get("Authorization"))
        except TokenRequestError as error:
            log.info("registry_token_refused", reason="bad_credentials", error=str(error))
            return _details(401, str(error)), "unauthorized"
        try:
            user = (
                ANONYMOUS if credential is None else await review_token(self.kube, credential.token)
            )
            if user is None:
                log.info("registry_token_refused", reason="invalid_token")
                return _details(401, "the token is not a valid cluster token"), "unauthorized"
            access = await asyncio.gather(*(self._decide(user, a) for a in parsed.requested))
        except KubeError as error:
            log.error("registry_token_unavailable", error=str(error))
            response = _details(503, "the token service cannot ask the API server now")
            response.headers["Retry-After"] = RETRY_AFTER_S
            return response, "unavailable"
        now = int(time.time())
        entries = [entry for entry in access if entry is not None]
        token = sign(
            self.key.key,
            claims(subject=user.username, access=entries, now=now, lifetime_s=self.lifetime_s),
        )
        log.info(
            "registry_token_issued",
            subject=user.username,
            requested=[_scope(a.name, a.actions) for a in parsed.requested],
            granted=[_scope(str(e["name"]), e["actions"]) for e in entries],
        )
        return web.json_response(token_response(token, self.lifetime_s, now)), "issued"

    async def _decide(self, user: UserInfo, access: RequestedAccess) -> dict[str, object] | None:
        try:
            return await self._decide_or_raise(user, access)
        except Terminal as error:
            # This webhook may not ask there (its Roles do not cover the namespace): nothing
            # can be granted, and the registry says `insufficient_scope`; a retry would not
            # help, so no 503. The log names it for the operator.
            log.error("registry_token_review_refused", repository=access.name, error=str(error))
            return None

    async def _decide_or_raise(
        self, user: UserInfo, access: RequestedAccess
    ) -> dict[str, object] | None:
        stream_exists = True
        if PUSH in access.actions:
            namespace, stream = access.namespace_and_stream()
            try:
                await self.kube.get(IMAGESTREAMS, namespace, stream)
            except NotFound:
                stream_exists = False
        allowed: list[str] = []
        for question in questions(access, stream_exists=stream_exists):
            reviews = await asyncio.gather(
                *(
                    review_access(
                        self.kube,
                        review,
                        groups=user.groups,
                        user=user.username,
                        uid=user.uid,
                        extra=user.extra,
                    )
                    for review in question.reviews
                )
            )
            if all(review.allowed for review in reviews):
                allowed.append(question.action)
        return granted(access, allowed)


def _scope(name: str, actions: object) -> str:
    listed = actions if isinstance(actions, list | tuple) else []
    return f"{name}:{','.join(str(a) for a in listed)}"


def _details(status: int, details: str) -> web.Response:
    return web.json_response({"details": details}, status=status)
