"""The one place redis-py is imported (lazily), plus fencing tokens and Redis time.

A client never retries on its own (the coordinators decide when to try again) and
every call is bounded by the configured timeout. Building a client does no I/O.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from spooled_integrations.errors import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisClock", "connect", "node_token", "redis_errors"]


def connect(url: str, *, timeout: float) -> redis.Redis:
    """A redis-py client for ``url``: no retries, ``timeout`` on connect and on every call."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError(
            "fleet coordination needs redis-py: pip install 'spooled-integrations[redis]'"
        ) from None
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            client_name="spooled-integrations",
        )
    except ValueError as exc:  # a malformed URL; redis-py's message holds no password
        raise ConfigurationError(f"redis_url: {exc}") from None


def redis_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "Redis cannot answer right now"."""
    import redis

    return (redis.RedisError, OSError)


def node_token(prefix: str | None) -> str:
    """A fencing token: ``host:pid:random`` (``prefix:random`` when given)."""
    base = prefix or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{uuid.uuid4().hex[:12]}"


class RedisClock:
    """Maps Redis server time (ms, from ``TIME`` in a script) to this process's monotonic clock.

    Each sample is the midpoint of one round trip, so its error is at most half that
    round trip; the sample with the shortest round trip in the last ``keep`` seconds
    wins, because a slow answer says little about when Redis read its clock.
    """

    def __init__(self, keep: float = 30.0) -> None:
        self._keep = keep
        self._offset_ms: float | None = None  # redis_ms - local_ms
        self._rtt = float("inf")
        self._at = 0.0

    @property
    def known(self) -> bool:
        return self._offset_ms is not None

    def sample(self, redis_ms: float, sent: float, received: float) -> None:
        rtt = received - sent
        if self._offset_ms is None or rtt <= self._rtt * 1.5 or received - self._at > self._keep:
            self._offset_ms = redis_ms - (sent + received) / 2 * 1000.0
            self._rtt = rtt
            self._at = received

    def to_local(self, redis_ms: float) -> float:
        """Monotonic seconds of this process for a Redis time in ms."""
        if self._offset_ms is None:
            raise RuntimeError("no Redis time sample yet")
        return (redis_ms - self._offset_ms) / 1000.0


def as_int(value: Any, default: int = 0) -> int:
    """An int from a Redis reply field (``None``/garbage: ``default``)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
