"""The emulator's aiohttp application: lifecycle, publishing, WebSocket and SSE.

Runs on the emulator's event loop; :class:`~spooled_integrations.testing.Emulator`
owns the thread and marshals control calls here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from spooled_integrations.protocol.vocabulary import TERMINAL_STATUSES
from spooled_integrations.testing._auth import Auth, Identity, Rejected
from spooled_integrations.testing._config import Settings
from spooled_integrations.testing._http import (
    API,
    add_api_headers,
    api_middleware,
    rejection_response,
    text_response,
)
from spooled_integrations.testing._hub import Hub, Item, Rejection, Stream
from spooled_integrations.testing._rest import Rest
from spooled_integrations.testing._state import Published, State
from spooled_integrations.testing._wire import (
    Envelope,
    StreamFilter,
    make_envelope,
    now_timestamp,
    sse_comment,
    sse_event,
)

__all__ = ["Server"]

logger = logging.getLogger(__name__)

_WS_QUERY_FIELDS = ("queue", "job_id", "events", "token")
_STRICT_COMMANDS = frozenset({"Subscribe", "Unsubscribe", "Ping"})
_LENIENT_COMMANDS = _STRICT_COMMANDS | {"subscribe", "unsubscribe", "ping"}
_QUEUE_FILTER_EXTRA = frozenset("-_.*")

# A poll step: (chunks to write, each flagged "is a data event"), then "end the body".
PollResult = tuple[list[tuple[bytes, bool]], bool]


def _valid_queue_filter(queue: str) -> str | None:
    """The backend's ``validate_queue_filter`` (Python ``isalnum`` ≈ Rust ``is_alphanumeric``)."""
    if len(queue.encode()) > 100:
        return "Queue filter too long"
    if not all(char.isalnum() or char in _QUEUE_FILTER_EXTRA for char in queue):
        return "Queue filter contains invalid characters"
    return None


def _upgrade_problem(request: web.Request) -> tuple[int, str] | None:
    """axum's ``WebSocketUpgrade`` rejections, in its order."""
    headers = request.headers
    connection = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
    if "upgrade" not in connection:
        return 400, "Connection header did not include 'upgrade'"
    if headers.get("Upgrade", "").lower() != "websocket":
        return 400, "`Upgrade` header did not include 'websocket'"
    if headers.get("Sec-WebSocket-Version") != "13":
        return 400, "`Sec-WebSocket-Version` header did not include '13'"
    if "Sec-WebSocket-Key" not in headers:
        return 400, "`Sec-WebSocket-Key` header missing"
    return None


