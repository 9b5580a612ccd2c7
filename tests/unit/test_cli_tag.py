"""`imagestream tag`'s decisions: oc's reading of SOURCE and DEST, and the spec tag it makes.

The expected values come from reading openshift/oc pkg/cli/tag/tag.go and the library-go
reference parser it uses.
"""

from __future__ import annotations

from typing import Any

import pytest

from imagestream.cli.common import CommandError, ServerSaid
from imagestream.cli.pullspec import PullSpec, parse, split_stream_tag
from imagestream.cli.specwrite import same_tag, spec_tag_writes
from imagestream.cli.tag import (
    Destination,
    Flags,
    delete_writes,
    message,
    parse_destination,
    parse_source,
    resolve_source,
    spec_tag,
    validate,
    validate_tag_name,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", PullSpec(name="nginx")),
        ("openshift/ruby:2.0", PullSpec(namespace="openshift", name="ruby", tag="2.0")),
        ("quay.io/team/app:1", PullSpec(registry="quay.io", namespace="team", name="app", tag="1")),
        ("localhost:5000/app", PullSpec(registry="localhost:5000", name="app")),
        ("reg.io/a/b/c:1", PullSpec(registry="reg.io", namespace="a", name="b/c", tag="1")),
        (f"app@{DIGEST}", PullSpec(name="app", id=DIGEST)),
        ("quay.io", PullSpec(registry="quay.io")),
        ("localhost:5000", PullSpec(registry="localhost:5000")),
    ],
)
def test_pull_specs_split_as_openshift_does(text: str, expected: PullSpec) -> None:
    assert parse(text) == expected


def test_exact_writes_back_what_was_given() -> None:
    assert parse("nginx").exact() == "nginx"
    assert parse("127.0.0.1:5000/ns/app:v1").exact() == "127.0.0.1:5000/ns/app:v1"
    assert parse(f"quay.io/a/b:1@{DIGEST}").exact() == f"quay.io/a/b@{DIGEST}"  # the id wins
    for bad in ("", "app/UPPER", "a:b:c", "app@sha256:short"):
        with pytest.raises(ValueError):
            parse(bad)
    assert split_stream_tag("app:") == ("app", "latest", True)
    assert split_stream_tag("app") == ("app", "latest", False)


@pytest.mark.parametrize(
    ("text", "hint", "kind"),
    [
        ("app:v1", "", "ImageStreamTag"),
        (f"app@{DIGEST}", "", "ImageStreamImage"),
        ("quay.io/app:v1", "", "DockerImage"),
        ("app", "", "DockerImage"),  # no tag, no digest: a container image (Docker Hub)
        ("app:v1", "docker", "DockerImage"),
        ("app:v1", "istag", "ImageStreamTag"),
        (f"app@{DIGEST}", "ImageStreamImage", "ImageStreamImage"),
    ],
)
def test_the_source_kind(text: str, hint: str, kind: str) -> None:
    assert parse_source(text, hint=hint, namespace="me").kind == kind


def test_source_refusals_and_the_library_namespace() -> None:
    assert parse_source("library/app:v1", hint="istag", namespace="me").ref.namespace == "me"
    assert parse_source("library/app:v1", hint="", namespace="me").ref.namespace == "library"
    for text, hint, words in (
        ("quay.io/app:v1", "istag", "registry in SOURCE"),
        ("app", "istag", "<name>:<tag>"),
        ("app:v1", "isimage", "<name>@<id>"),
        ("app:v1", "bogus", 'invalid source "bogus"'),
        ("Bad Name", "", "invalid SOURCE"),
    ):
        with pytest.raises(CommandError, match=words):
            parse_source(text, hint=hint, namespace="me")


