"""Asking a registry what a tag points to now: one manifest HEAD.

Invariant: `resolve_digest` returns the digest the registry itself reports
(`Docker-Content-Digest`) for `repository:tag` at the moment of asking, or
raises `ResolveError` whose `reason` is the one OpenShift writes in an
`ImportSuccess=False` condition. It makes at most one authentication
round trip and one retry of the HEAD after it, never retries on failure
(the caller owns the retry policy and its budget), and never runs longer
than `timeout_s`.

Failures this prevents:

* Recording a digest nobody pushed: payloads without a digest (Docker Hub,
  Quay, Nexus) and events that arrive out of order are settled by asking
  the registry, the level-triggered answer.
* Pulling a whole manifest (and being rate-limited for it on Docker Hub,
  where HEAD is free) just to learn its digest.
* Leaking credentials: they are sent only to the registry's own token
  realm (over HTTPS unless the registry is configured insecure) and are
  never logged; tokens are cached per (registry, scope, credentials) and
  never logged either.
* A hung registry stalling the webhook: the whole exchange, token fetch
  included, is bounded by `timeout_s`.

`insecure: true` (OpenShift's `importPolicy.insecure`) means the registry
is spoken to over plain HTTP, and any HTTPS on the way (a token realm, a
redirect) is not verified. Otherwise HTTPS is verified against the system
CAs plus the optional `ca_bundle` file plus `extra_ca_pem` (the registry's
own bundle from the cluster image configuration's `additionalTrustedCA`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import fnmatch
import hashlib
import json
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from imagestream.caches import BoundedCache
from imagestream.references import (
    api_host,
    is_valid_digest,
    is_valid_registry_host,
    is_valid_repository,
    is_valid_tag,
    normalize_registry,
    normalize_repository,
)

log = structlog.get_logger("imagestream.registry_client")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Without an Accept listing the index types, registries answer for a
# multi-arch tag with a down-converted single manifest (or 404 on OCI
# indexes), whose digest is not the one that was pushed.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

# Distribution's token spec: "expires_in ... defaults to 60 seconds".
DEFAULT_TOKEN_LIFETIME_S = 60.0
# Renew a little early, so a token does not expire between cache and use.
TOKEN_EXPIRY_MARGIN_S = 10.0
TOKEN_CACHE_MAX_ENTRIES = 1024
# Real token responses are a few KiB; this bounds what a hostile realm can make us buffer.
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024

_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


class ResolveReason(StrEnum):
    """The `reason` of an OpenShift `ImportSuccess=False` condition."""

    NOT_FOUND = "NotFound"
    UNAUTHORIZED = "Unauthorized"
    INTERNAL_ERROR = "InternalError"
    UNAVAILABLE = "Unavailable"
    TOO_MANY_REQUESTS = "TooManyRequests"
    FORBIDDEN = "Forbidden"
    """The registry is not in the allowed list (OpenShift's `allowedRegistriesForImport`)."""


class ResolveError(Exception):
    """The registry could not tell us the digest; `reason` says why, `message` for humans."""

    def __init__(
        self, reason: ResolveReason, message: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        # Set for TooManyRequests (and 503) when the registry said how long to wait.
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str = field(repr=False)

    def fingerprint(self) -> str:
        """Distinguishes credentials in cache keys without holding the password there."""
        material = f"{self.username}\0{self.password}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedManifest:
    digest: str
    media_type: str


class TokenCache:
    """Bearer tokens per (registry, scope, credentials), each until shortly before it expires."""

    def __init__(
        self,
        *,
        max_entries: int = TOKEN_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: BoundedCache[tuple[str, str, str], tuple[str, float]] = BoundedCache(
            max_entries
        )
        self._clock = clock

    def __repr__(self) -> str:  # the default would print tokens
        return f"TokenCache(entries={len(self._entries)})"

    def get(self, key: tuple[str, str, str]) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, expires_at = entry
        if self._clock() >= expires_at:
            self._entries.pop(key)
            return None
        return token

    def put(self, key: tuple[str, str, str], token: str, *, lifetime_s: float) -> None:
        margin = min(TOKEN_EXPIRY_MARGIN_S, lifetime_s / 2)
        self._entries.put(key, (token, self._clock() + lifetime_s - margin))

    def drop(self, key: tuple[str, str, str]) -> None:
        self._entries.pop(key)


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: Mapping[str, str]


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: CIMultiDictProxy[str]


async def resolve_digest(
    *,
    session: aiohttp.ClientSession,
    registry: str,
    repository: str,
    tag: str,
    credentials: RegistryCredentials | None,
    insecure: bool,
    ca_bundle: Path | None,
    timeout_s: float,
    token_cache: TokenCache | None = None,
    extra_ca_pem: str = "",
) -> ResolvedManifest:
    """The digest and media type `registry/repository:tag` points to now.

    `registry` is the host as in image references (`docker.io` is served
    from `registry-1.docker.io`; one-segment Docker Hub names get
    `library/`). Raises `ValueError` for a malformed registry, repository
    or tag (they become part of a URL) and `ResolveError` for everything
    the registry, or the network, answers.
    """
    if not is_valid_registry_host(registry):
        raise ValueError(f"invalid registry host {registry!r}")
    repository = normalize_repository(registry, repository)
    if not is_valid_repository(repository):
        raise ValueError(f"invalid repository name {repository!r}")
    if not is_valid_tag(tag):
        raise ValueError(f"invalid tag {tag!r}")
    resolution = _Resolution(
        session=session,
        registry=registry,
        host=api_host(registry),
        repository=repository,
        tag=tag,
        credentials=credentials,
        insecure=insecure,
        ssl_setting=False if insecure else _ssl_context(ca_bundle, extra_ca_pem),
        cache=TokenCache() if token_cache is None else token_cache,
    )
    reference = f"{registry}/{repository}:{tag}"
    try:
        async with asyncio.timeout(timeout_s):
            return await resolution.run()
    except TimeoutError:
        raise ResolveError(
            ResolveReason.UNAVAILABLE, f"{reference}: no answer within {timeout_s:g}s"
        ) from None
    except aiohttp.ClientSSLError as error:
        # Not transient: a missing CA or a wrong certificate needs a human.
        raise ResolveError(
            ResolveReason.INTERNAL_ERROR, f"{reference}: TLS handshake failed: {error}"
        ) from None
    except aiohttp.ClientError as error:
        raise ResolveError(
            ResolveReason.UNAVAILABLE, f"{reference}: {type(error).__name__}: {error}"
        ) from None


@dataclass
class _Resolution:
    session: aiohttp.ClientSession
    registry: str
    host: str
    repository: str
    tag: str
    credentials: RegistryCredentials | None
    insecure: bool
    ssl_setting: ssl.SSLContext | bool
    cache: TokenCache

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:pull"

    async def run(self) -> ResolvedManifest:
        scheme = "http" if self.insecure else "https"
        url = f"{scheme}://{self.host}/v2/{self.repository}/manifests/{self.tag}"
        fingerprint = self.credentials.fingerprint() if self.credentials else "anonymous"
        cache_key = (self.host, self.scope, fingerprint)
        headers = {"Accept": MANIFEST_ACCEPT}
        cached = self.cache.get(cache_key)
        if cached is not None:
            headers["Authorization"] = f"Bearer {cached}"

        answer = await self._head(url, headers)
        if answer.status == 401:
            if cached is not None:
                self.cache.drop(cache_key)  # revoked or expired early
            challenge = _pick_challenge(answer.headers.getall("WWW-Authenticate", []))
            if challenge is None:
                raise ResolveError(
                    ResolveReason.UNAUTHORIZED,
                    f"{self.reference}: registry answered 401 without a Bearer or Basic challenge",
                )
            if challenge.scheme == "bearer":
                token = await self._fetch_token(challenge, cache_key)
                headers["Authorization"] = f"Bearer {token}"
            else:
                if self.credentials is None:
                    raise ResolveError(
                        ResolveReason.UNAUTHORIZED,
                        f"{self.reference}: registry requires basic auth and no credentials "
                        "are configured",
                    )
                headers["Authorization"] = _basic_authorization(self.credentials)
            answer = await self._head(url, headers)
        return self._manifest(answer)

    async def _head(self, url: str, headers: Mapping[str, str]) -> _Answer:
        async with self.session.head(
            url,
            headers=headers,
            ssl=self.ssl_setting,
            allow_redirects=True,
            raise_for_status=False,
        ) as response:
            return _Answer(status=response.status, headers=response.headers)

    def _manifest(self, answer: _Answer) -> ResolvedManifest:
        if answer.status == 200:
            digest = answer.headers.get("Docker-Content-Digest", "")
            if not is_valid_digest(digest):
                raise ResolveError(
                    ResolveReason.INTERNAL_ERROR,
                    f"{self.reference}: registry sent no valid Docker-Content-Digest header",
                )
            media_type = answer.headers.get("Content-Type", "").partition(";")[0].strip()
            log.debug(
                "registry_tag_resolved",
                registry=self.registry,
                repository=self.repository,
                tag=self.tag,
                digest=digest,
                media_type=media_type,
            )
            return ResolvedManifest(digest=digest, media_type=media_type)
        if answer.status == 404:
            raise ResolveError(ResolveReason.NOT_FOUND, f"{self.reference}: manifest unknown")
        if answer.status in (401, 403):
            challenge = _pick_challenge(answer.headers.getall("WWW-Authenticate", []))
            detail = challenge.params.get("error", "") if challenge else ""
            raise ResolveError(
                ResolveReason.UNAUTHORIZED,
                f"{self.reference}: access denied (HTTP {answer.status}"
                + (f", {detail})" if detail else ")"),
            )
        raise _status_error(answer.status, answer.headers, what=f"{self.reference}: registry")

    async def _fetch_token(self, challenge: _Challenge, cache_key: tuple[str, str, str]) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ResolveError(
                ResolveReason.UNAUTHORIZED,
                f"{self.reference}: bearer challenge without an http(s) realm",
            )
        if realm.startswith("http://") and self.credentials is not None and not self.insecure:
            # A registry reached over verified HTTPS must not make us send
            # the password in the clear.
            raise ResolveError(
                ResolveReason.UNAUTHORIZED,
                f"{self.reference}: token realm {realm} is plain HTTP; credentials are sent "
                "over plain HTTP only to registries configured insecure",
            )
        params = {"scope": challenge.params.get("scope") or self.scope}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = _basic_authorization(self.credentials)
        async with self.session.get(
            realm,
            params=params,
            headers=headers,
            ssl=self.ssl_setting,
            allow_redirects=True,
            raise_for_status=False,
        ) as response:
            if response.status in (401, 403):
                who = "the credentials" if self.credentials else "anonymous access"
                raise ResolveError(
                    ResolveReason.UNAUTHORIZED,
                    f"{self.reference}: token server refused {who} (HTTP {response.status})",
                )
            if response.status != 200:
                raise _status_error(
                    response.status, response.headers, what=f"{self.reference}: token server"
                )
            body = await _read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
        token, lifetime_s = _parse_token_response(body, reference=self.reference)
        self.cache.put(cache_key, token, lifetime_s=lifetime_s)
        log.debug(
            "registry_token_fetched",
            registry=self.registry,
            scope=params["scope"],
            expires_in_s=lifetime_s,
        )
        return token


def _basic_authorization(credentials: RegistryCredentials) -> str:
    try:
        return aiohttp.encode_basic_auth(credentials.username, credentials.password)
    except ValueError:  # a ':' in the user name cannot be encoded
        raise ResolveError(
            ResolveReason.UNAUTHORIZED, "the registry user name contains ':'"
        ) from None


def _parse_token_response(body: bytes, *, reference: str) -> tuple[str, float]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ResolveError(ResolveReason.INTERNAL_ERROR, f"{reference}: token response is not JSON")
    # `token` per distribution's spec, `access_token` per OAuth2; either may appear.
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ResolveError(
            ResolveReason.INTERNAL_ERROR, f"{reference}: token response has no token"
        )
    expires_in = data.get("expires_in")
    lifetime_s = DEFAULT_TOKEN_LIFETIME_S
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime_s = float(expires_in)
    return token, lifetime_s


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise ResolveError(
                ResolveReason.INTERNAL_ERROR, f"token response larger than {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(status: int, headers: Mapping[str, str], *, what: str) -> ResolveError:
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        return ResolveError(
            ResolveReason.TOO_MANY_REQUESTS,
            f"{what} is rate limiting (HTTP 429)",
            retry_after_s=retry_after,
        )
    if status in (502, 503, 504):
        return ResolveError(
            ResolveReason.UNAVAILABLE,
            f"{what} unavailable (HTTP {status})",
            retry_after_s=retry_after,
        )
    if status >= 500:
        return ResolveError(ResolveReason.INTERNAL_ERROR, f"{what} failed (HTTP {status})")
    return ResolveError(ResolveReason.INTERNAL_ERROR, f"{what} answered unexpected HTTP {status}")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _pick_challenge(values: list[str]) -> _Challenge | None:
    """The Bearer challenge if there is one, else Basic, from `WWW-Authenticate` headers."""
    found: dict[str, _Challenge] = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme in ("bearer", "basic") and scheme not in found:
            params = {
                match.group(1).lower(): (
                    re.sub(r"\\(.)", r"\1", match.group(2))
                    if match.group(2) is not None
                    else match.group(3)
                )
                for match in _CHALLENGE_PARAM_RE.finditer(rest)
            }
            found[scheme] = _Challenge(scheme=scheme, params=params)
    return found.get("bearer") or found.get("basic")


_ssl_contexts: dict[tuple[tuple[str, int, int] | None, str], ssl.SSLContext] = {}


def _ssl_context(ca_bundle: Path | None, extra_ca_pem: str = "") -> ssl.SSLContext:
    """System CAs plus `ca_bundle` plus `extra_ca_pem`; cached until either changes."""
    file_key: tuple[str, int, int] | None = None
    if ca_bundle is not None:
        try:
            stat = os.stat(ca_bundle)
        except OSError as error:
            raise ResolveError(
                ResolveReason.INTERNAL_ERROR, f"cannot read CA bundle {ca_bundle}: {error.strerror}"
            ) from None
        file_key = (str(ca_bundle), stat.st_mtime_ns, stat.st_size)
    key = (file_key, hashlib.sha256(extra_ca_pem.encode()).hexdigest() if extra_ca_pem else "")
    context = _ssl_contexts.get(key)
    if context is None:
        context = ssl.create_default_context()
        if ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=str(ca_bundle))
            except (ssl.SSLError, OSError) as error:
                raise ResolveError(
                    ResolveReason.INTERNAL_ERROR, f"cannot load CA bundle {ca_bundle}: {error}"
                ) from None
        if extra_ca_pem:
            try:
                context.load_verify_locations(cadata=extra_ca_pem)
            except (ssl.SSLError, ValueError) as error:
                raise ResolveError(
                    ResolveReason.INTERNAL_ERROR,
                    f"cannot load the registry's trusted CA bundle (additionalTrustedCA): {error}",
                ) from None
        if len(_ssl_contexts) >= 16:  # bundles replaced many times: start over
            _ssl_contexts.clear()
        _ssl_contexts[key] = context
    return context


def credentials_from_dockerconfigjson(
    data: bytes | str | Mapping[str, object], registry: str, *, repository: str | None = None
) -> RegistryCredentials | None:
    """The credentials a `.dockerconfigjson` (or legacy `.dockercfg`) holds for `registry`.

    Keys may be `host`, `host:port`, `https://host/v1/`, `*.example.com`
    (one label per `*`) or `host/path` (then only for repositories under
    `path`, and only when `repository` is given). Docker Hub's spellings
    (`https://index.docker.io/v1/`, `docker.io`, ...) are one registry. The
    most specific match wins: exact host before wildcard, longer path
    before shorter. Entries take `auth` (base64 `user:password`) or
    `username` and `password`. Raises ValueError if `data` is not JSON.
    """
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as error:
            # The message gives a position, never the content.
            raise ValueError(f"not a valid docker config: {error.msg} at {error.pos}") from None
        except UnicodeDecodeError:
            raise ValueError("not a valid docker config: not UTF-8") from None
    if not isinstance(data, Mapping):
        raise ValueError("not a valid docker config: expected a JSON object")
    auths = data.get("auths", data)  # `.dockercfg` is the `auths` map itself
    if not isinstance(auths, Mapping):
        raise ValueError("not a valid docker config: 'auths' is not an object")

    target = normalize_registry(registry)
    best: tuple[tuple[int, int], RegistryCredentials] | None = None
    for key, entry in auths.items():
        if not isinstance(key, str) or not isinstance(entry, Mapping):
            continue
        host, path = _split_config_key(key)
        exact = host == target
        if not exact and not _host_glob_matches(host, target):
            continue
        if path and (repository is None or not (repository + "/").startswith(path + "/")):
            continue
        credentials = _entry_credentials(entry)
        if credentials is None:
            continue
        rank = (int(exact), len(path))
        if best is None or rank > best[0]:
            best = (rank, credentials)
    return best[1] if best else None


def _split_config_key(key: str) -> tuple[str, str]:
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    host, _, path = text.partition("/")
    path = path.strip("/")
    if path in ("v1", "v2"):  # API version suffixes, not repository paths
        path = ""
    return normalize_registry(host), path


def _host_glob_matches(pattern: str, host: str) -> bool:
    # kubelet's rule: same number of labels, each matched as a glob, ports equal.
    if "*" not in pattern:
        return False
    pattern_name, _, pattern_port = pattern.partition(":")
    host_name, _, host_port = host.partition(":")
    pattern_labels, host_labels = pattern_name.split("."), host_name.split(".")
    return (
        pattern_port == host_port
        and len(pattern_labels) == len(host_labels)
        and all(fnmatch.fnmatchcase(h, p) for p, h in zip(pattern_labels, host_labels, strict=True))
    )


def _entry_credentials(entry: Mapping[str, object]) -> RegistryCredentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        username, sep, password = decoded.partition(":")
        return RegistryCredentials(username, password) if sep and username else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return RegistryCredentials(user, secret)
    return None
