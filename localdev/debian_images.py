"""Images made from Debian packages: a minimal bookworm root filesystem as one OCI layer.

Why mmdebstrap, not the `.deb` files assembled by hand: a root filesystem is
more than the packages' files. Maintainer scripts make it work: `passwd`
entries (`_apt`, `nobody`), the `ca-certificates` bundle in `/etc/ssl/certs`,
`update-alternatives` links, the byte-compiled Python standard library. A
hand assembly would have to replay every one of them. mmdebstrap (Debian's
own tool, 1.3.5 in bookworm) resolves the dependencies with apt, runs the
scripts in a chroot, cleans apt's caches and, with `SOURCE_DATE_EPOCH`, gives
the same tar for the same packages. It runs as root in its `root` mode (this
machine; `unshare` mode works for other users) and takes its packages from the
host's apt sources (`/etc/apt/sources.list.d/debian.sources`, else
deb.debian.org), so it needs nothing but Debian's mirror.

The variant is `essential` (Essential: yes packages only, no apt) plus the
image's packages, without their Recommends; man pages, translations and
documentation are left out, the copyright files kept.

What this module adds to mmdebstrap's tar, in one streaming pass:

* the layer: entries in mmdebstrap's (sorted) order, `./` stripped, `/dev`
  left empty (the runtime mounts its own; device nodes cannot be made by
  an unprivileged unpacker), numeric owners only, mtime 0, only the
  `security.capability` extended attribute kept; gzip with mtime 0;
* an OCI layout written by `localdev.images.write_manifest` (sorted JSON, no
  timestamps) with the image config (Entrypoint, Cmd, Env, User, WorkingDir,
  Labels);
* `packages.txt`: every installed package and version, read from the layer's
  `/var/lib/dpkg/status`.

Python in an image: Debian byte-compiles modules at install time into
timestamp pycs, which record each source's mtime; the layer's mtime 0 would
make every one stale (recompiled on every start, and never written back by a
non-root user). So a customize hook recompiles them as unchecked-hash pycs,
which depend on the source's content only.

Cache (outside the repository): `~/.cache/imagestream-controller/images/`
(`$IMAGESTREAM_CACHE_DIR/images`), two levels, so a change of the image config
alone reuses the root filesystem:

* `layers/<name>-<hash of the rootfs inputs>/`: the layer blob, its digest and
  diff id, `packages.txt`;
* `<name>-<hash of all inputs>/`: the OCI layout (its layer blob a hard link),
  and `image.json` (digest, sizes, build seconds) written last, which is what
  marks the entry complete.

The hashes cover the mmdebstrap arguments (suite, variant, packages, hooks),
the host's apt sources, mmdebstrap's version, this module's `FORMAT` and the
image config. They do not cover the mirror's state: a cached image keeps the
package versions it was made with until an input changes (`packages.txt`
says which), and a new entry made later may hold newer versions.

Invariant: an entry is complete or absent (built in a temporary directory,
renamed into place under a lock), and nothing of a build is left in the
repository or under /tmp.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from localdev.images import OCI_LAYER, OCI_LAYER_UNCOMPRESSED, OciImage, skopeo_push, write_manifest

# Bump when the layer or layout written for the same inputs changes.
FORMAT = 1
MMDEBSTRAP = "mmdebstrap"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TIMEOUT_S = 1200.0
GZIP_LEVEL = 6
# Extended attributes a layer may carry; anything else is host noise.
KEPT_XATTRS = ("SCHILY.xattr.security.capability",)
DPKG_STATUS = "var/lib/dpkg/status"
# Left out of the root filesystem, with dpkg's path filters (copyright files kept).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
)
# Runs on the host with the root filesystem as $1, after the packages.
_RECOMPILE_PYCS = (
    'if [ -x "$1/usr/bin/python3" ]; then'
    ' for d in "$1"/usr/lib/python3 "$1"/usr/lib/python3.*; do'
    ' [ -d "$d" ] && chroot "$1" /usr/bin/python3 -m compileall -q -f -j0'
    ' --invalidation-mode unchecked-hash "${d#"$1"}" >/dev/null || exit 1;'
    " done; fi"
)


class ImageBuildError(RuntimeError):
    """mmdebstrap (or the layer around it) failed; the message has the log's tail."""


