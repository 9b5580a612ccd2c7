"""GitHub's `package` and `registry_package` webhooks (GHCR and docker.pkg.github.com)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from tests.unit.parsers.helpers import (
    DIGEST,
    DOCKER_V2,
    GITHUB_HEADERS,
    document,
    only,
    parse,
    payload,
    reason,
    record,
    utc,
)
from webhook.events import Ignored

GHCR_DIGEST = "sha256:7d3848ba2f2e7f69bebb4b576e5fad0379b64a0b1512aee6ad0ec9e7c6319fed"


def test_github_ghcr_package_is_a_record() -> None:
    parsed = parse(
        "github", payload("ghcr-package-create-captured-keel-2020.json"), headers=GITHUB_HEADERS
    )
    assert parsed.records == [
        record(
            "ghcr.io",
            "utaitebox/utaitebox-server",
            "3.2.1",
            GHCR_DIGEST,
            media_type=DOCKER_V2,
            event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
    ]


def test_github_form_encoded_delivery_is_read_like_json() -> None:
    body = urlencode({"payload": payload("ghcr-package-create-captured-keel-2020.json").decode()})
    headers = GITHUB_HEADERS | {"Content-Type": "application/x-www-form-urlencoded"}
    (pushed,) = parse("github", body.encode(), headers=headers).records
    assert (pushed.repository, pushed.tag) == ("utaitebox/utaitebox-server", "3.2.1")


def test_github_legacy_docker_pkg_package_is_a_record() -> None:
    headers = GITHUB_HEADERS | {"X-GitHub-Event": "registry_package"}
    parsed = parse(
        "github",
        payload("github-registry-package-published-docker-pkg-captured-keel-2019.json"),
        headers=headers,
    )
    assert parsed.records == [
        record(
            "docker.pkg.github.com",
            "dingggu/utaitebox/server",
            "1.2.3",
            "",
            pushed_at=utc(2019, 11, 1, 5, 30, 31),
            event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
    ]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("github-package-published-docker-octokit-example.json", "package"),
        ("github-registry-package-published-docker-octokit-example.json", "registry_package"),
    ],
)
def test_github_npm_package_is_not_an_image(name: str, event: str) -> None:
    headers = GITHUB_HEADERS | {"X-GitHub-Event": event}
    assert only(parse("github", payload(name), headers=headers)) == Ignored(
        "not_an_image", event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958", detail="npm"
    )


def octokit_container(tag: str) -> dict[str, Any]:
    """octokit's example made a container package (it says npm), with a full-length digest."""
    event = document("github-package-published-docker-octokit-example.json")
    package = event["package"]
    package["package_type"] = "CONTAINER"
    package["package_version"]["container_metadata"]["tag"] = {"name": tag, "digest": DIGEST}
    return dict(event)


def test_github_container_package_takes_its_repository_from_the_package_url() -> None:
    (pushed,) = parse("github", octokit_container("v1"), headers=GITHUB_HEADERS).records
    # package_url "ghcr.io/Codertocat/hello-world:" (sic), lower-cased like image paths.
    assert (pushed.registry, pushed.repository, pushed.tag, pushed.digest) == (
        "ghcr.io",
        "codertocat/hello-world",
        "v1",
        DIGEST,
    )


def test_github_untagged_container_version_is_an_untagged_manifest() -> None:
    assert only(parse("github", octokit_container(""), headers=GITHUB_HEADERS)) == Ignored(
        "untagged_manifest",
        event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        detail=f"codertocat/hello-world@{DIGEST}",
    )


def test_github_helm_chart_ping_and_other_events_are_ignored() -> None:
    chart = octokit_container("1.0.0")
    manifest = chart["package"]["package_version"]["container_metadata"]["manifest"]
    manifest["config"]["media_type"] = "application/vnd.cncf.helm.config.v1+json"
    assert reason(parse("github", chart, headers=GITHUB_HEADERS)) == "not_an_image"
    ping = GITHUB_HEADERS | {"X-GitHub-Event": "ping"}
    assert (
        reason(parse("github", {"zen": "Design for failure."}, headers=ping)) == "test_notification"
    )
    push = GITHUB_HEADERS | {"X-GitHub-Event": "push"}
    assert reason(parse("github", {"ref": "refs/heads/main"}, headers=push)) == "not_a_push"
