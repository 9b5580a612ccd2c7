"""Authenticating a push notification before anything in it is believed.

Invariant: a request is accepted only if it carries a credential equal to
one of the receiver's currently valid secrets (or its signature was made
with one), compared in constant time over bytes; with no valid secret at
all, every request is refused. Secrets, tokens, Authorization headers and
signatures are never logged, whatever the outcome.

Failures this prevents:

* Forged pushes moving ImageStream tags (and so rolling out workloads):
  every scheme checks the full credential, HMAC over the exact raw body.
* Timing oracles on the token: `hmac.compare_digest`, every valid secret
  compared even after a match.
* A rotation that needs a restart, or one that drops traffic: one or two
  files are valid at once, and a changed file is picked up within a second
  by a cheap `os.stat` (Kubernetes swaps a Secret volume's symlink, which
  changes the inode, mtime and usually the size).
* An unreadable or deleted secret file failing open: it counts as no
  secret, and that state is logged once, naming the file, not its content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from webhook.config import AuthConfig, Receiver

log = structlog.get_logger("webhook.auth")

RECHECK_INTERVAL_S = 1.0
# A secret file is a token or `user:password`; anything bigger is a mistake
# (a whole kubeconfig mounted by accident), not a secret to compare against.
MAX_SECRET_BYTES = 64 * 1024

_FileSignature = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size


@dataclass
class _SecretFile:
    path: Path
    signature: _FileSignature | None = None
    secret: bytes | None = None
    problem: str = "not_read_yet"


class SecretSource:
    """The valid secrets of one receiver, read from one or two files, re-read on change.

    `secrets()` costs nothing between checks; a check is one `os.stat` per
    file at most every `recheck_interval_s`, and a file is read only when
    its (device, inode, mtime, size) changed.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        receiver: str,
        recheck_interval_s: float = RECHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = [_SecretFile(path=path) for path in files]
        self._receiver = receiver
        self._interval = recheck_interval_s
        self._clock = clock
        self._checked_at: float | None = None
        self._secrets: tuple[bytes, ...] = ()
        self._reported_empty = False

    def __repr__(self) -> str:  # the default would print the secrets
        paths = ", ".join(str(f.path) for f in self._files)
        return f"SecretSource(receiver={self._receiver!r}, files=[{paths}])"

    def secrets(self) -> tuple[bytes, ...]:
        """Every currently valid secret (stripped, non-empty); empty means refuse all."""
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._interval:
            self._checked_at = now
            self._refresh()
        return self._secrets

    def _refresh(self) -> None:
        for secret_file in self._files:
            self._refresh_file(secret_file)
        self._secrets = tuple(f.secret for f in self._files if f.secret is not None)
        if not self._secrets and not self._reported_empty:
            self._reported_empty = True
            log.error(
                "webhook_no_valid_secret",
                receiver=self._receiver,
                secret_files=[str(f.path) for f in self._files],
                effect="every request to this receiver is refused",
            )
        elif self._secrets and self._reported_empty:
            self._reported_empty = False
            log.info("webhook_secret_available_again", receiver=self._receiver)

    def _refresh_file(self, secret_file: _SecretFile) -> None:
        try:
            stat = os.stat(secret_file.path)
        except OSError:
            self._set_problem(secret_file, None, "missing")
            return
        signature = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == secret_file.signature:
            return
        if stat.st_size > MAX_SECRET_BYTES:
            self._set_problem(secret_file, signature, "too_large")
            return
        try:
            content = secret_file.path.read_bytes().strip()
        except OSError:
            # No signature kept: a chmod fixes this without touching mtime.
            self._set_problem(secret_file, None, "unreadable")
            return
        if not content:
            self._set_problem(secret_file, signature, "empty")
            return
        secret_file.signature, secret_file.secret, secret_file.problem = signature, content, ""
        log.info(
            "webhook_secret_file_loaded", receiver=self._receiver, secret_file=str(secret_file.path)
        )

    def _set_problem(
        self, secret_file: _SecretFile, signature: _FileSignature | None, problem: str
    ) -> None:
        secret_file.signature, secret_file.secret = signature, None
        if secret_file.problem != problem:
            # Once per change of state, not once per request.
            secret_file.problem = problem
            log.warning(
                "webhook_secret_file_unusable",
                receiver=self._receiver,
                secret_file=str(secret_file.path),
                problem=problem,
            )


