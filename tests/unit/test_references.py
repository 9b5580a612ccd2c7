"""Image references: every spelling of one image normalises to one string; bad ones are refused."""

from __future__ import annotations

import pytest

from imagestream.references import (
    ImageReference,
    api_host,
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
