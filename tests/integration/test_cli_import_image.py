"""`imagestream import-image` against the real control plane, controller and registries.

The images come from a second loopback registry whose notifications go elsewhere (the
`registry_to_receiver` fixture), so only an import can move the tags: what the command
prints is what the controller's import found. The spec tags are checked against what
`oc import-image` leaves on OpenShift (openshift/oc pkg/cli/importimage, and the
ImageStreamImport storage of openshift/openshift-apiserver).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from imagestream.imagestreams import head, spec_tag
from imagestream.kube.resources import IMAGESTREAMS
from localdev.images import make_oci_image, skopeo_push
from localdev.registry import Registry
from tests.integration.cli import Ran, assert_one_error_line, imagestream, kubeconfig_of
from tests.integration.conftest import System, new_namespace


def push_to(registry: Registry, tmp_path: Path, destination: str) -> str:
    image = make_oci_image(tmp_path / uuid.uuid4().hex, uuid.uuid4().hex)
    skopeo_push(image, f"{registry.host}/{destination}")
    return image.manifest_digest


async def import_image(system: System, tmp_path: Path, *args: str) -> Ran:
    return await imagestream("import-image", *args, kubeconfig=kubeconfig_of(system), home=tmp_path)


async def test_import_creates_waits_and_imports_again(
    system: System, tmp_path: Path, registry_to_receiver: Registry
) -> None:
    namespace = await new_namespace(system.kube, "import")
    source = f"{registry_to_receiver.host}/team/app:v1"
    first = push_to(registry_to_receiver, tmp_path, "team/app:v1")

    ran = await import_image(system, tmp_path, "-n", namespace, "app:v1", f"--from={source}")
    assert_one_error_line(ran)
    assert ran.stderr == (
        'error: no image stream named "app" exists, pass --confirm to create and import\n'
    )

    ran = await import_image(
        system, tmp_path, "-n", namespace, "app:v1", f"--from={source}", "--confirm", "--insecure"
    )
    assert ran.ok, ran.stderr
    assert ran.stdout.startswith("imagestream.image.openshift.io/app imported\n\nName:\t")
    assert f"  * {registry_to_receiver.host}/team/app@{first}\n" in ran.stdout
    stream = await system.kube.get(IMAGESTREAMS, namespace, "app")
    assert spec_tag(stream, "v1") == {
        "name": "v1",
        "from": {"kind": "DockerImage", "name": source},
        "generation": 0,
        "importPolicy": {"importMode": "Legacy", "insecure": True},
        "referencePolicy": {"type": "Source"},
    }
    assert head(stream, "v1").image == first  # type: ignore[union-attr]

    # A new image at the source, unseen by the controller: import-image NAME:TAG fetches it.
    second = push_to(registry_to_receiver, tmp_path, "team/app:v1")
    ran = await import_image(system, tmp_path, "-n", namespace, "app:v1", "-o", "json")
    assert ran.ok, ran.stderr
    printed = json.loads(ran.stdout)
    assert printed["status"]["tags"][0]["items"][0]["image"] == second
    assert [i["image"] for i in printed["status"]["tags"][0]["items"]] == [second, first]

    # Asking again with nothing new still waits for (and reports) a fresh import.
    ran = await import_image(system, tmp_path, "-n", namespace, "app:v1")
    assert ran.ok, ran.stderr
    assert f"  * {registry_to_receiver.host}/team/app@{second}\n" in ran.stdout

    # --from naming another source for an existing tag is oc's refusal.
    ran = await import_image(
        system, tmp_path, "-n", namespace, "app:v1", f"--from={registry_to_receiver.host}/x:1"
    )
    assert_one_error_line(ran)
    assert "use the 'tag' command if you want to change the source" in ran.stderr


async def test_a_failed_import_prints_the_condition_and_exits_1(
    system: System, tmp_path: Path, registry_to_receiver: Registry
) -> None:
    namespace = await new_namespace(system.kube, "import")
    push_to(registry_to_receiver, tmp_path, "team/app:v1")
    ok = await import_image(
        system,
        tmp_path,
        "-n",
        namespace,
        "app:v1",
        f"--from={registry_to_receiver.host}/team/app:v1",
        "--confirm",
        "--insecure",
    )
    assert ok.ok, ok.stderr

    ran = await import_image(
        system,
        tmp_path,
        "-n",
        namespace,
        "app:missing",
        f"--from={registry_to_receiver.host}/team/nothing:v9",
        "--insecure",
    )
    assert_one_error_line(ran)
    assert ran.stderr.startswith("error: tag missing failed: ")
    assert ran.stdout.startswith("imagestream.image.openshift.io/app imported with errors\n")
    assert "  ! error: Import failed (NotFound): " in ran.stdout

    # --all imports every container-image tag of the stream again; the failure stays one.
    ran = await import_image(system, tmp_path, "-n", namespace, "app", "--all")
    assert_one_error_line(ran)
    assert ran.stderr.startswith("error: tag missing failed: ")
    ran = await import_image(system, tmp_path, "-n", namespace, "app", "--all", "--from=x/y")
    assert_one_error_line(ran)
    assert "importing every tag of a repository" in ran.stderr
