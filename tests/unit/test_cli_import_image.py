"""`imagestream import-image`'s decisions: oc's refusals, the spec it leaves, when it is done.

Expected values from openshift/oc pkg/cli/importimage/importimage.go and the
ImageStreamImport storage of openshift/openshift-apiserver (ensureSpecTag, importSuccessful).
"""

from __future__ import annotations

from typing import Any

import pytest

from imagestream.cli.common import CommandError
from imagestream.cli.importimage import ImportFlags, import_result, parse_target, plan_import

Obj = dict[str, Any]


def stream(*tags: Obj, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "app", "namespace": "me", "annotations": annotations or {}},
        "spec": {"tags": list(tags), **spec},
    }


def docker(name: str, source: str, **extra: Any) -> Obj:
    return {"name": name, "from": {"kind": "DockerImage", "name": source}, **extra}


def test_targets() -> None:
    assert parse_target("app", all_tags=False) == ("app", "latest")
    assert parse_target("app:v1", all_tags=False) == ("app", "v1")
    assert parse_target("app", all_tags=True) == ("app", None)
    assert parse_target("quay.io/team/app:v1", all_tags=False) == ("app", "v1")
    for text, all_tags, words in (
        ("app:v1", True, "as well as --all"),
        ("app@sha256:" + "a" * 64, False, "use the 'tag' command"),
        ("Not Valid", False, "valid container image pull spec"),
    ):
        with pytest.raises(CommandError, match=words):
            parse_target(text, all_tags=all_tags)


def test_a_new_stream_needs_confirm() -> None:
    with pytest.raises(CommandError, match="pass --confirm to create and import"):
        plan_import(None, "app", "v1", ImportFlags(from_image="quay.io/a:1"), "app:v1")
    plan = plan_import(
        None, "app", "v1", ImportFlags(from_image="quay.io/a:1", confirm=True), "app:v1"
    )
    assert plan.create and plan.imported == ["v1"]
    assert plan.tags == [
        {
            "name": "v1",
            "from": {"kind": "DockerImage", "name": "quay.io/a:1"},
            "generation": 0,
            "importPolicy": {"importMode": "Legacy"},
            "referencePolicy": {"type": "Source"},
        }
    ]
    # Without --from the target itself is the image.
    plan = plan_import(None, "a", "1", ImportFlags(confirm=True), "quay.io/x/a:1")
    assert plan.tags[0]["from"]["name"] == "quay.io/x/a:1"
    with pytest.raises(CommandError, match="importing every tag of a repository"):
        plan_import(None, "a", None, ImportFlags(confirm=True, all=True), "quay.io/x/a")


def test_an_existing_tag_is_imported_again_with_its_policy_merged() -> None:
    old = docker(
        "v1",
        "quay.io/a:1",
        generation=4,
        importPolicy={"scheduled": True, "importMode": "PreserveOriginal"},
        referencePolicy={"type": "Local"},
        annotations={"openshift.io/image.dockerRepositoryCheck": "x", "keep": "y"},
    )
    current = stream(old, annotations={"openshift.io/image.insecureRepository": "true"})
    plan = plan_import(current, "app", "v1", ImportFlags(), "app:v1")
    assert plan.imported == ["v1"]
    assert plan.tags == [
        {
            "name": "v1",
            "from": {"kind": "DockerImage", "name": "quay.io/a:1"},
            "generation": 0,
            # oc: the stream's insecure annotation or the tag's, --scheduled or the tag's,
            # and the import mode of the command (Legacy unless given).
            "importPolicy": {"importMode": "Legacy", "insecure": True, "scheduled": True},
            "referencePolicy": {"type": "Local"},
            "annotations": {"keep": "y"},
        }
    ]
    # --insecure=false is not a flag oc has; the stream annotation stays the default.
    same = plan_import(current, "app", "v1", ImportFlags(from_image="quay.io/a:1"), "app:v1")
    assert same.tags == plan.tags


