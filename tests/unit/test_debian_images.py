"""localdev.debian_images without mmdebstrap: the layer it writes from a tar, and its cache keys."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from pathlib import Path

import pytest

from localdev import debian_images
from localdev.debian_images import BUILDER, PYTHON_BASE, File, User

STATUS = b"""Package: base-files
Status: install ok installed
Version: 12.4+deb12u5

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: python3
Status: install ok installed
Version: 3.11.2-1+b1
"""


def _mmdebstrap_like_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, data: bytes = b"", **fields: object) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.uname, info.gname = kind, 1234, "root", "root"
            for key, value in fields.items():
                setattr(info, key, value)
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("./", tarfile.DIRTYPE)
        add("./dev/", tarfile.DIRTYPE)
        add("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("./usr/bin/tool", tarfile.REGTYPE, b"#!/bin/sh\n", mode=0o755)
        add("./usr/bin/alias", tarfile.LNKTYPE, linkname="./usr/bin/tool")
        add(
            "./usr/bin/capped",
            tarfile.REGTYPE,
            b"x",
            pax_headers={
                "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                "SCHILY.xattr.user.noise": "y",
            },
        )
        add("./var/lib/dpkg/status", tarfile.REGTYPE, STATUS)
    return out.getvalue()


def _layer(tmp_path: Path, name: str) -> tuple[debian_images._Layer, list[tarfile.TarInfo]]:
    blob = tmp_path / name
    layer = debian_images._write_layer(io.BytesIO(_mmdebstrap_like_tar()), blob, compress=True)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
        return layer, tar.getmembers()


def test_the_layer_is_normalised_and_the_same_every_time(tmp_path: Path) -> None:
    layer, members = _layer(tmp_path, "one")
    again, _ = _layer(tmp_path, "two")
    assert (layer.digest, layer.diff_id) == (again.digest, again.diff_id)
    names = [member.name for member in members]
    assert names == [
        ".",  # the root's own mode, as mmdebstrap made it
        "dev",
        "usr/bin/tool",
        "usr/bin/alias",
        "usr/bin/capped",
        "var/lib/dpkg/status",
    ]
    assert {member.mtime for member in members} == {0}
    assert {(member.uname, member.gname) for member in members} == {("", "")}
    by_name = {member.name: member for member in members}
    assert by_name["usr/bin/alias"].linkname == "usr/bin/tool"
    assert set(by_name["usr/bin/capped"].pax_headers) == {"SCHILY.xattr.security.capability"}
    assert layer.packages == ["base-files 12.4+deb12u5", "python3 3.11.2-1+b1"]


def test_a_change_of_config_alone_keeps_the_rootfs_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian_images, "_mmdebstrap_version", lambda: "test")
    other_cmd = dataclasses.replace(PYTHON_BASE, cmd=("python3", "-V"))
    other_packages = dataclasses.replace(PYTHON_BASE, packages=(*PYTHON_BASE.packages, "tzdata"))
    assert debian_images.rootfs_key(other_cmd) == debian_images.rootfs_key(PYTHON_BASE)
    assert debian_images.image_key(other_cmd) != debian_images.image_key(PYTHON_BASE)
    assert debian_images.rootfs_key(other_packages) != debian_images.rootfs_key(PYTHON_BASE)


def test_hooks_quote_what_they_write() -> None:
    hook = File("/etc/x y.conf", "it's $HOME\n", 0o600).hook()
    assert "'it'\"'\"'s $HOME\n'" in hook
    assert "chmod 600" in hook
    user = User("build", 1000, subids=(100000, 65536)).hook()
    assert "build:100000:65536" in user and '"$1/etc/subgid"' in user


def test_the_builder_asks_for_what_rootless_buildah_needs() -> None:
    args = BUILDER.mmdebstrap_args()
    include = next(arg for arg in args if arg.startswith("--include="))
    assert {"buildah", "uidmap", "libcap2-bin"} <= set(
        include.removeprefix("--include=").split(",")
    )
    assert "fuse-overlayfs" not in include
    assert any("setcap cap_setuid=ep /usr/bin/newuidmap" in arg for arg in args)
    assert BUILDER.config()["Env"] == [debian_images.DEFAULT_PATH, "BUILDAH_ISOLATION=chroot"]
