"""Image references (`host/path:tag@digest`): parsed once, in one canonical form.

Invariant: two spellings of the same image normalise to the same string
(`nginx`, `docker.io/nginx`, `index.docker.io/library/nginx:latest` are all
`docker.io/library/nginx:latest`), and anything the registry grammar rejects
raises `ValueError` here, at the edge. This prevents the failure where a push
for `docker.io/library/nginx` never matches an ImageStream tag written as
`nginx`, or where a malformed name reaches a registry URL or an API object.

The grammar is distribution's `reference` package (what `docker pull`,
skopeo and OpenShift accept) and the OCI image spec's digest grammar; the
Docker Hub defaults are the ones the Docker CLI applies. Whatever passes
here, the API server (our CRD's patterns) and a registry take: ASCII only
(Go's word class is `[0-9A-Za-z_]`; Python's is every Unicode letter and digit,
which once let `vé1` through to a 422), ports in range (and without leading
zeros, which would be a second spelling of the same host), and only the
registered digest algorithms, `sha256` and `sha512`, with lower-case hex of
their length (what go-digest validates; a registry refuses anything else
with DIGEST_INVALID). Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# The host the Docker Hub registry API is served from; `docker.io` itself
# only redirects browsers.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# Spellings of Docker Hub found in references and `.dockerconfigjson` files.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
# distribution's NameTotalLengthMax: host and path together.
NAME_TOTAL_LENGTH_MAX = 255

# Every pattern is compiled with re.ASCII and spells its classes out, so no
# Unicode letter or digit can match (distribution's grammar is Go's RE2, ASCII).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?P<ipv6>[a-fA-F0-9:]+)\]"
_PORT = r"(?P<port>[1-9][0-9]{0,4})"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::{_PORT})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
MAX_PORT = 65535

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
# The OCI image spec's registered algorithms, and the encoding each requires.
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RES = {
    algorithm: re.compile(rf"{algorithm}:[a-f0-9]{{{length}}}", re.ASCII)
    for algorithm, length in DIGEST_ALGORITHMS.items()
}


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised reference.

    `registry` is the host (with port) in lower case, `docker.io` for Docker
    Hub. `repository` is the path inside it (`library/nginx`). `tag` is
    `latest` only when the text named neither a tag nor a digest; a
    digest-only reference keeps `tag` empty.
    """

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_valid_registry_host(text: str) -> bool:
    """`host`, `host:port` or `[v6]:port`, as it may appear in a reference; port 1-65535."""
    match = _DOMAIN_RE.fullmatch(text)
    if match is None:
        return False
    port, ipv6 = match.group("port"), match.group("ipv6")
    if port is not None and int(port) > MAX_PORT:
        return False
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6)
        except ValueError:
            return False
    return True


def is_valid_repository(text: str) -> bool:
    """A path inside a registry: lower-case components joined by `/` (`library/nginx`)."""
    return _PATH_RE.fullmatch(text) is not None


def is_valid_tag(text: str) -> bool:
    return _TAG_RE.fullmatch(text) is not None


def is_valid_digest(text: str) -> bool:
    """`sha256:<64 lower-case hex>` or `sha512:<128 lower-case hex>`, nothing else."""
    algorithm, _, _ = text.partition(":")
    pattern = _DIGEST_RES.get(algorithm)
    return pattern is not None and pattern.fullmatch(text) is not None


def normalize_registry(registry: str) -> str:
    """Lower-case the host and fold Docker Hub's spellings into `docker.io`."""
    host = registry.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def normalize_repository(registry: str, repository: str) -> str:
    """Docker Hub's one-segment names are official images under `library/`."""
    if normalize_registry(registry) == DOCKER_HUB and "/" not in repository:
        return f"library/{repository}"
    return repository


def api_host(registry: str) -> str:
    """The host serving the registry API for `registry` (Docker Hub differs)."""
    host = normalize_registry(registry)
    return DOCKER_HUB_API_HOST if host == DOCKER_HUB else host


def _split_domain(name: str) -> tuple[str, str]:
    # The Docker CLI's rule: the first component is a host only if it looks
    # like one (a dot, a port, `localhost`, or upper case); otherwise the
    # whole name lives on Docker Hub.
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def parse_image_reference(text: str) -> ImageReference:
    """Parse `[host[:port]/]path[:tag][@digest]`; raise ValueError if invalid.

    `nginx` is `docker.io/library/nginx:latest`; `host/a@sha256:...` has no tag.
    """
    if not text or text != text.strip():
        raise ValueError(f"invalid image reference {text!r}: empty or surrounded by whitespace")
    remainder, at, digest = text.partition("@")
    if at and not is_valid_digest(digest):
        raise ValueError(f"invalid image reference {text!r}: bad digest {digest!r}")
    # A tag is what follows the last ':' after the last '/'; a ':' before
    # that is a registry port.
    name, tag = remainder, ""
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not is_valid_tag(tag):
            raise ValueError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(
            f"invalid image reference {text!r}: name longer than {NAME_TOTAL_LENGTH_MAX}"
        )
    domain, path = _split_domain(name)
    if not is_valid_registry_host(domain):
        raise ValueError(f"invalid image reference {text!r}: bad registry host {domain!r}")
    if not is_valid_repository(path):
        raise ValueError(
            f"invalid image reference {text!r}: repository {path!r} must be lower-case "
            "path components of letters, digits and single separators (. _ __ -)"
        )
    registry = normalize_registry(domain)
    repository = normalize_repository(registry, path)
    if not tag and not digest:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


def normalize_reference(text: str) -> str:
    """The canonical spelling of `text` (`nginx` -> `docker.io/library/nginx:latest`)."""
    return str(parse_image_reference(text))


def name_as_written(from_name: str) -> str:
    """`quay.io/x/app:1.0` -> `quay.io/x/app`: imports record the name as the user wrote it."""
    name = from_name.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name
