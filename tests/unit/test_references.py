"""Image references: every spelling of one image normalises to one string; bad ones are refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagestream.references import (
    ImageReference,
    api_host,
    is_valid_digest,
    is_valid_registry_host,
    is_valid_tag,
    normalize_reference,
    parse_image_reference,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageReference("docker.io", "library/nginx", "latest", "")),
        ("nginx:1.27", ImageReference("docker.io", "library/nginx", "1.27", "")),
        ("docker.io/nginx", ImageReference("docker.io", "library/nginx", "latest", "")),
        ("index.docker.io/library/nginx", ImageReference("docker.io", "library/nginx", "latest")),
        ("bitnami/redis:7", ImageReference("docker.io", "bitnami/redis", "7", "")),
        ("localhost/app", ImageReference("localhost", "app", "latest", "")),
        ("localhost:5000/a/b:t", ImageReference("localhost:5000", "a/b", "t", "")),
        ("127.0.0.1:5000/demo/app:v1", ImageReference("127.0.0.1:5000", "demo/app", "v1", "")),
        ("[::1]:5000/demo/app:v1", ImageReference("[::1]:5000", "demo/app", "v1", "")),
        ("host/a@" + DIGEST, ImageReference("docker.io", "host/a", "", DIGEST)),
        ("host.local/a@" + DIGEST, ImageReference("host.local", "a", "", DIGEST)),
        ("quay.io/a/b@" + DIGEST, ImageReference("quay.io", "a/b", "", DIGEST)),
        ("quay.io/a/b:t@" + DIGEST, ImageReference("quay.io", "a/b", "t", DIGEST)),
        ("Quay.IO/a/b:T", ImageReference("quay.io", "a/b", "T", "")),
        (
            "ghcr.io/o/r/deep/path:v1.2.3-rc_1",
            ImageReference("ghcr.io", "o/r/deep/path", "v1.2.3-rc_1"),
        ),
        ("gcr.io/p/a__b.c-d", ImageReference("gcr.io", "p/a__b.c-d", "latest", "")),
        (
            "r.io:65535/a@sha512:" + "f" * 128,
            ImageReference("r.io:65535", "a", "", "sha512:" + "f" * 128),
        ),
        ("r.io:1/a:" + "_" * 128, ImageReference("r.io:1", "a", "_" * 128, "")),
    ],
)
def test_parses_and_normalises(text: str, expected: ImageReference) -> None:
    assert parse_image_reference(text) == expected


def test_one_segment_host_without_dot_is_a_docker_hub_namespace() -> None:
    # `host/a` looks like a path on Docker Hub, as the Docker CLI reads it.
    assert parse_image_reference("host/a@" + DIGEST).registry == "docker.io"
    assert parse_image_reference("myhost.example/a@" + DIGEST).registry == "myhost.example"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("docker.io/library/nginx:latest", "docker.io/library/nginx:latest"),
        ("registry-1.docker.io/library/nginx", "docker.io/library/nginx:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("quay.io/a/b@" + DIGEST, "quay.io/a/b@" + DIGEST),
    ],
)
def test_normalize_reference(text: str, canonical: str) -> None:
    assert normalize_reference(text) == canonical
    assert normalize_reference(canonical) == canonical  # a fixed point


@pytest.mark.parametrize(
    "text",
    [
        "",
        " nginx",
        "nginx ",
        "Nginx",  # upper case in the repository
        "quay.io/A/b",
        "quay.io/a//b",
        "quay.io/a/b/",
        "/a/b",
        "quay.io/a/-b",
        "quay.io/a/b:",
        "quay.io/a/b:-tag",
        "quay.io/a/b:" + "t" * 129,
        "quay.io/a/b@sha256:abc",
        "quay.io/a/b@sha256:" + "g" * 64,
        "quay.io/a/b@sha256:" + "a" * 63,
        "quay.io/a/b@",
        "-host.io/a/b",
        "host.io:port/a",
        "quay.io/a/b:t:u",
        "a/" * 130 + "b",
        # ASCII only: Python's Unicode word class takes these, Go's (distribution's) does not.
        "quay.io/a/b:vé1",
        "quay.io/a/b:٣",
        "quay.io/a/b:\u212a",  # KELVIN SIGN, which lower-cases to "k"
        "quay.io/a/bé",
        "é.example/a/b",
        # Registered algorithms only, lower-case hex of their length.
        "quay.io/a/b@sha256:" + "A" * 64,
        "quay.io/a/b@sha256:" + "٣" * 64,
        "quay.io/a/b@sha384:" + "a" * 96,
        "quay.io/a/b@sha512:" + "a" * 64,
        "quay.io/a/b@blake3:" + "a" * 64,
        "quay.io/a/b@sha256+b64:" + "a" * 64,
        "quay.io/a/b@md5:" + "a" * 32,
        # Ports in range, one spelling each.
        "quay.io:0/a/b",
        "quay.io:65536/a/b",
        "quay.io:05000/a/b",
        "quay.io:٣٣/a/b",
        "[::1::2]:5000/a/b",
    ],
)
def test_rejects_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid image reference"):
        parse_image_reference(text)


def test_docker_hub_api_host() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("index.docker.io") == "registry-1.docker.io"
    assert api_host("quay.io") == "quay.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"


# distribution's grammar (reference/regexp.go) and go-digest's, transcribed: ASCII, as RE2 is.
GO_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
GO_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", re.ASCII)


@settings(max_examples=400)
@given(st.text(max_size=130))
def test_a_valid_tag_is_one_distribution_takes(text: str) -> None:
    assert is_valid_tag(text) == (GO_TAG.fullmatch(text) is not None)


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(max_size=140),
        st.sampled_from(["sha256", "sha512", "sha384", "SHA256"]).flatmap(
            lambda algorithm: st.text(alphabet="0123456789abcdefABCDEF\u0663", max_size=130).map(
                lambda encoded: f"{algorithm}:{encoded}"
            )
        ),
    )
)
def test_a_valid_digest_is_one_a_registry_takes(text: str) -> None:
    assert is_valid_digest(text) == (GO_DIGEST.fullmatch(text) is not None)


@given(st.text(max_size=40), st.integers(min_value=-1, max_value=100000))
def test_a_valid_host_is_ascii_with_a_port_in_range(domain: str, port: int) -> None:
    host = f"{domain}:{port}"
    if is_valid_registry_host(host):
        assert host.isascii()
        assert 1 <= port <= 65535
