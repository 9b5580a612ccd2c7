"""The cluster image configuration (`images.config.openshift.io/cluster`) and its decisions.

Pure: parsing the object and its trusted-CA ConfigMap, merging them with the
process's flags, and deciding, for one registry, whether an import or a
verification may contact it, over what transport and with which extra CAs.
The doing (the informers that keep the objects, the HTTP requests) lives in
`imagestream.image_config_source` and `imagestream.registry_access`.

Precedence (docs/openshift-behaviours.md#behaviour-31): every limit applies,
the flag's and the cluster object's, so a registry must pass both
(`--allowed-registries` and `spec.allowedRegistriesForImport`, and
`spec.registrySources`); neither can widen what the other narrows. Trust is
added up: a registry is plain HTTP if a tag, a receiver or the cluster's
`insecureRegistries` says so, and its TLS is verified against the system CAs,
`--registry-ca-bundle` and its own bundle from `additionalTrustedCA`. The
integrated registry's host is `status.internalRegistryHostname` when the
cluster object sets it (the registry operator keeps it current), else
`--integrated-registry`.

Failures this prevents: a blocked registry still being asked for digests by
the webhook because only imports checked it; a CA change that needs a
restart; an invalid object (allowed and blocked registries both set, which
the CRD refuses but another server might store) silently read as "allow all":
it blocks every registry it would decide about, with the reason.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLUSTER = "cluster"
"""The one object OpenShift reads; objects of other names are ignored."""
DEFAULT_TRUSTED_CA_NAMESPACE = "openshift-config"
CONFIG_REFERENCE = f"images.config.openshift.io/{CLUSTER}"


@dataclass(frozen=True)
class RegistryLocation:
    """One entry of `spec.allowedRegistriesForImport`."""

    domain_name: str
    insecure: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """What `images.config.openshift.io/cluster` says; the empty value: no object."""

    allowed_for_import: tuple[RegistryLocation, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    blocked_registries: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    trusted_ca: str = ""
    """`spec.additionalTrustedCA.name`: a ConfigMap in the trusted-CA namespace."""
    external_hostnames: tuple[str, ...] = ()
    """`spec.externalRegistryHostnames` then `status.externalRegistryHostnames`."""
    internal_hostname: str = ""
    invalid: str = ""
    """Why the object cannot be used (then every registry is refused with this)."""


def parse_image_config(obj: Mapping[str, Any] | None) -> ImageConfig:
    """The configuration an Image object states; never raises (bad shapes become `invalid`)."""
    if not obj:
        return ImageConfig()
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        return ImageConfig(invalid=f"{CONFIG_REFERENCE}: spec and status must be objects")
    sources = spec.get("registrySources") or {}
    if not isinstance(sources, Mapping):
        return ImageConfig(invalid=f"{CONFIG_REFERENCE}: spec.registrySources must be an object")
    locations = []
    for entry in spec.get("allowedRegistriesForImport") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("domainName"), str):
            name = entry["domainName"].strip()
            if name:
                locations.append(RegistryLocation(name, insecure=entry.get("insecure") is True))
    allowed = _strings(sources.get("allowedRegistries"))
    blocked = _strings(sources.get("blockedRegistries"))
    invalid = ""
    if allowed and blocked:
        invalid = (
            f"{CONFIG_REFERENCE}: spec.registrySources sets both allowedRegistries and "
            "blockedRegistries; only one of them may be set, so no registry is used until "
            "it is corrected"
        )
    trusted = spec.get("additionalTrustedCA") or {}
    trusted_ca = trusted.get("name", "") if isinstance(trusted, Mapping) else ""
    return ImageConfig(
        allowed_for_import=tuple(locations),
        allowed_registries=allowed,
        blocked_registries=blocked,
        insecure_registries=_strings(sources.get("insecureRegistries")),
        trusted_ca=trusted_ca if isinstance(trusted_ca, str) else "",
        external_hostnames=tuple(
            dict.fromkeys(
                _strings(spec.get("externalRegistryHostnames"))
                + _strings(status.get("externalRegistryHostnames"))
            )
        ),
        internal_hostname=str(status.get("internalRegistryHostname") or "").strip(),
        invalid=invalid,
    )


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v.strip() for v in value if isinstance(v, str) and v.strip())


def ca_bundles(configmap: Mapping[str, Any] | None) -> dict[str, str]:
    """`host[:port]` -> PEM from the trusted-CA ConfigMap (`host..port` keys, as OpenShift).

    A ConfigMap key cannot hold `:`, so OpenShift spells `registry:5000` as
    `registry..5000`. Keys are lower-cased, as registry hosts compare.
    """
    if not configmap:
        return {}
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        return {}
    bundles: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            continue
        host, sep, port = key.partition("..")
        bundles[(f"{host}:{port}" if sep else host).lower()] = value
    return bundles


@dataclass(frozen=True)
class Access:
    """How to reach one registry, or why not (`refused`, for `ImportSuccess=False`)."""

    refused: str = ""
    plain_http: bool = False
    ca_pem: str = ""
    """Extra CAs (PEM) for this registry's TLS, from `additionalTrustedCA`."""