@dataclass(frozen=True)
class User:
    """A user of the image, with subordinate ids for rootless user namespaces if asked."""

    name: str
    uid: int
    home: str = ""
    shell: str = "/bin/sh"
    subids: tuple[int, int] | None = None  # (first, count) in /etc/subuid and /etc/subgid

    def hook(self) -> str:
        home = self.home or f"/home/{self.name}"
        lines = [
            f"echo {shlex.quote(f'{self.name}:x:{self.uid}:{self.uid}::{home}:{self.shell}')}"
            ' >> "$1/etc/passwd"',
            f'echo {shlex.quote(f"{self.name}:x:{self.uid}:")} >> "$1/etc/group"',
            f'echo {shlex.quote(f"{self.name}:*:0:0:99999:7:::")} >> "$1/etc/shadow"',
            f'mkdir -p "$1"{shlex.quote(home)}',
            f'chown {self.uid}:{self.uid} "$1"{shlex.quote(home)}',
        ]
        if self.subids is not None:
            first, count = self.subids
            entry = shlex.quote(f"{self.name}:{first}:{count}")
            lines += [f'echo {entry} >> "$1/etc/subuid"', f'echo {entry} >> "$1/etc/subgid"']
        return " && ".join(lines)


@dataclass(frozen=True)
class File:
    """A file written into the root filesystem after the packages (owned by root)."""

    path: str
    content: str
    mode: int = 0o644

    def hook(self) -> str:
        target = f'"$1"{shlex.quote(self.path)}'
        return (
            f'mkdir -p "$(dirname {target})" && printf %s {shlex.quote(self.content)} > {target}'
            f" && chmod {self.mode:o} {target}"
        )


@dataclass(frozen=True)
class DebianImage:
    """What an image is made of; every field is an input of its cache key."""

    name: str
    packages: tuple[str, ...]
    suite: str = "bookworm"
    variant: str = "essential"
    users: tuple[User, ...] = ()
    files: tuple[File, ...] = ()
    hooks: tuple[str, ...] = ()  # more customize hooks, shell with the rootfs as $1
    # The image config.
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (DEFAULT_PATH,)
    user: str = ""
    working_dir: str = "/"
    labels: tuple[tuple[str, str], ...] = ()
    compress: bool = True

    def customize_hooks(self) -> list[str]:
        return [
            *(user.hook() for user in self.users),
            *(file.hook() for file in self.files),
            *self.hooks,
            _RECOMPILE_PYCS,
        ]

    def mmdebstrap_args(self) -> list[str]:
        """The arguments before the target (the sources come after it)."""
        args = [
            f"--variant={self.variant}",
            "--mode=root",
            "--format=tar",
            "--aptopt=APT::Install-Recommends false",
            *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        ]
        if self.packages:
            args.append("--include=" + ",".join(self.packages))
        args += [f"--customize-hook={hook}" for hook in self.customize_hooks()]
        return [*args, self.suite]

    def config(self) -> dict[str, object]:
        config: dict[str, object] = {"Env": list(self.env), "WorkingDir": self.working_dir}
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        labels = {
            "org.opencontainers.image.title": self.name,
            "io.imagestream.debian.suite": self.suite,
            "io.imagestream.debian.packages": " ".join(self.packages),
            **dict(self.labels),
        }
        config["Labels"] = labels
        return config


@dataclass(frozen=True)
class BuiltImage:
    """A complete cache entry."""

    image: OciImage
    name: str
    layer_size: int  # the blob, as pushed
    rootfs_size: int  # the uncompressed tar
    build_seconds: float  # of the root filesystem, when it was made
    cached: bool  # True when this call found it complete and made nothing
    packages: Path  # packages.txt: "name version" per line

    @property
    def layout_dir(self) -> Path:
        return self.image.layout_dir

    @property
    def digest(self) -> str:
        return self.image.manifest_digest


def cache_root() -> Path:
    base = os.environ.get("IMAGESTREAM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "imagestream-controller",
    )
    return Path(base) / "images"


def _sources() -> tuple[list[str], str]:
    """The sources argument for mmdebstrap and their text (an input of the key)."""
    if HOST_SOURCES.is_file():
        return [str(HOST_SOURCES)], HOST_SOURCES.read_text()
    return [], "deb.debian.org (mmdebstrap's default)"


