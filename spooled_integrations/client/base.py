"""What the SSE and WebSocket clients share: handlers, state, the reconnect loop.

One reader thread per client connects, reads, and reconnects. Subclasses supply the
transport: :meth:`BaseClient._open` (handshake; raise a typed error on refusal),
:meth:`BaseClient._read` (deliver frames until the stream ends), :meth:`BaseClient._close`,
:meth:`BaseClient._abort` (shut the current socket from another thread so a blocked
read returns at once — that is what keeps ``disconnect()`` under a second) and
:meth:`BaseClient._url_for_logs`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar, overload

from spooled_integrations._lograte import LogRate
from spooled_integrations._redact import redact
from spooled_integrations.client.auth import (
    LoginDeferred,
    LoginRateLimited,
    TokenProvider,
    is_refusal,
)
from spooled_integrations.client.backoff import Backoff
from spooled_integrations.client.options import (
    ConnectionOptions,
    ConnectionState,
    SubscriptionFilter,
    liveness_problem,
)
from spooled_integrations.errors import (
    AuthError,
    ProtocolError,
    RateLimitError,
    SpooledConnectionError,
)
from spooled_integrations.protocol import (
    Event,
    EventType,
    JobEvent,
    QueueEvent,
    SSEMessage,
    WorkerEvent,
    normalize,
    resolve,
)

__all__ = [
    "BaseClient",
    "BatchHandler",
    "ClientStats",
    "EventHandler",
    "Frame",
    "FramesHandler",
    "ReadOutcome",
    "RealtimeClient",
    "StateChangeHandler",
]

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], Any]
BatchHandler = Callable[[list[Event]], Any]
Frame = SSEMessage | bytes
"""One undecoded frame: an :class:`~spooled_integrations.protocol.SSEMessage` (its
``event`` name and ``data``) or a WebSocket text message's payload."""
FramesHandler = Callable[[list[Frame]], Any]
JobEventHandler = Callable[[JobEvent], Any]
QueueEventHandler = Callable[[QueueEvent], Any]
WorkerEventHandler = Callable[[WorkerEvent], Any]
StateChangeHandler = Callable[[ConnectionState], Any]
ErrorHandler = Callable[[Exception], Any]
H = TypeVar("H", bound=Callable[..., Any])

ReadOutcome = Literal["closed", "finished"]
"""``closed``: the server ended the stream cleanly (reconnect promptly);
``finished``: nothing more will come (a per-job stream reached a terminal status)."""

_PING = EventType.PING.value

CLEAN_CLOSE_DELAY = 0.1
"""Pause before reconnecting after a clean close of a healthy stream (30-min cap)."""
LOGIN_RETRY_CAP = 10.0
"""Longest wait after a login 429: refused logins are not counted by the limiter and
its window frees within a minute, so a node checks every few seconds."""


def refusal_hint(exc: BaseException) -> str:
    """What to check after a refusal, for the log an operator reads."""
    status = getattr(exc, "status", None)
    if status == 404:
        return (
            "Check SPOOLED_BASE_URL (and SPOOLED_WS_URL): it should be the API root, such "
            "as https://api.spooled.cloud, with no path"
        )
    if status == 400:
        return "Check SPOOLED_API_KEY: the server calls it malformed"
    if isinstance(exc, AuthError):
        return (
            "Check SPOOLED_API_KEY (or SPOOLED_TOKEN): mistyped, revoked, expired, or "
            "from another environment than SPOOLED_BASE_URL"
        )
    return "Check SPOOLED_BASE_URL and the credentials"


