"""A fast local Spooled look-alike for streaming benchmarks: pre-serialized frames, raw sockets.

Every connection gets the same pre-built byte blob in one ``sendall``, so the server
costs almost nothing and the client's read loop is what gets measured. Run it in its
own process (``bench/stream.py`` does); it prints ``PORT <n>`` and serves until stdin
closes.

- ``GET /api/v1/ws...``: WebSocket upgrade, then ``--events`` text frames
  ``{"type":"JobCompleted","data":{...,"timestamp":"...Z"}}`` (backend shape, unmasked,
  one frame per event). A client Close frame is answered and the socket closed.
- ``GET /api/v1/events...``: ``200 text/event-stream``, chunked, one HTTP chunk per event
  (``event: job.completed\\ndata: {...}\\n\\n``), as axum sends them.
- ``POST /api/v1/auth/login``: a static JWT-looking token (for clients that log in).

    python bench/frame_server.py [--events 100000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import uuid

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    + base64.urlsafe_b64encode(b'{"sub":"bench","exp":4102444800}').decode().rstrip("=")
    + ".c2lnbmF0dXJl"
)


def payloads(count: int) -> list[bytes]:
    """``count`` distinct JobCompleted envelopes, compact, keys in the backend's order."""
    out = []
    for i in range(count):
        data = {
            "job_id": str(uuid.UUID(int=i + 1)),
            "queue_name": "emails",
            "duration_ms": 100 + i % 900,
            "timestamp": f"2025-12-13T01:02:{i % 60:02d}.{i % 1_000_000_000:09d}Z",
        }
        out.append(
            json.dumps({"type": "JobCompleted", "data": data}, separators=(",", ":")).encode()
        )
    return out


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def sse_chunk(payload: bytes) -> bytes:
    event = b"event: job.completed\ndata: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class Blobs:
    def __init__(self, count: int) -> None:
        frames = payloads(count)
        self.ws = b"".join(ws_frame(p) for p in frames)
        self.sse = b"".join(sse_chunk(p) for p in frames)


def _read_request(conn: socket.socket) -> tuple[str, str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            raise ConnectionError("closed before the request ended")
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers, rest


def _drain_ws(conn: socket.socket, pending: bytes) -> None:
    """Read client frames until a Close (answered) or EOF."""
    buf = pending
    while True:
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            size = buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    break
                size = struct.unpack("!H", buf[2:4])[0]
                offset = 4
            elif size == 127:
                if len(buf) < 10:
                    break
                size = struct.unpack("!Q", buf[2:10])[0]
                offset = 10
            offset += 4 if buf[1] & 0x80 else 0
            if len(buf) < offset + size:
                break
            buf = buf[offset + size :]
            if opcode == 8:
                conn.sendall(ws_frame(struct.pack("!H", 1000), opcode=8))
                return
        part = conn.recv(65536)
        if not part:
            return
        buf += part


def _drain(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def handle(conn: socket.socket, blobs: Blobs) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            method, target, headers, rest = _read_request(conn)
            if target.startswith("/api/v1/ws"):
                key = headers.get("sec-websocket-key", "").encode()
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                conn.sendall(blobs.ws)
                _drain_ws(conn, rest)
            elif target.startswith("/api/v1/events"):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                conn.sendall(blobs.sse)
                _drain(conn)
            elif method == "POST" and target.startswith("/api/v1/auth/login"):
                body = json.dumps(
                    {
                        "access_token": TOKEN,
                        "refresh_token": TOKEN,
                        "token_type": "Bearer",
                        "expires_in": 86400,
                        "refresh_expires_in": 86400,
                    }
                ).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        except OSError:
            pass  # the client hung up mid-stream: that is how most runs end


def serve(count: int, host: str = "127.0.0.1") -> None:
    blobs = Blobs(count)
    listener = socket.create_server((host, 0), backlog=64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn, blobs), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    sys.stdin.read()  # the parent closes our stdin (or dies): stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    serve(args.events)


if __name__ == "__main__":
    main()
