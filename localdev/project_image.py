"""Our own image, from the repository's Dockerfile, built with buildah on this host.

No Docker engine here, and none is needed: Debian's buildah (1.28, the
`buildah` package) runs as root on the host with `--isolation chroot`, its
storage (overlay on the host's ext4) in a temporary directory of its own, so
it shares nothing with any other buildah and leaves nothing behind. Why the
host and not the rootless builder pod of tests/integration/test_images.py:
the build then needs no node, no registry and no pod, and no context image
to carry the sources in, so Tilt's `custom_build` and the tests call the
same function before any cluster exists (docs/images-from-debian.md, "Our
image, on the host").

The build is the Dockerfile unchanged:

* `PYTHON_IMAGE`: the Debian python-base image (`localdev.debian_images`),
  copied from its cached OCI layout into buildah's temporary storage with
  skopeo (buildah 1.28 cannot name an `oci:` layout in `FROM`);
* pip reads the host-made wheelhouse (`localdev.wheelhouse`) through two bind
  mounts, which leave nothing in a layer (there is no PyPI inside a build);
* the context is a copy of the repository's files that git knows or would
  know (tracked, or untracked and not ignored) as they are in the working
  tree, less what `.dockerignore` leaves out: an edit is built before it is
  committed, `.venv`, caches and `.dev` never are, and an edit of a test or
  a doc does not change the key; `--timestamp 0`, so created times are fixed.

The default target is `runtime`: only `imagestream`, `controller` and
`webhook` are installed (the Dockerfile copies nothing else), never
`localdev`; `dev` is the target Tilt's live update needs.

Cache: `~/.cache/imagestream-controller/images/project/<target>-<key>/`, an
OCI layout and `image.json` (written last, so an entry is complete or
absent). The key is a hash of every context file's path and content, the
wheels (names and content), python-base's digest, buildah's version, the
target and the build arguments. Same inputs: the cached digest, no build.

Invariant: a build that fails leaves no cache entry, no storage directory
and no mount; the image pushed is the one whose digest is returned.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from localdev.controlplane import REPO_ROOT
from localdev.debian_images import PYTHON_BASE, BuiltImage, cache_root
from localdev.debian_images import build as build_debian_image
from localdev.images import OciImage, skopeo_push
from localdev.wheelhouse import wheelhouse

# Bump when the same inputs would give a different image.
FORMAT = 1
BUILDAH = "buildah"
BUILD_TIMEOUT_S = 900.0
TARGETS = ("runtime", "dev")
# What the builder reads itself, whatever .dockerignore says (as Docker does).
ALWAYS_IN_CONTEXT = ("Dockerfile", ".dockerignore")
BASE_TAG = "localhost/imagestream-python-base:build"
OUTPUT_TAG = "localhost/imagestream-controller:build"


class ProjectImageError(RuntimeError):
    """buildah (or what prepares its inputs) failed; the message has its output's tail."""


@dataclass(frozen=True)
class ProjectImage:
    image: OciImage
    target: str
    cached: bool
    build_seconds: float  # when it was made

    @property
    def digest(self) -> str:
        return self.image.manifest_digest

    @property
    def layout_dir(self) -> Path:
        return self.image.layout_dir


def context_files(root: Path = REPO_ROOT) -> list[str]:
    """The build context: files git tracks, or would (untracked, not ignored), that exist,
    less what `.dockerignore` leaves out, so an edit elsewhere does not rebuild the image."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    names = {name.decode() for name in listed if name}
    ignore = root / ".dockerignore"
    rules = dockerignore_rules(ignore.read_text()) if ignore.is_file() else []
    kept = {name for name in names if not dockerignored(name, rules)} | set(ALWAYS_IN_CONTEXT)
    return sorted(name for name in kept if (root / name).is_file())


def dockerignore_rules(text: str) -> list[tuple[bool, str]]:
    """(excludes, pattern) per line of a .dockerignore, comments and blanks dropped."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        rules.append((not include, line.removeprefix("!").strip("/")))
    return rules


