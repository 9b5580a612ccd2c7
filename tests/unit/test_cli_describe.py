"""`imagestream describe is`: oc's words, order and tab padding (no cluster).

The expected text is derived line by line from openshift/oc pkg/helpers/describe
(DescribeImageStream, formatImageStreamTags, formatMeta), docker/go-units HumanDuration
and library-go PrioritizeTags; the padding is Go's text/tabwriter with oc's settings,
which tests/unit/test_cli_tabwriter.py pins against Go's own output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagestream.cli.common import CommandError
from imagestream.cli.describe import (
    describe_image_stream,
    human_duration,
    parse_targets,
    prioritize_tags,
)

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
A, B, C, D = ("sha256:" + c * 64 for c in "abcd")


def at(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def item(reference: str, image: str, ago: timedelta, generation: int = 1) -> dict[str, Any]:
    return {
        "created": at(ago),
        "dockerImageReference": reference,
        "image": image,
        "generation": generation,
    }


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5400, "2 hours"),  # hours round: 1.5 -> 2
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (14 * 86400, "2 weeks"),
        (60 * 86400, "2 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_durations(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


def test_tag_order() -> None:
    tags = ["pushed", "v1.2", "1.10", "1.9", "2.0.1", "2.0.0-rc1", "latest", "1.10-rc1", "alpha"]
    assert prioritize_tags(tags) == [
        "latest",
        "1.10",
        "1.10-rc1",
        "1.9",
        "v1.2",
        "2.0.1",
        "2.0.0-rc1",
        "alpha",
        "pushed",
    ]


def test_targets() -> None:
    assert parse_targets(["is/a", "imagestream/b"]) == (["a", "b"], False)
    assert parse_targets(["is", "a", "b"]) == (["a", "b"], False)
    assert parse_targets(["imagestreams"]) == ([], True)
    for bad in (["deploy/web"], ["pods", "x"], []):
        with pytest.raises(CommandError):
            parse_targets(bad)


def test_a_stream_with_every_kind_of_tag() -> None:
    stream = {
        "metadata": {
            "name": "ruby",
            "namespace": "openshift",
            "generation": 3,
            "creationTimestamp": at(timedelta(days=2)),
            "labels": {"team": "x", "app": "ruby"},
            "annotations": {"description": "Ruby images", "openshift.io/display-name": "Ruby"},
        },
        "spec": {
            "lookupPolicy": {"local": True},
            "tags": [
                {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "3.3"}},
                {
                    "name": "3.3",
                    "from": {"kind": "DockerImage", "name": "quay.io/ruby:3.3"},
                    "importPolicy": {"scheduled": True, "insecure": True},
                    "referencePolicy": {"type": "Local"},
                    "annotations": {
                        "description": "Ruby 3.3",
                        "tags": "builder,ruby",
                        "supports": "ruby:3.3,ruby",
                        "sampleRepo": "https://github.com/x/y",
                    },
                },
                {
                    "name": "2.7",
                    "reference": True,
                    "from": {"kind": "DockerImage", "name": "quay.io/ruby:2.7"},
                },
                {
                    "name": "pinned",
                    "from": {
                        "kind": "ImageStreamImage",
                        "name": f"ruby@{A}",
                        "namespace": "other",
                    },
                },
            ],
        },
        "status": {
            "dockerImageRepository": "reg:5000/openshift/ruby",
            "publicDockerImageRepository": "ruby.example.com/openshift/ruby",
            "observedGeneration": 3,
            "observedTags": [
                {"name": "latest", "generation": 1},
                {"name": "3.3", "generation": 3},
                {"name": "2.7", "generation": 1},
                {"name": "pinned", "generation": 3},
            ],
            "tags": [
                {
                    "tag": "3.3",
                    "items": [
                        item(f"quay.io/ruby@{B}", B, timedelta(minutes=5), 2),
                        item("quay.io/ruby:3.3", C, timedelta(hours=3)),
                    ],
                    "conditions": [
                        {
                            "type": "ImportSuccess",
                            "status": "False",
                            "reason": "NotFound",
                            "message": "manifest unknown",
                            "generation": 3,
                            "lastTransitionTime": at(timedelta(seconds=90)),
                        }
                    ],
                },
                {"tag": "2.7", "items": [item("quay.io/ruby:2.7", "", timedelta(days=1))]},
                {"tag": "latest", "items": [item(f"quay.io/ruby@{B}", B, timedelta(minutes=5))]},
                {
                    "tag": "pushed",
                    "items": [item(f"reg:5000/openshift/ruby@{D}", D, timedelta(seconds=30))],
                },
            ],
        },
    }
    assert describe_image_stream(stream, NOW) == (
        "Name:\t\t\truby\n"
        "Namespace:\t\topenshift\n"
        "Created:\t\t2 days ago\n"
        "Labels:\t\t\tapp=ruby\n"
        "\t\t\tteam=x\n"
        "Description:\t\tRuby images\n"
        "Annotations:\t\topenshift.io/display-name=Ruby\n"
        "Image Repository:\truby.example.com/openshift/ruby\n"
        "Image Lookup:\t\tlocal=true\n"
        "Unique Images:\t\t4\n"
        "Tags:\t\t\t5\n"
        "\n"
        "3.3 (latest)\n"
        "  updates automatically from registry quay.io/ruby:3.3\n"
        "    will use insecure HTTPS or HTTP connections\n"
        "    prefer registry pullthrough when referencing this tag\n"
        "\n"
        "  Ruby 3.3\n"
        "  Tags: builder, ruby\n"
        "  Supports: ruby:3.3, ruby\n"
        "  Example Repo: https://github.com/x/y\n"
        "\n"
        "  ! error: Import failed (NotFound): manifest unknown\n"
        "      About a minute ago\n"
        f"  * quay.io/ruby@{B}\n"
        "      5 minutes ago\n"
        "    quay.io/ruby:3.3\n"
        f"      3 hours ago\t{C}\n"
        "\n"
        "2.7\n"
        "  reference to registry quay.io/ruby:2.7\n"
        "\n"
        "  * quay.io/ruby:2.7\n"
        "      24 hours ago\n"
        "\n"
        "pinned\n"
        f"  tagged from other/ruby@{A}\n"
        "\n"
        "  ~ importing latest image ...\n"
        "\n"
        "pushed\n"
        "  no spec tag\n"
        "\n"
        f"  * reg:5000/openshift/ruby@{D}\n"
        "      30 seconds ago\n"
    )


def test_an_empty_stream() -> None:
    stream = {"metadata": {"name": "empty", "namespace": "ns"}, "spec": {}, "status": {}}
    assert describe_image_stream(stream, NOW) == (
        "Name:\t\t\tempty\n"
        "Namespace:\t\tns\n"
        "Labels:\t\t\t<none>\n"
        "Annotations:\t\t<none>\n"
        "Image Repository:\t<none>\n"
        "Image Lookup:\t\tlocal=false\n"
        "Tags:\t\t\t<none>\n"
    )
