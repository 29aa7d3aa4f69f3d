"""A local Spooled look-alike for tests: HTTP auth, WebSocket and SSE on one port.

The server (aiohttp) runs its own event loop in a daemon thread, so plain synchronous
tests can drive it::

    with Emulator() as emu:
        client = MyClient(base_url=emu.base_url, api_key=emu.api_key)
        ...
        emu.publish("job.completed", job_id="j1", queue_name="emails", duration_ms=5)

Two behaviours: ``strict=True`` is the public backend source (WS needs the Bearer header
*and* ``?token=``, nothing is published on actions, ``/events`` carries only health,
``GET /api/v1/jobs`` honours only ``queue_name``, one ``status``, ``limit`` and
``offset``, always newest first, without a paging header); the default imitates
production as the SDKs report it (either credential, lowercase commands,
job/queue/worker events published on actions and delivered on ``/events``, and
``GET /api/v1/jobs`` also takes a comma list of statuses, ``created_after`` /
``created_before``, ``order_by`` / ``order_dir``, answers ``X-Has-More`` and adds
``max_retries``, ``last_error`` and ``updated_at`` to each summary).

Jobs keep wall-clock timestamps as they move (``created_at``, ``scheduled_at``,
``started_at``, ``completed_at``, ``updated_at``); :meth:`Emulator.create_job` and
:meth:`Emulator.set_job_status` take ``at=`` to build a history without sleeping.
Every control method may be called from any thread; work is marshalled onto the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

from spooled_integrations.testing._auth import ACCESS, Auth, new_api_key, new_secret
from spooled_integrations.testing._config import Settings
from spooled_integrations.testing._hub import Hub, Item, Rejection
from spooled_integrations.testing._server import Server
from spooled_integrations.testing._state import State
from spooled_integrations.testing._wire import sse_event

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_START_TIMEOUT = 10.0


class Emulator:
    """A Spooled server on ``127.0.0.1`` for tests (see the module docstring)."""

    def __init__(
        self,
        *,
        strict: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        jwt_secret: str | None = None,
        ping_interval: float = 30.0,
        health_interval: float = 10.0,
        job_poll_interval: float = 2.0,
        queue_poll_interval: float = 5.0,
        keepalive_interval: float = 15.0,
        max_stream_duration: float = 1800.0,
        ws_connection_cap: int = 100,
        login_limit: int = 5,
        login_window: float = 60.0,
        jwt_lifetime: float = 86400.0,
        jwt_leeway: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = Settings(
            strict=strict,
            host=host,
            ping_interval=ping_interval,
            health_interval=health_interval,
            job_poll_interval=job_poll_interval,
            queue_poll_interval=queue_poll_interval,
            keepalive_interval=keepalive_interval,
            max_stream_duration=max_stream_duration,
            ws_connection_cap=ws_connection_cap,
            login_limit=login_limit,
            login_window=login_window,
            jwt_lifetime=jwt_lifetime,
            jwt_leeway=jwt_leeway,
        )
        secret = jwt_secret if jwt_secret is not None else new_secret()
        if len(secret.encode()) < 32:
            # PyJWT warns about short HS256 keys, and warnings are errors in tests.
            raise ValueError("jwt_secret must be at least 32 bytes")
        self._auth = Auth(
            api_key=api_key if api_key is not None else new_api_key(),
            secret=secret,
            lifetime=jwt_lifetime,
            leeway=jwt_leeway,
            login_limit=login_limit,
            login_window=login_window,
        )
        self._state = State(wall_clock=wall_clock)
        self._hub = Hub()
        self._server = Server(self.settings, self._auth, self._state, self._hub)
        self._port = port
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Emulator:
        """Start listening (on the same port as before after a :meth:`stop`)."""
        with self._lock:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready: concurrent.futures.Future[int] = concurrent.futures.Future()
            thread = threading.Thread(
                target=self._run, args=(loop, ready), name="spooled-emulator", daemon=True
            )
            thread.start()
            try:
                self._port = ready.result(timeout=_START_TIMEOUT)
            except BaseException:
                thread.join(_START_TIMEOUT)
                raise
            self._loop, self._thread = loop, thread
            logger.debug("Spooled emulator listening on %s", self.base_url)
            return self

    def stop(self) -> None:
        """Stop at once: open sockets are aborted, the loop and thread end. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("stop() cannot be called from the emulator's own thread")
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop = self._thread = None

    def _run(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                port = loop.run_until_complete(self._server.open(self.settings.host, self._port))
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(port)
            loop.run_forever()
            loop.run_until_complete(self._server.close())
        finally:
            self._finish_loop(loop)

    @staticmethod
    def _finish_loop(loop: asyncio.AbstractEventLoop) -> None:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the emulator loop and return its result (directly when stopped)."""
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            loop = self._loop
            if loop is None:
                return fn()
            future: concurrent.futures.Future[_T] = concurrent.futures.Future()

            def run() -> None:
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

            loop.call_soon_threadsafe(run)
            return future.result()

    # -- addresses and credentials -------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the emulator has no port until start()")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (the REST and SSE base)."""
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/api/v1/ws``."""
        return f"ws://{self.settings.host}:{self.port}/api/v1/ws"

    @property
    def api_key(self) -> str:
        return self._auth.api_key

    @property
    def strict(self) -> bool:
        return self.settings.strict

    def make_token(
        self, token_type: str = ACCESS, *, lifetime: float | None = None, **claims: Any
    ) -> str:
        """Mint a JWT signed like the emulator's own (``claims`` override any claim)."""
        return self._call(lambda: self._auth.issue(token_type, lifetime=lifetime, **claims))

    # -- events ---------------------------------------------------------------------

    def publish(self, event_type: str, /, **fields: Any) -> dict[str, Any]:
        """Send an event to every matching WS client and (default mode) ``/events`` client.

        ``event_type`` may be any known spelling (``job.completed``, ``JobCompleted``,
        ``worker.joined``) or an unknown name, which is sent as given. ``timestamp`` is
        filled in unless given. Returns the envelope sent.
        """
        return self._call(lambda: self._server.publish(event_type, fields).body)

    def publish_raw(
        self,
        payload: str | bytes,
        *,
        binary: bool = False,
        event: str | None = None,
        verbatim: bool = False,
    ) -> None:
        """Send ``payload`` unchanged to every WS and ``/events`` client (malformed frames).

        WS: one text frame (``binary=True``: a binary frame). SSE: ``payload`` as the
        ``data:`` field of one event (after an ``event:`` line if ``event``), or the exact
        bytes when ``verbatim``.
        """
        data = payload.encode() if isinstance(payload, str) else payload
        ws_item = Item("data", data if binary else data.decode("utf-8", "replace"))
        if verbatim:
            chunk = data
        elif event is not None:
            chunk = sse_event(event, data)
        else:
            chunk = b"data: " + data + b"\n\n"
        self._call(lambda: self._hub.broadcast_raw(ws_item, chunk))

    # -- jobs, queues, workers, health -------------------------------------------

    def create_job(
        self,
        queue_name: str,
        payload: Any = None,
        *,
        priority: int = 0,
        max_retries: int = 3,
        at: datetime | None = None,
    ) -> str:
        """Create a pending job (default mode publishes ``JobCreated``); returns its id.

        ``at`` (timezone-aware) is its ``created_at``, default now.
        """

        def create() -> str:
            job, published = self._state.create_job(
                queue_name, payload, priority, max_retries=max_retries, at=at
            )
            self._server.emit(published)
            return job.id

        return self._call(create)

    def set_job_status(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Move a job to ``status`` (default mode publishes the change, see module doc).

        ``at`` (timezone-aware) is the moment of the change, default now: it becomes
        ``updated_at`` and, by status, ``scheduled_at``, ``started_at`` or ``completed_at``
        (completed/failed/deadletter set it; pending/scheduled/processing clear it;
        cancelled leaves it, as the backend's cancel does).
        """
        self._call(
            lambda: self._server.emit(
                self._state.set_job_status(job_id, status, error=error, at=at)
            )
        )

    def run_job(
        self, queue_name: str, outcome: str = "completed", *, error: str | None = None
    ) -> str:
        """Create a job and move it through ``processing`` to ``outcome`` (a worker's
        whole run, as a test wants it); returns its id."""
        job_id = self.create_job(queue_name)
        self.set_job_status(job_id, "processing")
        self.set_job_status(job_id, outcome, error=error)
        return job_id

    def cancel_job(self, job_id: str) -> None:
        """Cancel like ``POST /jobs/{id}/cancel`` (``ValueError`` once it has finished)."""
        self._call(lambda: self._server.emit(self._state.cancel_job(job_id)))

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET /api/v1/jobs/{id}`` shows it (``KeyError`` if unknown)."""

        def read() -> dict[str, Any]:
            return self._state.jobs[job_id].to_json()

        return self._call(read)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as ``GET /api/v1/jobs/{id}`` shows it, newest ``created_at`` first."""

        def read() -> list[dict[str, Any]]:
            jobs = sorted(
                self._state.jobs.values(), key=lambda j: (j.created_at, j.seq), reverse=True
            )
            return [job.to_json() for job in jobs]

        return self._call(read)

    def set_queue_counts(
        self,
        queue_name: str,
        *,
        pending: int | None = None,
        processing: int | None = None,
        completed: int | None = None,
        failed: int | None = None,
    ) -> None:
        """Override ``queue.stats`` counts (by default they come from the jobs).

        Counts left ``None`` still come from the jobs; no counts at all clears the override.
        """
        counts = {
            "pending": pending,
            "processing": processing,
            "completed": completed,
            "failed": failed,
        }
        self._call(lambda: self._state.set_queue_counts(queue_name, counts))

    def set_health(self, *, database: bool = True, redis: bool = True) -> None:
        """What ``system.health`` reports."""

        def apply() -> None:
            self._state.database_ok = database
            self._state.redis_ok = redis

        self._call(apply)

    def set_db_error(self, failing: bool = True) -> None:
        """Job and queue polls emit ``event: error`` ``Database error`` (and continue)."""

        def apply() -> None:
            self._state.db_error = failing

        self._call(apply)

    # -- faults -----------------------------------------------------------------------

    def drop_connections(self, transport: Literal["ws", "sse"] | None = None) -> None:
        """Abort every open socket (or those of one ``transport``): no WS Close frame, no
        SSE terminator."""
        self._call(lambda: self._hub.abort_all(transport))

    def close_streams(self) -> None:
        """Close cleanly: WS Close 1001 ``going away``; SSE bodies end (like the 30-min cap)."""
        self._call(lambda: self._hub.close_all(1001, "going away"))

    def stall(self, stalled: bool = True) -> None:
        """Keep sockets open but send nothing at all; events published meanwhile are dropped
        and counted in ``counters["stalled_drops"]``."""

        def apply() -> None:
            self._hub.stalled = stalled

        self._call(apply)

    def reject_next(
        self,
        n: int,
        status: int,
        *,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """The next ``n`` WS upgrades / SSE requests get ``status`` before any stream bytes.

        ``body``: text (text/plain), JSON (dict/list) or bytes; default the reason phrase.
        """
        rejection = Rejection(status, body, retry_after)
        self._call(lambda: self._hub.rejections.extend([rejection] * n))

    def reject_rest(
        self,
        n: int,
        status: int,
        *,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """The next ``n`` requests to the ``GET /api/v1/jobs*`` routes (list, ``/status``,
        ``/{id}``) get ``status`` before authentication; ``body`` as for :meth:`reject_next`.

        Streams are not affected (and :meth:`reject_next` does not touch these routes).
        Counted in ``counters["rest_rejected"]``.
        """
        rejection = Rejection(status, body, retry_after)
        self._call(lambda: self._hub.rest_rejections.extend([rejection] * n))

    def slow_rest(self, seconds: float) -> None:
        """The ``GET /api/v1/jobs*`` routes wait ``seconds`` before answering (0: off)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")

        def apply() -> None:
            self._hub.rest_delay = seconds

        self._call(apply)

    def accept_then_close(self, n: int = 1) -> None:
        """The next ``n`` WS connections get 101 and then at once a Close 1011."""

        def apply() -> None:
            self._hub.accept_then_close += n

        self._call(apply)

    def revoke_api_key(self) -> None:
        """Revoke the key: logins and new connections get 401; open connections are aborted."""

        def apply() -> None:
            self._auth.revoked = True
            self._hub.abort_all()

        self._call(apply)

    def restore_api_key(self) -> None:
        def apply() -> None:
            self._auth.revoked = False

        self._call(apply)

    # -- counters -----------------------------------------------------------------------

    def connections_current(self, transport: Literal["ws", "sse"] = "ws") -> int:
        """Open WS connections or SSE responses right now."""
        return self._hub.current(transport)

    def connections_accepted(self, transport: Literal["ws", "sse"] = "ws") -> int:
        """WS upgrades (101) or SSE streams (200) since this emulator was created."""
        return self._hub.value(f"{transport}_accepted")

    def commands_received(self) -> list[dict[str, Any]]:
        """WebSocket commands understood so far (the last 1,000), oldest first."""
        return self._hub.commands()

    def wait_for_connections(
        self, n: int, transport: Literal["ws", "sse"] = "ws", timeout: float = 5.0
    ) -> bool:
        """Wait until at least ``n`` connections of ``transport`` are open."""
        return self._hub.wait_for(transport, n, timeout)

    @property
    def frames_sent(self) -> int:
        """Data frames / SSE events sent (not pings, not comments)."""
        return self._hub.value("frames_sent")

    @property
    def login_count(self) -> int:
        """``POST /auth/login`` requests that got past body validation (any outcome)."""
        return self._hub.value("logins")

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of every counter (``frames_sent``, ``pings_sent``, ``stalled_drops`` …).

        ``undelivered`` counts published events that no open stream accepted: what a
        listener missed while it was not connected. ``rest_list``, ``rest_get`` and
        ``rest_status`` count the ``GET /api/v1/jobs*`` requests their route answered
        (whatever the status); ``rest_rejected`` those :meth:`reject_rest` answered.
        """
        return self._hub.counters()

    def reset_counters(self) -> None:
        self._hub.reset_counters()
