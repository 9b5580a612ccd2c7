"""A real CNCF distribution registry (Debian's `docker-registry`) on loopback.

Its notifications go to one endpoint with a bearer token, exactly as a
platform team would configure it in front of our webhook.

NB: distribution keeps its notification queue in memory and retries every
answer that is not 2xx/3xx forever, one event at a time, so one event our
webhook refuses blocks every later one from that registry. Our distribution
receiver therefore answers 200 for input it cannot use.

Secrets stay private (`localdev.private`): the config (it holds the
webhook token in a header), the htpasswd file and the log are 0600 in a 0700
workdir. distribution 2.8 logs every notification endpoint with its headers
(`configuring endpoint ... headers=map[Authorization:[Bearer <token>]]`) at
level info, and no setting but the level keeps that line out, so the
registry logs at `warn` (errors and warnings still show) unless a test asks
for more; the log is 0600 either way.

`start()` returns only once *this* process answers: every response carries
a header with a value made for this start, so a port held by another
registry (an earlier `imagestream dev`, anything answering `/v2/`) is not
mistaken for ours; our process then fails to bind and exits, and `start()`
raises with its reason.

By default it is an open registry over plain HTTP. Tests of registry clients
can ask for HTTPS (`tls`, a certificate from `localdev.certs`) and for
authentication: `HtpasswdAuth` (basic auth, one user, bcrypt-hashed with the
system's libcrypt since Debian has no `htpasswd` without apache2-utils) or
`TokenAuth` (distribution's bearer-token flow against a token server the
test runs; the registry only needs the certificate that verifies its tokens).

Storage is the filesystem in the workdir, or `S3Storage`: distribution's
`s3-aws` driver against an S3 endpoint (SeaweedFS's gateway in the tests,
`localdev.seaweedfs`), with its keys in the 0600 config. An S3 registry also
runs distribution's storage health check (every second) and its debug server
on loopback, so a store that refuses the keys shows as `503` on every request
and as the driver's own error in `storage_health()`, instead of as failed
pushes.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import yaml

from localdev.certs import ServingCertificate
from localdev.controlplane import free_port
from localdev.private import private_dir, write_private
from localdev.processes import ManagedProcess, wait_until

REGISTRY_BINARY = "docker-registry"
INSTANCE_HEADER = "X-Imagestream-Localdev-Instance"
STARTUP_TIMEOUT_S = 30.0


@dataclass
class NotificationEndpoint:
    url: str
    token: str
    name: str = "imagestream"
    timeout: str = "5s"
    threshold: int = 3
    backoff: str = "500ms"


@dataclass(frozen=True)
class HtpasswdAuth:
    """Basic auth with one user (distribution's `auth.htpasswd`)."""

    username: str
    password: str = field(repr=False)
    realm: str = "imagestream-localdev"


@dataclass(frozen=True)
class TokenAuth:
    """Bearer tokens issued by `realm` (distribution's `auth.token`).

    The registry trusts a token whose issuer is `issuer`, whose audience is
    `service`, and whose signing key is in (or chains to) `root_cert_bundle`.
    """

    realm: str
    service: str
    issuer: str
    root_cert_bundle: Path


@dataclass(frozen=True)
class S3Storage:
    """distribution's `s3-aws` driver: blobs and manifests in `bucket` at `region_endpoint`.

    Path-style addressing (`http://host:port/bucket/key`, what an S3 server
    on an IP address needs): distribution 2.8 uses it whenever
    `regionendpoint` is set; `forcepathstyle` says so to distribution 3 too
    (2.8 ignores parameters it does not know). Plain HTTP when the endpoint
    is `http://`; Signature Version 4.
    """

    bucket: str
    region_endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    def driver_config(self) -> dict[str, object]:
        return {
            "s3": {
                "accesskey": self.access_key,
                "secretkey": self.secret_key,
                "region": self.region,
                "regionendpoint": self.region_endpoint,
                "bucket": self.bucket,
                "forcepathstyle": True,
                "secure": self.region_endpoint.startswith("https://"),
                "v4auth": True,
                "encrypt": False,
            }
        }


def stored_blob(digest: str) -> str:
    """Where distribution's storage keeps a blob (manifests too), relative to its root."""
    hex_digest = digest.removeprefix("sha256:")
    return f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"


@dataclass
class Registry:
    """One distribution registry process; its storage is `workdir/storage` or `storage`."""

    workdir: Path
    notify: NotificationEndpoint | None = None
    port: int = 0
    log_dir: Path | None = None
    address: str = "127.0.0.1"
    """Where it listens; a node passes its host-only address so Pods can pull and push too."""
    auth: HtpasswdAuth | TokenAuth | None = None
    tls: ServingCertificate | None = None
    log_level: str = "warn"
    """distribution's log level; `info` and below log the notification token (see above)."""
    storage: S3Storage | None = None
    debug_port: int = 0
    """The debug server's loopback port (S3 storage only: it serves `/debug/health`)."""
    process: ManagedProcess | None = field(default=None, init=False)
    instance: str = field(default_factory=lambda: secrets.token_hex(8), init=False)
    """Sent back in `INSTANCE_HEADER` by this registry process only."""

    @property
    def host(self) -> str:
        """`host:port`, as it appears in image references and notifications."""
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        """Where the API is served: `http://host:port`, or https with `tls`."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def htpasswd_path(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    def config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {
                "level": self.log_level,
                "formatter": "text",
                "accesslog": {"disabled": True},
            },
            "storage": {
                **(
                    self.storage.driver_config()
                    if self.storage is not None
                    else {"filesystem": {"rootdirectory": str(self.workdir / "storage")}}
                ),
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {
                "addr": self.host,
                "secret": secrets.token_hex(16),
                "headers": {INSTANCE_HEADER: [self.instance]},
            },
        }
        if self.storage is not None:
            http = config["http"]
            assert isinstance(http, dict)
            http["debug"] = {"addr": f"127.0.0.1:{self.debug_port}"}
            # The first check runs one interval after start; until then the
            # registry counts as healthy.
            config["health"] = {
                "storagedriver": {"enabled": True, "interval": "1s", "threshold": 1}
            }
        if self.tls is not None:
            http = config["http"]
            assert isinstance(http, dict)
            http["tls"] = {"certificate": str(self.tls.cert_path), "key": str(self.tls.key_path)}
        if isinstance(self.auth, HtpasswdAuth):
            config["auth"] = {
                "htpasswd": {"realm": self.auth.realm, "path": str(self.htpasswd_path)}
            }
        elif isinstance(self.auth, TokenAuth):
            config["auth"] = {
                "token": {
                    "realm": self.auth.realm,
                    "service": self.auth.service,
                    "issuer": self.auth.issuer,
                    "rootcertbundle": str(self.auth.root_cert_bundle),
                }
            }
        if self.notify is not None:
            config["notifications"] = {
                "endpoints": [
                    {
                        "name": self.notify.name,
                        "url": self.notify.url,
                        "headers": {"Authorization": [f"Bearer {self.notify.token}"]},
                        "timeout": self.notify.timeout,
                        "threshold": self.notify.threshold,
                        "backoff": self.notify.backoff,
                        # Blob pushes carry this media type; they are never
                        # something an ImageStream records.
                        "ignoredmediatypes": ["application/octet-stream"],
                    }
                ]
            }
        return config

    def start(self) -> Registry:
        if shutil.which(REGISTRY_BINARY) is None:
            raise FileNotFoundError(
                f"{REGISTRY_BINARY} is not installed (Debian package docker-registry)"
            )
        private_dir(self.workdir)
        self.port = self.port or free_port()
        if self.storage is not None:
            self.debug_port = self.debug_port or free_port()
        # It holds the webhook token, and the S3 keys with S3 storage.
        write_private(self.config_path, yaml.safe_dump(self.config()))
        if isinstance(self.auth, HtpasswdAuth):
            write_private(
                self.htpasswd_path, f"{self.auth.username}:{bcrypt_hash(self.auth.password)}\n"
            )
        process = ManagedProcess(
            name="docker-registry",
            argv=[REGISTRY_BINARY, "serve", str(self.config_path)],
            log_path=(self.log_dir or self.workdir) / "registry.log",
            env=_without_aws_settings(os.environ) if self.storage is not None else None,
        )
        self.process = process.start()
        ca_path = self.tls.ca_path if self.tls else None
        try:
            wait_until(
                "registry answers /v2/",
                lambda: _ok(
                    f"{self.url}/v2/",
                    ca_path=ca_path,
                    auth=self.auth is not None,
                    instance=self.instance,
                ),
                timeout_s=STARTUP_TIMEOUT_S,
                processes=[process],
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def storage_health(self) -> dict[str, str]:
        """The failing health checks (`{}` when all pass), from the debug server's `/debug/health`.

        distribution answers 503 with `{"storagedriver_s3aws": "<the driver's
        error>"}` once its storage check fails; only an S3 registry runs it.
        """
        if self.storage is None:
            raise RuntimeError("only a registry with S3 storage runs the storage health check")
        url = f"http://127.0.0.1:{self.debug_port}/debug/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            with error:
                if error.code != 503:
                    raise
                body = error.read()
        checks = json.loads(body)
        assert isinstance(checks, dict)
        return {str(name): str(message) for name, message in checks.items()}


def _without_aws_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus `AWS_*`: the S3 driver takes its settings from our config only.

    The AWS SDK in the driver reads the environment too, and one variable is
    enough to break it: with `AWS_CA_BUNDLE` set (as on some build machines)
    distribution 2.8 panics at start ("unable to load custom CA bundle,
    HTTPClient's transport unsupported type").
    """
    return {name: value for name, value in environ.items() if not name.startswith("AWS_")}


def _ok(url: str, *, ca_path: Path | None = None, auth: bool = False, instance: str) -> bool:
    """Our registry answers: 200, or 401 (a challenge) when it requires auth, from `instance`."""
    context = ssl.create_default_context(cafile=str(ca_path)) if ca_path else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200 and _ours(response.headers, instance))
    except urllib.error.HTTPError as error:
        error.close()  # it holds the socket; an unclosed one warns at exit
        return auth and error.code == 401 and _ours(error.headers, instance)


def _ours(headers: Message, instance: str) -> bool:
    return headers.get(INSTANCE_HEADER) == instance


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd line, from the system's libcrypt (libxcrypt).

    Cost 5, htpasswd's own default: the registry checks it on every request.
    """
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    # A NULL random source makes libcrypt draw the salt from the OS.
    setting = libcrypt.crypt_gensalt(b"$2b$", 5, None, 0)
    hashed = libcrypt.crypt(password.encode(), setting) if setting else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RuntimeError("libcrypt cannot make bcrypt hashes (it needs libxcrypt)")
    return str(hashed.decode())