def stream_with(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": {"tags": [{"tag": "v1", "items": items}]}}


def test_a_tag_source_resolves_to_its_current_image() -> None:
    source = parse_source("other/app:v1", hint="", namespace="me")
    resolved = resolve_source(
        source, stream_with([{"dockerImageReference": f"r/x@{DIGEST}", "image": DIGEST}])
    )
    assert (resolved.kind, resolved.ref.exact()) == ("ImageStreamImage", f"other/app@{DIGEST}")
    reference = resolve_source(
        source, stream_with([{"dockerImageReference": "quay.io/x/y:1", "image": ""}])
    )
    assert (reference.kind, reference.ref.exact()) == ("DockerImage", "quay.io/x/y:1")
    with pytest.raises(CommandError, match="is not currently pointing to an image"):
        resolve_source(source, stream_with([]))


def test_destinations() -> None:
    assert parse_destination("app:v1", namespace="me") == Destination("me", "app:v1")
    assert parse_destination("ns/app:v1", namespace="me") == Destination("ns", "app:v1")
    for bad in ("a/b/c:1", "/app:1", "ns/"):
        with pytest.raises(CommandError):
            parse_destination(bad, namespace="me")
    with pytest.raises(CommandError, match="invalid tag"):
        validate_tag_name("-bad")


def test_flag_combinations_oc_refuses() -> None:
    docker = parse_source("quay.io/app:1", hint="", namespace="me")
    istag = parse_source("app:v1", hint="", namespace="me")
    here = [Destination("me", "app:latest")]
    cases = [
        (Flags(delete=True, alias=True), None, "--alias and --delete"),
        (Flags(reference_policy="pullthrough"), docker, "reference policy"),
        (Flags(delete=True, scheduled=True), None, "importing images when deleting"),
        (Flags(delete=True, source_hint="docker"), None, "source kind when deleting"),
        (Flags(scheduled=True), istag, "only container images can have importing flags"),
        (Flags(import_mode="Other"), docker, "ImportMode"),
    ]
    for flags, source, words in cases:
        with pytest.raises(CommandError, match=words):
            validate(flags, source, here, "me")
    with pytest.raises(CommandError, match="at least a destination"):
        validate(Flags(), docker, [], "me")
    with pytest.raises(CommandError, match="across different Image Streams"):
        validate(Flags(alias=True), istag, [Destination("me", "other:latest")], "me")
    with pytest.raises(CommandError, match="across different Image Streams"):
        validate(Flags(alias=True), istag, [Destination("elsewhere", "app:latest")], "me")
    assert validate(Flags(), docker, here, "me").import_mode == "Legacy"


def test_the_spec_tags_oc_writes() -> None:
    flags = Flags(import_mode="Legacy")
    image = parse_source(f"app@{DIGEST}", hint="", namespace="me")
    assert spec_tag(image, Destination("me", "app:prod"), "prod", flags, "me") == {
        "name": "prod",
        "annotations": None,
        "from": {"kind": "ImageStreamImage", "name": f"app@{DIGEST}"},
        "importPolicy": {"importMode": "Legacy"},
        "referencePolicy": {"type": "Source"},
    }
    # Another destination namespace: the source namespace is spelled out.
    elsewhere = spec_tag(image, Destination("ns2", "app:prod"), "prod", flags, "me")
    assert elsewhere["from"] == {
        "kind": "ImageStreamImage",
        "name": f"app@{DIGEST}",
        "namespace": "me",
    }
    docker = parse_source("quay.io/app:1", hint="", namespace="me")
    written = spec_tag(
        docker,
        Destination("me", "app:ext"),
        "ext",
        Flags(
            import_mode="Legacy",
            scheduled=True,
            insecure=True,
            reference=True,
            reference_policy="local",
        ),
        "me",
    )
    assert written == {
        "name": "ext",
        "annotations": None,
        "from": {"kind": "DockerImage", "name": "quay.io/app:1"},
        "reference": True,
        "generation": 0,
        "importPolicy": {"importMode": "Legacy", "insecure": True, "scheduled": True},
        "referencePolicy": {"type": "Local"},
    }


def test_messages() -> None:
    image = parse_source(f"app@{DIGEST}", hint="", namespace="me")
    here, there = Destination("me", "app:prod"), Destination("ns", "app:prod")
    assert message(image, here, Flags(), "me") == f"Tag app:prod set to app@{DIGEST}."
    assert message(image, there, Flags(), "me") == f"Tag ns/app:prod set to app@{DIGEST}."
    alias = parse_source("app:v1", hint="", namespace="me")
    assert message(alias, here, Flags(alias=True), "me") == "Tag app:prod set up to track app:v1."
    docker = parse_source("quay.io/app:1", hint="", namespace="me")
    assert message(docker, here, Flags(scheduled=True), "me") == (
        "Tag app:prod set to import quay.io/app:1 periodically."
    )


def test_delete_needs_the_tag_in_spec_or_status() -> None:
    stream = {"spec": {"tags": [{"name": "a"}, {"name": "b"}]}, "status": {"tags": [{"tag": "b"}]}}
    assert delete_writes(stream, "a", "s:a") == ([{"name": "b"}], False)
    assert delete_writes(stream, "b", "s:b") == ([{"name": "a"}], True)
    with pytest.raises(ServerSaid, match=r"imagestreamtags.image.openshift.io \"s:c\" not found"):
        delete_writes(stream, "c", "s:c")


def test_writes_ask_for_an_import_again_even_when_the_spec_already_says_so() -> None:
    tag = {"name": "v1", "from": {"kind": "DockerImage", "name": "x"}, "generation": 0}
    assert [w.create for w in spec_tag_writes(None, [tag])] == [True]
    stream = {"spec": {"tags": [dict(tag, annotations=None)]}}
    writes = spec_tag_writes(stream, [tag])
    assert [w.tags[0]["generation"] for w in writes] == [None, 0]
    without_import = {"name": "v2", "from": {"kind": "ImageStreamTag", "name": "v1"}}
    assert spec_tag_writes({"spec": {"tags": [without_import]}}, [without_import]) == []
    changed = spec_tag_writes({"spec": {"tags": []}}, [tag])
    assert len(changed) == 1 and changed[0].tags == [tag]
    assert same_tag({"a": 1, "b": None}, {"a": 1})
