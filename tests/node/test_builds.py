"""Builds for real: a BuildConfig's Build runs buildah in a pod on the node (issue 12).

The controller runs Builds with the builder image made here from Debian packages
(tests/node/conftest.py pushes it; `localdev.builder`). Every Build here is a Docker
strategy build of an inline Dockerfile (`source.dockerfile`) on a base image pushed with
skopeo to the local registry (the app image of tests/node/pods.py: busybox httpd, a
few hundred kB, so vfs copies little). Nothing completes a Build but its pod: the Job's
pod builds, pushes to the output ImageStreamTag's repository and reports the digest in
its termination message, and the controller records it.

What is proven, as a user sees it (docs/openshift-behaviours.md#build-lifecycle):

* the whole loop: a new base image starts exactly one Build, New -> Pending -> Running
  -> Complete; the output tag gets exactly one tag event for the built digest (the
  registry's own notification of the build's push writes nothing); a Deployment and a
  DeploymentConfig following the output tag roll to pods of that digest that serve what
  the Dockerfile's RUN wrote; the same base pushed again starts no Build;
* a failing Dockerfile: `start-build --wait` exits 1, the Build is Failed with reason
  DockerBuildFailed and the log's last lines in `status.logSnippet`, `logs bc/NAME`
  prints the failing step, the output tag does not move, and `failedBuildsHistoryLimit`
  prunes the older failed Build;
* `cancel-build` stops the running pod and the Build is Cancelled (CancelledBuild);
* Serial and SerialLatestOnly with several builds started at once: never two at a time,
  SerialLatestOnly cancels the queued older ones, `successfulBuildsHistoryLimit` prunes,
  and `start-build --follow` prints the build's log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from imagestream.cli.startbuild import start_build
from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    IMAGESTREAMS,
    PODS,
)
from localdev.images import APP_PORT, make_app_image, skopeo_push
from tests.integration.cli import imagestream as run_cli
from tests.integration.conftest import eventually
from tests.integration.nodecluster import http_get
from tests.integration.rollouts import dc_manifest, image_change
from tests.integration.workloads import imagestream, trigger, workload
from tests.node.conftest import NodeSystem
from tests.node.pods import running_the_app, wait_pods_running, watched_states

Obj = dict[str, Any]

BUILD_BUDGET_S = 300.0
"""One build on this node: pull the base by digest, a RUN under vfs, push (tens of seconds)."""
SETTLE_S = 3.0
"""How long to watch for a Build that must not be created."""
CLI_TIMEOUT_S = BUILD_BUDGET_S + 60
ACTIVE = ("Pending", "Running")
DOCKERFILE = (
    "FROM base\n"
    "ARG GREETING\n"
    'RUN echo "writing marker built-$GREETING" && '
    'echo "<html><body>marker=built-$GREETING</body></html>" > /www/index.html\n'
)
RUNNING_S = 3
"""The loop's RUN also sleeps this long, so the pod is surely seen running: the Job
controller reports a ready pod up to a second late, and a build faster than that
goes from Pending straight to Complete (as OpenShift's does when its pod ends first)."""
LOOP_DOCKERFILE = DOCKERFILE + f"RUN sleep {RUNNING_S}\n"
FAILING_DOCKERFILE = 'FROM base\nRUN echo "about to fail on purpose" && exit 7\n'
SLOW_DOCKERFILE = "FROM base\nRUN sleep 600\n"


def buildconfig(
    name: str,
    *,
    dockerfile: str = DOCKERFILE,
    output: str = "app:latest",
    image_change: bool = False,
    run_policy: str = "Serial",
    **spec: Any,
) -> Obj:
    """A Docker strategy BuildConfig on `base:latest`, its Dockerfile inline."""
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name},
        "spec": {
            "runPolicy": run_policy,
            "triggers": [{"type": "ImageChange", "imageChange": {}}] if image_change else [],
            "source": {"type": "Dockerfile", "dockerfile": dockerfile},
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {
                    "from": {"kind": "ImageStreamTag", "name": "base:latest"},
                    "buildArgs": [{"name": "GREETING", "value": name}],
                },
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": output}},
            **spec,
        },
    }


