"""A real S3-compatible server on this machine: SeaweedFS's S3 gateway (`weed s3`).

The registry's `s3` storage (distribution's `s3-aws` driver, compiled into
Debian's docker-registry) is tested against it. `weed` is built from its Go
module by `localkube/build.sh seaweedfs` into the cache outside the repository.

Four processes (a master, a volume server, a filer and the S3 gateway)
keep everything in `workdir` (0700): their data, the filer's store, their
logs and their unix sockets. Nothing is written outside it: `weed` puts glog
files in the temp dir and its sockets in /tmp unless told otherwise, reads
`*.toml` from `$HOME/.seaweedfs` and /etc/seaweedfs, and the master reports
to a telemetry URL on the internet by default, so every one of those is set
here (log to stderr only, sockets and HOME in the workdir, telemetry off).
Its gRPC ports take no credentials (SeaweedFS's own mTLS is not configured):
they are on the same address as the S3 API, for a test system only.

Access is one identity whose keys are made for this start (or given), in an
identities file (`-s3.config`) written 0600 before `weed` reads it; no
anonymous access. `start()` returns once *this* process answers: it creates
the bucket with a request signed by those keys (AWS Signature Version 4),
which another server on the port cannot accept, and `stop()` stops the
processes by PID, last started first.

Every port (HTTP and gRPC of each of the four servers) is chosen free, since
`weed`'s defaults (9333, 8080, 8888, 8333 and each +10000) would collide with
anything else on a shared machine.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from localdev.controlplane import BUILD_SCRIPT, free_port
from localdev.private import private_dir, write_private
from localdev.processes import ManagedProcess, wait_until

STARTUP_TIMEOUT_S = 90.0
SIGNING_ALGORITHM = "AWS4-HMAC-SHA256"
S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair (the secret never appears in a repr or a log)."""

    access_key: str
    secret_key: str = field(repr=False)

    @classmethod
    def fresh(cls) -> S3Credentials:
        return cls(access_key=secrets.token_hex(10).upper(), secret_key=secrets.token_urlsafe(30))


