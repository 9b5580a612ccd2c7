"""A seeded randomized convergence run, in the manner of OpenShift's TestTriggerController.

Rounds of random changes (tags moving, concurrently and in conflict with
each other; images edited by hand; triggers retargeted), and after each
round every workload must settle on exactly what its triggers resolve to.
The seed is printed on failure so a failing run can be replayed with
IMAGESTREAM_CONVERGENCE_SEED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from typing import Any

from controller.triggers.resolve import resolve_latest_tagged_image
from imagestream.kube.errors import Conflict
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from tests.integration.conftest import System, new_namespace
from tests.integration.workloads import TRIGGERS, imagestream, move_tag, trigger, workload

STREAMS, TAGS, DEPLOYMENT_COUNT = 4, 3, 8
ROUNDS, CHANGES_PER_ROUND = 8, 20
ROUND_BUDGET_S = 30.0
REGISTRY = "registry.invalid:5000"


def random_digest(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


async def expected_and_actual(
    system: System, namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    streams, _ = await system.kube.list(IMAGESTREAMS, namespace)
    by_name = {s["metadata"]["name"]: s for s in streams}
    deployments, _ = await system.kube.list(DEPLOYMENTS, namespace)
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        triggers = json.loads(deployment["metadata"]["annotations"][TRIGGERS])
        containers = {
            c["name"]: c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]
        }
        actual[name] = containers
        want = dict(containers)
        for entry in triggers:
            stream, tag = entry["from"]["name"].split(":")
            container = entry["fieldPath"].split('"')[1]
            resolved = resolve_latest_tagged_image(by_name.get(stream, {}), tag)
            if resolved:
                want[container] = resolved
        expected[name] = want
    return expected, actual


async def test_randomized_changes_always_converge(system: System) -> None:
    seed = int(
        os.environ.get("IMAGESTREAM_CONVERGENCE_SEED", random.SystemRandom().randrange(2**32))
    )
    rng = random.Random(seed)
    namespace = await new_namespace(system.kube, "converge")
    pairs = [(f"s{s}", f"t{t}") for s in range(STREAMS) for t in range(TAGS)]
    for s in range(STREAMS):
        await system.kube.create(IMAGESTREAMS, namespace, imagestream(f"s{s}"))
    for stream, tag in pairs:
        await move_tag(
            system.kube,
            namespace,
            stream,
            tag,
            f"{REGISTRY}/{namespace}/{stream}",
            random_digest(rng),
        )
    for d in range(DEPLOYMENT_COUNT):
        chosen = rng.sample(pairs, 2)
        await system.kube.create(
            DEPLOYMENTS,
            namespace,
            workload(
                "Deployment",
                f"d{d}",
                [trigger(f"{s}:{t}", f"c{i}") for i, (s, t) in enumerate(chosen)],
                ["c0", "c1"],
            ),
        )

    async def change() -> None:
        roll = rng.random()
        if roll < 0.6:  # a tag moves (several at once on the same stream: conflicts)
            stream, tag = rng.choice(pairs)
            await move_tag(
                system.kube,
                namespace,
                stream,
                tag,
                f"{REGISTRY}/{namespace}/{stream}",
                random_digest(rng),
            )
        elif roll < 0.8:  # someone edits a triggered image by hand
            name, container = f"d{rng.randrange(DEPLOYMENT_COUNT)}", f"c{rng.randrange(2)}"
            await system.kube.patch(
                DEPLOYMENTS,
                namespace,
                name,
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": container, "image": "by-hand:1"}]}
                        }
                    }
                },
                patch_type="application/strategic-merge-patch+json",
            )
        else:  # a trigger is retargeted
            name = f"d{rng.randrange(DEPLOYMENT_COUNT)}"
            chosen = rng.sample(pairs, 2)
            annotation = json.dumps(
                [trigger(f"{s}:{t}", f"c{i}") for i, (s, t) in enumerate(chosen)]
            )
            with contextlib.suppress(Conflict):
                await system.kube.patch(
                    DEPLOYMENTS,
                    namespace,
                    name,
                    {"metadata": {"annotations": {TRIGGERS: annotation}}},
                )

    for round_number in range(ROUNDS):
        await asyncio.gather(*(change() for _ in range(CHANGES_PER_ROUND)))
        deadline = asyncio.get_running_loop().time() + ROUND_BUDGET_S
        while True:
            expected, actual = await expected_and_actual(system, namespace)
            if expected == actual:
                break
            if asyncio.get_running_loop().time() > deadline:
                differing = {
                    k: (actual[k], expected[k]) for k in expected if expected[k] != actual[k]
                }
                raise AssertionError(
                    f"round {round_number} did not converge (seed {seed}): {differing}"
                )
            await asyncio.sleep(0.1)
    print(f"converged after {ROUNDS} rounds of {CHANGES_PER_ROUND} changes (seed {seed})")
