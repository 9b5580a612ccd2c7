"""Registry tokens for distribution's `auth.token`: what is asked, what is checked, what is signed.

The integrated registry delegates authentication to a token service (ours, served by the
webhook at `TOKEN_PATH`; docs/openshift-behaviours.md#behaviour-33). A client asks it for
a token with `scope=repository:NS/NAME:pull,push`; the service asks the API server, as
OpenShift's registry does (openshift/image-registry pkg/dockerregistry/server/auth.go),
one question per action, and signs a JWT listing only what was allowed. The registry then
checks that JWT against `auth.token.rootcertbundle`, `issuer` and `service`.

This module decides, and does no I/O: the scope grammar (`parse_scopes`), the questions for
each action (`questions`), the credential a request carries (`credential_from`), the claim
set (`claims`), the signature distribution 2.8 verifies (`sign`, `libtrust_key_id`), and the
signing key's material (`new_signing_material`, `load_signing_key`).

Invariants:

* Only what the authorizer allowed is in a token's `access`: an action nobody asked about
  (an unknown resource type or action) is left out, never granted by default.
* A repository name that is not `namespace/name` is refused outright (OpenShift's token
  handler refuses it the same way); a scope that does not parse is ignored, as distribution
  ignores it.
* `SERVICE` and `ISSUER` are the one spelling the webhook signs with and the registry
  operator configures the registry with (controller/registryoperator imports them).
* A token or key is never in a message or log line of this module.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from imagestream.certificates import self_signed_ca
from imagestream.kube.authorization import ResourceAccess

SERVICE: Final = "imagestream-integrated-registry"
"""distribution's `auth.token.service`: the `aud` of every token, the `service` clients send."""
ISSUER: Final = "imagestream-registry-token-service"
"""distribution's `auth.token.issuer`: the `iss` of every token."""
TOKEN_PATH: Final = "/v1/registry/token"  # noqa: S105 - a URL path, not a secret
"""Where the webhook serves tokens: the registry's `auth.token.realm` is the webhook URL + this."""
TOKEN_LIFETIME_S: Final = 300
"""Five minutes, as distribution's own token server issues them: a revoked RoleBinding or
cluster token stops working within that."""
CLOCK_SKEW_S: Final = 30
"""`nbf` is backdated this much: the registry's clock may be a little behind ours."""
SIGNING_CERT_VALIDITY: Final = datetime.timedelta(days=3650)
SIGNING_CERT_KEY: Final = "tls.crt"
"""The signing Secret's key holding the certificate (the registry's rootcertbundle)."""

ANONYMOUS_USER: Final = "system:anonymous"
UNAUTHENTICATED_GROUP: Final = "system:unauthenticated"

IMAGE_GROUP: Final = "image.openshift.io"
REPOSITORY: Final = "repository"
PULL, PUSH = "pull", "push"

_TYPE = re.compile(r"^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$")
"""A scope's resource type, optionally with a class: `repository`, `repository(plugin)`."""
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class TokenRequestError(ValueError):
    """The request cannot be answered as asked (its message says why, for the client)."""


@dataclass(frozen=True)
class RequestedAccess:
    """One scope: `actions` on the resource `type`/`name` (distribution's access record)."""

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str = ""

    def namespace_and_stream(self) -> tuple[str, str]:
        namespace, _, stream = self.name.partition("/")
        return namespace, stream


@dataclass(frozen=True)
class Parsed:
    """The scopes of one request: what to decide, and what was ignored (for the log)."""

    requested: tuple[RequestedAccess, ...]
    ignored: tuple[str, ...] = ()


