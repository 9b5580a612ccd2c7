"""Builds from a Git repository served inside the cluster: the Docker and Source strategies.

Each test starts a Git server in its namespace (`localdev.gitserver`: Debian's `git
daemon` in a pod, behind a Service), pushes a repository to it from the host over git://,
and points a BuildConfig at `git://git.<namespace>.svc.cluster.local/app.git`: the
builder pod resolves that through CoreDNS and clones through the Service, as from a Git
host. The controller runs the Build (BuildConfig -> Build -> Job -> pushed digest ->
output ImageStreamTag); then a pod of the built image runs on the node, and what it
serves proves what the build did (docs/openshift-behaviours.md#build-sources):

* Docker strategy: the ref (a branch other than the default) is what was checked out;
  `contextDir` and `dockerfilePath` (relative to it) found the Containerfile; the
  strategy's `from` replaced the last FROM (an image nobody could pull) and not the first
  (a `scratch` stage the last copies from); the build arg and the strategy's env reached
  the RUN; the image carries OpenShift's build information (OPENSHIFT_BUILD_COMMIT, the
  io.openshift.build.commit.id label) for the commit pushed;
* Source strategy (S2I): the builder image made here (`make_s2i_builder_image`: its
  scripts found through `io.openshift.s2i.scripts-url`) assembled the repository's
  `contextDir`; the output image's CMD is the builder's run script, which serves the
  repository's page; the strategy's env reached assemble and stays in the image.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagestream.cli.startbuild import start_build
from imagestream.kube.resources import BUILDCONFIGS, IMAGESTREAMS, PODS
from localdev import gitserver
from localdev.images import APP_PORT, OCI_MANIFEST, make_s2i_builder_image, skopeo_push
from tests.integration.conftest import eventually
from tests.integration.nodecluster import http_get
from tests.node.conftest import NodeSystem
from tests.node.pods import app_container, ready, wait_pods_running
from tests.node.test_builds import ended, phase, push_base, streams_with_repository, tag_items

Obj = dict[str, Any]

pytestmark = pytest.mark.timeout(600)  # the first also makes the git-server image when cold

SERVER = "git"
SERVER_BUDGET_S = 180.0
"""The Git server pod: pull the image (54 MB) once, start, answer on 9418."""
UNPULLABLE = "192.0.2.1:5000/nobody/could-pull:this"
"""The Dockerfile's own last FROM (TEST-NET-1): the build works only if `from` replaces it."""
CONTAINERFILE = f"""FROM scratch AS notes
COPY page.html /page.html
FROM {UNPULLABLE}
ARG GREETING=unset
COPY --from=notes /page.html /www/page.html
RUN echo "greeting=$GREETING colour=$COLOUR" > /www/built.txt
"""


def page(text: str) -> str:
    return f"<html><body>{text}</body></html>\n"


@dataclass
class GitServer:
    url: str
    """What builder pods clone: by the Service's DNS name."""
    push_url: str
    """What the host pushes to: the pod's address."""


@pytest.fixture(scope="module")
async def git_server_image(system: NodeSystem) -> str:
    return await asyncio.to_thread(gitserver.push_git_server, system.cluster.registry.host)


@pytest.fixture
async def git_server(
    system: NodeSystem, namespace: str, git_server_image: str
) -> AsyncIterator[GitServer]:
    """The Git server in the test's namespace, serving an empty `app` repository."""
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": gitserver.manifests(SERVER, git_server_image, ["app"]),
    }
    await asyncio.to_thread(
        system.cluster.kubectl, "-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest)
    )

    async def serving() -> str | None:
        pod = await system.kube.get(PODS, namespace, SERVER)
        return str(pod["status"]["podIP"]) if ready(pod) else None

    address = await eventually(serving, timeout_s=SERVER_BUDGET_S, interval_s=0.5, what="git")
    yield GitServer(
        url=gitserver.repository_url(SERVER, namespace, "app"),
        push_url=f"git://{address}:{gitserver.GIT_PORT}/app.git",
    )


async def push(server: GitServer, branch: str, files: Mapping[str, str]) -> str:
    return await asyncio.to_thread(
        gitserver.push_branch, server.push_url, branch, files, message=f"the {branch} site"
    )


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def image_config(system: NodeSystem, repository: str, digest: str) -> Obj:
    """The `config` of the image the registry serves as `repository@digest`."""
    registry = system.cluster.registry.host
    path = repository.removeprefix(f"{registry}/")
    manifest = await asyncio.to_thread(_get_json, f"http://{registry}/v2/{path}/manifests/{digest}")
    blob = manifest["config"]["digest"]
    config = await asyncio.to_thread(_get_json, f"http://{registry}/v2/{path}/blobs/{blob}")
    return dict(config["config"])


async def built(system: NodeSystem, namespace: str, config: str, repository: str) -> str:
    """Start a Build of `config`, wait for it to complete; the pushed `repository@digest`,
    which the output tag records."""
    started = await start_build(system.kube, namespace, config)  # "build.../NAME started"
    name = started.split("/", 1)[1].split()[0]
    build = await ended(system.kube, namespace, name)
    if phase(build) != "Complete":
        logs = await asyncio.to_thread(
            system.cluster.kubectl, "-n", namespace, "logs", f"job/{name}-build", check=False
        )
        raise AssertionError(f"{name}: {build.get('status')}\n{logs[-3000:]}")
    reference = f"{repository}@{build['status']['output']['to']['imageDigest']}"
    stream = config  # each BuildConfig here outputs to the stream of its name
    items = tag_items(await system.kube.get(IMAGESTREAMS, namespace, stream), "latest")
    assert [item["dockerImageReference"] for item in items] == [reference]
    return reference


