"""Receiver configuration: which senders may post to `/v1/events/<receiver>`, and how they prove it.

Invariant: a configuration either loads completely, every receiver with a
known type and an explicit authentication scheme, or the process refuses
to start with a `ConfigError` naming the receiver and the field. This
prevents the failures that would otherwise surface only under traffic: a
misspelt key silently ignored (`secretfiles:` leaving a receiver without
its secret), a typo in a type sending payloads to the wrong parser, or a
receiver left open because nobody wrote `auth`.

Secrets themselves are not read here: the files are named, and
`webhook.auth.SecretSource` reads (and re-reads) them at request time, so
a rotated Kubernetes Secret takes effect without a restart.

The `--webhook-config` file::

    receivers:
      - name: distribution          # DNS-label-like, unique: POST /v1/events/distribution
        type: distribution          # distribution | cloudevents | harbor | quay | dockerhub
                                    # | acr | gcr | ecr | github | jfrog | nexus
        integrated: true            # pushes to --integrated-registry create tags (default false)
        auth:
          type: bearer              # Authorization: Bearer <token>
          secretFiles:              # one or two files; two are both valid (rotation)
            - /etc/imagestream/webhook/token
            - /etc/imagestream/webhook/token.next
      - name: harbor
        type: harbor
        auth:
          type: harbor              # Authorization: <whole value>, compared verbatim
          secretFiles: [/etc/imagestream/harbor/auth-header]
      - name: github
        type: github
        registry: ghcr.io
        auth:
          type: hmac-sha256         # X-Hub-Signature-256: sha256=<hex HMAC of the raw body>
          secretFiles: [/etc/imagestream/github/secret]
      - name: jfrog
        type: jfrog
        registry: artifactory.example.com
        auth:
          type: hmac-sha256         # JFrog "use secret for payload signing":
          header: X-JFrog-Event-Auth  # hex HMAC-SHA256 of the body, no prefix
          prefix: ""
          secretFiles: [/etc/imagestream/jfrog/secret]
      - name: acr
        type: acr
        auth:
          type: basic               # Authorization: Basic; each file holds user:password
          secretFiles: [/etc/imagestream/acr/credentials]
      - name: dockerhub
        type: dockerhub
        verify: registry            # resolve the tag at the registry (default: payload)
        auth:
          type: path-secret         # POST /v1/events/dockerhub/<secret>
          secretFiles: [/etc/imagestream/dockerhub/path-secret]

Fields of a receiver: `name`, `type` and `auth` are required; `registry`
(`host[:port]`, for payloads that carry no host: Docker Hub, Nexus, ECR),
`integrated` (bool, default false: the receiver speaks for the integrated
registry, records `--integrated-registry` as the host whatever the payload
says, and ignores a payload naming another host; its `registry` is then
another name of the integrated registry, accepted in payloads), `verify`
(`payload` trusts the digest in the payload, `registry` resolves the tag at
the registry; default `payload`) and `rateLimit` (`requestsPerSecond`, and `burst`, default the
rate rounded up: over it the sender gets 429 with `Retry-After`; default
unlimited) are optional. Unknown keys are errors.

Fields of `auth`: `type` (required), `secretFiles` (one or two paths,
relative paths are relative to the config file; required for every type
but `none`), and for `hmac-sha256` `header` (default `X-Hub-Signature-256`)
and `prefix` (default `sha256=`). For `harbor`, `header` (default
`Authorization`) names the header whose whole value is compared, which also
covers JFrog's unsigned mode (`header: X-JFrog-Event-Auth`).

`auth: {type: none}` accepts every request. It must be written out, and it
is only safe behind something else that authenticates (an ingress with
mTLS, a network policy admitting one sender): anyone who can reach the
webhook can then move ImageStream tags.

Without a config file, `default_receivers(token_file)` gives one
`distribution` receiver with bearer auth from `--webhook-token-file`,
which is what `imagestream dev` configures its registry to send.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagestream.references import is_valid_registry_host
from webhook.limits import RateLimit
from webhook.parsers import RECEIVER_TYPES

AUTH_TYPES = ("bearer", "harbor", "hmac-sha256", "basic", "path-secret", "none")
VERIFY_MODES = ("payload", "registry")
MAX_SECRET_FILES = 2  # the current secret and the next one, during a rotation
DEFAULT_HMAC_HEADER = "X-Hub-Signature-256"
DEFAULT_HMAC_PREFIX = "sha256="
DEFAULT_HARBOR_HEADER = "Authorization"

_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# RFC 7230 token characters: what an HTTP header name may be made of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

_RECEIVER_KEYS = frozenset(
    {"name", "type", "auth", "registry", "integrated", "verify", "rateLimit"}
)
_RATE_LIMIT_KEYS = frozenset({"requestsPerSecond", "burst"})
_AUTH_KEYS = {
    "bearer": frozenset({"type", "secretFiles"}),
    "harbor": frozenset({"type", "secretFiles", "header"}),
    "hmac-sha256": frozenset({"type", "secretFiles", "header", "prefix"}),
    "basic": frozenset({"type", "secretFiles"}),
    "path-secret": frozenset({"type", "secretFiles"}),
    "none": frozenset({"type"}),
}


class ConfigError(ValueError):
    """The receiver configuration cannot be used; the message names receiver and field."""


@dataclass(frozen=True)
class AuthConfig:
    """How a receiver authenticates a request. Holds file paths, never secrets."""

    type: str
    secret_files: tuple[Path, ...] = ()
    # The header carrying the credential, for `hmac-sha256` and `harbor`;
    # empty for the other types, which have a fixed header (or none).
    header: str = ""
    # What precedes the hex signature in `header` (`hmac-sha256` only).
    prefix: str = ""


@dataclass(frozen=True)
class Receiver:
    """One endpoint, `POST /v1/events/<name>`, for one sender of one payload type."""

    name: str
    type: str
    auth: AuthConfig
    registry: str = ""
    integrated: bool = False
    verify: str = "payload"
    rate_limit: RateLimit | None = None
    """Requests per second (and burst) this sender may make; None: unlimited."""


def default_receivers(token_file: Path) -> list[Receiver]:
    """What runs without `--webhook-config`: distribution with a bearer token file."""
    return [
        Receiver(
            name="distribution",
            type="distribution",
            auth=AuthConfig(type="bearer", secret_files=(token_file,)),
            integrated=True,
        )
    ]


def load_config(path: Path) -> list[Receiver]:
    """Read and validate the `--webhook-config` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read webhook config: {error.strerror}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return parse_config(data, source=str(path), base_dir=path.parent)