def weed_binary(*, build: bool, progress: Callable[[str], None] | None = None) -> Path:
    """The cached `weed` (`localkube/build.sh seaweedfs`); built first if asked and missing."""
    directory = Path(
        subprocess.run(
            [str(BUILD_SCRIPT), "seaweedfs", "--print-dir"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    binary = directory / "weed"
    if not binary.exists() and build:
        report = progress or (lambda line: print(line, file=sys.stderr))
        with subprocess.Popen(
            [str(BUILD_SCRIPT), "seaweedfs"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                report(line.rstrip())
        if proc.returncode != 0:
            raise RuntimeError(f"{BUILD_SCRIPT} seaweedfs failed with exit code {proc.returncode}")
    if not binary.exists():
        raise FileNotFoundError(
            f"weed not found in {directory}; build it with {BUILD_SCRIPT} seaweedfs"
        )
    return binary


@dataclass
class SeaweedFS:
    """SeaweedFS serving `bucket` over S3 at `endpoint`, its data in `workdir`."""

    workdir: Path
    binary: Path
    bucket: str = "registry"
    address: str = "127.0.0.1"
    """Where every server listens; a node passes its host-only address so Pods reach it."""
    port: int = 0
    """The S3 gateway's port (free if 0); the other servers always get free ones."""
    region: str = "us-east-1"
    credentials: S3Credentials = field(default_factory=S3Credentials.fresh)
    log_dir: Path | None = None
    processes: list[ManagedProcess] = field(default_factory=list, init=False)

    @property
    def endpoint(self) -> str:
        """The S3 API, for distribution's `regionendpoint`."""
        return f"http://{self.address}:{self.port}"

    @property
    def identities_path(self) -> Path:
        return self.workdir / "s3-identities.json"

    def identities(self) -> dict[str, object]:
        """SeaweedFS's `-s3.config`: one identity with these keys, allowed everything."""
        return {
            "identities": [
                {
                    "name": "registry",
                    "credentials": [
                        {
                            "accessKey": self.credentials.access_key,
                            "secretKey": self.credentials.secret_key,
                        }
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def commands(self, ports: Mapping[str, int]) -> list[tuple[str, list[str]]]:
        """The master, the volume server, the filer and the S3 gateway, in start order.

        Four processes, not one `weed server -s3`: that one runs the servers'
        shutdown hooks in whatever order they registered, and when the volume
        server goes first the filer's last flush waits for it until SIGKILL;
        it also puts a gRPC socket per server in /tmp that no flag moves. Not
        `weed filer -s3` either: its gateway dials the filer's default gRPC
        port (HTTP + 10000), not the one given.
        """
        master = f"{self.address}:{ports['master']}.{ports['master.grpc']}"
        # Global flags (before the command): glog writes files to the temp dir
        # unless it logs to stderr only; our log file is the process's.
        weed = [str(self.binary), "-logtostderr", "-v=0"]
        listen = [f"-ip={self.address}", f"-ip.bind={self.address}"]
        return [
            (
                "master",
                [
                    *weed,
                    "master",
                    *listen,
                    f"-port={ports['master']}",
                    f"-port.grpc={ports['master.grpc']}",
                    f"-mdir={self.workdir / 'master'}",
                    "-peers=none",
                    "-telemetry=false",
                    "-volumeSizeLimitMB=64",
                ],
            ),
            (
                "volume",
                [
                    *weed,
                    "volume",
                    *listen,
                    f"-port={ports['volume']}",
                    f"-port.grpc={ports['volume.grpc']}",
                    f"-dir={self.workdir / 'volume'}",
                    "-max=32",
                    f"-master={master}",
                    # It waits this long after SIGTERM before it stops.
                    "-preStopSeconds=0",
                ],
            ),
            (
                "filer",
                [
                    *weed,
                    "filer",
                    *listen,
                    f"-port={ports['filer']}",
                    f"-port.grpc={ports['filer.grpc']}",
                    f"-master={master}",
                    f"-defaultStoreDir={self.workdir / 'filer'}",
                    f"-localSocket={self.workdir / 'filer.sock'}",
                ],
            ),
            (
                "s3",
                [
                    *weed,
                    "s3",
                    *listen,
                    f"-port={self.port}",
                    f"-port.grpc={ports['s3.grpc']}",
                    f"-filer={self.address}:{ports['filer']}.{ports['filer.grpc']}",
                    f"-localSocket={self.workdir / 's3.sock'}",
                    f"-config={self.identities_path}",
                    "-port.iceberg=0",
                    "-port.lance=0",
                ],
            ),
        ]

    def start(self) -> SeaweedFS:
        private_dir(self.workdir)
        for name in ("master", "volume", "filer", "home"):
            private_dir(self.workdir / name)
        self.port = self.port or free_port()
        ports = {
            name: free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3.grpc",
            )
        }
        write_private(self.identities_path, json.dumps(self.identities(), indent=2))
        try:
            for name, argv in self.commands(ports):
                process = ManagedProcess(
                    name=f"seaweedfs {name}",
                    argv=argv,
                    log_path=(self.log_dir or self.workdir) / f"seaweedfs-{name}.log",
                    # HOME: where weed looks for its *.toml configs; there are none there.
                    env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir / "home")},
                    cwd=self.workdir,
                )
                self.processes.append(process.start())
            wait_until(
                f"SeaweedFS creates bucket {self.bucket}",
                self._create_bucket,
                timeout_s=STARTUP_TIMEOUT_S,
                interval_s=0.5,
                processes=self.processes,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """The S3 gateway first, then the filer, the volume server, the master."""
        while self.processes:
            self.processes.pop().stop()

    def request(self, method: str, path: str, *, body: bytes = b"") -> tuple[int, bytes]:
        """A request to the S3 API signed with our keys: (status, body)."""
        url = f"{self.endpoint}{path}"
        headers = sign_v4(
            method,
            url,
            credentials=self.credentials,
            region=self.region,
            payload=body,
            now=datetime.datetime.now(datetime.UTC),
        )
        request = urllib.request.Request(  # noqa: S310 - our own http endpoint
            url, data=body or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - ditto
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, bytes(error.read())

    def object_keys(self) -> set[str]:
        """Every key in the bucket (one ListObjects page: fails past its 1,000 keys)."""
        status, body = self.request("GET", f"/{self.bucket}")
        if status != 200:
            raise RuntimeError(f"listing bucket {self.bucket}: {status} {body[:300]!r}")
        listing = ElementTree.fromstring(body)  # noqa: S314 - our own server's answer
        if listing.findtext(f"{S3_XML}IsTruncated") != "false":
            raise RuntimeError(f"bucket {self.bucket} holds more keys than one listing shows")
        return {key.text or "" for key in listing.iter(f"{S3_XML}Key")}

    def _create_bucket(self) -> bool:
        status, body = self.request("PUT", f"/{self.bucket}")
        # 409 BucketAlreadyOwnedByYou: a restart on the same workdir keeps it.
        return status == 200 or (status == 409 and b"BucketAlreadyOwnedByYou" in body)


def sign_v4(
    method: str,
    url: str,
    *,
    credentials: S3Credentials,
    region: str,
    payload: bytes,
    now: datetime.datetime,
    service: str = "s3",
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign a request with AWS Signature Version 4 (every header is signed).

    The URL path must already be in canonical (URI-encoded) form and carry no
    query; that is all `SeaweedFS.request` sends.
    """
    parts = urlsplit(url)
    if parts.query:
        raise ValueError("sign_v4 signs requests without a query string")
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    payload_hash = hashlib.sha256(payload).hexdigest()
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
        **{name.lower(): value.strip() for name, value in (extra_headers or {}).items()},
    }
    signed = sorted(headers)
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            "",
            *(f"{name}:{headers[name]}" for name in signed),
            "",
            ";".join(signed),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [
            SIGNING_ALGORITHM,
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{SIGNING_ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    del headers["host"]  # urllib sends it from the URL
    return headers
