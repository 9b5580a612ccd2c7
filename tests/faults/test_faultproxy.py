"""The fault proxy itself, against a plain echo server: each mode does what it says."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from localdev.faultproxy import FaultProxy

BUDGET_S = 5.0


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def roundtrip(proxy: FaultProxy, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), BUDGET_S)
    finally:
        writer.close()


async def test_modes() -> None:
    server = await echo_server()
    port = int(server.sockets[0].getsockname()[1])
    async with FaultProxy("127.0.0.1", port) as proxy:
        assert await roundtrip(proxy) == b"ping"

        proxy.set_delay(200)
        began = time.monotonic()
        assert await roundtrip(proxy) == b"ping"
        assert time.monotonic() - began >= 0.4  # each direction held 200 ms

        proxy.set_refuse()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy)
        assert proxy.refused == 1

        proxy.set_pass()
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), BUDGET_S) == b"a"
        assert proxy.reset() == 1
        with contextlib.suppress(ConnectionResetError):  # reset under us: RST, or at least EOF
            assert await asyncio.wait_for(reader.read(1), BUDGET_S) == b""
        writer.close()

        proxy.set_blackhole()
        with pytest.raises(TimeoutError):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"lost")
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(4), 1.0)
        writer.close()
        proxy.set_pass()  # the blackholed connection is reset, new ones pass again
        assert await roundtrip(proxy) == b"ping"
        assert proxy.connections_between(0, time.monotonic() + 1) == len(proxy.accepted) == 6
    server.close()
    await server.wait_closed()
