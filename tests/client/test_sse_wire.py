"""SSE responses the emulator never sends: other body framings, 1xx, broken bodies, TLS.

A scripted raw-socket server sends fixed response bytes to every request and records
the requests, so the client's own HTTP handling is checked on the wire.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spooled_integrations import ConnectionState, Event, SpooledConnectionError
from spooled_integrations.client import ConnectionOptions, SSEClient
from spooled_integrations.testing import Collector

from ..conftest import wait_until
from .conftest import RawServer, read_request_head

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
EVENT = (
    b"event: job.completed\n"
    b'data: {"type":"JobCompleted","data":{"job_id":"j1","queue_name":"q","duration_ms":5}}\n\n'
)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


def chunked(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + (b"0\r\n\r\n" if end else b"")


class ScriptedServer(RawServer):
    """Answers every request with ``script``, then closes (or holds the socket open)."""

    def __init__(
        self, script: bytes, *, hold: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.script = script
        self.hold = hold
        self.tls = tls
        self.requests: list[bytes] = []
        super().__init__(scheme="https" if tls else "http")

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                request = read_request_head(conn)
                if request is None:
                    return
                self.requests.append(request)
                conn.sendall(self.script)
                while self.hold and not self.stopping and conn.recv(4096):
                    pass


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: bytes, **kwargs: object) -> ScriptedServer:
        servers.append(ScriptedServer(script, **kwargs))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _client(base_url: str, **options: object) -> SSEClient:
    settings: dict[str, object] = {
        "reconnect_delay": 5.0,
        "max_reconnect_delay": 10.0,
        "healthy_after": 0.0,
        "connect_timeout": 2.0,
    }
    settings.update(options)
    return SSEClient(ConnectionOptions(base_url=base_url, token=TOKEN, **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(
            SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(EVENT, EVENT), id="chunked"
        ),
        pytest.param(
            SSE_HEAD + b"content-length: %d\r\n\r\n" % (2 * len(EVENT)) + EVENT * 2, id="length"
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + EVENT * 2,
            id="until-close",
        ),
        pytest.param(
            b"HTTP/1.1 102 Processing\r\n\r\n"
            + SSE_HEAD
            + b"transfer-encoding: chunked\r\n\r\n"
            + chunked(EVENT[:30], EVENT[30:] + EVENT),
            id="informational-first",
        ),
    ],
)
def test_every_body_framing_delivers_and_a_clean_end_reconnects_at_once(
    scripted: Callable[..., ScriptedServer], script: bytes
) -> None:
    server = scripted(script)
    client = _client(server.base_url)
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    with client:
        assert seen.wait_for(lambda items: len(items) >= 4)  # two per connection, no backoff
    assert {e.job_id for e in seen.items} == {"j1"}
    assert client.stats.protocol_errors == {}
    request = server.requests[0]
    assert request.startswith(b"GET /api/v1/events HTTP/1.1\r\n")
    for header in (b"host: 127.0.0.1:", b"authorization: bearer ey", b"accept: text/event-stream"):
        assert header in request.lower()


@pytest.mark.parametrize(
    ("script", "text"),
    [
        (
            SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(EVENT, end=False)[:-5],
            "mid-body",
        ),
        (SSE_HEAD + b"transfer-encoding: chunked\r\n\r\nzz\r\n", "framing"),
        (SSE_HEAD + b"transfer-encoding: gzip, chunked\r\n\r\n", "transfer-encoding"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            "not an event stream",
        ),
    ],
)
def test_broken_bodies_are_connection_errors(
    scripted: Callable[..., ScriptedServer], script: bytes, text: str
) -> None:
    server = scripted(script)
    client = _client(server.base_url)
    errors: Collector[Exception] = Collector()
    client.on_error(errors)
    client.start()
    try:
        assert errors.wait_count(1)
        assert wait_until(lambda: client.state is ConnectionState.RECONNECTING)
    finally:
        client.disconnect()
    assert text.lower() in str(errors.items[0]).lower()


def test_a_server_that_closes_before_answering(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(b"")
    client = _client(server.base_url)
    with pytest.raises(SpooledConnectionError, match="before answering"):
        client.connect()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_stream_and_certificate_checking(
    scripted: Callable[..., ScriptedServer], tls_files: tuple[Path, Path]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = scripted(
        SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(EVENT, end=False),
        hold=True,
        tls=context,
    )
    client = _client(server.base_url, verify_tls=False)
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    with client:
        assert seen.wait_count(1)
        assert _timed(client.disconnect) < 1.0  # a blocked TLS read is aborted too
    with pytest.raises(SpooledConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        _client(server.base_url).connect()


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started