def parse_config(data: object, *, source: str, base_dir: Path) -> list[Receiver]:
    """Validate an already-parsed config document; `source` prefixes every message."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with a 'receivers' list at the top")
    _reject_unknown_keys(data, frozenset({"receivers"}), where=f"{source}: top level")
    entries = data.get("receivers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: 'receivers' must be a non-empty list")
    receivers: list[Receiver] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        receiver = _parse_receiver(entry, where=f"{source}: receivers[{index}]", base_dir=base_dir)
        if receiver.name in seen:
            raise ConfigError(
                f"{source}: receivers[{index}] ({receiver.name}): name is used by another receiver"
            )
        seen.add(receiver.name)
        receivers.append(receiver)
    return receivers


def _parse_receiver(entry: object, *, where: str, base_dir: Path) -> Receiver:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ConfigError(
            f"{where}: name: must be 1-63 lower-case letters, digits or '-', "
            f"starting and ending with a letter or digit; got {name!r}"
        )
    where = f"{where} ({name})"
    _reject_unknown_keys(entry, _RECEIVER_KEYS, where=where)

    receiver_type = entry.get("type")
    if receiver_type not in RECEIVER_TYPES:
        raise ConfigError(f"{where}: type: must be one of {', '.join(RECEIVER_TYPES)}")
    assert isinstance(receiver_type, str)

    registry = entry.get("registry", "")
    if not isinstance(registry, str) or (registry and not is_valid_registry_host(registry)):
        raise ConfigError(f"{where}: registry: must be host or host:port, got {registry!r}")

    integrated = entry.get("integrated", False)
    if not isinstance(integrated, bool):
        raise ConfigError(f"{where}: integrated: must be true or false, got {integrated!r}")

    verify = entry.get("verify", "payload")
    if verify not in VERIFY_MODES:
        raise ConfigError(f"{where}: verify: must be one of {', '.join(VERIFY_MODES)}")
    assert isinstance(verify, str)

    if "auth" not in entry:
        # Deliberately no default: an open endpoint must be asked for.
        raise ConfigError(f"{where}: auth: required (write `auth: {{type: none}}` to disable)")
    auth = _parse_auth(entry["auth"], where=f"{where}: auth", base_dir=base_dir)
    rate_limit = None
    if "rateLimit" in entry:
        rate_limit = _parse_rate_limit(entry["rateLimit"], where=f"{where}: rateLimit")
    return Receiver(
        name=name,
        type=receiver_type,
        auth=auth,
        registry=registry.lower(),
        integrated=integrated,
        verify=verify,
        rate_limit=rate_limit,
    )


def _parse_rate_limit(entry: object, *, where: str) -> RateLimit:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'requestsPerSecond' and 'burst'")
    _reject_unknown_keys(entry, _RATE_LIMIT_KEYS, where=where)
    rate = entry.get("requestsPerSecond")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise ConfigError(f"{where}: requestsPerSecond: must be a number above 0, got {rate!r}")
    burst = entry.get("burst", max(1, math.ceil(rate)))
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"{where}: burst: must be a whole number of at least 1, got {burst!r}")
    return RateLimit(requests_per_second=float(rate), burst=burst)


def _parse_auth(entry: object, *, where: str, base_dir: Path) -> AuthConfig:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type' and 'secretFiles'")
    auth_type = entry.get("type")
    if auth_type not in AUTH_TYPES:
        raise ConfigError(f"{where}: type: must be one of {', '.join(AUTH_TYPES)}")
    assert isinstance(auth_type, str)
    _reject_unknown_keys(entry, _AUTH_KEYS[auth_type], where=f"{where} (type {auth_type})")
    if auth_type == "none":
        return AuthConfig(type="none")

    files = entry.get("secretFiles")
    if (
        not isinstance(files, list)
        or not 1 <= len(files) <= MAX_SECRET_FILES
        or not all(isinstance(item, str) and item.strip() for item in files)
    ):
        raise ConfigError(
            f"{where}: secretFiles: must list one or {MAX_SECRET_FILES} file paths, got {files!r}"
        )
    paths = tuple(base_dir / item for item in files)  # absolute paths stay as they are
    if len(set(paths)) != len(paths):
        raise ConfigError(f"{where}: secretFiles: the same file is listed twice")

    header, prefix = "", ""
    if auth_type == "hmac-sha256":
        header = _header_name(entry.get("header", DEFAULT_HMAC_HEADER), where=where)
        prefix = entry.get("prefix", DEFAULT_HMAC_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigError(f"{where}: prefix: must be a string, got {prefix!r}")
    elif auth_type == "harbor":
        header = _header_name(entry.get("header", DEFAULT_HARBOR_HEADER), where=where)
    return AuthConfig(type=auth_type, secret_files=paths, header=header, prefix=prefix)


def _header_name(value: object, *, where: str) -> str:
    if not isinstance(value, str) or _HEADER_NAME_RE.fullmatch(value) is None:
        raise ConfigError(f"{where}: header: must be an HTTP header name, got {value!r}")
    return value


def _reject_unknown_keys(
    entry: Mapping[object, object], allowed: frozenset[str], *, where: str
) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
