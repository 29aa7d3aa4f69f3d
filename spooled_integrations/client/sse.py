"""SSE transport: one HTTP/1.1 GET on a socket we own, h11 for the response head.

The body is unframed by :mod:`~spooled_integrations.protocol.httpbody` from whole
socket reads: the backend sends each event as its own HTTP chunk, and an HTTP client
library pays per chunk (httpcore + h11 cost more than everything else we do with an
event; figures in ``bench/README.md``). Owning the socket also lets ``disconnect()`` shut it
down so a read blocked on a silent server returns at once. TLS uses httpx's context
(certifi roots, ``SSL_CERT_FILE``); an HTTP proxy is reached through a ``CONNECT``
tunnel (:mod:`~spooled_integrations.client.proxy`), for http and https alike.

Three streams: ``/api/v1/events`` (filtered by ``queue``/``events``), a per-job stream
``/api/v1/events/jobs/{id}`` that ends at a terminal status, and a per-queue stream
``/api/v1/events/queues/{name}`` of ``queue.stats``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import h11

from spooled_integrations._redact import redact
from spooled_integrations.client.base import BaseClient, ReadOutcome, _Stop
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions, SubscriptionFilter
from spooled_integrations.client.proxy import ProxyError, open_socket
from spooled_integrations.errors import (
    NotSupportedError,
    ProtocolError,
    ServerError,
    SpooledConnectionError,
)
from spooled_integrations.protocol import (
    TERMINAL_STATUSES,
    Event,
    EventType,
    SSEDecoder,
    SSEMessage,
    normalize,
)
from spooled_integrations.protocol.httpbody import BodyReader, body_reader

__all__ = ["SSEClient"]

SSE_LIVENESS_DEFAULT = 45.0
EVENTS_PATH = "/api/v1/events"
READ_SIZE = 64 * 1024
"""Bytes asked of each socket read (16 to 256 KiB measured the same in ``bench/stream.py``)."""
_ERROR_BODY_LIMIT = 4096
_JOB_GONE = "Job not found"


@dataclass
class _Stream:
    """One open event stream: the socket, its body framing, body bytes read with the head."""

    sock: socket.socket
    body: BodyReader
    first: bytes


class SSEClient(BaseClient):
    """Realtime events over Server-Sent Events. Filters are fixed at connect time."""

    transport = "sse"

    def __init__(
        self, options: ConnectionOptions, *, filter: SubscriptionFilter | None = None
    ) -> None:
        super().__init__(options, filter=filter)
        self._job_id: str | None = None
        self._queue_stream: str | None = None
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._use_filter(filter)

    # -- choosing the stream -----------------------------------------------------------

    def connect_with_filter(
        self, filter: SubscriptionFilter | None, timeout: float | None = None
    ) -> None:
        """Connect with ``filter``; a ``job_id`` selects that job's own stream."""
        self._use_filter(filter)
        self.connect(timeout)

    def connect_job(self, job_id: str, timeout: float | None = None) -> None:
        """Follow one job until it reaches a terminal status."""
        self.connect_with_filter(SubscriptionFilter(job_id=job_id), timeout)

    def connect_queue(self, queue_name: str, timeout: float | None = None) -> None:
        """Receive ``queue.stats`` for one queue."""
        self._use_filter(SubscriptionFilter(queue_name=queue_name))
        self._queue_stream = queue_name
        self.connect(timeout)

    def _use_filter(self, filter: SubscriptionFilter | None) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise NotSupportedError("disconnect() before connecting with another filter")
        self.filter = filter
        self._job_id = filter.job_id if filter is not None else None
        self._queue_stream = None

    def subscribe(self, filter: SubscriptionFilter) -> None:
        raise NotSupportedError(
            "SSE cannot change its subscription on an open stream: call disconnect(), "
            "then connect_with_filter(filter)"
        )

    def unsubscribe(self, filter: SubscriptionFilter) -> None:
        self.subscribe(filter)

    def _path_and_query(self) -> str:
        if self._job_id is not None:
            return f"{EVENTS_PATH}/jobs/{quote(self._job_id, safe='')}"
        if self._queue_stream is not None:
            return f"{EVENTS_PATH}/queues/{quote(self._queue_stream, safe='')}"
        params = self.filter.query_params() if self.filter is not None else {}
        return f"{EVENTS_PATH}?{urlencode(params)}" if params else EVENTS_PATH

    def _url_for_logs(self) -> str:
        return self.options.base_url + self._path_and_query()

    # -- transport hooks ---------------------------------------------------------------

    def _open(self, *, force_login: bool) -> _Stream:
        token = self._tokens.get(force=force_login)
        url = self.options.base_url + self._path_and_query()
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [
            ("Host", parts.netloc),
            ("Authorization", f"Bearer {token}"),
            ("Accept", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            *self.options.extra_headers.items(),
        ]
        timeout = self.options.connect_timeout
        try:
            sock = open_socket(
                url,
                self.options.proxy,
                timeout=timeout,
                verify=self.options.verify_tls,
                remember=self._remember_socket,
            )
            http = h11.Connection(h11.CLIENT)
            request = http.send(h11.Request(method="GET", target=target, headers=headers))
            sock.sendall((request or b"") + (http.send(h11.EndOfMessage()) or b""))
            sock.settimeout(self._liveness_timeout(SSE_LIVENESS_DEFAULT))
            response = self._read_head(sock, http)
        except ProxyError:
            self._drop_socket()
            self._raise_if_stopping()
            raise
        except TimeoutError:
            self._drop_socket()
            self._raise_if_stopping()
            raise SpooledConnectionError("SSE request timed out before the response") from None
        except (OSError, h11.ProtocolError) as exc:
            self._drop_socket()
            self._raise_if_stopping()
            raise SpooledConnectionError(self._describe(exc, "SSE request failed")) from None
        if response.status_code != 200:
            body = self._read_error_body(sock, http)
            self._drop_socket()
            raise error_for_status(
                response.status_code,
                {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers},
                body,
                what=f"SSE request to {self._url_for_logs()}",
                secrets=self._tokens.secrets(),
            )
        content_type = next((v for k, v in response.headers if k == b"content-type"), b"")
        try:
            if not content_type.startswith(b"text/event-stream"):
                raise ServerError(
                    f"SSE answer is {content_type.decode('latin-1')!r}, not an event stream"
                )
            body_framing = body_reader(list(response.headers))
        except (ServerError, ProtocolError):
            self._drop_socket()
            raise
        return _Stream(sock, body_framing, http.trailing_data[0])

    def _read_head(self, sock: socket.socket, http: h11.Connection) -> h11.Response:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionError("the server closed the connection before answering")
                http.receive_data(data)
            elif isinstance(event, h11.Response):
                return event

    def _read(self, session: Any) -> ReadOutcome:
        stream: _Stream = session
        recv, feed_body = stream.sock.recv, stream.body.feed
        decoder = SSEDecoder(max_message=self.options.max_frame_bytes)
        oversized = 0
        feed_events, hand_over = decoder.feed, self._hand_over
        deliver_batch = self._deliver_batch
        follows_job = self._job_id is not None
        undecoded = bool(self._frame_handlers)  # on_frames: the consumer decodes
        data = stream.first
        while True:
            if data:
                self._note_frame_time()
                try:
                    body = feed_body(data)
                except ProtocolError as exc:
                    raise SpooledConnectionError(f"SSE stream framing broken: {exc}") from None
                messages = feed_events(body)
                end = _job_stream_end(messages) if follows_job else None
                if end is not None:
                    hand_over(messages[: end + 1], undecoded)
                    return "finished"
                hand_over(messages, undecoded)
                if decoder.oversized != oversized:
                    self._count_oversized(decoder.oversized - oversized)
                    oversized = decoder.oversized
                deliver_batch()
                if stream.body.finished:
                    self._raise_if_stopping()
                    return "closed"
            try:
                data = recv(READ_SIZE)
            except TimeoutError:
                raise SpooledConnectionError(
                    "no SSE data or keep-alive within the liveness timeout; reconnecting"
                ) from None
            except OSError as exc:
                self._raise_if_stopping()
                raise SpooledConnectionError(self._describe(exc, "SSE stream dropped")) from None
            if not data:
                self._raise_if_stopping()
                if stream.body.ends_at_close:
                    return "closed"
                raise SpooledConnectionError("SSE stream dropped: connection closed mid-body")

    def _hand_over(self, messages: list[SSEMessage], undecoded: bool) -> None:
        """The messages of one read to the event handlers, or undecoded to on_frames."""
        if undecoded:
            self.stats.frames_received += len(messages)
            self._frames += messages
            return
        handle = self._handle_frame
        messages.reverse()  # popped: each message is let go once handled (less GC)
        while messages:
            handle(messages.pop())

    def _count_oversized(self, count: int) -> None:
        """Events the decoder dropped for their size count as skipped frames."""
        limit = self.options.max_frame_bytes
        for _ in range(count):
            self.stats.frames_received += 1
            self._count_protocol_error(
                ProtocolError(f"event over the {limit}-byte limit skipped", reason="too_large")
            )

    def _close(self, session: Any) -> None:
        self._drop_socket()

    def _abort(self) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _remember_socket(self, sock: socket.socket) -> None:
        with self._sock_lock:
            self._sock = sock
        if self._stop.is_set():
            self._abort()

    def _drop_socket(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _raise_if_stopping(self) -> None:
        if self._stop.is_set():
            raise _Stop

    def _read_error_body(self, sock: socket.socket, http: h11.Connection) -> str:
        body = b""
        try:
            while len(body) < _ERROR_BODY_LIMIT:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(sock.recv(READ_SIZE))
                elif isinstance(event, h11.Data):
                    body += event.data
                else:
                    break
        except (OSError, h11.ProtocolError):
            pass
        return body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")

    def _describe(self, exc: BaseException, what: str) -> str:
        detail = str(exc) or type(exc).__name__
        return redact(f"{what}: {detail}", *self._tokens.secrets())


def _job_stream_end(messages: list[SSEMessage]) -> int | None:
    """Where a per-job stream ends: after a terminal status or ``Job not found``.

    Checked on the frames themselves (quietly: a bad frame does not end the stream, and
    it is counted when it is delivered), whoever decodes them for delivery.
    """
    for index, message in enumerate(messages):
        try:
            events = normalize(message.data, event_name=message.event)
        except ProtocolError:
            continue
        if _job_stream_over(events):
            return index
    return None


def _job_stream_over(events: list[Event]) -> bool:
    for event in events:
        if event.type == EventType.JOB_STATUS and event.data.get("new_status") in TERMINAL_STATUSES:
            return True
        if event.type == EventType.ERROR and event.data.get("message") == _JOB_GONE:
            return True
    return False
