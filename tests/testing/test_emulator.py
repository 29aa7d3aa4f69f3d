"""The emulator over real sockets, with plain clients (httpx, websocket-client)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import websocket

from spooled_integrations.protocol import _json
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

FAST: dict[str, Any] = {
    "ping_interval": 1.0,
    "health_interval": 0.5,
    "job_poll_interval": 0.1,
    "queue_poll_interval": 0.2,
    "keepalive_interval": 0.5,
}
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")


# -- helpers --------------------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[Callable[[Emulator], httpx.Client]]:
    """``http(emu)``: an httpx client on the emulator, closed at teardown."""
    clients: list[httpx.Client] = []

    def make(emu: Emulator) -> httpx.Client:
        client = httpx.Client(base_url=emu.base_url, timeout=httpx.Timeout(3.0))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sockets() -> Iterator[list[websocket.WebSocket]]:
    """WebSockets opened by a test; shut down at teardown whatever state they are in."""
    opened: list[websocket.WebSocket] = []
    yield opened
    for ws in opened:
        ws.shutdown()


def login(emu: Emulator) -> dict[str, Any]:
    response = httpx.post(f"{emu.base_url}/api/v1/auth/login", json={"api_key": emu.api_key})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def open_ws(
    emu: Emulator,
    opened: list[websocket.WebSocket],
    *,
    header: str | None = None,
    **query: str,
) -> websocket.WebSocket:
    url = emu.ws_url + ("?" + urlencode(query) if query else "")
    headers = [f"Authorization: Bearer {header}"] if header else []
    ws = websocket.create_connection(url, header=headers, timeout=3)
    opened.append(ws)
    return ws


def open_strict_ws(
    emu: Emulator, opened: list[websocket.WebSocket], **query: str
) -> websocket.WebSocket:
    token = login(emu)["access_token"]
    return open_ws(emu, opened, header=token, token=token, **query)


def ws_rejection(
    emu: Emulator, *, header: str | None = None, **query: str
) -> tuple[int, str, dict[str, str]]:
    """Try a WS upgrade that must fail: (status, body text, headers)."""
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws = websocket.create_connection(
            emu.ws_url + ("?" + urlencode(query) if query else ""),
            header=[f"Authorization: Bearer {header}"] if header else [],
            timeout=3,
        )
        ws.shutdown()
    error = info.value
    return error.status_code, (error.resp_body or b"").decode(), dict(error.resp_headers or {})


def frames_until(
    ws: websocket.WebSocket, predicate: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Read text frames until one satisfies ``predicate``; pings are left out."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv())
        if frame["type"] != "Ping":
            seen.append(frame)
        if predicate(frame):
            return seen


def is_job(job_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["data"].get("job_id") == job_id


class Stream:
    """An open SSE response read chunk by chunk across several ``read`` calls."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self._chunks = response.iter_raw()

    def read(self, until: Callable[[bytes], bool], limit: float = 3.0) -> bytes:
        """Raw body bytes until ``until(body)`` holds, the body ends, or ``limit`` passes."""
        body = b""
        deadline = time.monotonic() + limit
        for chunk in self._chunks:
            body += chunk
            if until(body) or time.monotonic() > deadline:
                break
        return body

    def read_to_end(self) -> bytes:
        return self.read(lambda _: False)


