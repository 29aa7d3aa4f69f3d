"""What the dispatcher needs from a coordinator, and what both strategies share.

Threads: :meth:`Coordinator.dispatch` and :meth:`Coordinator.poll` run on the
dispatch thread only (so publishing stays on one thread, in order); a strategy may
run its own background thread (the lease does). :meth:`Coordinator.stop` runs on the
thread that stops the runtime, after the dispatch thread has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from spooled_integrations._redact import redact
from spooled_integrations.protocol import Event
from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.runtime.coordination._redis import connect, node_token, redis_errors
from spooled_integrations.runtime.coordination.config import CoordinationConfig
from spooled_integrations.runtime.subscriptions import Subscription

if TYPE_CHECKING:
    import redis

__all__ = ["Coordinator", "DispatchHooks", "StreamHealth"]

logger = logging.getLogger(__name__)

UNAVAILABLE = "coordination_unavailable"
"""``dropped`` reason: a ``once`` event could not be kept while Redis was unreachable."""


@dataclass(frozen=True)
class DispatchHooks:
    """Callbacks into the dispatcher.

    ``publish(subscription, event)`` hands one ``once`` event to one target (checking
    the subscription's ``max_age`` again, retrying inside the publish budget);
    ``drop(event, reason, detail)`` counts and signals a drop without logging it (the
    coordinator logs one summary line instead of one per event); ``progress()``
    returns ``(t, key)``: every event received before monotonic time ``t`` has been
    dispatched, and ``key`` is the identity key of the last one (``None`` before any);
    ``backlog()`` is the number of events waiting for the dispatch thread.
    """

    publish: Callable[[Subscription, Event], None]
    drop: Callable[[Event | None, str, str], None]
    progress: Callable[[], tuple[float, str | None]]
    backlog: Callable[[], int] = lambda: 0


@dataclass(frozen=True)
class StreamHealth:
    """What this node's own stream says right now (the lease leads only while it hears).

    ``hearing``: connected, and a frame arrived on this connection (a handshake alone
    proves nothing: a stalled server completes it and then says nothing);
    ``heard_at``: monotonic time of the last frame, ``None`` before any;
    ``state``: the connection state's name, for logs.
    """

    hearing: bool
    heard_at: float | None = None
    state: str = "connected"


def _always_hearing() -> StreamHealth:
    return StreamHealth(True, None)


def _no_publish(subscription: Subscription, event: Event) -> None:
    raise RuntimeError("coordinator used before Dispatcher attached it")


def _no_drop(event: Event | None, reason: str, detail: str) -> None:
    raise RuntimeError("coordinator used before Dispatcher attached it")


def _no_progress() -> tuple[float, str | None]:
    return time.monotonic(), None


class Coordinator(ABC):
    """Decides, per ``once`` event, whether this node publishes it (see the package doc)."""

    strategy: ClassVar[str]
    poll_interval: float = 0.2
    """The dispatch thread calls :meth:`poll` at least this often (seconds)."""

    def __init__(
        self,
        config: CoordinationConfig,
        *,
        signal_sender: Any = None,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
        redis_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.token = node_token(config.node_id)
        self._sender = self if signal_sender is None else signal_sender
        self._clock = clock
        self._redis_timeout = redis_timeout or config.redis_timeout
        self._redis = client or connect(config.redis_url, timeout=self._redis_timeout)
        self._errors = redis_errors()
        self._hooks = DispatchHooks(_no_publish, _no_drop, _no_progress)
        self._stream: Callable[[], StreamHealth] = _always_hearing
        self._silence = 0.0
        self._state_lock = threading.Lock()
        self._available: bool | None = None  # None: not tried yet
        self._last_error: str | None = None
        self._unavailable_since: datetime | None = None
        self._outages = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self.config.namespace!r}, "
            f"redis={self.config.safe_url!r}, node={self.token!r})"
        )

    def attach(self, hooks: DispatchHooks) -> None:
        """Called once by the dispatcher that owns this coordinator."""
        self._hooks = hooks

    def watch_stream(self, probe: Callable[[], StreamHealth], *, silence: float) -> None:
        """Called once by the runtime: ``probe()`` tells whether this node's stream hears
        (any thread, cheap); ``silence`` is how long a stream may go quiet before the
        client declares it dead (its liveness timeout). Without it the node always
        counts as hearing."""
        self._stream = probe
        self._silence = silence

    def start(self) -> None:  # noqa: B027 -- optional hook
        """Start background work (no network I/O on the calling thread)."""

    def stop(self, *, received_until: float | None = None, drained: bool = True) -> None:  # noqa: B027
        """Stop: release what this node holds, count what it still keeps.

        ``received_until`` is the monotonic time after which this node received
        nothing (its connection was closed); ``drained`` tells whether everything
        received before that was dispatched.
        """

    @abstractmethod
    def dispatch(
        self, event: Event, subscriptions: Sequence[Subscription], received_at: float
    ) -> None:
        """Publish ``event`` to ``subscriptions`` if this node should (dispatch thread)."""

    @abstractmethod
    def poll(self) -> None:
        """Periodic work on the dispatch thread: retries, takeovers, expiry."""

    def status(self) -> dict[str, Any]:
        """The ``coordination`` part of ``SpooledRuntime.status()`` (JSON-ready)."""
        with self._state_lock:
            return {
                "strategy": self.strategy,
                "namespace": self.config.namespace,
                "redis": self.config.safe_url,
                "node": self.token,
                "available": self._available,
                "unavailable_since": format_optional(self._unavailable_since),
                "outages": self._outages,
                "last_error": self._last_error,
                "dropped": self._dropped,
            }

    # -- shared helpers ----------------------------------------------------------------

    def _publish_all(self, event: Event, subscriptions: Sequence[Subscription]) -> None:
        for subscription in subscriptions:
            self._hooks.publish(subscription, event)

    def _drop(self, event: Event | None, reason: str, detail: str) -> None:
        with self._state_lock:
            self._dropped += 1
        self._hooks.drop(event, reason, detail)

    def _redis_ok(self) -> None:
        with self._state_lock:
            was, self._available = self._available, True
            since, self._unavailable_since = self._unavailable_since, None
        if was is False:
            down = (datetime.now(timezone.utc) - since).total_seconds() if since else 0.0
            logger.warning(
                "Spooled coordination: Redis %s reachable again after %.1fs",
                self.config.safe_url,
                down,
            )

    def _redis_failed(self, exc: BaseException) -> None:
        text = redact(f"{type(exc).__name__}: {exc}")
        with self._state_lock:
            was, self._available = self._available, False
            self._last_error = text
            if was is not False:
                self._outages += 1
                self._unavailable_since = datetime.now(timezone.utc)
        if was is not False:
            logger.error(
                "Spooled coordination: Redis %s unreachable (%s); once-dispatch pauses and "
                "buffers up to %d events for %gs",
                self.config.safe_url,
                text,
                self.config.buffer_size,
                self.config.buffer_max_age,
            )
