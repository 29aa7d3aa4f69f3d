"""The runtime: one realtime client, one dispatcher, and what an operator sees.

``SpooledRuntime`` owns a WebSocket or SSE client (reading on the client's thread) and
a :class:`~spooled_integrations.runtime.dispatcher.Dispatcher` (dispatching on its own
thread), with a bounded queue between them. Framework modules start it from their boot
hooks and stop it from their shutdown hooks; it also runs on its own in a plain
process (see ``examples/signals_only.py``)::

    runtime = SpooledRuntime(RuntimeConfig(connection=ConnectionOptions.from_env()))
    runtime.start()
    ...
    runtime.stop(timeout=10)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from spooled_integrations._notices import first_to_say
from spooled_integrations._problems import describe_problems
from spooled_integrations.client import (
    BaseClient,
    ConnectionOptions,
    ConnectionState,
    SubscriptionFilter,
    create_client,
)
from spooled_integrations.client.proxy import shown_proxy
from spooled_integrations.client.sse import SSE_LIVENESS_DEFAULT
from spooled_integrations.client.token_cache import default_cache_dir
from spooled_integrations.client.websocket import WS_LIVENESS_DEFAULT
from spooled_integrations.errors import (
    ConfigurationError,
    ProtocolError,
    SubscriptionError,
)
from spooled_integrations.protocol import Event
from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.runtime.catchup import SKEW, CatchUp, CatchUpSettings
from spooled_integrations.runtime.checkpoint import MAX_RECENT, check_checkpoint, open_store
from spooled_integrations.runtime.coordination import (
    CoordinationField,
    Coordinator,
    create_coordinator,
    parse_coordination,
)
from spooled_integrations.runtime.coordination._redis import connect as connect_redis
from spooled_integrations.runtime.coordination.base import StreamHealth
from spooled_integrations.runtime.dedupe import DuplicateFilter
from spooled_integrations.runtime.dispatcher import (
    DEFAULT_QUEUE_SIZE,
    Dispatcher,
    DrainReport,
    RetryPolicy,
)
from spooled_integrations.runtime.health_file import StatusFile, StatusWriter, check_health_file
from spooled_integrations.runtime.metrics import Metrics
from spooled_integrations.runtime.publisher import Publisher
from spooled_integrations.runtime.router import Router
from spooled_integrations.runtime.routes import listener_url, route_line, routes_status
from spooled_integrations.runtime.signals import (
    caught_up,
    connection_state_changed,
    send_isolated,
    spooled_signal,
    stream_gap,
)
from spooled_integrations.runtime.subscriptions import (
    SubscriptionSet,
    load_subscriptions,
    position,
)
from spooled_integrations.runtime.sweep import RECOVERABLE, Interest

__all__ = ["RuntimeConfig", "SpooledRuntime"]

logger = logging.getLogger(__name__)


class RuntimeConfig(BaseModel):
    """Everything a :class:`SpooledRuntime` needs; validated when built.

    ``connection`` defaults to :meth:`ConnectionOptions.from_env` (``SPOOLED_*``
    variables). ``subscriptions`` accepts whatever :func:`load_subscriptions` does (a
    list, a ``.toml``/``.yaml`` path, a ``SubscriptionSet``). Building it directly
    raises :class:`SubscriptionError` for bad subscriptions and
    :class:`ConfigurationError` for any other bad value.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    connection: ConnectionOptions = Field(default_factory=ConnectionOptions.from_env)
    transport: Literal["ws", "sse"] = "ws"
    filter: SubscriptionFilter | None = None
    """Server/client-side event filter of the connection (``None``: every event)."""
    subscriptions: SubscriptionSet = Field(default_factory=SubscriptionSet)
    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, ge=1)
    """Events buffered between the reader and the dispatcher; more are dropped."""
    dedupe_window: float = Field(default=60.0, ge=0)
    """Seconds within which a repeated job transition is suppressed (0 disables)."""
    dedupe_max_entries: int = Field(default=100_000, ge=1)
    coalesce_window: float = Field(default=0.05, ge=0)
    """Seconds a job transition waits for its twin (the status change and the direct
    ``JobCompleted``/``JobFailed`` of one transition), so the delivered event carries
    the fields of both; ``0``: deliver the first form at once."""
    max_age: float | None = Field(default=None, gt=0)
    """Drop every event older than this many seconds (server timestamp) before signals."""
    publish_attempts: int = Field(default=5, ge=1)
    publish_budget: float = Field(default=30.0, ge=0)
    """Seconds one publish may take in total, retries included."""
    publish_backoff: float = Field(default=0.2, ge=0)
    publish_backoff_max: float = Field(default=5.0, ge=0)
    skip_ping: bool = True
    """Pings prove liveness only; they are not signalled or routed."""
    coordination: CoordinationField = None
    """Fleet coordination of ``delivery="once"`` subscriptions (``None``: none); a
    :class:`CoordinationConfig`, a mapping, or a string (see
    :func:`~spooled_integrations.runtime.coordination.parse_coordination`)."""
    catch_up: bool = True
    """After every stream gap (and after a restart, with a checkpoint) deliver the job
    transitions the REST job list proves were missed."""
    catch_up_max_age: float = Field(default=3600.0, gt=0)
    """How far back a sweep looks (seconds); an older part of a gap is reported missing."""
    catch_up_poll: Literal["off", "auto", "always"] = "auto"
    """Sweep on an interval for servers whose stream carries no job events: ``auto``
    starts when the job list shows transitions the stream did not deliver."""
    catch_up_interval: float = Field(default=5.0, gt=0)
    """Seconds between polling sweeps."""
    catch_up_max_requests: int = Field(default=200, ge=1)
    """Job-list requests one sweep may make; beyond them the gap is reported incomplete."""
    checkpoint: Annotated[str | None, AfterValidator(check_checkpoint)] = Field(
        default=None, repr=False
    )
    """Where the position survives a restart: a Redis URL or a file path (default: the
    coordination Redis when coordination is configured, else none; ``"off"``: none).
    Not in the repr: a Redis URL may hold a password."""
    health_file: Annotated[str | None, AfterValidator(check_health_file)] = None
    """A file the runtime rewrites with its status once a second while running and
    removes on stop, for probes (``spooled-integrations health``); ``None``: none."""

    def __init__(self, **data: Any) -> None:
        if data.get("subscriptions") is not None:
            data["subscriptions"] = load_subscriptions(data["subscriptions"])
        if data.get("coordination") is not None:
            try:
                data["coordination"] = parse_coordination(data["coordination"])
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"invalid Spooled runtime config: coordination: {exc}"
                ) from None
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(_describe_validation(exc)) from None

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _load(cls, value: Any) -> SubscriptionSet:
        return load_subscriptions([] if value is None else value)

    @property
    def once_subscriptions(self) -> list[str]:
        """Positions of the subscriptions that coordination applies to (once, with a target)."""
        return [
            position(index, sub.name)
            for index, sub in enumerate(self.subscriptions)
            if sub.target is not None and sub.delivery == "once"
        ]

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.publish_attempts,
            budget=self.publish_budget,
            initial_delay=self.publish_backoff,
            max_delay=max(self.publish_backoff_max, self.publish_backoff),
        )


