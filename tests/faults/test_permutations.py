"""Duplicates and reordering over 1,000 seeded permutations.

100 tags (20 ImageStreams x 5), each followed by one Deployment, 10 rounds.
Each round every tag gets three new pushes (t1 < t2 < t3), delivered to
the webhook in a seeded random order with random duplicates, one after the
other per tag, all tags at once: 1,000 permutations. A watch records every
image each Deployment takes.

No regression: a tag's head is always the newest push (its history holds
every push once, newest first), and no Deployment ever goes to an older
image than one it had. No duplicate rollout: no Deployment takes the same
image twice, and its generation counts exactly the images it took.

The promises under test: docs/delivery-semantics.md#de-duplication,
docs/delivery-semantics.md#late-and-reordered-events and
docs/delivery-semantics.md#no-duplicate-rollout.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from typing import Any

import aiohttp

from bench.common import (
    deployment,
    digest_of,
    image_of,
    imagestream,
    in_parallel,
    notification,
    timestamp,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from localdev.controlplane import ControlPlane
from tests.faults.conftest import TOKEN, Processes, figure
from tests.integration.conftest import eventually, new_namespace

STREAMS, TAGS, ROUNDS, PER_ROUND = 20, 5, 10, 3
SENDERS = 16
ROUND_BUDGET_S = 60.0
HOST = "127.0.0.1:5999"


async def test_duplicates_and_reordering_never_regress_a_tag_or_repeat_a_rollout(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
) -> None:
    seed = int(os.environ.get("IMAGESTREAM_PERMUTATION_SEED", "20261127"))
    rng = random.Random(seed)
    namespace = await new_namespace(kube, "perm")
    pairs = [(f"s{s}", f"t{t}") for s in range(STREAMS) for t in range(TAGS)]
    for s in range(STREAMS):
        await kube.create(IMAGESTREAMS, namespace, imagestream(f"s{s}"))
    for stream, tag in pairs:
        await kube.create(
            DEPLOYMENTS, namespace, deployment(f"{stream}-{tag}", follows=f"{stream}:{tag}")
        )
    scope = ("--watch-namespaces", namespace)
    webhook = processes.start("webhook", controlplane.kubeconfig_path, *scope)
    controller = processes.start("controller", controlplane.kubeconfig_path, *scope)
    await asyncio.gather(webhook.wait_ready(), controller.wait_ready())

    order: dict[str, int] = {}  # digest -> its push time (as a rank)
    taken: dict[str, list[str]] = {f"{s}-{t}": [] for s, t in pairs}
    # The watch's starting point is taken here, before the first delivery: a watch
    # from this resourceVersion sees every later write, however late its connection
    # is made. (Taking it inside the watcher task raced the first round: on a loaded
    # machine the controller had patched s0-t0 before the watcher listed, so its
    # first image was never seen, and one generation looked like an extra rollout.)
    since = await _resource_version_now(kube, namespace)
    watching = asyncio.create_task(_watch(kube, namespace, taken, since))
    deliveries = 0
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            for round_number in range(ROUNDS):
                plans = []
                for stream, tag in pairs:
                    pushes = []
                    for n in range(PER_ROUND):
                        rank = round_number * PER_ROUND + n
                        digest = digest_of(f"{namespace}-{stream}-{tag}-{rank}")
                        order[digest] = rank
                        pushes.append((rank, digest))
                    sequence = pushes + [p for p in pushes if rng.random() < 0.5]
                    rng.shuffle(sequence)
                    plans.append((stream, tag, sequence))
                deliveries += sum(len(sequence) for _, _, sequence in plans)

                async def deliver(plan: tuple[str, str, list[tuple[int, str]]]) -> None:
                    stream, tag, sequence = plan
                    for rank, digest in sequence:
                        await _post(
                            session, webhook.webhook_url, namespace, stream, tag, rank, digest
                        )

                await in_parallel(plans, deliver, concurrency=SENDERS)
                newest = {f"{stream}-{tag}": max(sequence)[1] for stream, tag, sequence in plans}

                async def settled(newest: dict[str, str] = newest) -> bool:
                    return all(
                        images and images[-1].endswith(digest)
                        for key, digest in newest.items()
                        for images in [taken[key]]
                    )

                await eventually(
                    settled,
                    timeout_s=ROUND_BUDGET_S,
                    interval_s=0.1,
                    what=f"round {round_number} rolled out (seed {seed})",
                )
        elapsed = time.monotonic() - started
        await asyncio.sleep(2.0)  # a late duplicate rollout would show by now
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)

    regressions, repeats = [], []
    for key, images in taken.items():
        ranks = [order[image.rpartition("@")[2]] for image in images]
        if any(later <= earlier for earlier, later in itertools.pairwise(ranks)):
            regressions.append((key, ranks))
        if len(set(images)) != len(images):
            repeats.append(key)
    listed, _ = await kube.list(IMAGESTREAMS, namespace)
    history_problems = []
    for obj in listed:
        for entry in (obj.get("status") or {}).get("tags") or []:
            got = [order[item["image"]] for item in entry.get("items") or []]
            want = list(range(ROUNDS * PER_ROUND - 1, -1, -1))
            if got != want:
                history_problems.append((obj["metadata"]["name"], entry["tag"], got[:5]))
    generations = []
    deployments, _ = await kube.list(DEPLOYMENTS, namespace)
    for workload in deployments:
        key = workload["metadata"]["name"]
        # Created (generation 1), then one generation per image it took.
        if workload["metadata"]["generation"] != 1 + len(taken[key]):
            generations.append((key, workload["metadata"]["generation"], len(taken[key])))
        assert image_of(workload) == taken[key][-1]
    assert not regressions, f"seed {seed}: Deployments went back: {regressions[:3]}"
    assert not repeats, f"seed {seed}: the same image rolled out twice: {repeats[:3]}"
    assert not history_problems, f"seed {seed}: tag histories: {history_problems[:3]}"
    assert not generations, f"seed {seed}: extra rollouts: {generations[:3]}"
    figure(
        "duplicates-and-reordering",
        permutations=len(pairs) * ROUNDS,
        deliveries=deliveries,
        regressions=len(regressions),
        duplicate_rollouts=len(repeats),
        rollouts=sum(len(images) for images in taken.values()),
        seconds=round(elapsed, 1),
        seed=seed,
    )


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    namespace: str,
    stream: str,
    tag: str,
    rank: int,
    digest: str,
) -> None:
    body = notification(
        event_id=f"perm-{stream}-{tag}-{rank}",
        host=HOST,
        repository=f"{namespace}/{stream}",
        tag=tag,
        digest=digest,
        # Within the week before receipt in which push times are believed.
        created=timestamp(rank),
    )
    for _ in range(30):
        async with session.post(
            f"{url}/v1/events/distribution",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            await response.read()
            if response.status == 200:
                return
            assert response.status == 503, response.status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{stream}:{tag} push {rank} never accepted")


async def _resource_version_now(kube: Kube, namespace: str) -> str:
    page = await kube.request("GET", DEPLOYMENTS.path(namespace=namespace), params={"limit": "1"})
    return str(page["metadata"]["resourceVersion"])


async def _watch(kube: Kube, namespace: str, taken: dict[str, list[str]], version: str) -> None:
    """Append each new image a Deployment takes after `version`, in the API server's order."""
    while True:
        try:
            async for event in kube.watch(
                DEPLOYMENTS, namespace, resource_version=version, timeout_s=300
            ):
                obj: dict[str, Any] = event.get("object") or {}
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if event.get("type") != "MODIFIED":
                    continue
                image = image_of(obj)
                images = taken[obj["metadata"]["name"]]
                if "@sha256:" in image and (not images or images[-1] != image):
                    images.append(image)
        except KubeError:
            await asyncio.sleep(0.2)
