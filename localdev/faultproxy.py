"""A TCP proxy on loopback that makes faults on purpose, in front of the API server.

Tests put it between a process and the API server (a kubeconfig whose
server is the proxy's port) and switch its mode from the test, in-process:

    pass        forward bytes both ways (the default)
    delay       forward, but hold every chunk `delay_ms` first (each direction in order)
    refuse      every new connection is closed at once with a reset (RST);
                connections already open go on
    blackhole   accept new connections and read from them, but forward
                nothing either way, on new and existing connections: a
                half-open peer that never answers and never closes

`reset()` closes every open connection with a reset, whatever the mode.
Leaving `blackhole` resets the connections that were blackholed (bytes were
dropped: they cannot carry on).

TLS goes through untouched, so the proxy cannot see requests; it counts
connections (`accepted`, with the time of each) and bytes, which is what a
"no hot loop" check needs: each retry of a client after a failure is a new
connection.

Invariant: `aclose()` closes the listener and resets every connection, which
ends every forwarding task the proxy started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localdev.private import write_private

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


class Mode(enum.Enum):
    PASS = "pass"  # noqa: S105 - a mode name, not a password
    DELAY = "delay"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed peer or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    blackholed: bool = False

    def abort(self) -> None:
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)


@dataclass
class FaultProxy:
    """`127.0.0.1:<port>` -> `upstream_host:upstream_port`, with switchable faults."""

    upstream_host: str
    upstream_port: int
    host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = Mode.PASS
    delay_ms: float = 0.0
    accepted: list[float] = field(default_factory=list)
    """Monotonic time of every connection accepted (refused ones included)."""
    refused: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    _server: asyncio.Server | None = None
    _connections: set[_Connection] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- modes ---------------------------------------------------------------------------

    def set_pass(self) -> None:
        self._leave_blackhole()
        self.mode, self.delay_ms = Mode.PASS, 0.0

    def set_delay(self, delay_ms: float) -> None:
        self._leave_blackhole()
        self.mode, self.delay_ms = Mode.DELAY, delay_ms

    def set_refuse(self) -> None:
        self._leave_blackhole()
        self.mode = Mode.REFUSE

    def set_blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE
        for connection in self._connections:
            connection.blackholed = True

    def reset(self) -> int:
        """Reset every open connection; returns how many there were."""
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        return len(connections)

    def _leave_blackhole(self) -> None:
        if self.mode is Mode.BLACKHOLE:
            for connection in list(self._connections):
                if connection.blackholed:
                    connection.abort()

    # --- figures -------------------------------------------------------------------------

    def connections_between(self, start: float, end: float) -> int:
        return sum(1 for moment in self.accepted if start <= moment < end)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # --- forwarding ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        if self.mode is Mode.REFUSE:
            self.refused += 1
            _abort(writer)
            return
        connection = _Connection(client=writer, blackholed=self.mode is Mode.BLACKHOLE)
        self._connections.add(connection)
        try:
            if connection.blackholed:
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.upstream_host, self.upstream_port),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError):
                _abort(writer)
                return
            connection.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, connection, upstream=True),
                self._pump(up_reader, writer, connection, upstream=False),
                return_exceptions=True,
            )
        finally:
            self._connections.discard(connection)
            connection.abort()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await reader.read(CHUNK):
                pass

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection,
        *,
        upstream: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.mode is Mode.DELAY and self.delay_ms > 0:
                    await asyncio.sleep(self.delay_ms / 1000.0)
                if connection.blackholed:
                    continue  # dropped; the connection is reset when the blackhole ends
                if upstream:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other as a proxy would (both directions are done).
            connection.abort()


def proxied_kubeconfig(source: Path, proxy: FaultProxy, destination: Path) -> Path:
    """A copy of kubeconfig `source` whose server is the proxy (TLS is passed through).

    The API server's certificate names 127.0.0.1, so only the port changes.
    """
    config = yaml.safe_load(source.read_text())
    for cluster in config.get("clusters") or []:
        cluster["cluster"]["server"] = f"https://{proxy.address}"
    return write_private(destination, yaml.safe_dump(config))
