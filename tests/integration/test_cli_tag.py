"""`imagestream tag` against the real control plane, controller and registry.

Each test runs the command as a person does (a subprocess with `$KUBECONFIG`) and checks
the spec tag it leaves against the one `oc tag` makes OpenShift store for the same
arguments (openshift/oc pkg/cli/tag/tag.go, and the ImageStreamTag REST storage of
openshift/openshift-apiserver), then what the controller makes of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagestream.imagestreams import head, spec_tag, status_tag
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import IMAGESTREAMS
from tests.integration.cli import Ran, assert_one_error_line, imagestream, kubeconfig_of
from tests.integration.conftest import System, eventually, new_namespace, push


async def tag_cmd(system: System, tmp_path: Path, *args: str) -> Ran:
    return await imagestream("tag", *args, kubeconfig=kubeconfig_of(system), home=tmp_path)


async def stream(system: System, namespace: str, name: str) -> dict[str, Any]:
    return await system.kube.get(IMAGESTREAMS, namespace, name)


async def head_image(system: System, namespace: str, name: str, tag: str) -> str | None:
    async def check() -> str | None:
        try:
            current = head(await stream(system, namespace, name), tag)
        except NotFound:  # a push creates its stream a moment later
            return None
        return current.image if current else None

    return await eventually(check, what=f"{namespace}/{name}:{tag} has an image")


async def test_a_tag_source_is_copied_by_digest_and_alias_keeps_following(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "tag")
    first = push(system, tmp_path, f"{namespace}/app:v1")
    await head_image(system, namespace, "app", "v1")

    ran = await tag_cmd(system, tmp_path, "-n", namespace, "app:v1", "app:prod")
    assert ran.ok, ran.stderr
    assert ran.stdout == f"Tag app:prod set to app@{first}.\n"
    found = spec_tag(await stream(system, namespace, "app"), "prod")
    assert found == {
        "name": "prod",
        "annotations": None,
        "from": {"kind": "ImageStreamImage", "name": f"app@{first}"},
        "importPolicy": {"importMode": "Legacy"},
        "referencePolicy": {"type": "Source"},
    }
    assert await head_image(system, namespace, "app", "prod") == first

    ran = await tag_cmd(system, tmp_path, "-n", namespace, "--alias", "app:v1", "app:latest")
    assert ran.stdout == "Tag app:latest set up to track app:v1.\n", ran.stderr
    assert spec_tag(await stream(system, namespace, "app"), "latest")["from"] == {
        "kind": "ImageStreamTag",
        "name": "app:v1",
    }
    second = push(system, tmp_path, f"{namespace}/app:v1")

    async def moved() -> bool:
        current = await stream(system, namespace, "app")
        images = {t: getattr(head(current, t), "image", None) for t in ("latest", "prod")}
        return images == {"latest": second, "prod": first}

    await eventually(moved, what="the alias follows the push; the copy stays")


async def test_destinations_in_another_namespace_name_the_source_namespace(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "tag")
    other = await new_namespace(system.kube, "tagto")
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await head_image(system, namespace, "app", "v1")

    ran = await tag_cmd(
        system, tmp_path, "-n", namespace, "app:v1", f"{other}/copy:v1", "copy:here"
    )
    assert ran.ok, ran.stderr
    assert ran.stdout == (
        f"Tag {other}/copy:v1 set to app@{digest}.\nTag copy:here set to app@{digest}.\n"
    )
    elsewhere = spec_tag(await stream(system, other, "copy"), "v1")
    assert elsewhere is not None
    assert elsewhere["from"] == {
        "kind": "ImageStreamImage",
        "name": f"app@{digest}",
        "namespace": namespace,
    }
    here = spec_tag(await stream(system, namespace, "copy"), "here")
    assert here is not None and "namespace" not in here["from"]
    # The streams did not exist: the command created them, and the controller copied.
    assert await head_image(system, other, "copy", "v1") == digest


async def test_a_container_image_source_asks_for_an_import(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "tag")
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    source = f"{system.registry.host}/{namespace}/app:v1"

    ran = await tag_cmd(
        system,
        tmp_path,
        "-n",
        namespace,
        "--source=docker",
        "--insecure",
        "--scheduled",
        source,
        "ext:v1",
    )
    assert ran.stdout == f"Tag ext:v1 set to import {source} periodically.\n", ran.stderr
    written = spec_tag(await stream(system, namespace, "ext"), "v1")
    assert written == {
        "name": "v1",
        "annotations": None,
        "from": {"kind": "DockerImage", "name": source},
        "generation": 0,
        "importPolicy": {"importMode": "Legacy", "insecure": True, "scheduled": True},
        "referencePolicy": {"type": "Source"},
    }
    assert await head_image(system, namespace, "ext", "v1") == digest

    # A pull spec with a registry is a container image without --source; --reference
    # records it as is, and --reference-policy=local asks for pulls through the registry.
    ran = await tag_cmd(
        system,
        tmp_path,
        "-n",
        namespace,
        "--reference",
        "--reference-policy=local",
        "quay.io/example/app:1.0",
        "ext:ref",
    )
    assert ran.stdout == "Tag ext:ref set to quay.io/example/app:1.0.\n", ran.stderr
    written = spec_tag(await stream(system, namespace, "ext"), "ref")
    assert written is not None
    assert written["reference"] is True
    assert written["referencePolicy"] == {"type": "Local"}

    async def recorded() -> str | None:
        current = head(await stream(system, namespace, "ext"), "ref")
        return current.docker_image_reference if current else None

    assert await eventually(recorded, what="the reference recorded") == "quay.io/example/app:1.0"


async def test_an_image_by_digest_and_a_tag_without_an_image(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "tag")
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await head_image(system, namespace, "app", "v1")

    ran = await tag_cmd(system, tmp_path, "-n", namespace, f"app@{digest}", "app:pinned")
    assert ran.stdout == f"Tag app:pinned set to app@{digest}.\n", ran.stderr
    assert spec_tag(await stream(system, namespace, "app"), "pinned")["from"] == {
        "kind": "ImageStreamImage",
        "name": f"app@{digest}",
    }
    assert await head_image(system, namespace, "app", "pinned") == digest

    ran = await tag_cmd(system, tmp_path, "-n", namespace, "app:nothing", "app:x")
    assert_one_error_line(ran)
    assert '"app:nothing" is not currently pointing to an image' in ran.stderr
    ran = await tag_cmd(system, tmp_path, "-n", namespace, "missing:v1", "app:x")
    assert_one_error_line(ran)
    assert ran.stderr == (
        'Error from server (NotFound): imagestreams.image.openshift.io "missing" not found\n'
    )
    ran = await tag_cmd(system, tmp_path, "-n", namespace, "--scheduled", "app:v1", "app:x")
    assert_one_error_line(ran)
    assert "only container images can have importing flags set" in ran.stderr


async def test_delete_removes_the_tag_from_spec_and_status(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "tag")
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await head_image(system, namespace, "app", "v1")
    assert (await tag_cmd(system, tmp_path, "-n", namespace, "app:v1", "app:prod")).ok
    assert await head_image(system, namespace, "app", "prod") == digest

    ran = await tag_cmd(system, tmp_path, "-n", namespace, "-d", "app:prod", "app:v1")
    assert ran.stdout == f"Deleted tag {namespace}/app:prod.\nDeleted tag {namespace}/app:v1.\n"
    after = await stream(system, namespace, "app")
    assert spec_tag(after, "prod") is None
    assert status_tag(after, "prod") is None
    assert status_tag(after, "v1") is None  # a pushed tag lives in status only

    ran = await tag_cmd(system, tmp_path, "-n", namespace, "-d", "app:prod")
    assert_one_error_line(ran)
    assert ran.stderr == (
        'Error from server (NotFound): imagestreamtags.image.openshift.io "app:prod" not found\n'
    )
    ran = await tag_cmd(system, tmp_path, "-n", namespace, "-d", "nostream:v1")
    assert ran.stderr == (
        'Error from server (NotFound): imagestreams.image.openshift.io "nostream" not found\n'
    )
    try:
        await system.kube.get(IMAGESTREAMS, namespace, "nostream")
        raise AssertionError("delete must not create a stream")
    except NotFound:
        pass
