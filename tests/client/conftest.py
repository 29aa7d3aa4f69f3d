"""Client fixtures: fast options pointed at the emulator, and clients that always stop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spooled_integrations.client import (
    BaseClient,
    ConnectionOptions,
    SubscriptionFilter,
    create_client,
)
from spooled_integrations.testing import Emulator

ClientFactory = Callable[..., BaseClient]


@pytest.fixture
def make_client(make_options: Callable[..., ConnectionOptions]) -> Iterator[ClientFactory]:
    """``make_client(emu, "ws"|"sse", filter=None, **options)``; disconnected at teardown."""
    made: list[BaseClient] = []

    def factory(
        emu: Emulator, transport: str, filter: SubscriptionFilter | None = None, **overrides: Any
    ) -> BaseClient:
        client = create_client(make_options(emu, **overrides), transport, filter)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield factory
    for client in made:
        client.disconnect()


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class RawServer:
    """A TCP server on 127.0.0.1 for wire tests: each accepted connection goes to
    :meth:`serve` on its own thread. This base accepts and never answers."""

    def __init__(self, *, scheme: str = "http") -> None:
        self.connections = 0
        self._held: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self.base_url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._listener.close()

    def serve(self, conn: socket.socket) -> None:
        """Handle one connection (on its own thread); the base holds it open, silent."""
        self._held.append(conn)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()


def read_request_head(conn: socket.socket) -> bytes | None:
    """The HTTP request head (through the blank line) ``conn`` sends, or ``None`` if it
    closes first."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        request += chunk
    return request