@contextmanager
def sse(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> Iterator[Stream]:
    with client.stream("GET", path, headers=headers) as response:
        yield Stream(response)


def wait_closed(ws: websocket.WebSocket) -> None:
    """Read (and discard) frames until the connection is gone without a Close frame."""
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        for _ in range(10):
            opcode, _frame = ws.recv_data_frame(control_frame=True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of every complete data event in ``body``."""
    events = []
    for block in body.split(b"\n\n"):
        lines = block.split(b"\n")
        if len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "):
            events.append((lines[0][7:].decode(), json.loads(lines[1][6:])))
    return events


def wait(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- /auth ------------------------------------------------------------------------------


def test_login_returns_the_backend_shape_and_nine_claims(spooled_emulator: Emulator) -> None:
    emu = spooled_emulator
    response = httpx.post(
        f"{emu.base_url}/api/v1/auth/login",
        json={"api_key": emu.api_key},
        headers={"x-request-id": "req-1"},
    )
    assert response.status_code == 200
    assert response.headers["x-api-version"] == "1"
    assert response.headers["x-request-id"] == "req-1"
    body = response.json()
    assert list(body) == [
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "refresh_expires_in",
    ]
    assert body["token_type"] == "Bearer"
    assert (body["expires_in"], body["refresh_expires_in"]) == (86400, 2073600)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == {
        "sub",
        "api_key_id",
        "org_id",
        "iat",
        "exp",
        "nbf",
        "jti",
        "queues",
        "token_type",
    }
    assert claims["token_type"] == "access" and claims["sub"] == claims["org_id"]
    assert claims["exp"] - claims["iat"] == 86400
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert refresh["token_type"] == "refresh" and refresh["jti"] != claims["jti"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert emu.login_count == 1


def test_login_failures_and_the_rate_limiter() -> None:
    with Emulator(login_limit=3, login_window=0.5) as emu:
        url = f"{emu.base_url}/api/v1/auth/login"
        short = httpx.post(url, json={"api_key": "short"})
        assert short.status_code == 400
        assert short.json() == {
            "error": "Validation failed",
            "code": "VALIDATION_ERROR",
            "details": [
                {
                    "field": "api_key",
                    "message": "API key must be at least 10 characters",
                    "code": "length",
                }
            ],
        }
        garbage = httpx.post(
            url, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert garbage.status_code == 400 and garbage.json()["code"] == "INVALID_JSON"
        wrong = httpx.post(url, json={"api_key": "sk_test_wrong_key_000"})
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "unauthorized", "message": "Invalid credentials"}
        assert httpx.post(url, json={"api_key": emu.api_key}).status_code == 200
        assert httpx.post(url, json={"api_key": emu.api_key}).status_code == 200
        # 4th attempt in the window: refused before counting, for every key of the prefix
        for key in (emu.api_key, "sk_test_another_key_1"):
            limited = httpx.post(url, json={"api_key": key})
            assert limited.status_code == 429
            assert limited.json() == {
                "error": "rate_limit_exceeded",
                "message": "Too many login attempts. Please try again later.",
            }
            assert "retry-after" not in limited.headers
        assert httpx.post(url, json={"api_key": "sk_live_other_prefix"}).status_code == 401
        assert emu.login_count == 6  # validation failures are not counted
        time.sleep(0.6)
        assert httpx.post(url, json={"api_key": emu.api_key}).status_code == 200


def test_refresh_me_validate_and_logout(spooled_emulator: Emulator, http: Any) -> None:
    emu = spooled_emulator
    client: httpx.Client = http(emu)
    tokens = login(emu)
    access, refresh = tokens["access_token"], tokens["refresh_token"]

    renewed = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert renewed.status_code == 200
    assert list(renewed.json()) == ["access_token", "token_type", "expires_in"]
    not_refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": access})
    assert not_refresh.status_code == 401 and not_refresh.json()["error"] == "unauthorized"

    me = client.get("/api/v1/auth/me", headers=bearer(access)).json()
    assert set(me) == {
        "organization_id",
        "api_key_id",
        "queues",
        "issued_at",
        "expires_at",
        "organization",
    }
    assert me["expires_at"].endswith("Z")
    valid = client.post("/api/v1/auth/validate", json={"token": access}).json()
    assert valid["valid"] is True and next(iter(valid["claims"])) == "sub"
    assert client.post("/api/v1/auth/validate", json={"token": "eyJnope"}).json() == {
        "valid": False,
        "error": "Invalid token",
    }

    assert client.post("/api/v1/auth/logout", headers=bearer(access)).status_code == 204
    revoked = client.get("/api/v1/jobs/x", headers=bearer(access))
    assert (revoked.status_code, revoked.text) == (401, "Token has been revoked")
    assert client.post("/api/v1/auth/validate", json={"token": access}).json() == {
        "valid": False,
        "error": "Token has been revoked",
    }


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        ({}, "Missing or invalid Authorization header"),
        ({"X-API-Key": "KEY"}, "Missing or invalid Authorization header"),
        ({"Authorization": "bearer KEY"}, "Missing or invalid Authorization header"),
        ({"Authorization": "Token KEY"}, "Missing or invalid Authorization header"),
        ({"Authorization": "Bearer sk_test_not_the_key"}, "Invalid API key"),
        ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}, "Invalid token"),
        ({"Authorization": "Bearer EXPIRED"}, "Invalid token"),
        ({"Authorization": "Bearer REFRESH"}, "Invalid token type"),
        ({"Authorization": "Bearer FOREIGN"}, "API key not found"),
    ],
)
def test_protected_routes_answer_with_the_exact_texts(
    spooled_emulator: Emulator, http: Any, headers: dict[str, str], text: str
) -> None:
    emu = spooled_emulator
    replacements = {
        "KEY": emu.api_key,
        "EXPIRED": emu.make_token(lifetime=-61),
        "REFRESH": emu.make_token("refresh"),
        "FOREIGN": emu.make_token(api_key_id="some-deleted-key"),
    }
    for name, template in headers.items():
        value = template
        for placeholder, real in replacements.items():
            value = value.replace(placeholder, real)
        headers[name] = value
    for path in ("/api/v1/jobs/nope", "/api/v1/events", "/api/v1/events/queues/q"):
        response = http(emu).get(path, headers=headers)
        assert (response.status_code, response.text) == (401, text)
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-api-version"] == "1" and response.headers["x-request-id"]


def test_token_within_leeway_is_still_accepted(spooled_emulator: Emulator, http: Any) -> None:
    token = spooled_emulator.make_token(lifetime=-30)
    response = http(spooled_emulator).get("/api/v1/jobs/nope", headers=bearer(token))
    assert response.status_code == 404


def test_api_version_header(spooled_emulator: Emulator, http: Any) -> None:
    client: httpx.Client = http(spooled_emulator)
    auth = bearer(spooled_emulator.api_key)
    unsupported = client.get("/api/v1/jobs/x", headers={**auth, "X-API-Version": "2"})
    assert (unsupported.status_code, unsupported.text) == (
        400,
        "Unsupported API version: 2. Supported versions: 1",
    )
    for value in ("1", "not/valid!"):  # malformed values are treated as 1
        response = client.get("/api/v1/jobs/x", headers={**auth, "X-API-Version": value})
        assert response.status_code == 404
    assert client.post("/api/v1/ws").status_code == 405


# -- WebSocket handshake -------------------------------------------------------------------


def test_strict_ws_handshake_checks_in_order(spooled_emulator_strict: Emulator, http: Any) -> None:
    emu = spooled_emulator_strict
    client: httpx.Client = http(emu)
    token = login(emu)["access_token"]

    # 1. the header gate comes first, even with a valid ?token=
    assert ws_rejection(emu, token=token)[:2] == (401, "Missing or invalid Authorization header")
    # 2. then the upgrade headers
    plain = client.get("/api/v1/ws", params={"token": token}, headers=bearer(token))
    assert (plain.status_code, plain.text) == (400, "Connection header did not include 'upgrade'")
    # 3. then the query
    duplicate = client.get(
        "/api/v1/ws?queue=a&queue=b&token=" + token, headers={**bearer(token), **UPGRADE}
    )
    assert (duplicate.status_code, duplicate.text) == (
        400,
        "Failed to deserialize query string: duplicate field `queue`",
    )
    # 4. then ?token=: JWT only, blacklist checked
    assert ws_rejection(emu, header=emu.api_key)[:2] == (401, "Missing authentication token")
    assert ws_rejection(emu, header=emu.api_key, token=emu.api_key)[:2] == (
        401,
        "Invalid or expired token",
    )
    logged_out = login(emu)["access_token"]
    client.post("/api/v1/auth/logout", headers=bearer(logged_out))
    assert ws_rejection(emu, header=token, token=logged_out)[:2] == (401, "Token has been revoked")
    # 5. then the queue filter
    assert ws_rejection(emu, header=token, token=token, queue="bad queue!")[:2] == (
        400,
        "Queue filter contains invalid characters",
    )
    assert ws_rejection(emu, header=token, token=token, queue="q" * 101)[:2] == (
        400,
        "Queue filter too long",
    )
    assert emu.connections_accepted("ws") == 0


def test_strict_ws_accepts_what_the_source_accepts(
    spooled_emulator_strict: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator_strict
    refresh = login(emu)["refresh_token"]
    # API key in the header, a refresh JWT in the query, a Unicode queue filter
    ws = open_ws(emu, sockets, header=emu.api_key, token=refresh, queue="日本-é_.*")
    assert ws.getstatus() == 101
    assert ws.getheaders()["x-api-version"] == "1"
    assert json.loads(ws.recv())["type"] == "Ping"


def test_default_ws_takes_either_credential(
    spooled_emulator: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    token = login(emu)["access_token"]
    open_ws(emu, sockets, header=emu.api_key)
    open_ws(emu, sockets, token=token)
    open_ws(emu, sockets, header=token, token=token)
    assert emu.connections_current("ws") == 3
    assert ws_rejection(emu)[:2] == (401, "Missing authentication token")
    assert ws_rejection(emu, token=emu.api_key)[:2] == (401, "Invalid or expired token")
    assert ws_rejection(emu, header="sk_test_wrong_key")[:2] == (401, "Invalid API key")


def test_ws_connection_cap(sockets: list[websocket.WebSocket]) -> None:
    with Emulator(ws_connection_cap=2) as emu:
        first = open_ws(emu, sockets, header=emu.api_key)
        open_ws(emu, sockets, header=emu.api_key)
        assert ws_rejection(emu, header=emu.api_key)[:2] == (429, "Too many WebSocket connections")
        first.close()
        assert wait(lambda: emu.connections_current("ws") == 1)
        open_ws(emu, sockets, header=emu.api_key)


# -- WebSocket session ----------------------------------------------------------------------


def test_strict_ws_sends_two_pings_then_answers_only_exact_commands(
    spooled_emulator_strict: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator_strict
    ws = open_strict_ws(emu, sockets)
    started = time.monotonic()
    pings = [json.loads(ws.recv()) for _ in range(2)]
    assert time.monotonic() - started < 0.5
    for ping in pings:
        assert list(ping) == ["type", "data"] and ping["type"] == "Ping"
        assert list(ping["data"]) == ["timestamp"] and NANOS.match(ping["data"]["timestamp"])

    for ignored in ('{"cmd":"ping"}', '{"type":"Ping"}', "not json", '{"cmd":"Ping","queue":5}'):
        ws.send(ignored)
    ws.send_binary(b"\x00binary")
    ws.send('{"queue":"emails","cmd":"Subscribe"}')
    ws.send('{"cmd":"Ping"}')
    answer = json.loads(ws.recv())
    assert answer["type"] == "Ping"
    assert time.monotonic() - started < 0.9  # the answer, not the 1 s periodic ping
    assert emu.counters["commands"] == 2 and emu.counters["ignored_messages"] == 4
    ws.ping(b"are you there")
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            assert frame.data == b"are you there"
            break


def test_default_ws_sends_one_ping_and_takes_lowercase_commands(
    spooled_emulator: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    ws = open_ws(spooled_emulator, sockets, header=spooled_emulator.api_key)
    started = time.monotonic()
    assert json.loads(ws.recv())["type"] == "Ping"
    ws.send('{"cmd":"ping"}')
    assert json.loads(ws.recv())["type"] == "Ping"
    assert time.monotonic() - started < 0.9
    periodic = json.loads(ws.recv())  # the next one waits for ping_interval
    assert periodic["type"] == "Ping" and time.monotonic() - started >= 0.9
    assert spooled_emulator.counters["pings_sent"] == 3


def test_published_events_reach_ws_and_sse_with_exact_framing(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-cache"
        assert emu.wait_for_connections(1, "sse")
        sent = emu.publish("JobCompleted", duration_ms=5, queue_name="emails", job_id="j1")
        payload = _json.dumps(sent)
        assert payload.startswith(
            b'{"type":"JobCompleted","data":{"job_id":"j1","queue_name":"emails","duration_ms":5,'
            b'"timestamp":"'
        )
        body = stream.read(lambda b: b"job.completed" in b)
        assert body == b"event: job.completed\ndata: " + payload + b"\n\n"
    assert frames_until(ws, is_job("j1")) == [sent]
    assert ws.recv_data_frame(True)[0] == websocket.ABNF.OPCODE_TEXT  # text frames only
    assert emu.frames_sent >= 2


def test_publish_spellings_and_unknown_types(
    spooled_emulator: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    joined = emu.publish("worker.joined", queue_name="q", worker_id="w1")
    assert joined["type"] == "WorkerRegistered"
    assert list(joined["data"]) == ["worker_id", "queue_name", "timestamp"]
    status = emu.publish(
        "job.status_changed", job_id="j", queue_name="q", old_status="", new_status="pending"
    )
    assert status["type"] == "JobStatusChange"
    odd = emu.publish("JobTeleported", job_id="j2", timestamp="2025-01-01T00:00:00Z")
    assert odd == {
        "type": "JobTeleported",
        "data": {"job_id": "j2", "timestamp": "2025-01-01T00:00:00Z"},
    }
    assert frames_until(ws, is_job("j2")) == [joined, status, odd]


def test_publish_raw_sends_bytes_unchanged(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    ws.recv()
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert emu.wait_for_connections(1, "sse")
        emu.publish_raw("not json")
        emu.publish_raw(b"\x00\x01", binary=True)
        emu.publish_raw("{}", event="job.completed")
        emu.publish_raw(b"retry: 5\n: odd\n\n", verbatim=True)
        body = stream.read(lambda b: b.endswith(b": odd\n\n"))
    assert body == (
        b"data: not json\n\ndata: \x00\x01\n\nevent: job.completed\ndata: {}\n\nretry: 5\n: odd\n\n"
    )
    assert ws.recv_data_frame(True)[1].data == b"not json"
    opcode, frame = ws.recv_data_frame(True)
    assert (opcode, frame.data) == (websocket.ABNF.OPCODE_BINARY, b"\x00\x01")
    # The WebSocket writer may still be sending the last two frames (nobody read them).
    assert wait_until(lambda: emu.frames_sent == 8), emu.frames_sent


def test_strict_ws_filters(
    spooled_emulator_strict: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator_strict
    ws = open_strict_ws(emu, sockets, queue="emails", events="Job.Completed, worker.registered")
    emu.publish("job.completed", job_id="other-queue", queue_name="sms", duration_ms=1)
    emu.publish("job.created", job_id="wrong-type", queue_name="emails", priority=0)
    emu.publish("worker.joined", worker_id="w-sms", queue_name="sms")  # queue filter skips it
    emu.publish("job.completed", job_id="end", queue_name="emails", duration_ms=1)
    seen = frames_until(ws, is_job("end"))
    assert [(f["type"], f["data"].get("worker_id")) for f in seen] == [
        ("WorkerRegistered", "w-sms"),
        ("JobCompleted", None),
    ]
    blocked = open_strict_ws(emu, sockets, events="")
    emu.publish("job.completed", job_id="nobody", queue_name="emails", duration_ms=1)
    blocked.settimeout(1.5)
    frames = [json.loads(blocked.recv()) for _ in range(3)]  # 2 at connect + 1 periodic
    assert {f["type"] for f in frames} == {"Ping"}


def test_default_ws_filters_apply_to_every_queue_event_and_take_aliases(
    spooled_emulator: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(
        emu, sockets, header=emu.api_key, queue="emails", events="worker.joined,JobCompleted"
    )
    emu.publish("worker.registered", worker_id="w-sms", queue_name="sms")
    emu.publish("worker.registered", worker_id="w-emails", queue_name="emails")
    emu.publish("job.failed", job_id="f", queue_name="emails", error="x", retry_count=0)
    emu.publish("job.completed", job_id="end", queue_name="emails", duration_ms=1)
    seen = frames_until(ws, is_job("end"))
    assert [f["data"].get("worker_id", f["data"].get("job_id")) for f in seen] == [
        "w-emails",
        "end",
    ]


def test_default_mode_publishes_what_actions_mean(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    client: httpx.Client = http(emu)
    auth = bearer(emu.api_key)
    ws = open_ws(emu, sockets, header=emu.api_key)

    created = client.post(
        "/api/v1/jobs",
        json={"queue_name": "emails", "payload": {"to": "x"}, "priority": 2},
        headers=auth,
    )
    assert created.status_code == 201
    job_id = created.json()["id"]
    client.post(f"/_emulator/jobs/{job_id}/status", json={"status": "processing"})
    client.post(f"/_emulator/jobs/{job_id}/status", json={"status": "completed"})
    seen = frames_until(ws, lambda f: f["type"] == "JobCompleted")
    assert [f["type"] for f in seen] == [
        "JobCreated",
        "JobStatusChange",
        "JobStatusChange",
        "JobCompleted",
    ]
    assert seen[0]["data"] | {"timestamp": None} == {
        "job_id": job_id,
        "queue_name": "emails",
        "priority": 2,
        "timestamp": None,
    }
    assert [seen[2]["data"]["old_status"], seen[2]["data"]["new_status"]] == [
        "processing",
        "completed",
    ]
    assert isinstance(seen[3]["data"]["duration_ms"], int)

    failing = emu.create_job("emails")
    emu.set_job_status(failing, "deadletter", error="boom")
    seen = frames_until(ws, lambda f: f["type"] == "JobFailed")
    assert seen[-1]["data"] | {"timestamp": None} == {
        "job_id": failing,
        "queue_name": "emails",
        "error": "boom",
        "retry_count": 0,
        "timestamp": None,
    }
    cancelled = client.post(f"/api/v1/jobs/{emu.create_job('emails')}/cancel", headers=auth)
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth).status_code == 409
    assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["status"] == "completed"

    client.post("/api/v1/queues/emails/pause", headers=auth)
    client.post("/api/v1/queues/emails/resume", headers=auth)
    worker = client.post(
        "/api/v1/workers/register", json={"queue_name": "emails", "hostname": "h"}, headers=auth
    ).json()["id"]
    client.post(
        f"/api/v1/workers/{worker}/heartbeat",
        json={"status": "busy", "current_job_id": job_id},
        headers=auth,
    )
    client.post(f"/api/v1/workers/{worker}/deregister", headers=auth)
    seen = frames_until(ws, lambda f: f["type"] == "WorkerDeregistered")
    assert [f["type"] for f in seen if not f["type"].startswith("Job")] == [
        "QueuePaused",
        "QueueResumed",
        "WorkerRegistered",
        "WorkerHeartbeat",
        "WorkerDeregistered",
    ]
    heartbeat = next(f for f in seen if f["type"] == "WorkerHeartbeat")
    assert list(heartbeat["data"]) == ["worker_id", "status", "current_job_id", "timestamp"]
    assert heartbeat["data"]["current_job_id"] == job_id


def test_strict_mode_publishes_nothing_on_actions(
    spooled_emulator_strict: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator_strict
    ws = open_strict_ws(emu, sockets)
    job_id = emu.create_job("emails")
    emu.set_job_status(job_id, "completed")
    emu.publish("job.created", job_id="injected", queue_name="emails", priority=0)
    assert frames_until(ws, is_job("injected"))[0]["data"]["job_id"] == "injected"


# -- SSE ---------------------------------------------------------------------------------------


def test_default_events_stream_filters_and_query_credentials(
    spooled_emulator: Emulator, http: Any
) -> None:
    emu = spooled_emulator
    token = login(emu)["access_token"]
    path = "/api/v1/events?" + urlencode(
        {"token": token, "queue": "emails", "events": "job.failed"}
    )
    with sse(http(emu), path) as stream:
        assert emu.wait_for_connections(1, "sse")
        emu.publish("job.failed", job_id="sms", queue_name="sms", error="e", retry_count=0)
        emu.publish("job.completed", job_id="wrong-type", queue_name="emails", duration_ms=1)
        emu.publish("job.failed", job_id="end", queue_name="emails", error="e", retry_count=0)
        body = stream.read(lambda b: b'"end"' in b)
    assert [data["data"]["job_id"] for _, data in sse_events(body)] == ["end"]
    with sse(http(emu), "/api/v1/events?api_key=" + emu.api_key) as stream:
        assert stream.status_code == 200


def test_strict_events_stream_is_health_only_then_ends_at_max_duration(http: Any) -> None:
    with Emulator(strict=True, health_interval=0.1, max_stream_duration=0.45) as emu:
        started = time.monotonic()
        with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
            assert emu.wait_for_connections(1, "sse")
            emu.publish("job.completed", job_id="j", queue_name="q", duration_ms=1)
            body = stream.read_to_end()
        elapsed = time.monotonic() - started
        events = sse_events(body)
        assert {name for name, _ in events} == {"system.health"}
        assert 4 <= len(events) <= 5
        assert 0.45 < elapsed < 1.0
        assert events[0][1]["data"] | {"timestamp": None} == {
            "database": True,
            "redis": True,
            "timestamp": None,
        }
        assert NANOS.match(events[0][1]["data"]["timestamp"])
        assert body.endswith(b"\n\n")

        emu.set_health(database=False, redis=False)
        with sse(http(emu), "/api/v1/events?events=job.created", bearer(emu.api_key)) as stream:
            assert stream.read(lambda b: len(b) >= 28).startswith(b": keepalive\n\n: keepalive\n\n")
        with sse(http(emu), "/api/v1/events?events=*", bearer(emu.api_key)) as stream:
            events = sse_events(stream.read(lambda b: b"\n\n" in b))
            assert events[0][1]["data"]["database"] is False


def test_sse_ping_comment_after_keepalive_interval_of_silence(http: Any) -> None:
    with Emulator(strict=True, health_interval=5.0, keepalive_interval=0.2) as emu:
        with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
            started = time.monotonic()
            body = stream.read(lambda b: b.count(b": ping\n\n") >= 2)
            assert body == b": ping\n\n: ping\n\n"
            assert 0.35 < time.monotonic() - started < 1.0
        assert emu.frames_sent == 0 and emu.counters["comments_sent"] >= 2


def test_job_stream_snapshot_changes_and_terminal_end(
    spooled_emulator: Emulator, http: Any
) -> None:
    emu = spooled_emulator
    job_id = emu.create_job("emails", {"n": 1})
    with sse(http(emu), f"/api/v1/events/jobs/{job_id}", bearer(emu.api_key)) as stream:
        first = stream.read(lambda b: b"job.status" in b and b.endswith(b"\n\n"))
        emu.set_job_status(job_id, "processing")
        first += stream.read(lambda b: b"processing" in b)
        first += stream.read(lambda b: b": keepalive" in b)
        emu.set_job_status(job_id, "completed")
        rest = stream.read_to_end()  # the body ends after the terminal status
    events = sse_events(first + rest)
    assert [(e["data"]["old_status"], e["data"]["new_status"]) for _, e in events] == [
        ("", "pending"),
        ("pending", "processing"),
        ("processing", "completed"),
    ]
    assert {name for name, _ in events} == {"job.status"}
    assert list(events[0][1]["data"]) == [
        "job_id",
        "queue_name",
        "old_status",
        "new_status",
        "timestamp",
    ]
    # a finished job: one snapshot, then the end
    with sse(http(emu), f"/api/v1/events/jobs/{job_id}", bearer(emu.api_key)) as stream:
        events = sse_events(stream.read_to_end())
    assert [(e["data"]["old_status"], e["data"]["new_status"]) for _, e in events] == [
        ("", "completed")
    ]


def test_job_stream_errors(spooled_emulator: Emulator, http: Any) -> None:
    emu = spooled_emulator
    with sse(http(emu), "/api/v1/events/jobs/no-such-job", bearer(emu.api_key)) as stream:
        body = stream.read_to_end()
    [(name, payload)] = sse_events(body)
    assert name == "error" and payload["type"] == "Error"
    assert (
        list(payload["data"]) == ["message", "timestamp"]
        and payload["data"]["message"] == "Job not found"
    )

    job_id = emu.create_job("emails")
    emu.set_db_error(True)
    with sse(http(emu), f"/api/v1/events/jobs/{job_id}", bearer(emu.api_key)) as stream:
        body = stream.read(lambda b: b.count(b"Database error") >= 2)
        emu.set_db_error(False)
        body += stream.read(lambda b: b"job.status" in b)
    names = [name for name, _ in sse_events(body)]
    assert names[:2] == ["error", "error"] and names[-1] == "job.status"


def test_queue_stream_counts_from_jobs(spooled_emulator: Emulator, http: Any) -> None:
    emu = spooled_emulator
    statuses = [
        "pending",
        "scheduled",
        "processing",
        "completed",
        "failed",
        "deadletter",
        "cancelled",
    ]
    for status in statuses:
        job_id = emu.create_job("reports")
        if status != "pending":
            emu.set_job_status(job_id, status)
    with sse(http(emu), "/api/v1/events/queues/reports", bearer(emu.api_key)) as stream:
        [(name, payload)] = sse_events(stream.read(lambda b: b"\n\n" in b))
    assert name == "queue.stats" and payload["type"] == "QueueStats"
    assert payload["data"] | {"timestamp": None} == {
        "queue_name": "reports",
        "pending": 2,
        "processing": 1,
        "completed": 1,
        "failed": 2,
        "timestamp": None,
    }
    emu.set_queue_counts("unknown", pending=7)
    with sse(http(emu), "/api/v1/events/queues/unknown", bearer(emu.api_key)) as stream:
        [(_, payload)] = sse_events(stream.read(lambda b: b"\n\n" in b))
    assert [payload["data"][k] for k in ("pending", "processing", "completed", "failed")] == [
        7,
        0,
        0,
        0,
    ]


# -- faults --------------------------------------------------------------------------------------


def test_drop_connections_aborts_without_close_frame_or_terminator(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    ws.recv()
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert emu.wait_for_connections(1, "sse")
        emu.drop_connections()
        with pytest.raises(httpx.RemoteProtocolError):
            stream.read_to_end()
    wait_closed(ws)
    assert wait(lambda: emu.connections_current("ws") + emu.connections_current("sse") == 0)


def test_close_streams_is_a_clean_close(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    ws.recv()
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert emu.wait_for_connections(1, "sse")
        emu.close_streams()
        assert stream.read_to_end() == b""  # ends without error
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert frame.data == (1001).to_bytes(2, "big") + b"going away"


def test_stall_sends_nothing_and_counts_dropped_events(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    ws = open_ws(emu, sockets, header=emu.api_key)
    ws.recv()
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert emu.wait_for_connections(1, "sse")
        emu.stall(True)
        sent = (
            emu.frames_sent,
            emu.counters.get("pings_sent", 0),
            emu.counters.get("comments_sent", 0),
        )
        emu.publish("job.completed", job_id="lost", queue_name="q", duration_ms=1)
        ws.settimeout(1.3)  # longer than ping_interval
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        assert (
            emu.frames_sent,
            emu.counters.get("pings_sent", 0),
            emu.counters.get("comments_sent", 0),
        ) == sent
        assert emu.counters["stalled_drops"] == 1
        emu.stall(False)
        emu.publish("job.completed", job_id="kept", queue_name="q", duration_ms=1)
        assert "lost" not in stream.read(lambda b: b"kept" in b).decode()
    ws.settimeout(3)
    assert frames_until(ws, is_job("kept"))[0]["data"]["job_id"] == "kept"


def test_reject_next_answers_before_any_stream_bytes(spooled_emulator: Emulator, http: Any) -> None:
    emu = spooled_emulator
    emu.reject_next(2, 429, body={"error": "rate_limited"}, retry_after=3)
    status, body, headers = ws_rejection(emu, header=emu.api_key)
    assert (status, json.loads(body), headers["retry-after"]) == (
        429,
        {"error": "rate_limited"},
        "3",
    )
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert stream.status_code == 429 and stream.headers["retry-after"] == "3"
    emu.reject_next(1, 503)
    rejected = http(emu).get("/api/v1/events/jobs/x", headers=bearer(emu.api_key))
    assert (rejected.status_code, rejected.text) == (503, "Service Unavailable")
    with sse(http(emu), "/api/v1/events", bearer(emu.api_key)) as stream:
        assert stream.status_code == 200
    assert emu.connections_accepted("ws") == 0 and emu.connections_accepted("sse") == 1


def test_accept_then_close(spooled_emulator: Emulator, sockets: list[websocket.WebSocket]) -> None:
    emu = spooled_emulator
    emu.accept_then_close(1)
    ws = open_ws(emu, sockets, header=emu.api_key)
    assert ws.getstatus() == 101
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and frame.data[:2] == (1011).to_bytes(2, "big")
    second = open_ws(emu, sockets, header=emu.api_key)
    assert json.loads(second.recv())["type"] == "Ping"
    assert emu.connections_accepted("ws") == 2


def test_revoked_key_aborts_streams_and_refuses_everything_until_restored(
    spooled_emulator: Emulator, http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    token = login(emu)["access_token"]
    ws = open_ws(emu, sockets, header=token, token=token)
    ws.recv()
    emu.revoke_api_key()
    wait_closed(ws)
    assert (
        httpx.post(f"{emu.base_url}/api/v1/auth/login", json={"api_key": emu.api_key}).status_code
        == 401
    )
    assert ws_rejection(emu, header=token, token=token)[:2] == (401, "API key has been revoked")
    assert ws_rejection(emu, token=token)[:2] == (401, "API key has been revoked")
    assert ws_rejection(emu, header=emu.api_key)[:2] == (401, "API key is inactive")
    denied = http(emu).get("/api/v1/events", headers=bearer(token))
    assert (denied.status_code, denied.text) == (401, "API key has been revoked")
    emu.restore_api_key()
    open_ws(emu, sockets, header=token, token=token).recv()


# -- lifecycle, counters, CLI -------------------------------------------------------------------


def test_restart_keeps_the_port_and_tokens_and_stop_is_prompt(
    http: Any, sockets: list[websocket.WebSocket]
) -> None:
    emu = Emulator(**FAST)
    with emu:
        port = emu.port
        token = login(emu)["access_token"]
        ws = open_ws(emu, sockets, header=token, token=token)
        with sse(http(emu), "/api/v1/events", bearer(token)) as stream:
            assert emu.wait_for_connections(1, "sse")
            started = time.monotonic()
            emu.stop()
            assert time.monotonic() - started < 1.0
            assert not emu.running
            with pytest.raises(httpx.RemoteProtocolError):
                stream.read_to_end()
        wait_closed(ws)
        emu.start()
        assert emu.port == port
        again = open_ws(emu, sockets, header=token, token=token)
        assert json.loads(again.recv())["type"] == "Ping"
        assert emu.connections_accepted("ws") == 2 and emu.login_count == 1
    assert not emu.running
    emu.stop()  # idempotent


def test_counters_and_waiting(
    spooled_emulator: Emulator, sockets: list[websocket.WebSocket]
) -> None:
    emu = spooled_emulator
    assert emu.wait_for_connections(1, timeout=0.05) is False
    assert emu.connections_current("ws") == emu.connections_accepted("ws") == 0
    ws = open_ws(emu, sockets, header=emu.api_key)
    assert emu.wait_for_connections(1) and emu.connections_current("ws") == 1
    emu.publish("job.created", job_id="a", queue_name="q", priority=0)
    frames_until(ws, is_job("a"))
    assert emu.frames_sent == 1 and emu.counters["pings_sent"] >= 1
    ws.close()
    assert wait(lambda: emu.connections_current("ws") == 0)
    assert emu.connections_accepted("ws") == 1
    emu.reset_counters()
    assert emu.frames_sent == 0


def test_control_api_validates_input(spooled_emulator: Emulator) -> None:
    emu = spooled_emulator
    with pytest.raises(KeyError):
        emu.set_job_status("missing", "completed")
    with pytest.raises(ValueError, match="unknown job status"):
        emu.set_job_status(emu.create_job("q"), "exploded")
    with pytest.raises(ValueError, match="32 bytes"):
        Emulator(jwt_secret="short")
    assert emu.job(emu.create_job("q", priority=4))["priority"] == 4


def test_cli_prints_url_and_key_and_exits_0_on_signals() -> None:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [sys.executable, "-m", "spooled_integrations", "emulator", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            assert lines[0].strip() == f"Spooled emulator listening on http://127.0.0.1:{port}"
            key = lines[2].split()[-1]
            assert key.startswith("sk_test_")
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/auth/login", json={"api_key": key}
            )
            assert response.status_code == 200
            process.send_signal(sig)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, stderr
        assert "stopped" in stdout
