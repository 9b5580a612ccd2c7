"""A real CNCF distribution registry (Debian's `docker-registry`) on loopback.

Its notifications go to one endpoint with a bearer token, exactly as a
platform team would configure it in front of our webhook.

NB: distribution keeps its notification queue in memory and retries every
answer that is not 2xx/3xx forever, one event at a time, so one event our
webhook refuses blocks every later one from that registry. Our distribution
receiver therefore answers 200 for input it cannot use.
"""

from __future__ import annotations

import secrets
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localdev.controlplane import free_port
from localdev.processes import ManagedProcess, wait_until

REGISTRY_BINARY = "docker-registry"
STARTUP_TIMEOUT_S = 30.0


@dataclass
class NotificationEndpoint:
    url: str
    token: str
    name: str = "imagestream"
    timeout: str = "2s"
    threshold: int = 3
    backoff: str = "500ms"


@dataclass
class Registry:
    """One distribution registry process with filesystem storage in `workdir`."""

    workdir: Path
    notify: NotificationEndpoint | None = None
    port: int = 0
    log_dir: Path | None = None
    process: ManagedProcess | None = field(default=None, init=False)

    @property
    def host(self) -> str:
        """`host:port`, as it appears in image references and notifications."""
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    def config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
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
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.config_path.write_text(yaml.safe_dump(self.config()))
        self.config_path.chmod(0o600)  # it holds the webhook token
        process = ManagedProcess(
            name="docker-registry",
            argv=[REGISTRY_BINARY, "serve", str(self.config_path)],
            log_path=(self.log_dir or self.workdir) / "registry.log",
        )
        self.process = process.start()
        try:
            wait_until(
                "registry answers /v2/",
                lambda: _ok(f"http://{self.host}/v2/"),
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


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
        return bool(response.status == 200)