class Authenticator:
    """Decides whether one request to one receiver carries a valid credential."""

    def __init__(self, receiver: Receiver, *, secrets: SecretSource | None = None) -> None:
        self.receiver = receiver.name
        self.auth: AuthConfig = receiver.auth
        self._secrets = (
            secrets
            if secrets is not None
            else SecretSource(receiver.auth.secret_files, receiver=receiver.name)
        )

    def authenticate(
        self, *, headers: Mapping[str, str], body: bytes, path_secret: str | None
    ) -> bool:
        """True if the request is authentic. `body` must be the exact bytes received."""
        auth_type = self.auth.type
        if auth_type == "none":
            return True
        if path_secret is not None and auth_type != "path-secret":
            # A secret in the URL of a receiver that does not expect one is a
            # misconfigured sender; accepting it would invite putting secrets
            # in URLs, which end up in access logs.
            return self._refuse("unexpected_path_secret")
        secrets = self._secrets.secrets()
        if not secrets:
            return self._refuse("no_valid_secret")

        if auth_type == "path-secret":
            candidate = _to_bytes(path_secret)
            if candidate is None:
                return self._refuse("missing_credential")
            return self._decide(_equals_any(candidate, secrets))

        header_name = "Authorization" if auth_type in ("bearer", "basic") else self.auth.header
        value = _header(headers, header_name)
        if value is None:
            return self._refuse("missing_credential")
        if auth_type == "bearer":
            return self._decide(_check_scheme(value, "bearer", secrets, decode=_to_bytes))
        if auth_type == "basic":
            return self._decide(_check_scheme(value, "basic", secrets, decode=_decode_basic))
        if auth_type == "harbor":
            candidate = _to_bytes(value.strip())
            return self._decide(candidate is not None and _equals_any(candidate, secrets))
        if auth_type == "hmac-sha256":
            return self._decide(_check_hmac(value, self.auth.prefix, body, secrets))
        raise AssertionError(f"unhandled auth type {auth_type!r}")  # config rejects others

    def _decide(self, ok: bool) -> bool:
        return True if ok else self._refuse("credential_mismatch")

    def _refuse(self, reason: str) -> bool:
        log.debug(
            "webhook_auth_refused", receiver=self.receiver, auth_type=self.auth.type, reason=reason
        )
        return False


def _equals_any(candidate: bytes, secrets: Sequence[bytes]) -> bool:
    # Every secret is compared, even after a match, so the time taken does
    # not tell which of the rotation pair matched.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(candidate, secret)
    return matched


def _check_scheme(
    value: str, scheme: str, secrets: Sequence[bytes], *, decode: Callable[[str], bytes | None]
) -> bool:
    given_scheme, _, credentials = value.strip().partition(" ")
    if given_scheme.lower() != scheme:  # auth schemes are case-insensitive (RFC 9110)
        return False
    candidate = decode(credentials.strip())
    return candidate is not None and _equals_any(candidate, secrets)


def _check_hmac(value: str, prefix: str, body: bytes, secrets: Sequence[bytes]) -> bool:
    value = value.strip()
    if not value.lower().startswith(prefix.lower()):
        return False
    try:
        given = bytes.fromhex(value[len(prefix) :])
    except ValueError:
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(given, expected)
    return matched


def _decode_basic(credentials: str) -> bytes | None:
    try:
        return base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return None


def _to_bytes(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        # aiohttp decodes header bytes as UTF-8 with surrogateescape; this
        # gives the sender's exact bytes back.
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # aiohttp's headers are case-insensitive already; a plain dict is not.
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)
