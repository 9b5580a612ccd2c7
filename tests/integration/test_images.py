"""Images made from Debian packages, and buildah from one of them building in a pod.

What this proves, on this machine:

* `localdev.debian_images` makes the builder, python-base and git-server images from
  Debian packages, and a second call finds them in the cache (same digest,
  made nothing) in well under a second;
* the builder image holds what rootless buildah needs: buildah 1.28 and
  newuidmap/newgidmap with file capabilities, not setuid (the reason is in
  `debian_images.NEWIDMAP_FILE_CAPS`);
* on the real node, a pod made from the controller's own default build Job
  template (`controller.builds.jobs`: rootless, uid 1000, SETUID and SETGID
  only, its BUILD_SCRIPT) running our builder image builds an inline
  Dockerfile on a base image pulled by digest, pushes it, and reports the
  digest in its termination message; the registry serves that digest, and
  a pod of it runs and serves what the Dockerfile's RUN wrote;
* the line that least privilege cannot cross here: with the
  RuntimeDefault seccomp profile (what the restricted Pod Security Standard
  demands), buildah cannot make its user namespace, and says so;
* our own Dockerfile, unchanged, builds in such a pod on the python-base
  image (`--build-arg PYTHON_IMAGE`), its pip reading the host-made
  wheelhouse through bind mounts (no build here reaches PyPI), and the image
  runs `imagestream version` as its non-root user under a restricted
  security context.

The first run makes the images (about 1.5 and 1 minutes cold on two cores,
with Debian's mirror); later runs take them from
~/.cache/imagestream-controller/images.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.builds.jobs import BUILD_CONTAINER, default_job_template
from localdev import debian_images
from localdev.controlplane import REPO_ROOT
from localdev.debian_images import BUILDER, GIT_SERVER, PYTHON_BASE, BuiltImage
from localdev.images import APP_PORT, OCI_MANIFEST, make_app_image, make_files_image, skopeo_push
from localdev.wheelhouse import wheelhouse
from tests.integration.nodecluster import NodeCluster, deploy_app, http_get, node_cluster, wait_for

pytestmark = pytest.mark.integration

IMAGE_BUDGET_S = 1200  # cold: mmdebstrap fetches and installs ~100 packages per image
POD_BUDGET_S = 240.0
CACHED_BUDGET_S = 2.0
MARKER = "built-by-buildah-in-a-pod"
NO_USER_NAMESPACE = "unshare(CLONE_NEWUSER): Operation not permitted"


def _skip_unless_images_can_be_made() -> None:
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap's root mode needs root")
    if shutil.which(debian_images.MMDEBSTRAP) is None:
        pytest.skip("mmdebstrap is missing (scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def builder_image() -> BuiltImage:
    _skip_unless_images_can_be_made()
    return debian_images.build(BUILDER)


def _layer_members(image: BuiltImage) -> dict[str, tarfile.TarInfo]:
    blobs = image.layout_dir / "blobs" / "sha256"
    index = json.loads((image.layout_dir / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    [layer] = manifest["layers"]
    with tarfile.open(blobs / layer["digest"][7:]) as tar:
        return {member.name: member for member in tar}


@pytest.mark.timeout(IMAGE_BUDGET_S * 2)
def test_debian_images_are_made_once_then_found_in_the_cache() -> None:
    _skip_unless_images_can_be_made()
    for spec in (BUILDER, PYTHON_BASE, GIT_SERVER):
        first = debian_images.build(spec)
        began = time.monotonic()
        again = debian_images.build(spec)
        assert again.cached, spec.name
        assert time.monotonic() - began < CACHED_BUDGET_S
        assert again.digest == first.digest
        assert again.layout_dir.is_relative_to(debian_images.cache_root())
        packages = again.packages.read_text().splitlines()
        assert all(f"{name} " in "\n".join(packages) for name in spec.packages), packages
    python = debian_images.build(PYTHON_BASE)
    assert any(
        line.startswith("python3.11 3.11.") for line in python.packages.read_text().split("\n")
    )
    config = _image_config(python)
    assert config["Cmd"] == ["python3"]
    assert config["Labels"]["io.imagestream.debian.suite"] == "bookworm"
    git_server = debian_images.build(GIT_SERVER)
    assert _layer_members(git_server)["usr/lib/git-core/git-daemon"].isreg()
    assert _image_config(git_server)["User"] == "1000"


def _image_config(image: BuiltImage) -> dict[str, Any]:
    blobs = image.layout_dir / "blobs" / "sha256"
    index = json.loads((image.layout_dir / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config: dict[str, Any] = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    return dict(config["config"])


@pytest.mark.timeout(IMAGE_BUDGET_S)
def test_the_builder_has_buildah_and_newuidmap_with_file_capabilities(
    builder_image: BuiltImage,
) -> None:
    members = _layer_members(builder_image)
    assert members["usr/bin/buildah"].isreg()
    assert any(
        line.startswith("buildah 1.28.") for line in builder_image.packages.read_text().split("\n")
    )
    for tool, capability_bit in (("newuidmap", 7), ("newgidmap", 6)):  # CAP_SETUID, CAP_SETGID
        member = members[f"usr/bin/{tool}"]
        assert not member.mode & 0o4000, f"{tool} is still setuid"
        xattr = member.pax_headers["SCHILY.xattr.security.capability"]
        raw = xattr.encode("utf-8", "surrogateescape")
        permitted = int.from_bytes(raw[4:8], "little")
        assert permitted == 1 << capability_bit, (tool, raw)
    assert members["home/build"].uid == 1000
    assert "etc/containers/storage.conf" in members
    assert "dev/null" not in members  # the runtime mounts its own /dev


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with node_cluster(tmp_path_factory.mktemp("images-node"), with_dns=False) as running:
        yield running


def _build_pod(name: str, image: str, env: dict[str, str]) -> dict[str, Any]:
    """A pod from the controller's default build Job template, with our builder image."""
    template = copy.deepcopy(default_job_template()["spec"]["template"])
    spec = template["spec"]
    spec["automountServiceAccountToken"] = False
    [container] = [c for c in spec["containers"] if c["name"] == BUILD_CONTAINER]
    container["image"] = image
    container["env"] = [*container["env"], *({"name": k, "value": v} for k, v in env.items())]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _finished(cluster: NodeCluster, namespace: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        pod: dict[str, Any] = cluster.get("-n", namespace, "pod", name)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    pod: dict[str, Any] = wait_for(done, timeout_s=POD_BUDGET_S, what=f"pod {name} finished")
    return pod


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    [status] = pod["status"]["containerStatuses"]
    return dict(status["state"]["terminated"])


def _manifest(registry: str, repository: str, digest: str) -> bytes:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{digest}",
        headers={"Accept": OCI_MANIFEST + ", application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == digest
        return bytes(response.read())


@pytest.mark.timeout(IMAGE_BUDGET_S + 300)
def test_rootless_buildah_in_a_pod_builds_and_pushes_a_digest_the_registry_serves(
    builder_image: BuiltImage, cluster: NodeCluster, tmp_path: Path
) -> None:
    registry = cluster.registry.host
    namespace = f"images-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    skopeo_push(builder_image.image, f"{registry}/localdev/builder:latest")
    builder = f"{registry}/localdev/builder@{builder_image.digest}"
    base = make_app_image(tmp_path / "base", "base-image")
    skopeo_push(base, f"{registry}/{namespace}/base:latest")
    base_ref = f"{registry}/{namespace}/base@{base.manifest_digest}"
    output = f"{registry}/{namespace}/built:latest"

    dockerfile = (
        f"FROM {base_ref}\nRUN echo '<html><body>marker={MARKER}</body></html>' > /www/index.html\n"
    )
    pod = _build_pod(
        "build",
        builder,
        {
            "BUILD_STRATEGY": "Docker",
            "DOCKERFILE": dockerfile,
            "FROM_IMAGE": base_ref,
            "OUTPUT_IMAGE": output,
            "TLS_VERIFY": "false",
        },
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(pod))
    finished = _finished(cluster, namespace, "build")
    logs = cluster.kubectl("-n", namespace, "logs", "build", check=False)
    terminated = _terminated(finished)
    assert finished["status"]["phase"] == "Succeeded", logs[-3000:]
    digest = terminated["message"].strip()
    assert digest.startswith("sha256:") and len(digest) == 71, terminated

    body = _manifest(registry, f"{namespace}/built", digest)
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    base_layers = json.loads(_manifest(registry, f"{namespace}/base", base.manifest_digest))
    layers = json.loads(body)["layers"]
    assert len(layers) == len(base_layers["layers"]) + 1  # the base's, and the RUN's

    running = deploy_app(cluster, namespace, "built", f"{registry}/{namespace}/built@{digest}")
    page = http_get(f"http://{running['status']['podIP']}:{APP_PORT}/")
    assert f"marker={MARKER}" in page


@pytest.mark.timeout(IMAGE_BUDGET_S + 120)
def test_with_the_runtime_default_seccomp_profile_buildah_gets_no_user_namespace(
    builder_image: BuiltImage, cluster: NodeCluster
) -> None:
    """The restricted Pod Security Standard's seccomp profile is where rootless buildah stops.

    containerd's RuntimeDefault profile refuses unshare(CLONE_NEWUSER) to a
    process without CAP_SYS_ADMIN; buildah needs that user namespace to be
    root inside it. Should this start to pass, the builder can be restricted.
    """
    registry = cluster.registry.host
    namespace = f"images-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    skopeo_push(builder_image.image, f"{registry}/localdev/builder:latest")
    pod = _build_pod(
        "restricted",
        f"{registry}/localdev/builder@{builder_image.digest}",
        {"DOCKERFILE": "FROM scratch\n", "OUTPUT_IMAGE": f"{registry}/{namespace}/no:latest"},
    )
    container = pod["spec"]["containers"][0]
    container["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(pod))
    finished = _finished(cluster, namespace, "restricted")
    assert finished["status"]["phase"] == "Failed"
    logs = cluster.kubectl("-n", namespace, "logs", "restricted", check=False)
    assert NO_USER_NAMESPACE in logs, logs[-2000:]


# What the Dockerfile's COPY lines read, and the files buildah reads itself.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt", "README.md")
CONTEXT_DIRS = ("imagestream", "controller", "webhook")
BUILD_USER_UID = 1000
OUR_BUILD_SCRIPT = r"""set -eu
cd /work/ctx
buildah --storage-driver overlay build --tls-verify=false \
  -v /work/wheels:/wheels:ro -v /work/wheels/pip.conf:/etc/pip.conf:ro \
  --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --tag "$OUTPUT_IMAGE" .
buildah --storage-driver overlay push --tls-verify=false \
  --digestfile /dev/termination-log "$OUTPUT_IMAGE" "docker://$OUTPUT_IMAGE"
"""


def _context_files() -> dict[str, tuple[bytes, int]]:
    """The repository's tracked files the build reads (ctx/) and the wheels (wheels/)."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = {
        f"ctx/{name}": ((REPO_ROOT / name).read_bytes(), 0o644)
        for name in tracked
        if name in CONTEXT_FILES or name.split("/")[0] in CONTEXT_DIRS
    }
    for wheel in sorted(wheelhouse().iterdir()):
        files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), 0o644)
    return files


def _our_build_pod(builder: str, context: str, env: dict[str, str]) -> dict[str, Any]:
    """Rootless as the default template, the context copied in by an init container,
    buildah's storage on an emptyDir (where the kernel's overlay works rootless)."""
    pod = _build_pod("dockerfile", builder, env)
    spec = pod["spec"]
    [container] = spec["containers"]
    container["command"] = ["/bin/sh", "-c", OUR_BUILD_SCRIPT]
    container["volumeMounts"] = [
        {"name": "work", "mountPath": "/work"},
        {"name": "storage", "mountPath": "/home/build/.local/share/containers"},
    ]
    spec["volumes"] = [{"name": "work", "emptyDir": {}}, {"name": "storage", "emptyDir": {}}]
    spec["initContainers"] = [
        {
            "name": "context",
            "image": context,
            "command": ["/bin/sh", "-c", "cp -r /ctx /wheels /work/"],
            "securityContext": {
                "runAsUser": BUILD_USER_UID,
                "runAsGroup": BUILD_USER_UID,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }
    ]
    return pod


def _restricted_pod(name: str, image: str, args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "imagestream",
                    "image": image,
                    "args": args,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


@pytest.mark.timeout(IMAGE_BUDGET_S * 2 + 300)
def test_our_dockerfile_builds_in_a_pod_on_python_base_and_runs_as_non_root(
    builder_image: BuiltImage, cluster: NodeCluster, tmp_path: Path
) -> None:
    registry = cluster.registry.host
    namespace = f"images-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    python_base = debian_images.build(PYTHON_BASE)
    skopeo_push(builder_image.image, f"{registry}/localdev/builder:latest")
    skopeo_push(python_base.image, f"{registry}/localdev/python-base:latest")
    context = make_files_image(tmp_path / "context", _context_files(), owner=BUILD_USER_UID)
    skopeo_push(context, f"{registry}/{namespace}/context:latest")
    output = f"{registry}/{namespace}/imagestream-controller:latest"

    pod = _our_build_pod(
        f"{registry}/localdev/builder@{builder_image.digest}",
        f"{registry}/{namespace}/context@{context.manifest_digest}",
        {
            "PYTHON_IMAGE": f"{registry}/localdev/python-base@{python_base.digest}",
            "OUTPUT_IMAGE": output,
        },
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(pod))
    finished = _finished(cluster, namespace, "dockerfile")
    logs = cluster.kubectl("-n", namespace, "logs", "dockerfile", "-c", "build", check=False)
    assert finished["status"]["phase"] == "Succeeded", logs[-3000:]
    digest = _terminated(finished)["message"].strip()
    assert digest.startswith("sha256:") and len(digest) == 71, digest
    manifest = json.loads(_manifest(registry, f"{namespace}/imagestream-controller", digest))
    base_manifest = json.loads(_manifest(registry, "localdev/python-base", python_base.digest))
    assert manifest["layers"][0] == base_manifest["layers"][0]  # built on python-base

    image = f"{registry}/{namespace}/imagestream-controller@{digest}"
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(_restricted_pod("version", image, ["version"])),
    )
    ran = _finished(cluster, namespace, "version")
    printed = cluster.kubectl("-n", namespace, "logs", "version", check=False).strip()
    assert ran["status"]["phase"] == "Succeeded", printed
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert printed == version
    [status] = ran["status"]["containerStatuses"]
    assert status["imageID"] == image