async def serving(system: NodeSystem, namespace: str, name: str, image: str) -> str:
    """Run `image` as a pod (its own command), Ready by its page; the pod's base URL."""
    container = app_container(name) | {"image": image}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }
    await system.kube.create(PODS, namespace, pod)
    [running] = await wait_pods_running(system.kube, namespace, f"app={name}", image, count=1)
    return f"http://{running['status']['podIP']}:{APP_PORT}"


async def get(url: str) -> str:
    return await asyncio.to_thread(http_get, url)


async def test_a_docker_build_from_git_honours_ref_context_from_args_and_env(
    system: NodeSystem, namespace: str, workdir: Path, git_server: GitServer
) -> None:
    kube = system.kube
    repository = (await streams_with_repository(kube, namespace, "base", "web"))["web"]
    await push_base(system, workdir, namespace, "the-from-override")
    for branch in ("main", "release"):
        commit = await push(
            git_server,
            branch,
            {
                "web/build/Containerfile": CONTAINERFILE,
                "web/page.html": page(f"page={branch}"),
                "README.md": f"the {branch} branch\n",
            },
        )
    release = commit
    await kube.create(
        BUILDCONFIGS,
        namespace,
        {
            "apiVersion": "build.openshift.io/v1",
            "kind": "BuildConfig",
            "metadata": {"name": "web"},
            "spec": {
                "source": {
                    "type": "Git",
                    "git": {"uri": git_server.url, "ref": "release"},
                    "contextDir": "web",
                },
                "strategy": {
                    "type": "Docker",
                    "dockerStrategy": {
                        "from": {"kind": "ImageStreamTag", "name": "base:latest"},
                        "dockerfilePath": "build/Containerfile",
                        "buildArgs": [{"name": "GREETING", "value": "from-a-build-arg"}],
                        "env": [{"name": "COLOUR", "value": "blue"}],
                    },
                },
                "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
            },
        },
    )

    image = await built(system, namespace, "web", repository)
    url = await serving(system, namespace, "web", image)
    assert "marker=the-from-override" in await get(f"{url}/")  # the base: `from`
    assert "page=release" in await get(f"{url}/page.html")  # the ref, through contextDir
    assert (await get(f"{url}/built.txt")).strip() == "greeting=from-a-build-arg colour=blue"

    config = await image_config(system, repository, image.rsplit("@", 1)[1])
    assert f"OPENSHIFT_BUILD_COMMIT={release}" in config["Env"]
    assert "COLOUR=blue" in config["Env"]
    assert config["Labels"]["io.openshift.build.commit.id"] == release
    assert config["Labels"]["io.openshift.build.source-location"] == git_server.url


async def test_an_s2i_build_from_git_assembles_with_the_builders_scripts_and_runs(
    system: NodeSystem, namespace: str, workdir: Path, git_server: GitServer
) -> None:
    kube = system.kube
    streams = await streams_with_repository(kube, namespace, "static-builder", "site")
    builder = await asyncio.to_thread(make_s2i_builder_image, workdir / "s2i-builder")
    registry = system.cluster.registry.host
    await asyncio.to_thread(skopeo_push, builder, f"{registry}/{namespace}/static-builder:latest")

    async def recorded() -> bool:
        stream = await kube.get(IMAGESTREAMS, namespace, "static-builder")
        return builder.manifest_digest in [i["image"] for i in tag_items(stream, "latest")]

    await eventually(recorded, what="static-builder:latest recorded")
    commit = await push(
        git_server,
        "main",
        {"site/index.html": page("marker=s2i-from-git"), "notes.txt": "outside contextDir\n"},
    )
    await kube.create(
        BUILDCONFIGS,
        namespace,
        {
            "apiVersion": "build.openshift.io/v1",
            "kind": "BuildConfig",
            "metadata": {"name": "site"},
            "spec": {
                "source": {"type": "Git", "git": {"uri": git_server.url}, "contextDir": "site"},
                "strategy": {
                    "type": "Source",
                    "sourceStrategy": {
                        "from": {"kind": "ImageStreamTag", "name": "static-builder:latest"},
                        "env": [{"name": "WELCOME", "value": "hello-from-the-build-env"}],
                    },
                },
                "output": {"to": {"kind": "ImageStreamTag", "name": "site:latest"}},
            },
        },
    )

    image = await built(system, namespace, "site", streams["site"])
    url = await serving(system, namespace, "site", image)  # no command: the image's CMD
    assert "marker=s2i-from-git" in await get(f"{url}/")
    assert (await get(f"{url}/welcome.txt")).strip() == "hello-from-the-build-env"
    assert (await get(f"{url}/assembled.txt")).strip() == f"build=site-1 commit={commit}"
    logs = await asyncio.to_thread(
        system.cluster.kubectl, "-n", namespace, "logs", "site", check=False
    )
    assert "---> Serving /opt/app-root/src" in logs

    config = await image_config(system, streams["site"], image.rsplit("@", 1)[1])
    assert config["Cmd"] == ["/usr/libexec/s2i/run"]
    assert config["User"] == "1001"
    assert "WELCOME=hello-from-the-build-env" in config["Env"]
    assert config["Labels"]["io.openshift.build.commit.id"] == commit
    assert config["Labels"]["io.openshift.s2i.scripts-url"] == "image:///usr/libexec/s2i"