def parse_scopes(scopes: Sequence[str]) -> Parsed:
    """The access records `scope` parameters ask for (distribution's grammar).

    A scope is `type[(class)]:name:action[,action...]`, three parts exactly (a name with a
    port in it does not parse, as in distribution's and OpenShift's token servers); one
    that does not parse is ignored. A `repository` name must be `namespace/name`
    (`TokenRequestError` otherwise). Several scopes may come in one parameter, separated
    by spaces (the OAuth2 form). The same action asked twice is asked once.
    """
    requested: list[RequestedAccess] = []
    ignored: list[str] = []
    for scope in (part for value in scopes for part in value.split(" ") if part):
        parts = scope.split(":")
        matched = _TYPE.match(parts[0]) if len(parts) == 3 else None
        if matched is None or not parts[1]:
            ignored.append(scope)
            continue
        kind, resource_class = matched.group(1), matched.group(2) or ""
        name = parts[1]
        if kind == REPOSITORY:
            check_repository_name(name)
        actions = tuple(dict.fromkeys(a for a in parts[2].split(",") if a))
        if not actions:
            ignored.append(scope)
            continue
        requested.append(RequestedAccess(kind, name, actions, resource_class))
    return Parsed(tuple(_merged(requested)), tuple(ignored))


def _merged(requested: Sequence[RequestedAccess]) -> list[RequestedAccess]:
    """One record per resource, its actions in the order first asked."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for access in requested:
        actions = merged.setdefault((access.type, access.resource_class, access.name), [])
        actions.extend(a for a in access.actions if a not in actions)
    return [
        RequestedAccess(kind, name, tuple(actions), resource_class)
        for (kind, resource_class, name), actions in merged.items()
    ]


def check_repository_name(name: str) -> None:
    """`namespace/name`, as the integrated registry's repositories are ImageStreams."""
    namespace, separator, stream = name.partition("/")
    if not separator or not namespace or not stream or "/" in stream:
        raise TokenRequestError(
            f"repository name {name!r}: it must be of the format <namespace>/<name>"
        )
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise TokenRequestError(f"repository name {name!r}: {namespace!r} is not a namespace name")


@dataclass(frozen=True)
class Question:
    """One action and the SubjectAccessReviews that must all allow it."""

    action: str
    reviews: tuple[ResourceAccess, ...]


def layers(verb: str, namespace: str, stream: str) -> ResourceAccess:
    return ResourceAccess(
        verb=verb,
        group=IMAGE_GROUP,
        resource="imagestreams",
        subresource="layers",
        namespace=namespace,
        name=stream,
    )


def questions(access: RequestedAccess, *, stream_exists: bool) -> tuple[Question, ...]:
    """What to ask the authorizer for each action of `access` (OpenShift's registry's mapping).

    `pull` is `get imagestreams/layers` on the stream; `push` is `update imagestreams/layers`,
    and, when the stream does not exist yet, also `create imagestreams` in its namespace (the
    push creates it). Every other action or resource type has no question: it is not granted
    (OpenShift's prune `delete` and `registry:catalog:*` need cluster-wide image rights this
    registry does not serve).
    """
    if access.type != REPOSITORY or access.resource_class:
        return ()
    namespace, stream = access.namespace_and_stream()
    asked: list[Question] = []
    for action in access.actions:
        if action == PULL:
            asked.append(Question(PULL, (layers("get", namespace, stream),)))
        elif action == PUSH:
            reviews = [layers("update", namespace, stream)]
            if not stream_exists:
                reviews.append(
                    ResourceAccess(
                        verb="create",
                        group=IMAGE_GROUP,
                        resource="imagestreams",
                        namespace=namespace,
                        name=stream,
                    )
                )
            asked.append(Question(PUSH, tuple(reviews)))
    return tuple(asked)


def granted(access: RequestedAccess, allowed_actions: Sequence[str]) -> dict[str, object] | None:
    """The `access` entry of a token for the allowed actions of one record (none: left out)."""
    actions = [a for a in access.actions if a in allowed_actions]
    if not actions:
        return None
    return {"type": access.type, "name": access.name, "actions": actions}


# --- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A cluster token a request carries (basic auth's password, or a bearer token)."""

    token: str = field(repr=False)