def _mmdebstrap_version() -> str:
    """The sha256 of the mmdebstrap script itself (`--version` costs a Perl start)."""
    path = shutil.which(MMDEBSTRAP)
    if path is None:
        raise ImageBuildError(
            f"{MMDEBSTRAP} is missing: apt-get install mmdebstrap (scripts/install-system-deps.sh)"
        )
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def rootfs_key(spec: DebianImage) -> str:
    _, sources = _sources()
    return _hash(
        {
            "format": FORMAT,
            "mmdebstrap": _mmdebstrap_version(),
            "args": spec.mmdebstrap_args(),
            "sources": sources,
            "compress": spec.compress,
        }
    )


def image_key(spec: DebianImage) -> str:
    return _hash({"rootfs": rootfs_key(spec), "config": spec.config(), "format": FORMAT})


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _HashingWriter:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


@dataclass
class _Layer:
    digest: str
    diff_id: str
    size: int
    rootfs_size: int
    media_type: str
    packages: list[str] = field(default_factory=list)


def _normalised(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # tarfile reads "./" as "."; that entry stays: it carries the root's mode.
    name = member.name.removeprefix("./").rstrip("/")
    if not name or (name.startswith("dev/") and not member.isdir()):
        return None
    member.name = name
    if member.islnk():
        member.linkname = member.linkname.removeprefix("./")
    member.mtime = 0
    member.uname = member.gname = ""
    member.pax_headers = {
        key: value for key, value in member.pax_headers.items() if key in KEPT_XATTRS
    }
    return member


def _dpkg_packages(status: bytes) -> list[str]:
    packages, name, version, installed = [], "", "", False
    for line in [*status.decode(errors="replace").splitlines(), ""]:
        if not line:
            if name and installed:
                packages.append(f"{name} {version}")
            name, version, installed = "", "", False
        elif line.startswith("Package: "):
            name = line.removeprefix("Package: ")
        elif line.startswith("Version: "):
            version = line.removeprefix("Version: ")
        elif line.startswith("Status: "):
            installed = line.endswith(" installed")
    return sorted(packages)


def _write_layer(source: IO[bytes], blob_path: Path, *, compress: bool) -> _Layer:
    """Copy mmdebstrap's tar stream into a layer blob, normalised, hashing both forms."""
    packages: list[str] = []
    with open(blob_path, "wb") as raw:
        compressed = _HashingWriter(raw)
        gz = (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=GZIP_LEVEL
            )
            if compress
            else None
        )
        uncompressed = _HashingWriter(cast(IO[bytes], gz if gz is not None else compressed))
        with (
            tarfile.open(fileobj=source, mode="r|") as tar_in,
            tarfile.open(
                fileobj=cast(IO[bytes], uncompressed),
                mode="w|",
                format=tarfile.PAX_FORMAT,
            ) as tar_out,
        ):
            for member in tar_in:
                data = tar_in.extractfile(member) if member.isreg() else None
                normalised = _normalised(member)
                if normalised is None:
                    continue
                if normalised.name == DPKG_STATUS and data is not None:
                    status = data.read()
                    packages = _dpkg_packages(status)
                    tar_out.addfile(normalised, _BytesReader(status))
                else:
                    tar_out.addfile(normalised, data)
        if gz is not None:
            gz.close()
    if not packages:
        raise ImageBuildError(f"no {DPKG_STATUS} in mmdebstrap's output")
    return _Layer(
        digest="sha256:" + compressed.sha256.hexdigest(),
        diff_id="sha256:" + uncompressed.sha256.hexdigest(),
        size=compressed.size,
        rootfs_size=uncompressed.size,
        media_type=OCI_LAYER if compress else OCI_LAYER_UNCOMPRESSED,
        packages=packages,
    )


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._offset + size
        chunk = self._data[self._offset : end]
        self._offset += len(chunk)
        return chunk