def _describe_validation(exc: ValidationError) -> str:
    """Each problem with the value given (secrets hidden), never pydantic's own text."""
    return "invalid Spooled runtime config: " + describe_problems(exc)


class SpooledRuntime:
    """Connect, dispatch, report. Thread-safe; ``start``/``stop`` are idempotent.

    ``publisher`` reaches the subscriptions' tasks/actors; it is required when any
    subscription has a target and is asked to validate them here, so a bad setup fails
    at boot with every problem listed.
    """

    def __init__(self, config: RuntimeConfig, publisher: Publisher | None = None) -> None:
        self.config = config
        self.publisher = publisher
        subscriptions = config.subscriptions
        targeted = subscriptions.targets
        if targeted and publisher is None:
            names = ", ".join(str(s.target) for s in targeted[:3])
            raise ConfigurationError(
                f"{len(targeted)} subscription(s) name a task or actor ({names}...) but the "
                "runtime has no publisher; use the Celery or Dramatiq integration, or "
                "drop the targets for signal-only use"
            )
        if publisher is not None:
            problems = publisher.validate(subscriptions)
            if problems:
                raise SubscriptionError(problems)
        self.metrics = Metrics()
        self.router = Router(subscriptions)
        self.coordinator: Coordinator | None = None
        if config.coordination is not None and config.once_subscriptions:
            self.coordinator = create_coordinator(config.coordination, signal_sender=self)
            default = WS_LIVENESS_DEFAULT if config.transport == "ws" else SSE_LIVENESS_DEFAULT
            silence = config.connection.liveness_timeout or default
            self.coordinator.watch_stream(self._stream_health, silence=silence)
        self._dedupe = (
            DuplicateFilter(config.dedupe_window, max_entries=config.dedupe_max_entries)
            if config.dedupe_window > 0
            else None
        )
        self.catch_up = self._build_catch_up() if config.catch_up else None
        self._dispatcher = Dispatcher(
            self.router,
            publisher=publisher,
            metrics=self.metrics,
            dedupe=self._dedupe,
            queue_size=config.queue_size,
            retry=config.retry_policy,
            max_age=config.max_age,
            signal_sender=self,
            coordinator=self.coordinator,
            skip_ping=config.skip_ping,
            coalesce_window=config.coalesce_window,
            tick=self._checkpoint_tick if self.catch_up and self.catch_up.store else None,
        )
        self._lock = threading.Lock()
        self._client: BaseClient | None = None
        self._decode_frame: Callable[[Any], list[Event]]  # the client's, set by start()
        self._started = False
        self._stop_report: DrainReport | None = None
        self._state = ConnectionState.DISCONNECTED
        self._ever_connected = False
        self._connected_since: datetime | None = None
        self._disconnected_at: datetime | None = None
        self._health_writer: StatusWriter | None = None

    def __repr__(self) -> str:
        return (
            f"SpooledRuntime(transport={self.config.transport!r}, state={self._state.value!r}, "
            f"subscriptions={len(self.config.subscriptions)})"
        )

    def __enter__(self) -> SpooledRuntime:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def url(self) -> str:
        """The URL the listener connects to, without secrets (see :func:`listener_url`)."""
        return listener_url(self.config.connection, self.config.transport, self.config.filter)

    @property
    def client(self) -> BaseClient | None:
        """The realtime client once started (for diagnostics)."""
        return self._client

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start dispatching and connecting in the background; returns at once.

        No network I/O happens on the calling thread. Idempotent; a stopped runtime
        cannot be started again (build a new one).
        """
        with self._lock:
            if self._stop_report is not None:
                raise RuntimeError("a stopped SpooledRuntime cannot be restarted; create a new one")
            if self._started:
                return
            self._warn_about_once_delivery()
            client = create_client(
                self.config.connection, self.config.transport, self.config.filter
            )
            coordination = self.config.coordination
            if coordination is not None:  # one login per JWT lifetime for the fleet
                client.token_provider.share_with_fleet(
                    connect_redis(coordination.redis_url, timeout=coordination.redis_timeout),
                    coordination.namespace,
                )
            client.on_frames(self._on_frames)
            self._decode_frame = client.decode_frame
            client.on_state_change(self._on_state_change)
            client.on_error(self._on_error)
            self._client = client
            if self.coordinator is not None:
                self.coordinator.start()
            self._dispatcher.start()
            if self.catch_up is not None:
                self.catch_up.start()
            client.start()
            self._started = True
            if self.config.health_file:
                self._health_writer = StatusWriter(StatusFile(self.config.health_file), self.status)
                self._health_writer.start()
        subscriptions = self.config.subscriptions
        logger.info(
            "Spooled runtime started: %s %s, %d subscription(s)%s; %s",
            self.config.transport,
            self.url,
            len(subscriptions),
            ":" if subscriptions else " (events reach signal receivers only)",
            self._catch_up_summary(),
        )
        for index, sub in enumerate(subscriptions):
            logger.info("  Spooled route %s", route_line(index, sub))

    def stop(self, timeout: float = 10.0) -> DrainReport:
        """Disconnect, then dispatch what is queued; return within ``timeout`` seconds.

        Returns the drain report (``drained``, ``left``, ``timed_out``); events left are
        counted as ``dropped{"stopped"}``. Idempotent: later calls return the first
        report at once.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._stop_report is not None:
                return self._stop_report
            client = self._client
            self._started = False
            writer, self._health_writer = self._health_writer, None
        if writer is not None:
            writer.stop()  # removes the file: a stopping listener is not healthy
        if client is not None:
            # disconnect() aborts the socket, so it is quick even mid-backoff or stalled.
            client.disconnect(timeout=min(2.0, max(0.0, timeout) / 2))
        received_until = time.monotonic()
        report = self._dispatcher.stop(max(0.0, deadline - time.monotonic()))
        if self.catch_up is not None:
            if self.catch_up.store is not None:
                self._checkpoint_tick(final=True)  # the dispatch thread has ended
            self.catch_up.stop(timeout=min(2.0, max(0.0, deadline - time.monotonic())))
        if self.coordinator is not None:
            # After the drain: a leader hands over only once its queue is dispatched.
            self.coordinator.stop(
                received_until=received_until, drained=not report.left and not report.timed_out
            )
        with self._lock:
            self._stop_report = report
        logger.info("Spooled runtime stopped (drained %d, left %d)", report.drained, report.left)
        return report

    def observe_event_age(self, observer: Callable[[float], None]) -> None:
        """Call ``observer(seconds)`` on the dispatch thread with the age of each event
        dispatched (server timestamp to dispatch): for a metrics histogram."""
        dispatcher = self._dispatcher
        dispatcher.age_observers = (*dispatcher.age_observers, observer)

    # -- status ----------------------------------------------------------------------

    @property
    def health(self) -> str:
        """``connected``, ``degraded`` (connected, but fleet coordination or catch-up is
        failing: see :meth:`degraded_by`), ``connecting``, ``reconnecting``, ``refused``
        (the server refused the credentials or the URL; retried slowly) or ``stopped``."""
        client = self._client
        if client is None or not self._started:
            return "stopped"
        health = client.health
        if health == "connected" and self.degraded_by():
            return "degraded"
        return health

    def degraded_by(self) -> list[str]:
        """What keeps a connected listener from keeping its promise right now."""
        reasons = []
        if self.coordinator is not None and self.coordinator.status()["available"] is False:
            reasons.append("the coordination Redis is unreachable: once-dispatch is paused")
        if self.catch_up is not None and self.catch_up.last_error:
            reasons.append(f"catch-up sweeps fail: {self.catch_up.last_error}")
        return reasons

    def status(self) -> dict[str, Any]:
        """A JSON-serializable picture for operators (health endpoints, ``listen``)."""
        client = self._client
        stats = client.stats if client is not None else None
        return {
            "state": self._state.value,
            "running": self._started,
            "transport": self.config.transport,
            "connected": self._state == ConnectionState.CONNECTED,
            "connected_since": format_optional(self._connected_since),
            "last_event_at": format_optional(self._dispatcher.last_event_at),
            "health": self.health,
            "degraded_by": self.degraded_by(),
            "refused_until": format_optional(stats.refused_until) if stats else None,
            "last_error": stats.last_error if stats is not None else None,
            "counters": self.metrics.snapshot(),
            "queue_depth": self._dispatcher.depth,
            "queue_size": self.config.queue_size,
            "url": self.url,
            "proxy": shown_proxy(self.url, self.config.connection.proxy),
            "subscriptions": len(self.config.subscriptions),
            "routes": routes_status(self.config.subscriptions),
            "last_published": self._dispatcher.last_published.snapshot(),
            "coordination": self._coordination_status(),
            "catch_up": self.catch_up.status() if self.catch_up is not None else None,
        }

    def _coordination_status(self) -> dict[str, Any] | None:
        if self.coordinator is not None:
            return self.coordinator.status()
        once = self.config.once_subscriptions
        if self.config.coordination is not None:
            return {
                "strategy": self.config.coordination.strategy,
                "active": False,
                "reason": "no subscription has a target with delivery='once'",
            }
        if once:
            return {"strategy": None, "active": False, "warning": _once_warning(once)}
        return None

    def _stream_health(self) -> StreamHealth:
        """For the coordinator (a lease leader leads only while it hears): connected and
        a frame arrived on this connection; when the last frame came (monotonic)."""
        state = self._state
        client = self._client
        last = client.stats.last_frame_at if client is not None else None
        since = client.stats.connected_since if client is not None else None
        hearing = (
            state == ConnectionState.CONNECTED
            and last is not None
            and since is not None
            and last >= since
        )
        heard_at = None
        if last is not None:
            ago = (datetime.now(timezone.utc) - last).total_seconds()
            heard_at = time.monotonic() - max(0.0, ago)
        return StreamHealth(hearing, heard_at, state.value)

    # -- client callbacks (reader thread) ----------------------------------------------

    def _on_frames(self, frames: list[Any]) -> None:
        self._dispatcher.submit_frames(frames, self._decode_frame)

    def _on_state_change(self, state: ConnectionState) -> None:
        now = datetime.now(timezone.utc)
        gap: tuple[datetime, datetime] | None = None
        with self._lock:
            previous, self._state = self._state, state
            running = self._started
            if state == ConnectionState.CONNECTED:
                self._connected_since = now
                if self._ever_connected:
                    self.metrics.incr("reconnects")
                self._ever_connected = True
                if self._disconnected_at is not None:
                    gap = (self._disconnected_at, now)
                    self._disconnected_at = None
            elif previous == ConnectionState.CONNECTED:
                self._connected_since = None
                self._disconnected_at = now
        logger.info("Spooled connection %s -> %s", previous.value, state.value)
        catch_up = self.catch_up
        if catch_up is not None and running:
            if state == ConnectionState.CONNECTED:
                catch_up.connected()
            elif previous == ConnectionState.CONNECTED:
                catch_up.gap_opened(self._last_frame_at(now))
        self._count(send_isolated(connection_state_changed, self, state=state, previous=previous))
        if gap is not None:
            logger.log(
                logging.INFO if catch_up is not None else logging.WARNING,
                "Spooled stream gap: disconnected %s, reconnected %s (%s)",
                format_optional(gap[0]),
                format_optional(gap[1]),
                "the job list is swept for what it hid"
                if catch_up is not None
                else "events in between may be missing; catch_up is off",
            )
            self._count(
                send_isolated(stream_gap, self, disconnected_at=gap[0], reconnected_at=gap[1])
            )

    # -- catch-up ------------------------------------------------------------------------

    def _build_catch_up(self) -> CatchUp:
        config = self.config
        coordination = config.coordination
        store = open_store(
            config.checkpoint,
            coordination_url=coordination.redis_url if coordination is not None else None,
            namespace=coordination.namespace if coordination is not None else "default",
            ttl=config.catch_up_max_age * 2,
        )
        dedupe = self._dedupe
        return CatchUp(
            CatchUpSettings(
                max_age=config.catch_up_max_age,
                max_requests=config.catch_up_max_requests,
                poll=config.catch_up_poll,
                interval=config.catch_up_interval,
            ),
            jobs=self._jobs_client,
            interest=self._interest,
            deliver=self._deliver_recovered,
            hold=dedupe.hold if dedupe is not None else _nothing,
            release=dedupe.release if dedupe is not None else _nothing,
            remember=self._remember,
            store=store,
            may_sweep=lambda: getattr(self.coordinator, "is_leader", True),
            fleet=store is not None
            and coordination is not None
            and coordination.strategy == "claim"
            and config.checkpoint in (None, "", coordination.redis_url),
            on_swept=self._on_swept,
            count_requests=lambda n: self.metrics.incr("catch_up_requests", n),
        )

    def _jobs_client(self) -> Any:
        from spooled_integrations.client import JobsClient

        client = self._client
        if client is None:
            raise RuntimeError("the runtime is not started")
        return JobsClient(self.config.connection, client.token_provider)

    def _interest(self) -> Interest:
        """What the listener would deliver of job lifecycle events: rules and receivers."""
        types: set[str] = set()
        queues: set[str] = set()
        every_queue = False
        for kind in RECOVERABLE:
            if spooled_signal.has_receivers_for(kind):
                types.add(kind)
                every_queue = True
            for subscription in self.router.candidates(kind):
                if subscription.target is None:
                    continue
                types.add(kind)
                wanted = subscription.filter_values("queue")
                if wanted is None:
                    every_queue = True
                else:
                    queues |= wanted
        stream_queue = self.config.filter.queue_name if self.config.filter is not None else None
        if stream_queue is not None:
            return Interest(frozenset(types), frozenset({stream_queue}))
        return Interest(frozenset(types), None if every_queue else frozenset(queues))

    def _deliver_recovered(
        self,
        events: list[Event],
        done: Callable[[int, list[Event]], None],
        fleet_done_before: datetime | None,
    ) -> None:
        stream_filter = self.config.filter
        if stream_filter is not None:
            events = [event for event in events if stream_filter.matches(event)]
        self._dispatcher.submit_recovered(events, done, fleet_done_before)

    def _remember(self, keys: tuple[str, ...]) -> None:
        dedupe = self._dedupe
        if dedupe is not None and keys:
            self._dispatcher.call_soon(lambda: dedupe.remember(keys))

    def _on_swept(self, info: dict[str, Any]) -> None:
        self._count(send_isolated(caught_up, self, **info))

    def _last_frame_at(self, fallback: datetime) -> float:
        client = self._client
        last = client.stats.last_frame_at if client is not None else None
        return (last or fallback).timestamp()

    def _checkpoint_tick(self, *, final: bool = False) -> None:
        """On the dispatch thread (or after it ended): offer the checkpoint a position."""
        catch_up = self.catch_up
        assert catch_up is not None
        now = time.monotonic()
        if not final and not catch_up.checkpoint_due(now):
            return
        client = self._client
        last = client.stats.last_frame_at if client is not None else None
        if last is None:
            return
        if self._dispatcher.depth:
            done_at, _ = self._dispatcher.progress()
            position = time.time() - (now - done_at)
        else:
            position = last.timestamp()
        recent: list[str] = []
        if self._dedupe is not None:
            since = now - (time.time() - position) - 2 * SKEW
            recent = self._dedupe.recent(since, MAX_RECENT)
        catch_up.offer_checkpoint(position, recent, now)

    def _catch_up_summary(self) -> str:
        catch_up = self.catch_up
        if catch_up is None:
            return "catch-up off: events missed during a disconnect are not recovered"
        where = catch_up.store.where if catch_up.store is not None else None
        return (
            f"catch-up on (poll {self.config.catch_up_poll}), checkpoint at {where}"
            if where
            else f"catch-up on (poll {self.config.catch_up_poll}), no checkpoint: gaps "
            "inside this process are swept, downtime before a start is not"
        )

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, ProtocolError):
            self.metrics.protocol_error(exc.reason)

    def _count(self, result: tuple[int, int]) -> None:
        if result[1]:
            self.metrics.incr("receiver_failures", result[1])

    def _warn_about_once_delivery(self) -> None:
        once = self.config.once_subscriptions
        if once and self.config.coordination is None:
            # Advice, not an incident: at WARNING the first time this node boots these
            # rules, at INFO after that (a fleet's fresh containers each warn).
            warning = _once_warning(once)
            cache = self.config.connection.token_cache  # the node's own directory
            folder = default_cache_dir() if cache in ("auto", "off") else Path(cache)
            first = cache == "off" or first_to_say(warning, folder)
            logger.log(logging.WARNING if first else logging.INFO, "%s", warning)
        elif self.coordinator is not None:
            coordination = self.config.coordination
            assert coordination is not None
            logger.info(
                "Spooled fleet coordination: %s on %s (namespace %r, node %s) for %d "
                "once-subscription(s)",
                coordination.strategy,
                coordination.safe_url,
                coordination.namespace,
                self.coordinator.token,
                len(once),
            )


def _nothing() -> None:
    return None


def _once_warning(once: list[str]) -> str:
    return (
        f"{len(once)} subscription(s) ask for delivery='once' "
        f"({', '.join(once[:5]) + ('...' if len(once) > 5 else '')}) but no fleet "
        "coordination is configured: every process running a Spooled runtime dispatches "
        "them. Configure coordination (lease or claim), run one listener for the fleet, "
        "or set delivery='every_node' to say so."
    )