def credential_from(authorization: str | None) -> Credential | None:
    """The cluster token in an `Authorization` header; None when there is no header.

    Basic auth's user name is ignored (`oc registry login` and `docker login` send any);
    its password is the token. A header that carries no token is a `TokenRequestError`:
    a client that tried to authenticate and failed is told, never treated as anonymous.
    """
    if authorization is None or not authorization.strip():
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credential(value)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise TokenRequestError("basic credentials are not valid base64") from None
        _, separator, password = decoded.partition(":")
        if not separator or not password:
            raise TokenRequestError("basic credentials carry no password (a cluster token)")
        return Credential(password)
    raise TokenRequestError("unsupported Authorization scheme: use basic auth or a bearer token")


# --- the token ---------------------------------------------------------------------------------


def claims(
    *,
    subject: str,
    access: Sequence[Mapping[str, object]],
    now: int,
    lifetime_s: int = TOKEN_LIFETIME_S,
    issuer: str = ISSUER,
    service: str = SERVICE,
    jti: str | None = None,
) -> dict[str, object]:
    """The JWT claim set distribution's token verifier reads."""
    return {
        "iss": issuer,
        "sub": subject,
        "aud": service,  # distribution 2.8 reads a single string, not a list
        "exp": now + lifetime_s,
        "nbf": now - CLOCK_SKEW_S,
        "iat": now,
        "jti": jti or secrets.token_hex(16),
        "access": [dict(entry) for entry in access],
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """docker/libtrust's key ID: base32 of the first 240 bits of SHA-256(DER SPKI), in 4s.

    distribution 2.8 finds the key of a token with a `kid` header (and no `x5c`) among the
    public keys of its rootcertbundle by this ID.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def sign(key: ec.EllipticCurvePrivateKey, claim_set: Mapping[str, object]) -> str:
    """A compact JWS (ES256, `kid` = the libtrust key ID) of `claim_set`."""
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claim_set, separators=(",", ":")).encode())
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    # JWS wants r || s, 32 bytes each for P-256, not the DER that cryptography returns.
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def token_response(token: str, lifetime_s: int, issued_at: int) -> dict[str, object]:
    """The token endpoint's answer (`token` for docker, `access_token` for OAuth2 clients)."""
    issued = datetime.datetime.fromtimestamp(issued_at, datetime.UTC)
    return {
        "token": token,
        "access_token": token,
        "expires_in": lifetime_s,
        "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# --- the signing key ---------------------------------------------------------------------------


def parse_secret_reference(reference: str) -> tuple[str, str]:
    """`namespace/name` of the signing Secret (`--registry-token-signing-secret`), ValueError
    otherwise: the webhook that keeps it and the operator that reads it parse it alike."""
    namespace, separator, name = reference.partition("/")
    if not separator or not namespace or not name or "/" in name:
        raise ValueError(f"expected namespace/name, got {reference!r}")
    return namespace, name


@dataclass(frozen=True)
class SigningKey:
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: bytes
    """PEM; what the registry's rootcertbundle holds."""


def new_signing_material(now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate, key) PEM of a fresh EC P-256 key and its self-signed certificate.

    The certificate is made by the one CA recipe (imagestream/certificates.py): the registry
    uses only its public key, and a CA certificate is what a rootcertbundle holds.
    """
    cert, key = self_signed_ca(
        ISSUER,
        not_before=now - datetime.timedelta(minutes=5),
        not_after=now + SIGNING_CERT_VALIDITY,
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def load_signing_key(certificate: bytes, key: bytes) -> SigningKey:
    """The key to sign with, checked: EC P-256 and the certificate's own key (ValueError)."""
    try:
        private = serialization.load_pem_private_key(key, password=None)
        cert = x509.load_pem_x509_certificate(certificate)
    except (ValueError, TypeError):
        raise ValueError("tls.crt or tls.key is not PEM of a certificate and its key") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ValueError("tls.key is not an EC P-256 key (ES256 tokens need one)")
    if cert.public_key() != private.public_key():
        raise ValueError("tls.crt is not the certificate of tls.key")
    return SigningKey(key=private, certificate=certificate)