def _make_rootfs_layer(spec: DebianImage, directory: Path, log: Callable[[str], None]) -> None:
    """mmdebstrap into a layer blob in `directory` (temporary; the caller renames it)."""
    sources, _ = _sources()
    argv = [MMDEBSTRAP, *spec.mmdebstrap_args(), "-", *sources]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "LC_ALL": "C.UTF-8"}
    log_path = directory / "mmdebstrap.log"
    began = time.monotonic()
    log(f"debian-images: making {spec.name} with mmdebstrap (log: {log_path})")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, env=env)
        assert proc.stdout is not None
        try:
            layer = _write_layer(proc.stdout, directory / "layer.blob", compress=spec.compress)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        code = proc.wait(timeout=BUILD_TIMEOUT_S)
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise ImageBuildError(f"mmdebstrap failed ({code}):\n" + "\n".join(tail))
    seconds = round(time.monotonic() - began, 1)
    (directory / "packages.txt").write_text("".join(f"{p}\n" for p in layer.packages))
    record = {**asdict(layer), "build_seconds": seconds}
    del record["packages"]
    (directory / "layer.json").write_text(json.dumps(record, sort_keys=True, indent=1))
    log(f"debian-images: {spec.name} rootfs made in {seconds}s, layer {layer.size} bytes")


def _rootfs_layer(spec: DebianImage, root: Path, log: Callable[[str], None]) -> Path:
    final = root / "layers" / f"{spec.name}-{rootfs_key(spec)}"
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "layer.json").is_file():
            return final
        temporary = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        try:
            _make_rootfs_layer(spec, temporary, log)
            os.rename(temporary, final)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return final


def build(
    spec: DebianImage, *, root: Path | None = None, log: Callable[[str], None] | None = None
) -> BuiltImage:
    """The image's OCI layout, from the cache, or made now (minutes) and cached."""
    root = root or cache_root()
    report = log or (lambda line: print(line, file=sys.stderr))
    final = root / f"{spec.name}-{image_key(spec)}"
    if (final / "image.json").is_file():
        return _load(spec.name, final, cached=True)
    layer_dir = _rootfs_layer(spec, root, report)
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "image.json").is_file():
            return _load(spec.name, final, cached=True)
        layer: dict[str, Any] = json.loads((layer_dir / "layer.json").read_text())
        temporary = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            blobs = temporary / "blobs" / "sha256"
            blobs.mkdir(parents=True)
            os.link(layer_dir / "layer.blob", blobs / layer["digest"].removeprefix("sha256:"))
            shutil.copyfile(layer_dir / "packages.txt", temporary / "packages.txt")
            image = write_manifest(
                temporary,
                [
                    {
                        "mediaType": layer["media_type"],
                        "digest": layer["digest"],
                        "size": layer["size"],
                    }
                ],
                [layer["diff_id"]],
                spec.config(),
            )
            (temporary / "image.json").write_text(
                json.dumps(
                    {
                        "name": spec.name,
                        "digest": image.manifest_digest,
                        "layer_size": layer["size"],
                        "rootfs_size": layer["rootfs_size"],
                        "build_seconds": layer["build_seconds"],
                    },
                    sort_keys=True,
                    indent=1,
                )
            )
            os.rename(temporary, final)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return _load(spec.name, final, cached=False)


def _load(name: str, directory: Path, *, cached: bool) -> BuiltImage:
    record = json.loads((directory / "image.json").read_text())
    return BuiltImage(
        image=OciImage(layout_dir=directory, manifest_digest=record["digest"]),
        name=name,
        layer_size=record["layer_size"],
        rootfs_size=record["rootfs_size"],
        build_seconds=record["build_seconds"],
        cached=cached,
        packages=directory / "packages.txt",
    )


# --- the images -------------------------------------------------------------------------------

BUILD_USER = User("build", 1000, subids=(100000, 65536))

# Debian installs newuidmap/newgidmap setuid root. In a pod that runs as the
# build user, a setuid-root newuidmap may not write the new user namespace's
# uid_map: euid 0 is not the namespace's owner, so the kernel asks for
# CAP_SYS_ADMIN, which no unprivileged container has ("write to uid_map
# failed: Operation not permitted"). With file capabilities instead (as
# Fedora ships them) the writer keeps the build user's euid, owns the
# namespace, and needs only CAP_SETUID/CAP_SETGID, which the default
# container capabilities include.
NEWIDMAP_FILE_CAPS = (
    'chmod 0755 "$1/usr/bin/newuidmap" "$1/usr/bin/newgidmap"'
    ' && chroot "$1" setcap cap_setuid=ep /usr/bin/newuidmap'
    ' && chroot "$1" setcap cap_setgid=ep /usr/bin/newgidmap'
)

