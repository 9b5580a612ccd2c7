"""Health (`/healthz`, `/readyz`) and Prometheus (`/metrics`) endpoints.

`/healthz` answers 200 while the event loop runs: if it stops answering, the
process is wedged and should be restarted. `/readyz` answers 200 only when
every readiness check passes (the API server is reachable, caches synced), so
a load balancer never sends a push to a replica that cannot persist it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from imagestream.settings import HostPort

ReadinessCheck = Callable[[], Awaitable[bool]]
READINESS_CHECK_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 10.0

log = structlog.get_logger(__name__)


def cached(check: ReadinessCheck, *, ttl_s: float = 1.0) -> ReadinessCheck:
    """`check`, asked at most once per `ttl_s`: cheap enough to gate every request on.

    A stale "yes" is answered at once and asked again in the background: a
    request must not wait for a round trip to the API server (`GET /version`)
    before its own request to it, which would fail just as clearly if the server
    had gone (and the next requests then get the fresh "no"). A "no", or no
    answer yet, is asked again before answering.
    """
    checked_at, answer = float("-inf"), False
    # One check at a time: the requests arriving while it runs wait for its
    # answer instead of each asking the API server too.
    lock = asyncio.Lock()
    refreshing: set[asyncio.Task[None]] = set()

    async def refresh() -> None:
        nonlocal checked_at, answer
        async with lock:
            if time.monotonic() - checked_at >= ttl_s:
                answer = await check()
                checked_at = time.monotonic()

    async def refresh_in_background() -> None:
        nonlocal checked_at, answer
        try:
            await refresh()
        except Exception:  # nobody awaits this task: a failing check is a "no"
            log.exception("readiness_check_failed")
            answer, checked_at = False, time.monotonic()

    async def cached_check() -> bool:
        if time.monotonic() - checked_at < ttl_s:
            return answer
        if answer:
            if not refreshing:
                task = asyncio.create_task(refresh_in_background())
                refreshing.add(task)
                task.add_done_callback(refreshing.discard)
            return answer
        await refresh()
        return answer

    return cached_check


def health_routes(checks: Mapping[str, ReadinessCheck]) -> list[web.RouteDef]:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        failed = []
        for name, check in checks.items():
            try:
                ok = await asyncio.wait_for(check(), READINESS_CHECK_TIMEOUT_S)
            except Exception:  # a check that fails to answer is a failing check
                ok = False
            if not ok:
                failed.append(name)
        if failed:
            return web.Response(status=503, text="not ready: " + ", ".join(failed))
        return web.Response(text="ok")

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def metrics_routes(registry: CollectorRegistry) -> list[web.RouteDef]:
    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/metrics", metrics)]


class ListenError(Exception):
    """A server could not listen on its address (in use, not ours to bind, no such address).

    `server` names which one ("webhook", "health", "metrics"), so a command
    can name the flag that sets its address.
    """

    def __init__(self, *, server: str, addr: HostPort, reason: str) -> None:
        super().__init__(f"cannot listen on {addr} for the {server}: {reason}")
        self.server = server
        self.addr = addr
        self.reason = reason


async def serve(
    routes: list[web.RouteDef],
    addr: HostPort,
    name: str,
    *,
    client_max_size: int = 1024**2,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start an aiohttp server for `routes` on `addr`; the caller cleans up the runner.

    Raises `ListenError` (and leaves nothing open) when `addr` cannot be bound.
    """
    app = web.Application(client_max_size=client_max_size)
    app.add_routes(routes)
    # handler_cancellation off (aiohttp's default): a sender that hangs up
    # must not abort a status write half way; the write finishes and the
    # sender's retry finds it recorded.
    # keepalive_timeout: aiohttp closes a connection that has not completed a
    # request's headers within it (from connect, or from the previous answer),
    # so it is also the slow-header (slowloris) timeout; its default is an hour.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=20.0, keepalive_timeout=HEADER_TIMEOUT_S
    )
    await runner.setup()
    site = web.TCPSite(runner, addr.host, addr.port, reuse_address=True, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise ListenError(server=name, addr=addr, reason=reason) from None
    log.info("server_listening", server=name, addr=str(addr))
    return runner


class StopSignal:
    """Set once when the process should shut down (SIGTERM, SIGINT, or a fatal task)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def install_handlers(self, on_signal: Callable[[], None] | None = None) -> None:
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal or self.set)
