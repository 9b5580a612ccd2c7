"""Generated OCI images: same content, same digest; different content, different digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from localdev.images import make_oci_image


def test_digest_is_a_function_of_content(tmp_path: Path) -> None:
    first = make_oci_image(tmp_path / "a", "one")
    again = make_oci_image(tmp_path / "b", "one")
    other = make_oci_image(tmp_path / "c", "two")
    assert first.manifest_digest == again.manifest_digest != other.manifest_digest


def test_layout_is_self_consistent(tmp_path: Path) -> None:
    image = make_oci_image(tmp_path / "img", "content")
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.manifest_digest
    blob = tmp_path / "img" / "blobs" / "sha256" / image.manifest_digest.removeprefix("sha256:")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == image.manifest_digest
