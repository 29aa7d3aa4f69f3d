"""SSE transport on httpcore (httpx's engine).

httpcore directly, not httpx: its public ``network_backend`` hook hands us each socket,
so ``disconnect()`` can shut it down and a read blocked on a silent server returns at
once; and a streaming response needs nothing more than httpcore gives.

Three streams: ``/api/v1/events`` (filtered by ``queue``/``events``), a per-job stream
``/api/v1/events/jobs/{id}`` that ends at a terminal status, and a per-queue stream
``/api/v1/events/queues/{name}`` of ``queue.stats``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpcore

from spooled_integrations._redact import redact
from spooled_integrations.client.base import BaseClient, ReadOutcome, _Stop
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions, SubscriptionFilter
from spooled_integrations.errors import NotSupportedError, ServerError, SpooledConnectionError
from spooled_integrations.protocol import TERMINAL_STATUSES, EventType, SSEDecoder

__all__ = ["SSEClient"]

SSE_LIVENESS_DEFAULT = 45.0
EVENTS_PATH = "/api/v1/events"
_ERROR_BODY_LIMIT = 4096
_JOB_GONE = "Job not found"


class _TrackingBackend(httpcore.SyncBackend):
    """Reports every socket it opens, so another thread can shut it down."""

    def __init__(self, on_socket: Any) -> None:
        self._on_socket = on_socket

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(host, port, timeout, local_address, socket_options)
        self._on_socket(stream.get_extra_info("socket"))
        return stream


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

    def _open(self, *, force_login: bool) -> tuple[httpcore.ConnectionPool, httpcore.Response]:
        token = self._tokens.get(force=force_login)
        pool = httpcore.ConnectionPool(
            ssl_context=self._ssl_context(),
            network_backend=_TrackingBackend(self._remember_socket),
            max_connections=1,
        )
        url = self.options.base_url + self._path_and_query()
        headers = [
            (b"Host", urlsplit(url).netloc.encode()),
            (b"Authorization", f"Bearer {token}".encode()),
            (b"Accept", b"text/event-stream"),
            (b"Cache-Control", b"no-cache"),
        ] + [(k.encode(), v.encode()) for k, v in self.options.extra_headers.items()]
        timeout = self.options.connect_timeout
        extensions = {
            "timeout": {
                "connect": timeout,
                "read": self._liveness_timeout(SSE_LIVENESS_DEFAULT),
                "write": timeout,
                "pool": timeout,
            }
        }
        try:
            response = pool.handle_request(
                httpcore.Request("GET", url, headers=headers, extensions=extensions)
            )
        except httpcore.TimeoutException:
            pool.close()
            self._raise_if_stopping()
            raise SpooledConnectionError("SSE request timed out before the response") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            pool.close()
            self._raise_if_stopping()
            raise SpooledConnectionError(self._describe(exc, "SSE request failed")) from None
        if response.status != 200:
            body = self._read_error_body(response)
            pool.close()
            headers_map = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
            raise error_for_status(
                response.status,
                headers_map,
                body,
                what="SSE request",
                secrets=self._tokens.secrets(),
            )
        content_type = next((v for k, v in response.headers if k.lower() == b"content-type"), b"")
        if not content_type.startswith(b"text/event-stream"):
            response.close()
            pool.close()
            raise ServerError(
                f"SSE answer is {content_type.decode('latin-1')!r}, not an event stream"
            )
        return pool, response

    def _read(self, session: Any) -> ReadOutcome:
        _, response = session
        decoder = SSEDecoder()
        handle = self._handle_frame
        follows_job = self._job_id is not None
        try:
            for chunk in response.iter_stream():
                self._note_frame_time()
                for message in decoder.feed(chunk):
                    events = handle(message.data, message.event)
                    if follows_job and _job_stream_over(events):
                        return "finished"
        except httpcore.ReadTimeout:
            raise SpooledConnectionError(
                "no SSE data or keep-alive within the liveness timeout; reconnecting"
            ) from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            self._raise_if_stopping()
            raise SpooledConnectionError(self._describe(exc, "SSE stream dropped")) from None
        self._raise_if_stopping()
        return "closed"

    def _close(self, session: Any) -> None:
        pool, response = session
        with contextlib.suppress(httpcore.NetworkError, httpcore.ProtocolError, OSError):
            response.close()
        pool.close()
        with self._sock_lock:
            self._sock = None

    def _abort(self) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _remember_socket(self, sock: socket.socket | None) -> None:
        with self._sock_lock:
            self._sock = sock
        if self._stop.is_set():
            self._abort()

    def _raise_if_stopping(self) -> None:
        if self._stop.is_set():
            raise _Stop

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.options.verify_tls:
            return None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _read_error_body(self, response: httpcore.Response) -> str:
        body = b""
        try:
            for chunk in response.iter_stream():
                body += chunk
                if len(body) >= _ERROR_BODY_LIMIT:
                    break
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException):
            pass
        finally:
            response.close()
        return body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")

    def _describe(self, exc: BaseException, what: str) -> str:
        detail = str(exc) or type(exc).__name__
        return redact(f"{what}: {detail}", *self._tokens.secrets())


def _job_stream_over(events: list[Any]) -> bool:
    """A per-job stream ends after a terminal status or ``Job not found``."""
    for event in events:
        if event.type == EventType.JOB_STATUS and event.data.get("new_status") in TERMINAL_STATUSES:
            return True
        if event.type == EventType.ERROR and event.data.get("message") == _JOB_GONE:
            return True
    return False
