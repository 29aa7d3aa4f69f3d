"""WebSocket transport on websocket-client.

The JWT goes both in ``Authorization: Bearer`` and in ``?token=`` (the backend wants
both); filters go in the connect URL because the server ignores ``Subscribe``
commands for filtering. Commands are PascalCase and fire-and-forget (no acks exist).
websocket-client does the handshake and all sending; received frames are parsed from
whole socket reads by :class:`~spooled_integrations.protocol.wsframes.FrameReader`
(much cheaper per event than ``recv_data``; ``bench/README.md``). UTF-8 is not validated separately:
the JSON decoder rejects bad text anyway. The socket is ours too (websocket-client gets it
ready-made): direct or through a proxy's tunnel as :mod:`~spooled_integrations.client.proxy`
decides, with TLS from httpx's context (certifi, ``SSL_CERT_FILE``) like the other
transports, so websocket-client never applies proxy variables of its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode

import websocket

from spooled_integrations._redact import redact
from spooled_integrations.client.base import BaseClient, ReadOutcome, _Stop
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions, SubscriptionFilter
from spooled_integrations.client.proxy import ProxyError, open_socket
from spooled_integrations.errors import ProtocolError, SpooledConnectionError
from spooled_integrations.protocol import _json
from spooled_integrations.protocol.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_OVERSIZED,
    OP_PING,
    OP_TEXT,
    FrameReader,
)

__all__ = ["WebSocketClient"]

WS_LIVENESS_DEFAULT = 45.0
PINGS_PER_LIVENESS = 3
"""The client sends ``{"cmd":"Ping"}`` after a third of the liveness timeout of silence
(the server answers with a Ping frame), so liveness never depends on the server's 30 s
interval and a dead connection is found after three unanswered pings."""
CLEAN_CLOSE_CODES = frozenset({1000, 1001})
READ_SIZE = 64 * 1024
"""Bytes asked of each socket read: hundreds of small frames at once in a burst (the
size hardly matters in ``bench/stream.py``: ``bench/README.md``)."""


class WebSocketClient(BaseClient):
    """Realtime events over ``/api/v1/ws``."""

    transport = "ws"

    def __init__(
        self, options: ConnectionOptions, *, filter: SubscriptionFilter | None = None
    ) -> None:
        super().__init__(options, filter=filter)
        self._subscriptions: list[SubscriptionFilter] = []
        self._ws: websocket.WebSocket | None = None
        self._pending: socket.socket | None = None
        self._ws_lock = threading.Lock()

    # -- commands --------------------------------------------------------------------

    def subscribe(self, filter: SubscriptionFilter) -> None:
        """Send ``Subscribe`` now (if connected) and after every reconnect.

        The server sends no acknowledgement, so none is awaited; what the server
        delivers is decided by the connect-time filter.
        """
        if filter not in self._subscriptions:
            self._subscriptions.append(filter)
        self._send_command("Subscribe", filter)

    def unsubscribe(self, filter: SubscriptionFilter) -> None:
        """Send ``Unsubscribe`` and stop replaying that subscription."""
        if filter in self._subscriptions:
            self._subscriptions.remove(filter)
        self._send_command("Unsubscribe", filter)

    def ping(self) -> None:
        """Ask the server for a ``Ping`` frame (a liveness probe)."""
        self._send_command("Ping", None)

    def _send_command(self, command: str, filter: SubscriptionFilter | None) -> None:
        ws = self._ws
        if ws is None or not ws.connected:
            return
        self._send_on(ws, command, filter)

    def _send_on(
        self, ws: websocket.WebSocket, command: str, filter: SubscriptionFilter | None
    ) -> None:
        message: dict[str, Any] = {"cmd": command}
        if filter is not None:
            if filter.queue_name:
                message["queue"] = filter.queue_name
            if filter.job_id:
                message["job_id"] = filter.job_id
        try:
            ws.send(_json.dumps(message).decode())
        except (websocket.WebSocketException, OSError) as exc:
            # The reader notices the dead socket, reconnects and replays subscriptions.
            self._log.info("Spooled ws: %s command not sent (%s)", command, type(exc).__name__)

    # -- transport hooks ---------------------------------------------------------------

    def _url(self, token: str) -> str:
        params = {"token": token}
        if self.filter is not None:
            params.update(self.filter.query_params())
        return f"{self.options.resolved_ws_url}?{urlencode(params)}"

    def _url_for_logs(self) -> str:
        return self.options.resolved_ws_url

    def _open(self, *, force_login: bool) -> websocket.WebSocket:
        token = self._tokens.get(force=force_login)
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        with self._ws_lock:
            if self._stop.is_set():
                raise _Stop
            self._ws = ws
        headers = [f"Authorization: Bearer {token}"]
        headers += [f"{k}: {v}" for k, v in self.options.extra_headers.items()]
        try:
            ws.connect(  # type: ignore[no-untyped-call]
                self._url(token),
                header=headers,
                timeout=self.options.connect_timeout,
                suppress_origin=True,
                socket=self._socket(),
            )
        except websocket.WebSocketBadStatusException as exc:
            body = exc.resp_body.decode("utf-8", "replace") if exc.resp_body else ""
            raise error_for_status(
                exc.status_code,
                exc.resp_headers,
                body,
                what=f"WebSocket handshake at {self._url_for_logs()}",
                secrets=self._tokens.secrets(),
            ) from None
        except ProxyError:
            if self._stop.is_set():
                raise _Stop from None
            raise
        except (websocket.WebSocketException, OSError) as exc:
            if self._stop.is_set():
                raise _Stop from None
            raise SpooledConnectionError(self._describe(exc, "WebSocket connect failed")) from None
        finally:
            with self._ws_lock:
                self._pending = None
        ws.settimeout(self._liveness_timeout(WS_LIVENESS_DEFAULT) / PINGS_PER_LIVENESS)
        for subscription in self._subscriptions:
            self._send_on(ws, "Subscribe", subscription)
        return ws

    def _socket(self) -> socket.socket:
        """The TCP (and TLS) connection the handshake goes over: direct or through the
        proxy's tunnel, decided in one place for every transport (``client.proxy``)."""
        return open_socket(
            self.options.resolved_ws_url,
            self.options.proxy,
            timeout=self.options.connect_timeout,
            verify=self.options.verify_tls,
            remember=self._remember,
        )

    def _remember(self, sock: socket.socket) -> None:
        """Keep the socket being opened, so ``disconnect()`` can cut its handshake short."""
        with self._ws_lock:
            self._pending = sock
            stopping = self._stop.is_set()
        if stopping:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _read(self, session: Any) -> ReadOutcome:
        ws: websocket.WebSocket = session
        sock = ws.sock
        if sock is None:
            raise SpooledConnectionError("WebSocket closed before reading")
        # Whole socket reads through our frame reader (see protocol.wsframes); the
        # handshake and everything we send stay with websocket-client.
        reader = FrameReader(max_message=self.options.max_frame_bytes)
        feed, recv, handle = reader.feed, sock.recv, self._handle_frame
        deliver_batch = self._deliver_batch
        undecoded = bool(self._frame_handlers)  # on_frames: the consumer decodes
        liveness = self._liveness_timeout(WS_LIVENESS_DEFAULT)
        heard_at = time.monotonic()
        while True:
            try:
                chunk = recv(READ_SIZE)
            except TimeoutError:
                if time.monotonic() - heard_at < liveness * 0.99:
                    self._send_on(ws, "Ping", None)  # keep-alive: the server answers
                    continue
                raise SpooledConnectionError(
                    f"no frame for {liveness:.0f} s, not even an answer to our pings "
                    "(liveness timeout); reconnecting"
                ) from None
            except OSError as exc:
                if self._stop.is_set():
                    raise _Stop from None
                raise SpooledConnectionError(self._describe(exc, "WebSocket dropped")) from None
            if not chunk:
                if self._stop.is_set():
                    raise _Stop
                raise SpooledConnectionError("the server closed the socket without a Close frame")
            self._note_frame_time()
            heard_at = time.monotonic()
            try:
                messages = feed(chunk)
            except ProtocolError as exc:
                raise SpooledConnectionError(f"WebSocket protocol error: {exc}") from None
            messages.reverse()  # popped: each message is let go once handled (less GC)
            while messages:
                opcode, data = messages.pop()
                if opcode != OP_TEXT:
                    outcome = self._control(ws, opcode, data)
                    if outcome is not None:
                        return outcome
                elif undecoded:
                    self.stats.frames_received += 1
                    self._frames.append(data)
                else:
                    handle(data)
            deliver_batch()

    def _control(self, ws: websocket.WebSocket, opcode: int, data: bytes) -> ReadOutcome | None:
        """Everything but a text message: binary is counted, pings answered, Close ends."""
        if opcode == OP_BINARY:
            self.stats.frames_received += 1
            self._count_protocol_error(ProtocolError("binary frame ignored", reason="binary"))
        elif opcode == OP_OVERSIZED:  # skipped by the reader as it arrived, never buffered
            self.stats.frames_received += 1
            limit = self.options.max_frame_bytes
            self._count_protocol_error(
                ProtocolError(f"frame over the {limit}-byte limit skipped", reason="too_large")
            )
        elif opcode == OP_PING:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.pong(data)
        elif opcode == OP_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            if code in CLEAN_CLOSE_CODES:
                return "closed"  # _close() answers the Close frame
            raise SpooledConnectionError(f"server closed the WebSocket with code {code}")
        return None

    def _close(self, session: Any) -> None:
        ws: websocket.WebSocket = session
        with self._ws_lock:
            if self._ws is ws:
                self._ws = None
        try:
            if ws.connected and not self._stop.is_set():
                ws.send_close()
        except (websocket.WebSocketException, OSError):
            pass
        ws.shutdown()  # type: ignore[no-untyped-call]

    def _abort(self) -> None:
        with self._ws_lock:
            ws = self._ws
            sock = self._pending or (ws.sock if ws is not None else None)
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _describe(self, exc: BaseException, what: str) -> str:
        detail = str(exc) or type(exc).__name__
        return redact(f"{what}: {detail}", *self._tokens.secrets())
