"""The watch layer against a real API server that compacts often: 410 Gone, relist, diff."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from imagestream.kube.client import Kube, connect
from imagestream.kube.errors import Gone
from imagestream.kube.informer import Informer, InformerSet
from imagestream.kube.resources import NAMESPACES, Resource
from imagestream.objects import Obj
from localdev.controlplane import ControlPlane, binary_dir

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
COMPACTION_S = 2


@pytest.fixture(scope="module")
def compacting_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(
        workdir=tmp_path_factory.mktemp("compacting"),
        bin_dir=binary_dir(build=True),
        with_controller_manager=False,
        # Watches straight from etcd (no watch cache to serve old versions),
        # compacted every few seconds: a stale resourceVersion soon gets 410.
        apiserver_args=(f"--etcd-compaction-interval={COMPACTION_S}s", "--watch-cache=false"),
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
async def kube(compacting_plane: ControlPlane) -> AsyncIterator[Kube]:
    handle = await connect(compacting_plane.kubeconfig_path)
    try:
        yield handle
    finally:
        await handle.close()


async def _namespace(kube: Kube) -> str:
    name = f"inf-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


def _configmap(name: str, value: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"value": value},
    }


async def _compacted_past(kube: Kube, namespace: str, resource_version: str) -> None:
    """Write until the API server has compacted away `resource_version` (bounded)."""
    async with asyncio.timeout(COMPACTION_S * 15):
        for round_number in range(10_000):
            await kube.create(CONFIGMAPS, namespace, _configmap(f"filler-{round_number}", "x"))
            await asyncio.sleep(COMPACTION_S / 4)
            try:
                async for _ in kube.watch(
                    CONFIGMAPS, namespace, resource_version=resource_version, timeout_s=1
                ):
                    pass
            except Gone:
                return


async def test_a_watch_from_a_compacted_version_raises_gone(kube: Kube) -> None:
    namespace = await _namespace(kube)
    _, resource_version = await kube.list(CONFIGMAPS, namespace)
    await _compacted_past(kube, namespace, resource_version)
    with pytest.raises(Gone):
        async for _ in kube.watch(
            CONFIGMAPS, namespace, resource_version=resource_version, timeout_s=1
        ):
            pass


async def test_the_informer_relists_and_reports_what_changed_during_the_gap(kube: Kube) -> None:
    namespace = await _namespace(kube)
    await kube.create(CONFIGMAPS, namespace, _configmap("kept", "1"))
    await kube.create(CONFIGMAPS, namespace, _configmap("deleted", "1"))
    seen: list[tuple[str, str]] = []

    def record(key: str, old: Obj | None, new: Obj | None) -> None:
        if key.split("/", 1)[1].startswith("filler"):
            return
        change = "deleted" if new is None else ("added" if old is None else "updated")
        seen.append((key.split("/", 1)[1], change))

    informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=namespace, watch_timeout_s=1)
    informer.add_handler(record)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        assert sorted(seen) == [("deleted", "added"), ("kept", "added")]
        seen.clear()
        task.cancel()  # the informer is away...
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # ...while things change and its resourceVersion is compacted away.
        await kube.delete(CONFIGMAPS, namespace, "deleted")
        await kube.patch(CONFIGMAPS, namespace, "kept", {"data": {"value": "2"}})
        stale = next(iter(informer.store.values()))["metadata"]["resourceVersion"]
        await _compacted_past(kube, namespace, stale)
        relists = informer.relists
        # Resume from the stale version, as a long-disconnected watch would.
        task = asyncio.create_task(informer.run(resume_from=stale))
        async with asyncio.timeout(30):
            while ("deleted", "deleted") not in seen or ("kept", "updated") not in seen:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert informer.relists == relists + 1
        assert informer.get(f"{namespace}/kept")["data"]["value"] == "2"  # type: ignore[index]
        assert informer.get(f"{namespace}/deleted") is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_cache_shared_by_two_components_watches_once_until_both_stop(kube: Kube) -> None:
    """`imagestream run`: the controller and the webhook run the same InformerSet."""
    namespace = await _namespace(kube)
    await kube.create(CONFIGMAPS, namespace, _configmap("first", "1"))
    shared = InformerSet.create(kube, CONFIGMAPS, [namespace], watch_timeout_s=5)
    early: list[str] = []
    shared.add_handler(lambda key, _old, _new: early.append(key))
    runs = [asyncio.create_task(shared.run()) for _ in range(2)]
    try:
        await asyncio.wait_for(shared.wait_synced(), 30)
        late: list[str] = []  # the second component, subscribing after the list
        shared.add_handler(lambda key, _old, _new: late.append(key))
        assert early == late == [f"{namespace}/first"]
        assert shared.informers[0].relists == 1  # listed once for both
        runs[0].cancel()  # the first component stops; the other still needs the cache
        with contextlib.suppress(asyncio.CancelledError):
            await runs[0]
        await kube.create(CONFIGMAPS, namespace, _configmap("second", "1"))
        async with asyncio.timeout(30):
            while f"{namespace}/second" not in late:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert early == late
        runs[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runs[1]
        await kube.create(CONFIGMAPS, namespace, _configmap("third", "1"))
        await asyncio.sleep(1.0)  # a watch still running would deliver it in this time
        assert f"{namespace}/third" not in late
        assert shared.informers[0].relists == 1
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