class Server:
    """Routes and per-connection loops. One instance per emulator; reopened on restart."""

    def __init__(self, settings: Settings, auth: Auth, state: State, hub: Hub) -> None:
        self.settings = settings
        self.auth = auth
        self.state = state
        self.hub = hub
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------

    async def open(self, host: str, port: int) -> int:
        """Listen on ``host:port`` and return the bound port."""
        runner = web.AppRunner(
            self._application(), handler_cancellation=True, shutdown_timeout=0.25, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: int = runner.addresses[0][1]
        return bound

    async def close(self) -> None:
        """Abort every open stream and stop listening."""
        runner, self._runner = self._runner, None
        self.hub.abort_all()
        if runner is not None:
            await runner.cleanup()

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[api_middleware])
        app.on_response_prepare.append(add_api_headers)
        Rest(self).add_routes(app)
        app.router.add_get(f"{API}/ws", self._websocket)
        app.router.add_get(f"{API}/events", self._sse_events)
        app.router.add_get(f"{API}/events/jobs/{{id}}", self._sse_job)
        app.router.add_get(f"{API}/events/queues/{{name}}", self._sse_queue)
        return app

    # -- publishing -------------------------------------------------------------

    def envelope(self, name: str, fields: dict[str, Any]) -> Envelope:
        return make_envelope(name, fields, timestamp=now_timestamp(nanos=self.settings.strict))

    def publish(self, name: str, fields: dict[str, Any]) -> Envelope:
        envelope = self.envelope(name, fields)
        self.hub.broadcast(envelope)
        return envelope

    def emit(self, published: Published) -> None:
        """Publish what an action means, in default mode only (strict: source-faithful)."""
        if not self.settings.strict:
            for name, fields in published:
                self.publish(name, fields)

    # -- faults shared by WS and SSE -------------------------------------------------

    def _take_rejection(self) -> web.Response | None:
        rejection: Rejection | None = self.hub.take_rejection()
        if rejection is None:
            return None
        self.hub.count("rejected_by_fault")
        return rejection_response(rejection)

    # -- WebSocket --------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        rejected = self._take_rejection()
        if rejected is not None:
            return rejected
        strict = self.settings.strict
        header = request.headers.get("Authorization")
        # 1. protected-router middleware (default mode: only when a header is sent)
        if strict or header is not None:
            self.auth.authenticate_header(header)
        # 2. upgrade validation
        problem = _upgrade_problem(request)
        if problem is not None:
            return text_response(*problem)
        # 3. query parse: a repeated known field is a serde error
        for name in _WS_QUERY_FIELDS:
            if len(request.query.getall(name, [])) > 1:
                return text_response(
                    400, f"Failed to deserialize query string: duplicate field `{name}`"
                )
        query = {name: request.query.get(name) for name in _WS_QUERY_FIELDS}
        # 4. the ?token= JWT (strict: always required; default: checked when present)
        if strict:
            self.auth.authenticate_ws_query_token(query["token"])
        elif query["token"] is not None:
            self.auth.authenticate_ws_query_token(query["token"], check_key=True)
        elif header is None:
            raise Rejected(401, "Missing authentication token")
        # 5. queue filter validation
        if query["queue"] is not None:
            invalid = _valid_queue_filter(query["queue"])
            if invalid is not None:
                return text_response(400, invalid)
        # 6. per-org connection cap
        if self.hub.current("ws") >= self.settings.ws_connection_cap:
            return text_response(429, "Too many WebSocket connections")
        # 7. upgrade
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=1.0)
        if self.hub.take_accept_then_close():
            await ws.prepare(request)
            self.hub.count("ws_accepted")
            self.hub.count("accept_then_close")
            await ws.close(code=1011, message=b"Internal error")
            return ws
        stream = Stream(
            "ws",
            request.transport,
            filter=StreamFilter.parse(query["queue"], query["events"], lenient=not strict),
            raw=True,
        )
        # Registered before the 101 goes out, so a client that sees the upgrade also
        # sees itself counted.
        self.hub.add(stream)
        try:
            await ws.prepare(request)
            await self._ws_session(ws, stream)
        finally:
            self.hub.remove(stream)
        return ws

    async def _ws_session(self, ws: web.WebSocketResponse, stream: Stream) -> None:
        """Read commands here while a writer task sends pings and events."""
        writer = asyncio.create_task(self._ws_writer(ws, stream))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._ws_command(stream, message.data)
                elif message.type is WSMsgType.PING and not self.hub.stalled:
                    await ws.pong(message.data)
        finally:
            if not writer.done():
                stream.put(Item("end"))
                done, _ = await asyncio.wait({writer}, timeout=0.5)
                if not done:
                    writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer

    def _ws_command(self, stream: Stream, text: str) -> None:
        """Client commands: parsed, logged, never acknowledged; ``Ping`` gets a Ping frame."""
        allowed = _STRICT_COMMANDS if self.settings.strict else _LENIENT_COMMANDS
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        name = command.get("cmd") if isinstance(command, dict) else None
        if (
            not isinstance(command, dict)
            or name not in allowed
            or any(
                command.get(key) is not None and not isinstance(command.get(key), str)
                for key in ("queue", "job_id")
            )
        ):
            self.hub.count("ignored_messages")
            return
        self.hub.count("commands")
        self.hub.record_command(command)
        logger.debug("emulator: WebSocket command %s", name)
        if name.lower() == "ping":
            stream.put(Item("ping"))

    async def _ws_writer(self, ws: web.WebSocketResponse, stream: Stream) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.ping_interval
        with contextlib.suppress(ConnectionError):
            for _ in range(2 if self.settings.strict else 1):
                await self._ws_ping(ws)
            next_ping = loop.time() + interval
            while True:
                delay = next_ping - loop.time()
                if delay <= 0:
                    next_ping = max(next_ping + interval, loop.time())
                    await self._ws_ping(ws)
                    continue
                try:
                    item = await asyncio.wait_for(stream.queue.get(), delay)
                except asyncio.TimeoutError:
                    continue
                if item.kind == "ping":
                    await self._ws_ping(ws)
                elif item.kind == "close":
                    await ws.close(code=item.code, message=str(item.payload).encode())
                    return
                elif item.kind == "end":
                    return
                elif self.hub.stalled:
                    self.hub.count("stalled_drops")
                elif isinstance(item.payload, str):
                    self.hub.count("frames_sent")
                    await ws.send_str(item.payload)
                else:
                    self.hub.count("frames_sent")
                    await ws.send_bytes(item.payload)

    async def _ws_ping(self, ws: web.WebSocketResponse) -> None:
        if self.hub.stalled:
            return
        self.hub.count("pings_sent")
        await ws.send_str(self.envelope("Ping", {}).json().decode())

    # -- SSE ------------------------------------------------------------------------

    def _sse_identity(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization")
        if self.settings.strict or header is not None:
            return self.auth.authenticate_header(header)
        # Default mode: query credentials, as production reportedly accepts.
        for name in ("token", "api_key"):
            credential = request.query.get(name)
            if credential is not None:
                return self.auth.authenticate_credential(credential)
        raise Rejected(401, "Missing or invalid Authorization header")

    async def _sse_events(self, request: web.Request) -> web.StreamResponse:
        rejected = self._take_rejection()
        if rejected is not None:
            return rejected
        self._sse_identity(request)
        events = StreamFilter.parse(None, request.query.get("events"), lenient=False)
        published = None
        if not self.settings.strict:
            published = StreamFilter.parse(
                request.query.get("queue"), request.query.get("events"), lenient=True
            )

        def poll() -> PollResult:
            if not events.wants_health():
                return [(sse_comment("keepalive"), False)], False
            fields = {
                "database": self.state.database_ok and not self.state.db_error,
                "redis": self.state.redis_ok,
            }
            return [self._sse_data(self.envelope("SystemHealth", fields))], False

        stream = Stream("sse", request.transport, filter=published, raw=True)
        return await self._sse(request, stream, self.settings.health_interval, poll)

    async def _sse_job(self, request: web.Request) -> web.StreamResponse:
        rejected = self._take_rejection()
        if rejected is not None:
            return rejected
        self._sse_identity(request)
        job_id = request.match_info["id"]
        last: list[str] = []  # the status last emitted (empty before the first poll)

        def poll() -> PollResult:
            if self.state.db_error:
                return [self._sse_error("Database error")], False
            job = self.state.jobs.get(job_id)
            if job is None:
                return [self._sse_error("Job not found")], True
            if last and last[0] == job.status:
                return [(sse_comment("keepalive"), False)], False
            fields = {
                "job_id": job.id,
                "queue_name": job.queue_name,
                "old_status": last[0] if last else "",
                "new_status": job.status,
            }
            last[:] = [job.status]
            chunk = self._sse_data(self.envelope("JobStatusChange", fields))
            return [chunk], job.status in TERMINAL_STATUSES

        stream = Stream("sse", request.transport)
        return await self._sse(request, stream, self.settings.job_poll_interval, poll)

    async def _sse_queue(self, request: web.Request) -> web.StreamResponse:
        rejected = self._take_rejection()
        if rejected is not None:
            return rejected
        self._sse_identity(request)
        queue_name = request.match_info["name"]

        def poll() -> PollResult:
            if self.state.db_error:
                return [self._sse_error("Database error")], False
            fields: dict[str, Any] = {"queue_name": queue_name}
            fields.update(self.state.queue_counts(queue_name))
            return [self._sse_data(self.envelope("QueueStats", fields))], False

        stream = Stream("sse", request.transport)
        return await self._sse(request, stream, self.settings.queue_poll_interval, poll)

    def _sse_data(self, envelope: Envelope) -> tuple[bytes, bool]:
        return sse_event(envelope.dotted, envelope.json()), True

    def _sse_error(self, message: str) -> tuple[bytes, bool]:
        return self._sse_data(self.envelope("Error", {"message": message}))

    async def _sse(
        self,
        request: web.Request,
        stream: Stream,
        interval: float,
        poll: Callable[[], PollResult],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        self.hub.add(stream)  # before the headers go out, as for WS
        try:
            await response.prepare(request)
            await self._sse_loop(response, stream, interval, poll)
            await response.write_eof()
        except ConnectionError:
            pass
        finally:
            self.hub.remove(stream)
        return response

    async def _sse_loop(
        self,
        response: web.StreamResponse,
        stream: Stream,
        interval: float,
        poll: Callable[[], PollResult],
    ) -> None:
        """Poll every ``interval``, forward queued items, ``: ping`` when quiet; return to end."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        start = last_write = loop.time()
        next_poll = start + interval
        while True:
            now = loop.time()
            if now >= next_poll:
                next_poll = now + interval
                if self.hub.stalled:
                    last_write = now
                    continue
                if now - start > settings.max_stream_duration:
                    return
                chunks, finished = poll()
                for chunk, is_data in chunks:
                    await self._sse_write(response, chunk, is_data=is_data)
                last_write = loop.time()
                if finished:
                    return
                continue
            if now >= last_write + settings.keepalive_interval:
                if not self.hub.stalled:
                    await self._sse_write(response, sse_comment("ping"), is_data=False)
                last_write = now
                continue
            timeout = min(next_poll, last_write + settings.keepalive_interval) - now
            try:
                item = await asyncio.wait_for(stream.queue.get(), timeout)
            except asyncio.TimeoutError:
                continue
            if item.kind in ("close", "end"):
                return
            if self.hub.stalled:
                self.hub.count("stalled_drops")
                continue
            payload = item.payload if isinstance(item.payload, bytes) else item.payload.encode()
            await self._sse_write(response, payload, is_data=True)
            last_write = loop.time()

    async def _sse_write(
        self, response: web.StreamResponse, chunk: bytes, *, is_data: bool
    ) -> None:
        self.hub.count("frames_sent" if is_data else "comments_sent")
        await response.write(chunk)
