"""Loopback ports held by something else, for tests of what a command does then."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port this process listens on (and never answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


class _PretendRegistry(BaseHTTPRequestHandler):
    """Answers `/v2/` as any registry would: what made a registry that never started look up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def pretend_registry() -> Iterator[int]:
    """A loopback port where something else answers `GET /v2/` with 200, as a registry would."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PretendRegistry)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
