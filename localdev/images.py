"""Test images made on the spot, and real pushes of them with skopeo.

An image here is an OCI image layout on disk with one tiny layer; the layer
holds a caller-chosen text, so each distinct text is a distinct manifest
digest. No network and no base image are involved.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class OciImage:
    layout_dir: Path
    manifest_digest: str


def _write_blob(blobs: Path, content: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    (blobs / digest.removeprefix("sha256:")).write_bytes(content)
    return digest, len(content)


def _layer(content: str) -> bytes:
    data = content.encode()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("content.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    # mtime=0 keeps the gzip header, and so the digest, reproducible.
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def make_oci_image(directory: Path, content: str) -> OciImage:
    """Write an OCI layout whose one layer holds `content`; same content, same digest."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer = _layer(content)
    layer_digest, layer_size = _write_blob(blobs, layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()],
            },
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = _write_blob(blobs, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_size = _write_blob(blobs, manifest)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size}
                ],
            }
        )
    )
    return OciImage(layout_dir=directory, manifest_digest=manifest_digest)


def skopeo_push(image: OciImage, destination: str) -> None:
    """Push with skopeo to `host:port/repo:tag` over plain HTTP (loopback registry)."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            f"oci:{image.layout_dir}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=PUSH_TIMEOUT_S,
    )
