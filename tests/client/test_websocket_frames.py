"""WebSocket frames the emulator never sends: control frames, fragments, close codes.

A scripted raw-socket server answers the upgrade, sends a fixed byte sequence, and
records what the client sends back (unmasked), so the client's own frame reading is
checked on the wire.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
from collections.abc import Callable, Iterator

import pytest
import websocket

from spooled_integrations import ConnectionState, Event, SpooledConnectionError, WebSocketClient
from spooled_integrations.client import ConnectionOptions
from spooled_integrations.testing import Collector

from ..conftest import wait_until
from .conftest import RawServer, read_request_head

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
FRAME = b'{"type":"JobCompleted","data":{"job_id":"j1","queue_name":"q","duration_ms":5}}'


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return websocket.ABNF(int(fin), 0, 0, 0, opcode, 0, payload).format()  # type: ignore[no-untyped-call]


class ScriptedServer(RawServer):
    """Sends ``script`` after each upgrade; keeps the client's frames as (opcode, payload)."""

    def __init__(self, script: bytes) -> None:
        self.script = script
        self.received: list[tuple[int, bytes]] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        # The client may go away at any point (test end, reconnect loops): nothing to check.
        with conn, contextlib.suppress(OSError, StopIteration):
            self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        request = read_request_head(conn)
        if request is None:
            return
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        conn.sendall(self.script)
        buffer = b""
        while chunk := conn.recv(4096):
            buffer = self._take_frames(buffer + chunk)

    def _take_frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 6:
            size = buffer[1] & 0x7F  # client frames here are small
            if len(buffer) < 6 + size:
                break
            mask, payload = buffer[2:6], buffer[6 : 6 + size]
            self.received.append(
                (buffer[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            )
            buffer = buffer[6 + size :]
        return buffer


@pytest.fixture
def scripted() -> Iterator[Callable[[bytes], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: bytes) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _client(server: ScriptedServer, **overrides: float) -> WebSocketClient:
    options = {"reconnect_delay": 5.0, "max_reconnect_delay": 10.0, "healthy_after": 0.0}
    options.update(overrides)
    return WebSocketClient(ConnectionOptions(base_url=server.base_url, token=TOKEN, **options))


def test_ping_is_answered_and_fragments_are_joined(
    scripted: Callable[[bytes], ScriptedServer],
) -> None:
    server = scripted(
        frame(0x9, b"are you there")
        + frame(0x1, FRAME[:10], fin=False)
        + frame(0xA, b"")
        + frame(0x0, FRAME[10:40], fin=False)
        + frame(0x0, FRAME[40:])
    )
    client = _client(server)
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    with client:
        assert seen.wait_for(lambda items: len(items) == 1)
        assert wait_until(lambda: (0xA, b"are you there") in server.received)
    assert seen.items[0].job_id == "j1"
    assert client.stats.protocol_errors == {}


def test_clean_close_is_answered_and_reconnects_at_once(
    scripted: Callable[[bytes], ScriptedServer],
) -> None:
    server = scripted(frame(0x1, FRAME) + frame(0x8, (1000).to_bytes(2, "big")))
    client = _client(server)
    with client:
        assert wait_until(lambda: server.connections >= 2)  # no 5 s backoff after a clean close
        assert any(opcode == 0x8 for opcode, _ in server.received)


@pytest.mark.parametrize(
    ("script", "text"),
    [(frame(0x8, (1011).to_bytes(2, "big")), "code 1011"), (b"\x81\x85abcdxxxxx", "masked")],
)
def test_error_close_and_broken_framing_are_connection_errors(
    scripted: Callable[[bytes], ScriptedServer], script: bytes, text: str
) -> None:
    server = scripted(script)
    client = _client(server)
    errors: Collector[Exception] = Collector()
    client.on_error(errors)
    with client:
        assert errors.wait_count(1)
        assert wait_until(lambda: client.state is ConnectionState.RECONNECTING)
    assert isinstance(errors.items[0], SpooledConnectionError)
    assert text in str(errors.items[0])
