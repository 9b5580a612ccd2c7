"""The registry's `s3` storage for real: Debian's distribution 2.8 keeping images in SeaweedFS.

Issue 16: "s3 against a real S3-compatible server run in the local system: a
push, a registry restart and a pull of the same digest work". The server is
SeaweedFS's S3 gateway built from its Go module (`localdev.seaweedfs`); the
registry is distribution's `s3-aws` driver (`localdev.registry.S3Storage`).
The restart is a new registry process with a new, empty workdir, so what it
serves can only come from the bucket. Keys the store refuses must show as
the registry's storage health check failing with the store's own error, not
as a registry that looks up and loses pushes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.images import PUSH_TIMEOUT_S, OciImage, make_oci_image, skopeo_push
from localdev.processes import wait_until
from localdev.registry import Registry, S3Storage, stored_blob
from localdev.seaweedfs import SeaweedFS, weed_binary

HEALTH_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(
        workdir=tmp_path_factory.mktemp("seaweedfs"), binary=weed_binary(build=True)
    ).start()
    try:
        yield server
    finally:
        server.stop()


def storage_in(server: SeaweedFS) -> S3Storage:
    return S3Storage(
        bucket=server.bucket,
        region_endpoint=server.endpoint,
        access_key=server.credentials.access_key,
        secret_key=server.credentials.secret_key,
        region=server.region,
    )


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def referenced_blobs(image: OciImage) -> list[str]:
    """The config's and every layer's digest, from the manifest in the image's layout."""
    manifest = json.loads(blob(image.layout_dir, image.manifest_digest))
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def skopeo(*args: str) -> str:
    return subprocess.run(
        ["skopeo", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=PUSH_TIMEOUT_S,
    ).stdout


def test_push_registry_restart_pull_same_digest(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    storage = storage_in(seaweedfs)
    image = make_oci_image(tmp_path / "image", "kept in SeaweedFS")
    first = Registry(workdir=tmp_path / "registry-1", storage=storage).start()
    try:
        skopeo_push(image, f"{first.host}/demo/app:v1")
    finally:
        first.stop()

    # The registry wrote nothing of the image to its own disk; the bucket holds it.
    assert not (tmp_path / "registry-1" / "storage").exists()
    keys = seaweedfs.object_keys()
    for digest in (image.manifest_digest, *referenced_blobs(image)):
        assert stored_blob(digest) in keys
    assert "docker/registry/v2/repositories/demo/app/_manifests/tags/v1/current/link" in keys

    second = Registry(workdir=tmp_path / "registry-2", storage=storage).start()
    try:
        by_tag = json.loads(
            skopeo("inspect", "--tls-verify=false", f"docker://{second.host}/demo/app:v1")
        )
        assert by_tag["Digest"] == image.manifest_digest
        pulled = tmp_path / "pulled"
        skopeo(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--preserve-digests",
            f"docker://{second.host}/demo/app@{image.manifest_digest}",
            f"oci:{pulled}",
        )
    finally:
        second.stop()
    (manifest,) = json.loads((pulled / "index.json").read_text())["manifests"]
    assert manifest["digest"] == image.manifest_digest
    for digest in referenced_blobs(image):
        assert blob(pulled, digest) == blob(image.layout_dir, digest)


def test_refused_keys_fail_the_storage_health_check(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    wrong = dataclasses.replace(storage_in(seaweedfs), secret_key="not-the-secret-key")
    registry = Registry(workdir=tmp_path / "registry", storage=wrong).start()
    try:
        wait_until(
            "the registry's storage health check fails",
            registry.storage_health,
            timeout_s=HEALTH_TIMEOUT_S,
            interval_s=0.5,
        )
        health = registry.storage_health()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{registry.url}/v2/", timeout=5)
        with refused.value:
            body = refused.value.read().decode()
    finally:
        registry.stop()
    # The one check that failed, with the store's own refusal as the driver reports it
    # ("s3aws: SignatureDoesNotMatch: The request signature we calculated does not match...").
    assert list(health) == ["storagedriver_s3"]
    assert health["storagedriver_s3"].startswith("s3aws: SignatureDoesNotMatch")
    assert refused.value.code == 503
    assert "health check failed" in body


def test_seaweedfs_keeps_to_its_workdir_and_stops_cleanly(tmp_path: Path) -> None:
    """Private files, no anonymous access, nothing in /tmp, and every process exits on SIGTERM."""
    started = time.time()
    server = SeaweedFS(workdir=tmp_path / "seaweedfs", binary=weed_binary(build=True)).start()
    processes = list(server.processes)
    try:
        assert stat.S_IMODE(server.workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.identities_path.stat().st_mode) == 0o600
        for process in processes:
            assert stat.S_IMODE(process.log_path.stat().st_mode) == 0o600
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{server.endpoint}/{server.bucket}", timeout=5)
        anonymous.value.close()
        assert anonymous.value.code == 403
    finally:
        server.stop()
    # 0, not -9: each exited on its own SIGTERM, none needed a SIGKILL.
    assert [process.poll() for process in processes] == [0, 0, 0, 0]
    # weed's default paths for logs and sockets (the temp dir, /tmp/seaweedfs-*.sock).
    leftovers = [
        path
        for pattern in ("/tmp/seaweedfs-*", f"{tempfile.gettempdir()}/weed.*")
        for path in glob.glob(pattern)
        if os.stat(path, follow_symlinks=False).st_mtime >= started
    ]
    assert leftovers == []
