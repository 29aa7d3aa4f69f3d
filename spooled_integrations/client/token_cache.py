"""Where an access JWT outlives one process: a file only this user can read, and Redis.

The backend allows 5 logins a minute per key prefix, for a whole environment. So the
processes of a node and its restarts share one JWT through a file (``token_cache``),
and with fleet coordination the whole fleet shares it through Redis. A refusal is
shared the same way: while the credentials are refused, one process retries for all
of them, on a slow schedule.

A cache is a convenience, never a dependency: any error reading or writing one is
logged once and the provider carries on as if it had none.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "FileTokenCache",
    "RedisTokenCache",
    "TokenCache",
    "TokenRecord",
    "cache_key",
    "default_cache_dir",
    "file_cache_for",
]

log = logging.getLogger("spooled_integrations.client")

LOCK_POLL = 0.05
SKIP_AFTER_FAILURE = 30.0
"""Seconds the fleet cache is left alone after Redis failed."""


@dataclass
class TokenRecord:
    """What a cache holds for one (base URL, API key): the JWT and any refusal."""

    token: str | None = None
    expires_at: float | None = None
    refused_until: float = 0.0
    """Nobody logs in with these credentials before this time (epoch seconds)."""
    failures: int = 0
    """Refusals in a row; the retry schedule stretches with them."""
    reason: str = ""
    """The last refusal, already redacted."""
    status: int | None = None
    """The HTTP status of the last refusal."""

    def __repr__(self) -> str:  # the token stays out of every repr
        return (
            f"TokenRecord(cached={self.token is not None}, expires_at={self.expires_at}, "
            f"refused_until={self.refused_until}, failures={self.failures})"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> TokenRecord | None:
        try:
            data = json.loads(text)
            return cls(
                token=data.get("token") if isinstance(data.get("token"), str) else None,
                expires_at=_number(data.get("expires_at")),
                refused_until=_number(data.get("refused_until")) or 0.0,
                failures=int(data.get("failures") or 0),
                reason=str(data.get("reason") or ""),
                status=data["status"] if isinstance(data.get("status"), int) else None,
            )
        except (ValueError, TypeError, AttributeError):
            return None  # a torn or foreign file: as if there were none

    def keep_until(self, margin: float) -> float:
        """When this record stops being worth keeping (epoch seconds)."""
        token_until = (self.expires_at - margin) if self.expires_at else 0.0
        return max(token_until, self.refused_until)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class TokenCache(Protocol):
    """One shared place for a :class:`TokenRecord`."""

    name: str
    """Says who shares it, in logs: ``"this node"`` or ``"the fleet"``."""
    location: str
    """Where it is (a file, a Redis key), for the operator who wants to clear it."""

    def load(self) -> TokenRecord | None: ...
    def save(self, record: TokenRecord) -> None: ...
    def locked(self, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the cache's lock (``True``) or give up after ``timeout`` (``False``)."""
        ...


def cache_key(base_url: str, api_key: str) -> str:
    """The record's name: a hash of the URL and key (the key itself is never stored)."""
    return hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spooled-integrations``, else ``~/.cache/spooled-integrations``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "spooled-integrations"


def file_cache_for(setting: str, key: str) -> FileTokenCache | None:
    """The node-local cache ``token_cache`` names, or ``None`` (``"off"``, or unusable)."""
    if setting == "off":
        return None
    directory = default_cache_dir() if setting == "auto" else Path(setting).expanduser()
    try:
        return FileTokenCache(directory, key)
    except OSError as exc:
        log.warning(
            "Spooled token cache %s is not usable (%s); this process logs in on its own",
            directory,
            exc,
        )
        return None


class FileTokenCache:
    """A JSON file readable by this user only, with an ``flock`` among the node's processes.

    The directory must belong to this user and be closed to others (it is created so);
    otherwise another user could read the JWT or plant one, and the cache is refused.
    """

    name = "this node"

    def __init__(self, directory: Path, key: str) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"{directory} must belong to this user and not be writable by others"
            )
        self.directory = directory
        self.path = directory / f"jwt-{key}.json"
        self.location = str(self.path)
        self._lock_path = directory / f"jwt-{key}.lock"
        self._warned = False

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    def load(self) -> TokenRecord | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(exc)
            return None
        return TokenRecord.from_json(text)

    def save(self, record: TokenRecord) -> None:
        try:
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".jwt-")  # mode 0600
            with os.fdopen(fd, "w") as file:
                file.write(record.to_json())
            os.replace(temporary, self.path)
        except OSError as exc:
            self._warn(exc)

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[bool]:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._warn(exc)
            yield False
            return
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(LOCK_POLL)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("Spooled token cache %s: %s; carrying on without it", self.path, exc)


class RedisTokenCache:
    """The fleet's record in the coordination Redis, with a redis-py lock.

    Stores the access JWT (a secret: whoever reads this Redis can use it until it
    expires) and any refusal, under ``spooled:<namespace>:login:<hash>``, expiring
    when the JWT does.
    """

    name = "the fleet"

    def __init__(self, client: Any, namespace: str, key: str, *, margin: float) -> None:
        self._redis = client
        self._key = f"spooled:{namespace}:login:{key}"
        self.location = f"the Redis key {self._key}"
        self._margin = margin
        self._warned = False
        self._skip_until = 0.0

    @property
    def _skipped(self) -> bool:
        """After a failure Redis is left alone for a while: a silent Redis must not add
        its timeout to every connection attempt."""
        return time.monotonic() < self._skip_until

    def __repr__(self) -> str:
        return f"RedisTokenCache({self._key!r})"

    def load(self) -> TokenRecord | None:
        if self._skipped:
            return None
        try:
            text = self._redis.get(self._key)
        except Exception as exc:  # redis is optional: its errors are not importable here
            self._warn(exc)
            return None
        return TokenRecord.from_json(text) if text else None

    def save(self, record: TokenRecord) -> None:
        if self._skipped:
            return
        ttl_ms = int((record.keep_until(self._margin) - time.time()) * 1000)
        try:
            if ttl_ms > 0:
                self._redis.set(self._key, record.to_json(), px=ttl_ms)
            else:
                self._redis.delete(self._key)
        except Exception as exc:
            self._warn(exc)

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[bool]:
        if self._skipped:
            yield False
            return
        try:
            lock = self._redis.lock(
                f"{self._key}:lock", timeout=max(timeout, 1.0) * 3, blocking_timeout=timeout
            )
            acquired = bool(lock.acquire())
        except Exception as exc:
            self._warn(exc)
            yield False
            return
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(Exception):  # expired meanwhile: nothing to free
                    lock.release()

    def _warn(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE
        if not self._warned:
            self._warned = True
            log.warning(
                "Spooled fleet token cache in Redis failed (%s); logging in without it "
                "(tried again after %.0f s)",
                type(exc).__name__,
                SKIP_AFTER_FAILURE,
            )
