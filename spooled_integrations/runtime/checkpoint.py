"""How far a listener has seen, kept across restarts so a restart sweeps its downtime.

A checkpoint holds a *position* (wall-clock seconds: every event the server published
before it, less a small skew, has been dispatched) and the transitions dispatched in
the last few seconds before it, which a restart's sweep would otherwise repeat. It is
written at most once a second, from a thread of its own, never while a stream gap is
still unswept (the position then stays where the gap began).

Where it lives (the ``checkpoint`` setting):

- a Redis URL (``redis://``, ``rediss://``, ``unix://``): key
  ``spooled:checkpoint:<namespace>``, shared by the fleet (the last node to write
  wins, and a node writes only while it is caught up, so the key is the fleet's
  position); by default the coordination Redis when coordination is configured;
- ``"off"``: none, even with coordination;
- anything else is a file path: one node's own (replaced atomically).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spooled_integrations._redact import redact_url
from spooled_integrations.errors import ConfigurationError

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "FileCheckpoint",
    "RedisCheckpoint",
    "check_checkpoint",
    "open_store",
]

logger = logging.getLogger(__name__)

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
OFF = "off"
"""The ``checkpoint`` value that turns it off even where coordination would provide one."""
MAX_RECENT = 20_000
"""Transitions kept with a position; beyond this a restart may repeat some."""


@dataclass(frozen=True)
class Checkpoint:
    position: float
    """Wall-clock seconds (``time.time()``) up to which events were dispatched."""
    recent: tuple[str, ...] = ()
    """Identity bases dispatched shortly before ``position``."""
    horizon: tuple[float, float, str] | None = None
    """``(valid from, oldest open job's created_at, scope)`` of the last complete sweep:
    a later sweep of the same scope that starts at or after ``valid from`` need not
    page past that job (see :attr:`~spooled_integrations.runtime.sweep.SweepResult.oldest_open`)."""

    def to_json(self) -> str:
        value: dict[str, Any] = {"position": self.position, "recent": list(self.recent)}
        if self.horizon is not None:
            value["horizon"] = list(self.horizon)
        return json.dumps(value)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Raises ``ValueError`` for anything but a checkpoint this module wrote."""
        value: Any = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        position = value.get("position")
        recent = value.get("recent", [])
        if not isinstance(position, (int, float)) or isinstance(position, bool):
            raise ValueError("no numeric 'position'")
        if not isinstance(recent, list) or not all(isinstance(k, str) for k in recent):
            raise ValueError("'recent' is not a list of strings")
        return cls(float(position), tuple(recent[:MAX_RECENT]), _horizon(value.get("horizon")))


def _horizon(value: Any) -> tuple[float, float, str] | None:
    """A stored horizon, or ``None`` when absent or not of the written shape."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    at, oldest, scope = value
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (at, oldest))
    return (float(at), float(oldest), scope) if numbers and isinstance(scope, str) else None


class CheckpointStore(ABC):
    """Loads and saves one :class:`Checkpoint`; errors are the caller's to log."""

    @abstractmethod
    def load(self) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, checkpoint: Checkpoint) -> None: ...

    @property
    @abstractmethod
    def where(self) -> str:
        """Where it is kept, for logs and status (no password)."""

    def close(self) -> None:  # noqa: B027 -- optional
        """Let go of connections."""


class FileCheckpoint(CheckpointStore):
    """A JSON file replaced atomically (write a temporary file, then rename)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self) -> Checkpoint | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return Checkpoint.from_json(text)

    def save(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".spooled-checkpoint-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(checkpoint.to_json())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


class RedisCheckpoint(CheckpointStore):
    """One Redis string per namespace, expiring when too old to be of use."""

    def __init__(self, url: str, namespace: str, *, ttl: float, timeout: float = 2.0) -> None:
        from spooled_integrations.runtime.coordination._redis import connect

        self._url = url
        self.key = f"spooled:checkpoint:{namespace}"
        self._ttl_ms = max(1000, int(ttl * 1000))
        self._redis = connect(url, timeout=timeout)

    @property
    def where(self) -> str:
        return f"{redact_url(self._url)} key {self.key}"

    def load(self) -> Checkpoint | None:
        text = self._redis.get(self.key)
        return None if text is None else Checkpoint.from_json(text)

    def save(self, checkpoint: Checkpoint) -> None:
        self._redis.set(self.key, checkpoint.to_json(), px=self._ttl_ms)

    def close(self) -> None:
        self._redis.close()


def open_store(
    value: str | None,
    *,
    coordination_url: str | None,
    namespace: str,
    ttl: float,
) -> CheckpointStore | None:
    """The store a ``checkpoint`` setting names (see the module docstring)."""
    if value is None or value == "":
        if coordination_url is None:
            return None
        return RedisCheckpoint(coordination_url, namespace, ttl=ttl)
    check_checkpoint(value)
    if value == OFF:
        return None
    if value.startswith(_REDIS_SCHEMES):
        return RedisCheckpoint(value, namespace, ttl=ttl)
    return FileCheckpoint(value)


def check_checkpoint(value: str | None) -> str | None:
    """``value``, or ``ValueError`` (a :class:`ConfigurationError`) for a URL of another
    kind: a field validator of the ``checkpoint`` setting."""
    if value is not None and "://" in value and not value.startswith(_REDIS_SCHEMES):
        raise ConfigurationError(
            "must be a Redis URL (redis://, rediss://, unix://), a file path or 'off'"
        )
    return value