# vfs by default: it works on any filesystem, also on the container's own
# overlay root. `--storage-driver overlay` is faster (no copy per layer) and
# works rootless with the kernel's own overlay (user namespaces, kernel >=
# 5.13) when the storage is on a volume (an emptyDir), not on overlayfs.
# No fuse-overlayfs: it needs /dev/fuse, which an unprivileged pod lacks, and
# with it installed containers/storage picks it over the kernel's overlay.
STORAGE_CONF = """\
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
"""

BUILDER = DebianImage(
    name="builder",
    packages=(
        "buildah",  # 1.28, the builder
        "uidmap",  # newuidmap/newgidmap, for rootless user namespaces
        "libcap2-bin",  # setcap, for the hook below
        "crun",  # an OCI runtime, for --isolation oci where the pod allows it
        "ca-certificates",  # TLS to real registries
        "git",  # Git sources
    ),
    users=(BUILD_USER,),
    files=(File("/etc/containers/storage.conf", STORAGE_CONF),),
    hooks=(NEWIDMAP_FILE_CAPS,),
    cmd=("/usr/bin/buildah", "--help"),
    env=(DEFAULT_PATH, "BUILDAH_ISOLATION=chroot"),
    labels=(("io.imagestream.image.purpose", "builder: buildah from Debian packages"),),
)

PYTHON_BASE = DebianImage(
    name="python-base",
    packages=(
        "python3",  # 3.11
        "python3-venv",  # ensurepip for `python -m venv`
        "python-is-python3",  # `python`, as the Python images name it
        "ca-certificates",
    ),
    cmd=("python3",),
    env=(DEFAULT_PATH, "LANG=C.UTF-8"),
    labels=(("io.imagestream.image.purpose", "python base: Debian's python3"),),
)

# The Git server of the local system (localdev/gitserver.py): `git daemon` serves the
# git:// protocol itself, so the image needs git and nothing else (no web server, no CGI).
GIT_USER = User("git", 1000, home="/srv/git")
GIT_SERVER = DebianImage(
    name="git-server",
    packages=("git",),  # 2.39, with git-daemon, upload-pack and receive-pack
    users=(GIT_USER,),
    cmd=("git", "daemon", "--help"),
    user="1000",
    working_dir="/srv/git",
    labels=(("io.imagestream.image.purpose", "git server: git daemon from Debian packages"),),
)


# The chart's pods run as the distroless "nonroot" uid/gid; so do these images.
NONROOT = "65532:65532"

# The chart's integrated registry (`registry.enabled`): CNCF distribution 2.8
# as Debian packages it. The chart passes `serve <its config>` as args.
REGISTRY = DebianImage(
    name="registry",
    packages=("docker-registry",),
    entrypoint=("/usr/bin/docker-registry",),
    cmd=("serve", "/etc/docker/registry/config.yml"),
    user=NONROOT,
    labels=(("io.imagestream.image.purpose", "registry: Debian's docker-registry"),),
)

# The chart's `helm test` pod: curl (7.88) and a shell.
CURL = DebianImage(
    name="curl",
    packages=("curl", "ca-certificates"),
    cmd=("curl", "--version"),
    user=NONROOT,
    labels=(("io.imagestream.image.purpose", "helm test: Debian's curl"),),
)

IMAGES = {spec.name: spec for spec in (BUILDER, PYTHON_BASE, GIT_SERVER, REGISTRY, CURL)}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m localdev.debian_images build NAME [--push HOST/REPO:TAG]`.

    Prints the layout directory and the manifest digest; `--push` copies the
    image to a registry over plain HTTP with skopeo.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m localdev.debian_images")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="make (or find cached) an image")
    build_parser.add_argument("name", choices=sorted(IMAGES))
    build_parser.add_argument("--push", metavar="HOST/REPO:TAG", help="then push it there")
    args = parser.parse_args(argv)
    began = time.monotonic()
    built = build(IMAGES[args.name])
    print(
        json.dumps(
            {
                "name": built.name,
                "layout": str(built.layout_dir),
                "digest": built.digest,
                "layer_size": built.layer_size,
                "rootfs_size": built.rootfs_size,
                "cached": built.cached,
                "seconds": round(time.monotonic() - began, 2),
            },
            sort_keys=True,
        )
    )
    if args.push:
        skopeo_push(built.image, args.push)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