def test_refusals_for_existing_tags() -> None:
    cases = [
        (stream(docker("v1", "quay.io/a:1")), "v1", "quay.io/b:2", 'points to "quay.io/a:1"'),
        (
            stream({"name": "v1", "from": {"kind": "ImageStreamImage", "name": "x@sha256:1"}}),
            "v1",
            "",
            "cannot be re-imported",
        ),
        (stream({"name": "v1"}), "v1", "", "already exists"),
        (stream(), "v2", "", "does not exist on the image stream"),
        (
            stream({"name": "a", "from": {"kind": "ImageStreamTag", "name": "a"}}),
            "a",
            "",
            "reference to same tag",
        ),
    ]
    for current, tag, from_image, words in cases:
        with pytest.raises(CommandError, match=words):
            plan_import(current, "app", tag, ImportFlags(from_image=from_image), f"app:{tag}")


def test_references_are_followed_to_the_tag_that_imports() -> None:
    current = stream(
        {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "app:v1"}},
        docker("v1", "quay.io/a:1"),
    )
    plan = plan_import(current, "app", "latest", ImportFlags(), "app")
    assert plan.imported == ["v1"]
    assert plan.tags[1]["generation"] == 0 and plan.tags[0] == current["spec"]["tags"][0]
    with pytest.raises(CommandError, match='points to the tag "v1" which points to'):
        plan_import(current, "app", "latest", ImportFlags(from_image="quay.io/b:2"), "app")


def test_new_tags_and_all() -> None:
    current = stream(
        docker("v1", "quay.io/a:1"), {"name": "x", "from": {"kind": "ImageStreamTag", "name": "v1"}}
    )
    plan = plan_import(current, "app", "v2", ImportFlags(from_image="quay.io/a:2"), "app:v2")
    assert plan.imported == ["v2"] and plan.tags[-1]["from"]["name"] == "quay.io/a:2"
    plan = plan_import(current, "app", None, ImportFlags(all=True), "app")
    assert plan.imported == ["v1"] and plan.tags[0]["generation"] == 0
    with pytest.raises(CommandError, match="importing every tag of a repository"):
        plan_import(
            stream(dockerImageRepository="quay.io/a"), "app", None, ImportFlags(all=True), "app"
        )
    with pytest.raises(CommandError, match="does not have tags pointing to external"):
        plan_import(stream(), "app", None, ImportFlags(all=True), "app")
    # latest without --from takes the stream's dockerImageRepository, as oc does.
    plan = plan_import(
        stream(dockerImageRepository="quay.io/a"), "app", "latest", ImportFlags(), "app"
    )
    assert plan.tags[0]["from"]["name"] == "quay.io/a"


def result_stream(
    *, observed: int, tag_generation: int, head: int | None, failed: int | None
) -> Obj:
    entry: Obj = {"tag": "v1", "items": [], "conditions": []}
    if head is not None:
        entry["items"] = [
            {"image": "sha256:1", "dockerImageReference": "r@sha256:1", "generation": head}
        ]
    if failed is not None:
        entry["conditions"] = [
            {
                "type": "ImportSuccess",
                "status": "False",
                "message": "not found",
                "generation": failed,
            }
        ]
    return {
        "status": {
            "observedGeneration": observed,
            "observedTags": [{"name": "v1", "generation": tag_generation}],
            "tags": [entry],
        }
    }


def test_the_import_has_landed_only_when_status_says_so_for_this_generation() -> None:
    assert (
        import_result(result_stream(observed=4, tag_generation=4, head=3, failed=None), "v1", 5)
        is None
    )
    assert (
        import_result(result_stream(observed=5, tag_generation=4, head=4, failed=None), "v1", 5)
        is None
    )
    assert (
        import_result(result_stream(observed=5, tag_generation=5, head=4, failed=None), "v1", 5)
        is None
    )
    assert (
        import_result(result_stream(observed=5, tag_generation=5, head=5, failed=None), "v1", 5)
        == ""
    )
    assert (
        import_result(result_stream(observed=6, tag_generation=5, head=3, failed=5), "v1", 5)
        == "not found"
    )