async def streams_with_repository(kube: Kube, namespace: str, *names: str) -> dict[str, str]:
    """Create the ImageStreams; their integrated-registry repositories."""
    found: dict[str, str] = {}
    for name in names:
        await kube.create(IMAGESTREAMS, namespace, imagestream(name))

        async def repository(name: str = name) -> str | None:
            stream = await kube.get(IMAGESTREAMS, namespace, name)
            value = (stream.get("status") or {}).get("dockerImageRepository")
            return str(value) if value else None

        found[name] = await eventually(repository, what=f"{name} has a repository")
    return found


async def push_base(system: NodeSystem, workdir: Path, namespace: str, marker: str) -> str:
    """Push the app image serving `marker` to `<ns>/base:latest`; wait until it is recorded."""
    registry = system.cluster.registry.host

    def make_and_push() -> str:
        image = make_app_image(workdir / marker, marker)
        skopeo_push(image, f"{registry}/{namespace}/base:latest")
        return image.manifest_digest

    digest = await asyncio.to_thread(make_and_push)

    async def recorded() -> bool:
        stream = await system.kube.get(IMAGESTREAMS, namespace, "base")
        return digest in [item["image"] for item in tag_items(stream, "latest")]

    await eventually(recorded, what=f"base:latest at {digest}")
    return digest


def tag_items(stream: Obj, tag: str) -> list[Obj]:
    for entry in (stream.get("status") or {}).get("tags") or []:
        if entry["tag"] == tag:
            return list(entry.get("items") or [])
    return []


async def builds_of(kube: Kube, namespace: str, config: str) -> dict[str, Obj]:
    items, _ = await kube.list(
        BUILDS, namespace, label_selector=f"openshift.io/build-config.name={config}"
    )
    return {b["metadata"]["name"]: b for b in items}


def phase(build: Obj) -> str:
    """The Build's phase; none yet is New (a create cannot write the status subresource)."""
    return str((build.get("status") or {}).get("phase") or "New")


async def ended(kube: Kube, namespace: str, name: str) -> Obj:
    """The Build once its phase is terminal."""

    async def check() -> Obj | None:
        try:
            build = await kube.get(BUILDS, namespace, name)
        except NotFound:
            return None
        return build if phase(build) in ("Complete", "Failed", "Error", "Cancelled") else None

    return await eventually(check, timeout_s=BUILD_BUDGET_S, interval_s=0.5, what=f"{name} ended")


async def webhook_handled(system: NodeSystem) -> float:
    """Registry notifications the webhook applied or found already recorded."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{system.running.webhook_url}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("imagestream_webhook_events_total{")
        and ('outcome="applied"' in line or 'outcome="duplicate"' in line)
    )


@dataclass
class BuildHistory:
    """Every state of a namespace's Builds seen through one watch, in the API server's order."""

    states: list[dict[str, Obj]] = field(default_factory=list)

    def phases(self, name: str) -> list[str]:
        """The Build's phases as seen, repeats collapsed."""
        seen: list[str] = []
        for state in self.states:
            if name in state and (not seen or seen[-1] != phase(state[name])):
                seen.append(phase(state[name]))
        return seen

    def most_active(self) -> int:
        """The most Builds ever Pending or Running at the same time."""
        return max(
            (sum(phase(b) in ACTIVE for b in state.values()) for state in self.states), default=0
        )


@contextlib.asynccontextmanager
async def watching_builds(kube: Kube, namespace: str) -> AsyncIterator[BuildHistory]:
    history = BuildHistory()
    async with watched_states(kube, BUILDS, namespace, history.states):
        yield history


def cli_args(system: NodeSystem, namespace: str, *args: str) -> list[str]:
    kubeconfig = system.running.settings.kubeconfig
    assert kubeconfig is not None
    return [*args, "-n", namespace, "--kubeconfig", str(kubeconfig)]


async def cli(system: NodeSystem, workdir: Path, namespace: str, *args: str) -> Any:
    return await run_cli(
        *cli_args(system, namespace, *args),
        kubeconfig=None,
        home=workdir,
        timeout_s=CLI_TIMEOUT_S,
    )


# --- the whole loop ---------------------------------------------------------------------------


