"""Test images made on the spot, and real pushes of them with skopeo.

An image here is an OCI image layout on disk, written byte for byte the same
way every time (tar entries with uid 0 and mtime 0, gzip with mtime 0, JSON
with sorted keys), so the same inputs always give the same manifest digest.
No network and no base image are involved.

* `make_oci_image()`: one tiny layer holding a caller-chosen text, so each
  distinct text is a distinct digest. It does not run (`/bin/true`); it is
  what the registry and trigger tests push.
* `make_app_image()`: runs. A busybox layer (Debian's static `/bin/busybox`)
  under a layer with `www/index.html` holding a marker; it serves that page on
  port 8080 and logs the marker at start, so a test can prove which image a
  Pod runs, not only what its template says.
* `make_s2i_builder_image()`: a Source-to-image builder (assemble and run scripts
  named by its `io.openshift.s2i.scripts-url` label) that serves a static site.
* `make_pause_image()`: the sandbox image containerd needs, busybox `sleep`.
* `make_binary_image()`: one static binary (e.g. CoreDNS) as the image.

Invariant: the same inputs give the same digest, on any machine with the same
`/bin/busybox`, which makes "which digest is running" a meaningful assertion.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_UNCOMPRESSED = "application/vnd.oci.image.layer.v1.tar"
PUSH_TIMEOUT_S = 60.0

BUSYBOX = Path("/bin/busybox")
# The applets the test images use; each is a symlink to /bin/busybox.
# NB: busybox `wget` segfaults in these containers (static glibc resolving
# names); use `nc` or probe from the host.
BUSYBOX_APPLETS = (
    "cat",
    "date",
    "echo",
    "env",
    "hostname",
    "httpd",
    "ip",
    "ls",
    "mkdir",
    "nc",
    "nslookup",
    "printf",
    "ps",
    "sh",
    "sleep",
    "true",
    "wget",
)
APP_PORT = 8080
_MARKER = re.compile(r"[A-Za-z0-9._:@/+=-]{1,200}")


@dataclass(frozen=True)
class OciImage:
    layout_dir: Path
    manifest_digest: str


@dataclass(frozen=True)
class Layer:
    """One layer blob as it goes into the layout."""

    blob: bytes
    media_type: str
    diff_id: str  # sha256 of the uncompressed tar, as the config lists it


def _sha256(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _write_blob(blobs: Path, content: bytes) -> tuple[str, int]:
    digest = _sha256(content)
    (blobs / digest.removeprefix("sha256:")).write_bytes(content)
    return digest, len(content)


def _gzip_layer(tar_bytes: bytes) -> Layer:
    # mtime=0 keeps the gzip header, and so the digest, reproducible.
    return Layer(gzip.compress(tar_bytes, mtime=0), OCI_LAYER, _sha256(tar_bytes))


def _layer(content: str) -> bytes:
    data = content.encode()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("content.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def _tar(
    *,
    dirs: Sequence[tuple[str, int]] = (),
    files: Mapping[str, tuple[bytes, int]] | None = None,
    symlinks: Mapping[str, str] | None = None,
    owner: int = 0,
) -> bytes:
    """A tar with entries in a fixed order, owned by `owner` (root), mtime 0 (PAX format)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 0
            info.uid = info.gid = owner
            info.uname = info.gname = "root" if owner == 0 else ""
            return info

        for name, mode in dirs:
            tar.addfile(entry(name, tarfile.DIRTYPE, mode))
        for name, (data, mode) in sorted((files or {}).items()):
            info = entry(name, tarfile.REGTYPE, mode)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted((symlinks or {}).items()):
            info = entry(name, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


@functools.cache
def busybox_layer() -> Layer:
    """`/bin/busybox` plus applet symlinks and the dirs the images use.

    Its digest depends only on the busybox binary, so it is computed once per
    process and shared by every runnable image (the registry stores it once).
    """
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    tar_bytes = _tar(
        dirs=[("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("www", 0o755)],
        files={"bin/busybox": (BUSYBOX.read_bytes(), 0o755)},
        symlinks={f"bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS},
    )
    return _gzip_layer(tar_bytes)


def _write_layout(directory: Path, layers: Sequence[Layer], config: dict[str, object]) -> OciImage:
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors = []
    for layer in layers:
        digest, size = _write_blob(blobs, layer.blob)
        descriptors.append({"mediaType": layer.media_type, "digest": digest, "size": size})
    return write_manifest(directory, descriptors, [layer.diff_id for layer in layers], config)


def write_manifest(
    directory: Path,
    layers: Sequence[Mapping[str, object]],
    diff_ids: Sequence[str],
    config: Mapping[str, object],
) -> OciImage:
    """Finish a layout whose layer blobs are already in `directory/blobs/sha256`.

    `layers` are their descriptors (mediaType, digest, size), `diff_ids` the
    sha256 of each uncompressed tar; the config, manifest and index are
    written as every image here writes them (sorted keys, no timestamps).
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors = [dict(layer) for layer in layers]
    config_bytes = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": dict(config),
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = _write_blob(blobs, config_bytes)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": descriptors,
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


def make_oci_image(directory: Path, content: str) -> OciImage:
    """Write an OCI layout whose one layer holds `content`; same content, same digest."""
    layer = _layer(content)
    diff_id = _sha256(gzip.decompress(layer))
    return _write_layout(directory, [Layer(layer, OCI_LAYER, diff_id)], {"Cmd": ["/bin/true"]})


def make_app_image(directory: Path, marker: str) -> OciImage:
    """A runnable image serving `/www/index.html` (which holds `marker`) on port 8080.

    It prints `app <marker> starting` first, so `kubectl logs` shows it too.
    The marker goes in through the environment, never into the shell text.
    """
    if not _MARKER.fullmatch(marker):
        raise ValueError(f"marker {marker!r} must match {_MARKER.pattern}")
    page = f"<html><body>marker={marker}</body></html>\n".encode()
    content = _gzip_layer(_tar(files={"www/index.html": (page, 0o644)}))
    return _write_layout(
        directory,
        [busybox_layer(), content],
        {
            "Entrypoint": [
                "/bin/sh",
                "-c",
                f'echo "app $MARKER starting"; exec httpd -f -v -p {APP_PORT} -h /www',
            ],
            "Env": ["PATH=/bin", f"MARKER={marker}"],
            "ExposedPorts": {f"{APP_PORT}/tcp": {}},
            "WorkingDir": "/",
        },
    )


S2I_SCRIPTS = "/usr/libexec/s2i"
S2I_USER = 1001
S2I_APP_ROOT = "opt/app-root/src"
# The scripts of the S2I builder below. assemble installs the source (S2I put it in
# /tmp/src) into the document root, and notes there which build and commit it ran for
# (OpenShift's OPENSHIFT_BUILD_* env) and, when the build's env sets WELCOME, that too.
S2I_ASSEMBLE = f"""#!/bin/sh
set -e
echo "---> Installing application source from /tmp/src"
busybox cp -R /tmp/src/. /{S2I_APP_ROOT}/
echo "build=$OPENSHIFT_BUILD_NAME commit=${{OPENSHIFT_BUILD_COMMIT:-none}}" \
  > /{S2I_APP_ROOT}/assembled.txt
if [ -n "${{WELCOME:-}}" ]; then echo "$WELCOME" > /{S2I_APP_ROOT}/welcome.txt; fi
echo "---> Installed $(busybox find /{S2I_APP_ROOT} -type f | busybox wc -l) files"
"""
S2I_RUN = f"""#!/bin/sh
echo "---> Serving /{S2I_APP_ROOT} on port {APP_PORT}"
exec httpd -f -v -p {APP_PORT} -h /{S2I_APP_ROOT}
"""
S2I_USAGE = """#!/bin/sh
echo "An S2I builder for static sites: builds serve the repository's files on port 8080."
"""


def make_s2i_builder_image(directory: Path) -> OciImage:
    """A Source-to-image builder for static sites, on the busybox layer (as OpenShift's
    httpd builder image, in a few hundred kB).

    Its `io.openshift.s2i.scripts-url` label names `image:///usr/libexec/s2i`, where
    `assemble` copies the source into `/opt/app-root/src` and `run` serves that with
    busybox httpd on port 8080. It runs as uid 1001, which owns the document root, as
    OpenShift's builder images do.
    """
    scripts = _tar(
        dirs=[("usr", 0o755), ("usr/libexec", 0o755), ("usr/libexec/s2i", 0o755)],
        files={
            f"usr/libexec/s2i/{name}": (script.encode(), 0o755)
            for name, script in (("assemble", S2I_ASSEMBLE), ("run", S2I_RUN), ("usage", S2I_USAGE))
        },
    )
    app_root = _tar(
        dirs=[("opt", 0o755), ("opt/app-root", 0o755), (S2I_APP_ROOT, 0o755)], owner=S2I_USER
    )
    return _write_layout(
        directory,
        [busybox_layer(), _gzip_layer(scripts), _gzip_layer(app_root)],
        {
            "Cmd": [f"{S2I_SCRIPTS}/usage"],
            "Env": ["PATH=/bin"],
            "ExposedPorts": {f"{APP_PORT}/tcp": {}},
            "User": str(S2I_USER),
            "WorkingDir": f"/{S2I_APP_ROOT}",
            "Labels": {
                "io.openshift.s2i.scripts-url": f"image://{S2I_SCRIPTS}",
                "io.openshift.expose-services": f"{APP_PORT}:http",
                "io.k8s.description": "Static site S2I builder (busybox httpd), made here",
                "io.openshift.tags": "builder,httpd",
            },
        },
    )


def make_pause_image(directory: Path) -> OciImage:
    """The Pod sandbox image: busybox `sleep` as PID 1.

    It ignores SIGTERM as PID 1 does; containerd stops sandboxes with SIGKILL.
    """
    return _write_layout(
        directory,
        [busybox_layer()],
        {"Entrypoint": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
    )


def make_binary_image(
    directory: Path, binary: Path, *, entrypoint: Sequence[str] = (), name: str | None = None
) -> OciImage:
    """An image of one static binary at `/<name>`, run as `/<name> <entrypoint...>`.

    The layer is left uncompressed: gzip of a 60 MB Go binary costs seconds on
    every start and saves nothing on loopback.
    """
    name = name or binary.name
    tar_bytes = _tar(
        dirs=[("etc", 0o755), ("tmp", 0o1777)], files={name: (binary.read_bytes(), 0o755)}
    )
    layer = Layer(tar_bytes, OCI_LAYER_UNCOMPRESSED, _sha256(tar_bytes))
    return _write_layout(
        directory,
        [layer],
        {"Entrypoint": [f"/{name}", *entrypoint], "WorkingDir": "/"},
    )


def make_files_image(
    directory: Path, files: Mapping[str, tuple[bytes, int]], *, owner: int = 0
) -> OciImage:
    """A busybox image with `files` (path: (content, mode)) under their parent dirs.

    What a build context or a wheelhouse travels in to a pod: through the
    registry, like every image, and copied out by an init container with
    busybox `cp`. `owner` is the uid and gid of the files and their dirs.
    """
    parents = sorted({str(Path(name).parent) for name in files} - {"."})
    dirs = sorted({str(p) for name in parents for p in [Path(name), *Path(name).parents]} - {"."})
    tar_bytes = _tar(dirs=[(name, 0o755) for name in dirs], files=files, owner=owner)
    return _write_layout(
        directory,
        [busybox_layer(), _gzip_layer(tar_bytes)],
        {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
    )


def skopeo_push(image: OciImage, destination: str, *, authfile: Path | None = None) -> None:
    """Push with skopeo to `host:port/repo:tag` over plain HTTP (loopback registry).

    `authfile`: a docker config with the credentials (a 0600 file: a token on skopeo's
    command line would be readable by every user of the machine in its argv). A failed
    push raises `CalledProcessError` with skopeo's stderr as a note.
    """
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if authfile is not None:
        argv.append(f"--dest-authfile={authfile}")
    argv += [f"oci:{image.layout_dir}", f"docker://{destination}"]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=PUSH_TIMEOUT_S)
    except subprocess.CalledProcessError as error:
        # Its reason, in the traceback; the exception stays what callers catch.
        error.add_note(f"skopeo: {error.stderr.decode(errors='replace').strip()[-2000:]}")
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m localdev.images app DIR MARKER`: write a runnable app image, print its digest.

    For the README's walkthrough: the image serves a page holding MARKER on
    port 8080, so `curl <pod IP>:8080` shows which build a pod runs.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m localdev.images")
    parser.add_argument("kind", choices=["app"])
    parser.add_argument("directory", type=Path, help="where to write the OCI layout")
    parser.add_argument("marker", help="the text the image serves (letters, digits, ._:@/+=-)")
    args = parser.parse_args(argv)
    print(make_app_image(args.directory, args.marker).manifest_digest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