@dataclass(frozen=True)
class RegistryPolicy:
    """The flags and the cluster configuration, merged (see the module docstring)."""

    flag_allowed: tuple[str, ...] = ()
    """`--allowed-registries`: shell-style patterns over `host[:port]`; empty: any."""
    flag_integrated_registry: str = ""
    config: ImageConfig = field(default_factory=ImageConfig)
    bundles: Mapping[str, str] = field(default_factory=dict)

    @property
    def integrated_registry(self) -> str:
        return self.config.internal_hostname or self.flag_integrated_registry

    def public_registry(self) -> str:
        """The first external hostname: `status.publicDockerImageRepository`'s host."""
        return self.config.external_hostnames[0] if self.config.external_hostnames else ""

    def decide(
        self,
        registry: str,
        *,
        repository: str = "",
        insecure: bool,
        importing: bool,
        contacting: bool = True,
    ) -> Access:
        """May `registry` be asked about `repository`, and how.

        `insecure`: the caller asked for plain HTTP (a tag's
        `importPolicy.insecure`, a receiver's `insecure: true`).
        `importing`: a spec tag's import (`allowedRegistriesForImport`
        applies), not a push verification. `contacting`: false for a
        digest-pinned import, which asks no registry, so only the cluster
        object's rules apply (`--allowed-registries` is about whom we ask).
        """
        host = registry.lower()
        if self.config.invalid:
            return Access(refused=self.config.invalid)
        if contacting and not registry_allowed(host, self.flag_allowed):
            return Access(
                refused=f"registry {registry} is not in the registries allowed for import"
            )
        source = registry_source_refusal(host, repository, self.config)
        if source:
            return Access(refused=source)
        plain = (
            insecure
            or any(source_matches(p, host, "") for p in self.config.insecure_registries)
            or plain_http_integrated(host, self.flag_integrated_registry)
        )
        if importing and not self._integrated(host):
            refusal = import_refusal(host, self.config.allowed_for_import, plain_http=plain)
            if refusal:
                return Access(refused=refusal)
        return Access(plain_http=plain, ca_pem=self.bundles.get(host, ""))

    def _integrated(self, host: str) -> bool:
        names = {self.integrated_registry, self.flag_integrated_registry} - {""}
        return host in {name.lower() for name in names}


def registry_allowed(registry: str, patterns: tuple[str, ...]) -> bool:
    """Whether `registry` (host[:port]) matches one of `patterns`; no patterns allow all.

    Patterns are shell-style (`fnmatch`) over the lower-cased `host[:port]`,
    e.g. `quay.io`, `*.corp.example.com`, `127.0.0.1:*` (`--allowed-registries`).
    """
    if not patterns:
        return True
    host = registry.lower()
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in patterns)


def import_refusal(
    registry: str, locations: tuple[RegistryLocation, ...], *, plain_http: bool
) -> str:
    """Why `spec.allowedRegistriesForImport` refuses an import from `registry`; "" if not.

    A `domainName` is a glob (`*`, `?`) over `host[:port]`. Without a port it
    also matches the host on the default port of the transport (443, or 80
    for plain HTTP). An entry admits plain HTTP only with `insecure: true`.
    """
    if not locations:
        return ""
    host = registry.lower()
    name, _, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    default = "80" if plain_http else "443"
    for location in locations:
        if plain_http and not location.insecure:
            continue
        pattern = location.domain_name.lower()
        if fnmatch.fnmatchcase(host, pattern):
            return ""
        if ":" not in pattern and port in ("", default) and fnmatch.fnmatchcase(name, pattern):
            return ""
    allowed = ", ".join(
        f"{loc.domain_name}{' (insecure)' if loc.insecure else ''}" for loc in locations
    )
    transport = " over plain HTTP" if plain_http else ""
    return (
        f"importing from registry {registry}{transport} is forbidden by "
        f"{CONFIG_REFERENCE} spec.allowedRegistriesForImport; allowed: {allowed}"
    )


def registry_source_refusal(registry: str, repository: str, config: ImageConfig) -> str:
    """Why `spec.registrySources` blocks `registry/repository`; "" if it does not."""
    if config.blocked_registries:
        for pattern in config.blocked_registries:
            if source_matches(pattern, registry, repository):
                return (
                    f"registry {registry} is blocked by {CONFIG_REFERENCE} "
                    f"spec.registrySources.blockedRegistries ({pattern})"
                )
    if config.allowed_registries and not any(
        source_matches(p, registry, repository) for p in config.allowed_registries
    ):
        return (
            f"registry {registry} is not in {CONFIG_REFERENCE} "
            f"spec.registrySources.allowedRegistries ({', '.join(config.allowed_registries)})"
        )
    return ""


def source_matches(pattern: str, registry: str, repository: str) -> bool:
    """A `registrySources` entry: `host[:port]` or `*.domain`, optionally `/repository/path`.

    `*.example.com` matches every subdomain of example.com (not example.com
    itself), on any port unless the entry names one; a path limits the entry
    to repositories under it, and never matches when no repository is known.
    """
    scope_host, _, scope_path = pattern.lower().strip().partition("/")
    host = registry.lower()
    if scope_host.startswith("*."):
        suffix = scope_host[1:]
        target = host if ":" in suffix or host.count(":") != 1 else host.partition(":")[0]
        if not target.endswith(suffix):
            return False
    elif host != scope_host:
        return False
    path = scope_path.strip("/")
    if not path:
        return True
    return bool(repository) and (repository.lower() + "/").startswith(path + "/")


def plain_http(registry: str, *, insecure: bool, integrated_registry: str) -> bool:
    """Whether `registry` is spoken to over plain HTTP without the cluster configuration.

    `insecure`: asked for by the caller's configuration. Otherwise only the
    integrated registry, named exactly as configured (`host[:port]`, the
    port included), and only when its host is a loopback address.
    """
    return insecure or plain_http_integrated(registry, integrated_registry)


def plain_http_integrated(registry: str, integrated_registry: str) -> bool:
    """The integrated registry, named exactly as `--integrated-registry`, on loopback."""
    if not integrated_registry or registry.lower() != integrated_registry.lower():
        return False
    return is_loopback_host(registry)


def is_loopback_host(registry: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1, with or without a port (`[::1]:5000`)."""
    host = registry.lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
