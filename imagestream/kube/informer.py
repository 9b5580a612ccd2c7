"""A cache of one resource kept current by list + watch.

The loop: list (remember the list's resourceVersion), watch from there with
bookmarks, and when the watch ends, watch again from the last
resourceVersion seen. When the server answers 410 Gone (that resourceVersion
was compacted away) we relist and diff the new list against the cache, so a
delete or change that happened during the gap still reaches the handlers.
kubernetes-asyncio does not do this for us, and restarting a watch from the
same expired resourceVersion would just fail again in a loop.

Invariants:
- `synced` is set only after the first complete list has been delivered to
  the handlers; readiness waits for it.
- Handlers see every object at least once after each (re)list, and every
  change the watch reports; a periodic resync re-delivers every object, so a
  handler that dropped work (or a bug elsewhere) heals within one period.
- Connection failures are retried with capped, jittered back-off: an API
  server that is away costs about one request per back-off period, not a
  hot loop.
- The cache never goes back: an object this process wrote can be put in the
  cache as the API server answered the write (`observe`), ahead of its watch
  event, so the handlers act on it at once; the watch event that follows,
  and any older one still in flight, changes nothing. Newer means a greater
  resourceVersion: from one API server these are etcd revisions, and we
  compare them only for that. One that is not a number is never observed
  early (the watch delivers it as before).
- A handler added to a cache that already holds objects is first given each
  of them (as added), as client-go does: components of one process share a
  cache (`imagestream.process.SharedCaches`), and one started after the
  other's list must not miss what it held. An `InformerSet` run by several
  callers lists and watches once, until the last of them is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from imagestream.kube.client import Kube
from imagestream.kube.errors import Gone, KubeError, NotFound
from imagestream.kube.resources import Resource
from imagestream.objects import Obj, namespace_of, object_key

log = structlog.get_logger(__name__)

Handler = Callable[[str, Obj | None, Obj | None], None]
"""Called with (key, old object or None, new object or None); None new means deleted,
or no longer kept (its transform gave None)."""

Transform = Callable[[Obj], Obj | None]
"""Trims an object before it is cached (keep only what handlers read); None: not kept at
all (the cache holds only the objects its handlers act on), as if it did not exist."""

WATCH_TIMEOUT_S = 300
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 10.0


@dataclass
class Informer:
    kube: Kube
    resource: Resource
    namespace: str | None = None
    resync_period_s: float = 600.0
    transform: Transform | None = None
    watch_timeout_s: int = WATCH_TIMEOUT_S
    label_selector: str | None = None
    """Only the objects it selects are listed and watched (e.g. the Secrets we made)."""
    after_list_page: Callable[[], None] | None = None
    """Called after each listed page is cached (`imagestream.heap.freeze_survivors`)."""
    store: dict[str, Obj] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: list[Handler] = field(default_factory=list)
    relists: int = 0

    def add_handler(self, handler: Handler) -> None:
        """Every change from now on, after what the cache already holds (as added)."""
        self._handlers.append(handler)
        for key, obj in list(self.store.items()):
            try:
                handler(key, None, obj)
            except Exception:  # as in _dispatch: a faulty handler must not stop the cache
                log.exception("informer_handler_failed", resource=self.resource.plural, key=key)

    def get(self, key: str) -> Obj | None:
        return self.store.get(key)

    def _dispatch(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(key, old, new)
            except Exception:  # one faulty handler must not stop the cache
                log.exception("informer_handler_failed", resource=self.resource.plural, key=key)

    def _trim(self, obj: Obj) -> Obj | None:
        return self.transform(obj) if self.transform else obj

    def _store(self, key: str, old: Obj | None, obj: Obj) -> None:
        """Cache `obj` (trimmed), or let it go if its transform keeps nothing of it."""
        trimmed = self._trim(obj)
        if trimmed is None:
            if self.store.pop(key, None) is not None:
                self._dispatch(key, old, None)
            return
        self.store[key] = trimmed
        self._dispatch(key, old, trimmed)

    async def _relist(self) -> str:
        items, resource_version = await self.kube.list(
            self.resource,
            self.namespace,
            transform=self.transform,
            label_selector=self.label_selector,
            after_page=self.after_list_page,
        )
        fresh = {object_key(item): item for item in items}
        # Diff against the cache: deletes we missed, then adds and changes.
        for key in list(self.store):
            if key not in fresh:
                self._dispatch(key, self.store.pop(key), None)
        for key, obj in fresh.items():
            previous = self.store.get(key)
            self.store[key] = obj
            if previous is None or _resource_version(previous) != _resource_version(obj):
                self._dispatch(key, previous, obj)
        self.relists += 1
        return resource_version

    def _apply(self, event: Obj) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        resource_version = _resource_version(obj)
        if kind == "BOOKMARK":
            return resource_version
        key = object_key(obj)
        if kind == "DELETED":
            old = self.store.pop(key, None)
            self._dispatch(key, old, None)
        elif kind in ("ADDED", "MODIFIED"):
            old = self.store.get(key)
            if old is not None and not _newer(obj, old, unknown=True):
                return resource_version  # already observed (our own write), or older
            self._store(key, old, obj)
        return resource_version

    def observe(self, obj: Obj) -> bool:
        """Cache an object this process just wrote (the API server's answer) if it is newer.

        Returns whether it was taken. Handlers run now, not when the watch
        event arrives: in `imagestream run` a push recorded by the webhook
        wakes the trigger loop without waiting for the watch.
        """
        if not self.synced.is_set():
            return False  # before the first list, the list is the truth
        key = object_key(obj)
        old = self.store.get(key)
        if old is None or not _newer(obj, old, unknown=False):
            return False
        self._store(key, old, obj)
        return True

    def resync(self) -> None:
        """Deliver every cached object again (old is new): a level-triggered safety net."""
        for key, obj in list(self.store.items()):
            self._dispatch(key, obj, obj)

    async def run(self, *, resume_from: str | None = None) -> None:
        """List and watch until cancelled.

        `resume_from` continues a cache that already holds objects (a restart
        of the loop) with a watch from that resourceVersion instead of a list.
        """
        backoff = BACKOFF_INITIAL_S
        resource_version: str | None = resume_from
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_period_s
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._relist()
                    self.synced.set()
                    log.debug(
                        "informer_listed", resource=self.resource.plural, objects=len(self.store)
                    )
                async for event in self.kube.watch(
                    self.resource,
                    self.namespace,
                    resource_version=resource_version,
                    timeout_s=self.watch_timeout_s,
                    label_selector=self.label_selector,
                ):
                    resource_version = self._apply(event) or resource_version
                    backoff = BACKOFF_INITIAL_S
                    if loop.time() >= next_resync:
                        self.resync()
                        next_resync = loop.time() + self.resync_period_s
                if loop.time() >= next_resync:
                    self.resync()
                    next_resync = loop.time() + self.resync_period_s
            except Gone:
                log.info("informer_relist", resource=self.resource.plural, reason="gone")
                resource_version = None
            except NotFound:
                # The resource type itself is not served (a CRD not installed yet).
                log.warning("informer_resource_missing", resource=self.resource.group_resource)
                resource_version = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            except KubeError as error:
                log.warning(
                    "informer_retry",
                    resource=self.resource.plural,
                    error=str(error),
                    backoff_s=round(backoff, 2),
                )
                await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
                backoff = min(backoff * 2, BACKOFF_MAX_S)


def _resource_version(obj: Any) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


def _newer(candidate: Obj, cached: Obj, *, unknown: bool) -> bool:
    """Whether `candidate` is a later version than `cached`; `unknown` when either is not a
    number (the watch then delivers as it always did; an early observation is refused)."""
    try:
        return int(_resource_version(candidate)) > int(_resource_version(cached))
    except ValueError:
        return unknown


@dataclass
class InformerSet:
    """One informer per watched namespace (or one for the whole cluster), seen as one cache.

    Namespaced mode exists for clusters where we may only hold Roles: a
    cluster-wide watch would be forbidden there.
    """

    informers: list[Informer]
    _runner: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _runs: int = field(default=0, init=False, repr=False)

    @classmethod
    def create(
        cls,
        kube: Kube,
        resource: Resource,
        namespaces: list[str] | None,
        *,
        transform: Transform | None = None,
        resync_period_s: float = 600.0,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        label_selector: str | None = None,
        after_list_page: Callable[[], None] | None = None,
    ) -> InformerSet:
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        return cls(
            [
                Informer(
                    kube=kube,
                    resource=resource,
                    namespace=scope,
                    transform=transform,
                    resync_period_s=resync_period_s,
                    watch_timeout_s=watch_timeout_s,
                    label_selector=label_selector,
                    after_list_page=after_list_page,
                )
                for scope in scopes
            ]
        )

    def add_handler(self, handler: Handler) -> None:
        for informer in self.informers:
            informer.add_handler(handler)

    def get(self, key: str) -> Obj | None:
        for informer in self.informers:
            found = informer.get(key)
            if found is not None:
                return found
        return None

    def observe(self, obj: Obj) -> bool:
        """`Informer.observe` on the informer whose scope holds `obj`."""
        namespace = namespace_of(obj)
        for informer in self.informers:
            if informer.namespace in (None, namespace):
                return informer.observe(obj)
        return False

    def values(self) -> list[Obj]:
        return [obj for informer in self.informers for obj in informer.store.values()]

    def has_synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    async def wait_synced(self) -> None:
        for informer in self.informers:
            await informer.synced.wait()

    def resync(self) -> None:
        for informer in self.informers:
            informer.resync()

    async def run(self) -> None:
        """List and watch until cancelled.

        Shared by several callers (the components of one process), the
        informers run once; they stop when the last caller is cancelled.
        """
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_informers())
        runner = self._runner
        self._runs += 1
        try:
            await asyncio.shield(runner)
        finally:
            self._runs -= 1
            if self._runs == 0:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(runner, return_exceptions=True)

    async def _run_informers(self) -> None:
        async with asyncio.TaskGroup() as group:
            for informer in self.informers:
                group.create_task(informer.run())