async def test_a_base_image_push_builds_moves_the_tag_and_rolls_the_workloads(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube = system.kube
    repository = (await streams_with_repository(kube, namespace, "base", "app"))["app"]
    front = running_the_app(
        workload("Deployment", "front", [trigger("app:latest", "web")], ["web"]), "web"
    )
    await kube.create(DEPLOYMENTS, namespace, front)
    dc = running_the_app(
        dc_manifest("web", image=" ", image_triggers=[image_change("app:latest")]), "web"
    )
    await kube.create(DEPLOYMENTCONFIGS, namespace, dc)
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig("loop", dockerfile=LOOP_DOCKERFILE, image_change=True),
    )

    async with watching_builds(kube, namespace) as history:
        base = await push_base(system, workdir, namespace, "base-one")
        handled = await webhook_handled(system)
        build = await ended(kube, namespace, "loop-1")
    assert phase(build) == "Complete", build.get("status")
    assert history.phases("loop-1") == ["New", "Pending", "Running", "Complete"]
    assert build["spec"]["strategy"]["dockerStrategy"]["from"]["name"].endswith(f"@{base}")
    digest = build["status"]["output"]["to"]["imageDigest"]
    built = f"{repository}@{digest}"

    # The registry's notification of the build's own push has been handled too, and it
    # wrote nothing: one tag event for the digest, the controller's.
    async def notified() -> bool:
        return await webhook_handled(system) > handled

    await eventually(notified, timeout_s=60, what="the registry's notification of the build push")
    items = tag_items(await kube.get(IMAGESTREAMS, namespace, "app"), "latest")
    assert [item["dockerImageReference"] for item in items] == [built]

    # Both workloads roll to pods of the built image, serving what its RUN wrote.
    for selector in ("app=front", "app=web"):
        running = await wait_pods_running(kube, namespace, selector, built, count=1)
        page = await asyncio.to_thread(
            http_get, f"http://{running[0]['status']['podIP']}:{APP_PORT}/"
        )
        assert "marker=built-loop" in page, page

    # The same base image pushed again (same digest) starts no Build.
    before = await webhook_handled(system)
    await asyncio.to_thread(
        skopeo_push,
        make_app_image(workdir / "base-one", "base-one"),
        f"{system.cluster.registry.host}/{namespace}/base:latest",
    )

    async def duplicate_handled() -> bool:
        return await webhook_handled(system) > before

    await eventually(duplicate_handled, timeout_s=60, what="the duplicate push handled")
    await asyncio.sleep(SETTLE_S)
    assert set(await builds_of(kube, namespace, "loop")) == {"loop-1"}
    assert (await kube.get(BUILDCONFIGS, namespace, "loop"))["status"]["lastVersion"] == 1


# --- failure, logs, history limit --------------------------------------------------------------


async def test_a_failing_dockerfile_fails_with_its_log_tail_and_leaves_the_tag(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube = system.kube
    await streams_with_repository(kube, namespace, "base", "app")
    await push_base(system, workdir, namespace, "base-for-failure")
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig("fails", dockerfile=FAILING_DOCKERFILE, failedBuildsHistoryLimit=1),
    )

    ran = await cli(system, workdir, namespace, "start-build", "bc/fails", "--wait")
    assert ran.code == 1, (ran.stdout, ran.stderr)
    assert ran.stdout == "build.build.openshift.io/fails-1 started\n"
    assert ran.stderr.strip() == f'error: the build {namespace}/fails-1 status is "Failed"'
    build = await kube.get(BUILDS, namespace, "fails-1")
    status = build["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DockerBuildFailed")
    assert "about to fail on purpose" in status["logSnippet"], status["logSnippet"]
    assert len(status["logSnippet"].splitlines()) <= 5
    assert status["completionTimestamp"]
    assert tag_items(await kube.get(IMAGESTREAMS, namespace, "app"), "latest") == []

    logs = await cli(system, workdir, namespace, "logs", "bc/fails")
    assert logs.code == 0, logs.stderr
    assert "about to fail on purpose" in logs.stdout
    assert logs.stdout.rstrip().endswith(status["logSnippet"].splitlines()[-1])

    # A second failure: failedBuildsHistoryLimit 1 keeps only the newest failed Build.
    again = await cli(system, workdir, namespace, "start-build", "fails", "--wait")
    assert again.code == 1

    async def pruned() -> set[str] | None:
        names = set(await builds_of(kube, namespace, "fails"))
        return names if names == {"fails-2"} else None

    await eventually(pruned, timeout_s=30, what="fails-1 pruned")
    assert tag_items(await kube.get(IMAGESTREAMS, namespace, "app"), "latest") == []