def _minutes(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@dataclass
class ClientStats:
    """Counters an operator wants; read them from any thread."""

    frames_received: int = 0
    events_delivered: int = 0
    protocol_errors: dict[str, int] = field(default_factory=dict)
    handler_errors: int = 0
    filtered_out: int = 0
    connects: int = 0
    reconnects: int = 0
    connected_since: datetime | None = None
    last_frame_at: datetime | None = None
    last_error: str | None = None
    refused_until: datetime | None = None
    """While the credentials or URL are refused: when the next attempt is due."""
    refused_reason: str | None = None


class RealtimeClient(Protocol):
    """The operations both transports offer (Go ``RealtimeClient``)."""

    @property
    def state(self) -> ConnectionState: ...
    def connect(self, timeout: float | None = None) -> None: ...
    def disconnect(self, timeout: float = 1.0) -> None: ...
    def start(self) -> None: ...
    def subscribe(self, filter: SubscriptionFilter) -> None: ...
    def unsubscribe(self, filter: SubscriptionFilter) -> None: ...
    def on_event(self, handler: H) -> H: ...
    def on_events(self, handler: H) -> H: ...
    def on_frames(self, handler: H) -> H: ...
    def decode_frame(self, frame: Frame) -> list[Event]: ...
    def on_state_change(self, handler: H) -> H: ...
    def on_error(self, handler: H) -> H: ...


class _Stop(Exception):
    """Raised inside the loop when ``disconnect()`` was asked for."""


class BaseClient:
    """Shared machinery; use :class:`SSEClient` or :class:`WebSocketClient`."""

    transport: str = "?"

    def __init__(
        self, options: ConnectionOptions, *, filter: SubscriptionFilter | None = None
    ) -> None:
        self.options = options
        self.filter = filter
        self.stats = ClientStats()
        self._log = options.effective_logger
        self._bad_frames = LogRate(self._log, f"bad frames on the Spooled {self.transport} stream")
        problem = liveness_problem(self.transport, options.liveness_timeout)
        if problem:
            self._log.warning("Spooled %s: %s", self.transport, problem)
        self._tokens = TokenProvider(options)
        self._state = ConnectionState.DISCONNECTED
        self._state_lock = threading.Lock()
        self._errors_lock = threading.Lock()
        self._event_handlers: list[EventHandler] = []
        self._batch_handlers: list[BatchHandler] = []
        self._batch: list[Event] = []
        self._frame_handlers: list[FramesHandler] = []
        self._frames: list[Frame] = []
        self._typed_handlers: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {}
        self._state_handlers: list[StateChangeHandler] = []
        self._error_handlers: list[ErrorHandler] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_outcome = threading.Event()
        self._first_error: BaseException | None = None
        self._fail_fast = False
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._url_for_logs()!r}, state={self._state.value!r})"

    def __enter__(self) -> BaseClient:
        if self._thread is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    # -- handler registry (each also works as a decorator) ---------------------------

    def on_event(self, handler: H) -> H:
        """Call ``handler(event)`` for every event, including unknown types and pings."""
        self._refuse_with_frames("on_event")
        self._event_handlers.append(handler)
        return handler

    def on_events(self, handler: H) -> H:
        """Call ``handler(events)`` once per socket read with the events it completed.

        For consumers that hand events to another thread: one hand-off per read instead
        of one per event. The list is the handler's to keep; it comes after the
        per-event handlers have seen its events, in the same order.
        """
        self._refuse_with_frames("on_events")
        self._batch_handlers.append(handler)
        return handler

    def on_frames(self, handler: H) -> H:
        """Call ``handler(frames)`` once per socket read with the frames it completed,
        undecoded (see :data:`Frame`); the consumer decodes each with :meth:`decode_frame`.

        For a consumer that works on another thread (the runtime's dispatcher): the
        reader then only frames the stream, and every object of an event is made and
        let go on the consumer's thread instead of crossing threads (and CPU caches)
        while the garbage collector watches it. The list is the handler's to keep. The
        reader decodes nothing, so this cannot be combined with event handlers on one
        client.
        """
        if self._event_handlers or self._batch_handlers or self._typed_handlers:
            raise ValueError("on_frames() cannot be combined with event handlers on one client")
        self._frame_handlers.append(handler)
        return handler

    def decode_frame(self, frame: Frame) -> list[Event]:
        """The events of one frame given to an :meth:`on_frames` handler, as the event
        handlers would get them: filtered, counted in :attr:`stats`; a bad frame is
        counted, logged and reported to the error handlers, and gives ``[]``. The
        reader and one consumer thread may call it at the same time (the runtime decodes
        on its dispatch thread, and on the reader the frames its queue refuses)."""
        try:
            if isinstance(frame, bytes):
                events = normalize(frame, max_size=self.options.max_frame_bytes)
            else:
                events = normalize(
                    frame.data, event_name=frame.event, max_size=self.options.max_frame_bytes
                )
        except ProtocolError as exc:
            self._count_protocol_error(exc)
            return []
        stats = self.stats
        if self.filter is not None:
            matches = self.filter.matches
            passed = [event for event in events if matches(event)]
            filtered = len(events) - len(passed)
            stats.filtered_out += filtered  # no call inside the +=: no thread switch
            events = passed
        if events and events[0].type != _PING:  # a ping comes alone, one per frame
            stats.events_delivered += len(events)
        return events

    def _refuse_with_frames(self, method: str) -> None:
        if self._frame_handlers:
            raise ValueError(f"{method}() cannot be combined with on_frames() on one client")

    @overload
    def on_job_event(self, event_type: EventType | str) -> Callable[[H], H]: ...
    @overload
    def on_job_event(self, event_type: EventType | str, handler: H) -> H: ...
    def on_job_event(self, event_type: EventType | str, handler: Any = None) -> Any:
        """Call ``handler(JobEvent)`` for one job event type (any alias)."""
        return self._register_typed(event_type, "job", handler)

    @overload
    def on_queue_event(self, event_type: EventType | str) -> Callable[[H], H]: ...
    @overload
    def on_queue_event(self, event_type: EventType | str, handler: H) -> H: ...
    def on_queue_event(self, event_type: EventType | str, handler: Any = None) -> Any:
        """Call ``handler(QueueEvent)`` for one queue event type."""
        return self._register_typed(event_type, "queue", handler)

    @overload
    def on_worker_event(self, event_type: EventType | str) -> Callable[[H], H]: ...
    @overload
    def on_worker_event(self, event_type: EventType | str, handler: H) -> H: ...
    def on_worker_event(self, event_type: EventType | str, handler: Any = None) -> Any:
        """Call ``handler(WorkerEvent)`` for one worker event type."""
        return self._register_typed(event_type, "worker", handler)

    def on_state_change(self, handler: H) -> H:
        """Call ``handler(state)`` on every :class:`ConnectionState` change."""
        self._state_handlers.append(handler)
        return handler

    def on_error(self, handler: H) -> H:
        """Call ``handler(exc)`` for skipped frames (:class:`ProtocolError`) and failed
        connection attempts; the last one is an :class:`AuthError` when the client stops."""
        self._error_handlers.append(handler)
        return handler

    def _register_typed(self, event_type: EventType | str, category: str, handler: Any) -> Any:
        found = resolve(str(event_type))
        if found is None or found.category != category:
            raise ValueError(f"{event_type!r} is not a {category} event type")

        self._refuse_with_frames(f"on_{category}_event")

        def register(fn: H) -> H:
            self._typed_handlers.setdefault(found.value, []).append((category, fn))
            return fn

        return register if handler is None else register(handler)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def token_provider(self) -> TokenProvider:
        """The cached-JWT provider of this client, to share with a :class:`JobsClient`
        so REST lookups cost no extra login."""
        return self._tokens

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._first_outcome.clear()
        self._first_error = None
        self.last_error = None
        self._thread = threading.Thread(
            target=self._run, name=f"spooled-{self.transport}-reader", daemon=True
        )
        self._thread.start()

    def connect(self, timeout: float | None = None) -> None:
        """Connect and return once connected; raise the typed error if that fails.

        Only the first attempt is made here (as in Go); once connected, drops are
        retried according to the options.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        self._fail_fast = True
        self.start()
        wait = timeout if timeout is not None else self.options.connect_timeout * 3
        if not self._first_outcome.wait(wait):
            self.disconnect()
            raise SpooledConnectionError(f"no connection to Spooled within {wait:.1f} s")
        if self._first_error is not None:
            error = self._first_error
            self.disconnect()
            raise error

    def disconnect(self, timeout: float = 1.0) -> None:
        """Close the connection and join the reader thread. Idempotent; bounded by ``timeout``."""
        self._stop.set()
        self._abort()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning(
                    "Spooled %s reader did not stop within %.1f s; it is a daemon and "
                    "will end on its own",
                    self.transport,
                    timeout,
                )
        self._set_state(ConnectionState.DISCONNECTED)

    def subscribe(self, filter: SubscriptionFilter) -> None:
        raise NotImplementedError

    def unsubscribe(self, filter: SubscriptionFilter) -> None:
        raise NotImplementedError

    # -- the reader loop -------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.options.reconnect_delay, self.options.max_reconnect_delay)
        auth_retried = False
        first = True
        try:
            while not self._stop.is_set():
                self._set_state(
                    ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING
                )
                try:
                    session = self._open(force_login=auth_retried)
                except LoginDeferred as exc:
                    if not self._wait_out_refusal(exc):
                        return
                    continue
                except SpooledConnectionError as exc:
                    stale = self._tokens.can_refresh and not self._tokens.fresh
                    if isinstance(exc, AuthError) and stale and not auth_retried:
                        auth_retried = True  # a cached JWT refused: one fresh login first
                        self._log.info("Spooled refused the token; logging in again")
                        continue
                    auth_retried = False
                    if is_refusal(exc):
                        if not self._refused(exc):
                            return
                        continue
                    delay = self._failed_attempt(exc, backoff)
                    if delay is None:
                        return
                    self._sleep(delay)
                    continue
                first = False
                outcome, healthy = self._session(session)
                if healthy:
                    backoff.reset()
                    auth_retried = False
                if self._stop.is_set() or outcome == "finished":
                    return
                if not self.options.auto_reconnect:
                    self.last_error = SpooledConnectionError("connection closed")
                    return
                self._set_state(ConnectionState.RECONNECTING)
                self.stats.reconnects += 1
                if outcome == "closed" and healthy:
                    self._log.info("Spooled closed the %s stream; reconnecting", self.transport)
                    self._sleep(CLEAN_CLOSE_DELAY)
                else:
                    delay = self._failed_attempt(None, backoff)
                    if delay is None:
                        return
                    self._sleep(delay)
        except _Stop:
            return
        finally:
            self._first_outcome.set()
            self._set_state(ConnectionState.DISCONNECTED)

    @property
    def health(self) -> str:
        """``connected``, ``connecting``, ``reconnecting``, ``refused`` (credentials or URL
        refused; retried slowly) or ``disconnected``: what a probe or status shows."""
        if self.stats.refused_until is not None and self._state != ConnectionState.CONNECTED:
            return "refused"
        return self._state.value

    def _refused(self, exc: SpooledConnectionError) -> bool:
        """A refusal (401/403/404…): retried on the slow schedule, shared with every
        process that shares the JWT, never given up; ``False`` to stop (``connect()``
        or ``auto_reconnect=False``)."""
        if self._fail_fast or not self.options.auto_reconnect:
            self._give_up(exc)
            return False
        record = self._tokens.note_refused(exc)
        text = redact(str(exc), *self._tokens.secrets())
        self.stats.last_error = f"{type(exc).__name__}: {text}"
        self.last_error = exc
        shared = self._tokens.shared_with
        self._log.error(
            "Spooled %s: %s. %s. Listening is suspended; next attempt in %s%s.",
            self.transport,
            text,
            refusal_hint(exc),
            _minutes(record.refused_until - time.time()),
            f", made once for {' and '.join(shared)}" if shared else "",
        )
        self._emit_error(exc)
        return self._wait_until(record.refused_until, text)

    def _wait_out_refusal(self, exc: LoginDeferred) -> bool:
        """Another sharer was refused: wait for its schedule without a login of our own."""
        if self._fail_fast:  # connect() raises what the refusal was
            kind = AuthError if exc.status in (401, 403) else SpooledConnectionError
            self._first_error = kind(str(exc), status=exc.status)
            return False
        if self.stats.refused_reason != exc.reason:
            self._log.warning(
                "Spooled %s: waiting, the credentials were refused (%s); the next attempt, "
                "made once for %s, is in %s (to try at once, delete %s)",
                self.transport,
                exc.reason,
                exc.where,
                _minutes(exc.until - time.time()),
                exc.location,
            )
        return self._wait_until(exc.until, exc.reason)

    def _wait_until(self, until: float, reason: str) -> bool:
        self.stats.refused_until = datetime.fromtimestamp(until, timezone.utc)
        self.stats.refused_reason = reason
        self._set_state(ConnectionState.RECONNECTING)
        # A little past the time, so the sharer whose refusal it was tries first.
        self._sleep(max(0.0, until - time.time()) + random.uniform(0.0, 2.0))
        return True

    def _session(self, session: Any) -> tuple[ReadOutcome | None, bool]:
        """Run one connected session; returns how it ended and whether it was healthy."""
        connected_at = time.monotonic()
        delivered_before = self.stats.events_delivered
        self.stats.connects += 1
        self.stats.connected_since = datetime.now(timezone.utc)
        self._fail_fast = False
        if self.stats.refused_until is not None:
            self._log.warning("Spooled %s: the refusal is over; listening again", self.transport)
            self.stats.refused_until = self.stats.refused_reason = None
        self._tokens.connected()
        self._set_state(ConnectionState.CONNECTED)
        self._first_outcome.set()
        outcome: ReadOutcome | None = None
        try:
            outcome = self._read(session)
        except _Stop:
            pass
        except (SpooledConnectionError, OSError) as exc:
            if not self._stop.is_set():
                self._report_connection_error(exc, "connection lost")
        finally:
            self._deliver_batch()  # what the last read completed before it ended
            self._bad_frames.flush(force=True)
            self._close(session)
            self.stats.connected_since = None
        healthy = (
            self.stats.events_delivered > delivered_before
            or time.monotonic() - connected_at >= self.options.healthy_after
        )
        return outcome, healthy

    def _failed_attempt(self, exc: BaseException | None, backoff: Backoff) -> float | None:
        """Record a failed attempt; the delay before the next one, or ``None`` to stop."""
        if exc is not None:
            self._report_connection_error(exc, "connection attempt failed")
        else:
            exc = self.last_error
        if self._fail_fast:
            self._first_error = exc or SpooledConnectionError("connection failed")
            return None
        if not self.options.auto_reconnect:
            return None
        limit = self.options.max_reconnect_attempts
        if limit and backoff.failures >= limit:
            self._log.error("Spooled: giving up after %d failed attempts", backoff.failures)
            return None
        delay = backoff.next_delay()
        if isinstance(exc, LoginRateLimited):
            delay = min(delay, LOGIN_RETRY_CAP)
        elif isinstance(exc, RateLimitError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        self._log.info("Spooled %s: next attempt in %.1f s", self.transport, delay)
        self._set_state(ConnectionState.RECONNECTING)
        return delay

    def _give_up(self, exc: SpooledConnectionError) -> None:
        self._report_connection_error(exc, "giving up")
        self._first_error = exc
        self._log.error("Spooled %s stopped: %s", self.transport, exc)

    def _report_connection_error(self, exc: BaseException, what: str) -> None:
        text = redact(str(exc) or type(exc).__name__, *self._tokens.secrets())
        self.stats.last_error = f"{type(exc).__name__}: {text}"
        self.last_error = exc
        self._log.warning("Spooled %s %s: %s", self.transport, what, text)
        self._emit_error(exc)

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stop

    # -- frames → handlers -----------------------------------------------------------

    def _handle_frame(self, frame: Frame) -> None:
        """Decode one frame and hand its events to the event handlers."""
        self.stats.frames_received += 1
        for event in self.decode_frame(frame):
            for handler in self._event_handlers:
                try:
                    handler(event)
                except Exception:
                    self._handler_failed(handler)
            if self._batch_handlers:
                self._batch.append(event)
            typed = self._typed_handlers.get(event.type)
            if typed:
                self._deliver_typed(event, typed)

    def _count_protocol_error(self, exc: ProtocolError) -> None:
        with self._errors_lock:  # the reader and a decode_frame() consumer may both count
            errors = self.stats.protocol_errors
            errors[exc.reason] = errors.get(exc.reason, 0) + 1
        self._bad_frames.warning(  # one line per 10 s, however many come
            exc.reason,
            "Spooled %s: skipped a bad frame (%s): %s",
            self.transport,
            exc.reason,
            redact(str(exc), *self._tokens.secrets()),
        )
        self._emit_error(exc)

    def _deliver_typed(self, event: Event, typed: list[tuple[str, Callable[[Any], Any]]]) -> None:
        """Typed handlers get the view of their category, built once per event."""
        views: dict[str, Any] = {}
        for category, handler in typed:
            try:
                view = views.get(category)
                if view is None:
                    view = views[category] = getattr(event, category)()
            except ValueError as exc:
                self._log.warning("Spooled: %s does not fit its typed view: %s", event.type, exc)
                continue
            self._call(handler, view)

    def _deliver_batch(self) -> None:
        """Hand what the last read completed to the batch or frame handlers."""
        if self._bad_frames.pending:
            self._bad_frames.flush()
        batch, frames = self._batch, self._frames
        if batch:
            self._batch = []
            for handler in self._batch_handlers:
                self._call(handler, batch)
        if frames:
            self._frames = []
            for frames_handler in self._frame_handlers:
                self._call(frames_handler, frames)

    def _call(self, handler: Callable[[Any], Any], argument: Any) -> None:
        try:
            handler(argument)
        except Exception:
            self._handler_failed(handler)

    def _handler_failed(self, handler: Callable[[Any], Any]) -> None:
        """Count and log the exception being handled; the other handlers still run."""
        self.stats.handler_errors += 1
        self._log.exception("Spooled handler %r raised; the other handlers still run", handler)

    def _set_state(self, state: ConnectionState) -> None:
        with self._state_lock:
            if state == self._state:
                return
            self._state = state
        if self.options.debug:
            self._log.debug("Spooled %s state: %s", self.transport, state.value)
        for handler in list(self._state_handlers):
            self._call(handler, state)

    def _emit_error(self, exc: Exception | BaseException) -> None:
        if not isinstance(exc, Exception):
            return
        for handler in list(self._error_handlers):
            self._call(handler, exc)

    def _note_frame_time(self) -> None:
        self.stats.last_frame_at = datetime.now(timezone.utc)

    def _liveness_timeout(self, default: float) -> float:
        return self.options.liveness_timeout or default

    # -- transport hooks ---------------------------------------------------------------

    def _open(self, *, force_login: bool) -> Any:
        raise NotImplementedError

    def _read(self, session: Any) -> ReadOutcome:
        raise NotImplementedError

    def _close(self, session: Any) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def _url_for_logs(self) -> str:
        raise NotImplementedError