def dockerignored(path: str, rules: Sequence[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path, or a directory above it, decides.

    Patterns match with `fnmatch` per path prefix; a leading `**/` matches at any depth
    (the subset of Docker's syntax our .dockerignore uses).
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for excludes, pattern in rules:
        if pattern.startswith("**/"):
            tail = pattern.removeprefix("**/")
            hit = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            hit = any(
                fnmatch.fnmatchcase(prefix, pattern) and prefix.count("/") == pattern.count("/")
                for prefix in prefixes
            )
        if hit:
            excluded = excludes
    return excluded


def _digest_files(base: Path, names: Sequence[str]) -> list[tuple[str, str]]:
    return [(name, hashlib.sha256((base / name).read_bytes()).hexdigest()) for name in names]


def _buildah_version() -> str:
    if shutil.which(BUILDAH) is None:
        raise ProjectImageError(
            "buildah is missing: apt-get install buildah (scripts/install-system-deps.sh)"
        )
    return subprocess.run(
        [BUILDAH, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def image_key(
    *, files: Sequence[tuple[str, str]], wheels: Path, base: BuiltImage, target: str, version: str
) -> str:
    inputs = {
        "format": FORMAT,
        "files": list(files),
        "wheels": _digest_files(wheels, sorted(p.name for p in wheels.iterdir())),
        "base": base.digest,
        "target": target,
        "buildah": version,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(argv: Sequence[str], log_file: Path, *, timeout_s: float = BUILD_TIMEOUT_S) -> None:
    with open(log_file, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        code = subprocess.run(
            list(argv), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        ).returncode
    if code != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-40:]
        raise ProjectImageError(f"{argv[0]} {argv[1]} failed ({code}):\n" + "\n".join(tail))


def _buildah_build(
    *, context: Path, storage: Path, base: BuiltImage, wheels: Path, target: str, out: Path
) -> None:
    """One build in storage of its own; the image ends as an OCI layout in `out`."""
    store = [
        f"--root={storage / 'root'}",
        f"--runroot={storage / 'run'}",
        "--storage-driver=overlay",
    ]
    log_file = storage / "build.log"
    _run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{base.layout_dir}",
            f"containers-storage:[overlay@{storage / 'root'}+{storage / 'run'}]{BASE_TAG}",
        ],
        log_file,
    )
    _run(
        [
            BUILDAH,
            *store,
            "build",
            "--pull=false",
            "--isolation=chroot",
            "--timestamp=0",
            f"--volume={wheels}:/wheels:ro",
            f"--volume={wheels / 'pip.conf'}:/etc/pip.conf:ro",
            f"--build-arg=PYTHON_IMAGE={BASE_TAG}",
            f"--target={target}",
            f"--tag={OUTPUT_TAG}",
            str(context),
        ],
        log_file,
    )
    _run([BUILDAH, *store, "push", "--quiet", OUTPUT_TAG, f"oci:{out}"], log_file)


def _storage_cleanup(storage: Path) -> None:
    """buildah's store, gone: its images first (unmounts any layer), then the directory."""
    if (storage / "root").exists():
        subprocess.run(
            [
                BUILDAH,
                f"--root={storage / 'root'}",
                f"--runroot={storage / 'run'}",
                "--storage-driver=overlay",
                "rmi",
                "--all",
                "--force",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    shutil.rmtree(storage, ignore_errors=True)


def build(
    target: str = "runtime",
    *,
    repo_root: Path = REPO_ROOT,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> ProjectImage:
    """The image of the working tree's Dockerfile at `target`, cached by its inputs."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: one of {', '.join(TARGETS)}")
    report = log or (lambda line: print(line, file=sys.stderr))
    version = _buildah_version()
    base = build_debian_image(PYTHON_BASE, log=report)
    wheels = wheelhouse(repo_root / "pyproject.toml", repo_root / "constraints.txt")
    names = context_files(repo_root)
    files = _digest_files(repo_root, names)
    root = root or cache_root() / "project"
    key = image_key(files=files, wheels=wheels, base=base, target=target, version=version)
    final = root / f"{target}-{key}"
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "image.json").is_file():
            return _load(final, target, cached=True)
        temporary = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        storage = Path(tempfile.mkdtemp(prefix="buildah-", dir=root))
        began = time.monotonic()
        report(f"project-image: building target {target} with buildah (log: {storage}/build.log)")
        try:
            context = storage / "context"
            for name in names:
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo_root / name, context / name)
            _buildah_build(
                context=context,
                storage=storage,
                base=base,
                wheels=wheels,
                target=target,
                out=temporary,
            )
            index = json.loads((temporary / "index.json").read_text())
            digest = index["manifests"][0]["digest"]
            seconds = round(time.monotonic() - began, 1)
            (temporary / "image.json").write_text(
                json.dumps(
                    {
                        "digest": digest,
                        "target": target,
                        "build_seconds": seconds,
                        "base": base.digest,
                    },
                    sort_keys=True,
                    indent=1,
                )
            )
            os.rename(temporary, final)
            report(f"project-image: {target} {digest} built in {seconds}s")
        finally:
            _storage_cleanup(storage)
            shutil.rmtree(temporary, ignore_errors=True)
    return _load(final, target, cached=False)


def _load(directory: Path, target: str, *, cached: bool) -> ProjectImage:
    record = json.loads((directory / "image.json").read_text())
    return ProjectImage(
        image=OciImage(layout_dir=directory, manifest_digest=record["digest"]),
        target=target,
        cached=cached,
        build_seconds=record["build_seconds"],
    )


def repository_of(reference: str) -> str:
    """`host:port/repo:tag` -> `host:port/repo` (a port is not a tag)."""
    head, _, last = reference.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else reference.split(":", 1)[0]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m localdev.project_image [--target T] [--push HOST/REPO:TAG]`.

    Prints one JSON line (digest, layout, cached, seconds). With `--push` the
    image goes to that registry over plain HTTP (skopeo, digests preserved)
    and `--print-ref` prints `HOST/REPO@DIGEST` instead, for Tilt.
    """
    parser = argparse.ArgumentParser(prog="python -m localdev.project_image")
    parser.add_argument("--target", choices=TARGETS, default="runtime")
    parser.add_argument("--push", metavar="HOST/REPO:TAG", help="then push it there")
    parser.add_argument("--print-ref", action="store_true", help="print only the pushed reference")
    args = parser.parse_args(argv)
    began = time.monotonic()
    built = build(args.target)
    if args.push:
        skopeo_push(built.image, args.push)
    if args.print_ref and args.push:
        print(f"{repository_of(args.push)}@{built.digest}")
        return 0
    print(
        json.dumps(
            {
                "target": built.target,
                "digest": built.digest,
                "layout": str(built.layout_dir),
                "cached": built.cached,
                "seconds": round(time.monotonic() - began, 2),
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