async def test_cancel_build_stops_the_pod_and_the_build_is_cancelled(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube = system.kube
    await streams_with_repository(kube, namespace, "base", "app")
    await push_base(system, workdir, namespace, "base-for-cancel")
    await kube.create(BUILDCONFIGS, namespace, buildconfig("slow", dockerfile=SLOW_DOCKERFILE))
    await start_build(kube, namespace, "slow")

    async def running() -> list[Obj] | None:
        build = await kube.get(BUILDS, namespace, "slow-1")
        found, _ = await kube.list(PODS, namespace, label_selector="openshift.io/build.name=slow-1")
        return found if phase(build) == "Running" and found else None

    await eventually(running, timeout_s=BUILD_BUDGET_S, interval_s=0.5, what="slow-1 running")
    ran = await cli(system, workdir, namespace, "cancel-build", "slow-1")
    assert ran.code == 0, ran.stderr
    assert ran.stdout == "build.build.openshift.io/slow-1 cancelled\n"
    status = (await kube.get(BUILDS, namespace, "slow-1"))["status"]
    assert (status["phase"], status["reason"], status["cancelled"]) == (
        "Cancelled",
        "CancelledBuild",
        True,
    )

    async def pod_gone() -> bool:
        found, _ = await kube.list(PODS, namespace, label_selector="openshift.io/build.name=slow-1")
        return not found

    await eventually(pod_gone, timeout_s=90, interval_s=0.5, what="the build pod stopped")
    assert tag_items(await kube.get(IMAGESTREAMS, namespace, "app"), "latest") == []


# --- run policies -------------------------------------------------------------------------------


async def test_serial_policies_with_builds_started_at_once(
    system: NodeSystem, namespace: str, workdir: Path
) -> None:
    kube = system.kube
    await streams_with_repository(kube, namespace, "base", "serial", "latest")
    await push_base(system, workdir, namespace, "base-for-policies")
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig("serial", output="serial:latest", successfulBuildsHistoryLimit=2),
    )
    await kube.create(
        BUILDCONFIGS,
        namespace,
        buildconfig("latest", output="latest:latest", run_policy="SerialLatestOnly"),
    )

    async with watching_builds(kube, namespace) as history:
        await asyncio.gather(
            *(start_build(kube, namespace, config) for config in ("serial", "latest") * 3)
        )
        followed = await cli(system, workdir, namespace, "logs", "-f", "build/serial-3")
        for name in ("serial-1", "serial-2", "serial-3", "latest-3"):
            await ended(kube, namespace, name)
    assert followed.code == 0, followed.stderr
    assert "writing marker built-serial" in followed.stdout

    assert history.most_active() <= 2, "one Serial and one SerialLatestOnly build at a time"
    for config in ("serial", "latest"):
        for state in history.states:
            active = [
                n for n, b in state.items() if n.startswith(f"{config}-") and phase(b) in ACTIVE
            ]
            assert len(active) <= 1, (config, active)

    last = {name: history.phases(name)[-1] for state in history.states for name in state}
    assert [last[f"serial-{n}"] for n in (1, 2, 3)] == ["Complete"] * 3
    assert last["latest-3"] == "Complete"
    assert {last["latest-1"], last["latest-2"]} <= {"Complete", "Cancelled"}
    cancelled = [n for n in ("latest-1", "latest-2") if last[n] == "Cancelled"]
    assert cancelled, "SerialLatestOnly cancels the queued older builds"
    for name in cancelled:
        final = next(s[name] for s in reversed(history.states) if name in s)
        assert final["status"]["reason"] == "CancelledBuild"
        assert "Running" not in history.phases(name)

    # successfulBuildsHistoryLimit 2: the oldest Complete serial build is pruned.
    async def pruned() -> set[str] | None:
        names = set(await builds_of(kube, namespace, "serial"))
        return names if names == {"serial-2", "serial-3"} else None

    kept = await eventually(pruned, timeout_s=30, what="serial-1 pruned")
    recorded = [
        i["image"] for i in tag_items(await kube.get(IMAGESTREAMS, namespace, "serial"), "latest")
    ]
    for name in sorted(kept):
        build = await kube.get(BUILDS, namespace, name)
        assert build["status"]["output"]["to"]["imageDigest"] in recorded
