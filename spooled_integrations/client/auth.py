"""API key → access JWT, fetched once and shared until shortly before it expires.

The login endpoint is rate limited per key prefix (5 per sliding minute, shared by
every key of an environment), so logging in on every reconnect locks a whole fleet
out. One :class:`TokenProvider` per client is reused across reconnects; the processes
of a node (and its restarts) share the JWT through a file, and with coordination the
fleet shares it through Redis (:mod:`~spooled_integrations.client.token_cache`). A
refusal is shared too, so refused credentials cost one login per retry, not one per
process.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from spooled_integrations._redact import redact
from spooled_integrations.client._quiet import quiet_requests
from spooled_integrations.client.backoff import BackoffPolicy
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions
from spooled_integrations.client.proxy import http_failure, http_transport, proxy_refused
from spooled_integrations.client.token_cache import (
    RedisTokenCache,
    TokenCache,
    TokenRecord,
    cache_key,
    file_cache_for,
)
from spooled_integrations.errors import (
    AuthError,
    ConfigurationError,
    RateLimitError,
    SpooledConnectionError,
)

__all__ = ["LoginDeferred", "LoginRateLimited", "TokenProvider", "is_refusal"]

LOGIN_PATH = "/api/v1/auth/login"
REFRESH_MARGIN = 60.0
"""Renew this many seconds before ``exp`` (the server allows 60 s of leeway)."""
REFUSAL_SCHEDULE = BackoffPolicy(60.0, 1800.0, jitter=0.2)
"""Refused credentials are tried again after 1, 2, 4, … minutes, at most every 30."""


def jwt_expiry(token: str) -> float | None:
    """``exp`` of a JWT, read without verifying (only we use it, to plan renewal)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def is_refusal(exc: BaseException) -> bool:
    """An answer that retrying soon cannot change: 401/403, a wrong path (404), a key
    the server calls malformed (400). Retried on :data:`REFUSAL_SCHEDULE` only."""
    if isinstance(exc, AuthError):
        return True
    status = getattr(exc, "status", None)
    return (
        isinstance(exc, SpooledConnectionError)
        and status is not None
        and 400 <= status < 500
        and status not in (408, 429)
    )


class LoginDeferred(SpooledConnectionError):
    """These credentials were refused (here or by another process); no login before
    ``until`` (epoch seconds), so a refused key does not spend the login budget."""

    def __init__(
        self, until: float, reason: str, where: str, status: int | None, location: str
    ) -> None:
        super().__init__(f"{reason} (refused earlier, for {where})", status=status)
        self.until = until
        self.reason = reason
        self.where = where
        self.location = location
        """The record to delete to try at once (a file path, a Redis key)."""


class LoginRateLimited(RateLimitError):
    """The login limiter said 429 (no ``Retry-After``). Refused logins are not
    counted by the limiter, so trying again within seconds costs nothing."""


class TokenProvider:
    """Gives the access JWT for handshakes; logs in with the API key when needed.

    Looks in order: this process's copy, each shared cache (node file, then fleet
    Redis) under that cache's lock, and only then logs in, holding every lock, so
    processes that start together make one login.
    """

    def __init__(
        self, options: ConnectionOptions, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._options = options
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        static = options.token.get_secret_value() if options.token else None
        self._api_key = options.api_key.get_secret_value() if options.api_key else None
        if static and static.startswith("eyJ"):
            self._static_jwt: str | None = static
        else:
            self._static_jwt = None
            self._api_key = self._api_key or static  # Go: Token may hold an API key
        if self._static_jwt is None and self._api_key is None:
            raise ConfigurationError(
                "no Spooled credentials: set api_key (SPOOLED_API_KEY) or token (SPOOLED_TOKEN)"
            )
        self._caches: list[TokenCache] = []
        if self._api_key is not None:
            cache = file_cache_for(options.token_cache, self._key())
            if cache is not None:
                self._caches.append(cache)
        self.logins = 0
        self.fresh = False
        """Whether the last :meth:`get` logged in (so a refusal is not a stale token)."""
        self.refusal: TokenRecord | None = None
        """The refusal in force, if any (for status and logs)."""
        self._failures = 0
        self._noted: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"TokenProvider(base_url={self._options.base_url!r}, cached={self._token is not None})"
        )

    def secrets(self) -> tuple[str | None, ...]:
        """Every secret this provider knows, for redaction."""
        return (self._api_key, self._static_jwt, self._token)

    @property
    def can_refresh(self) -> bool:
        return self._api_key is not None

    @property
    def login_url(self) -> str:
        return self._options.base_url + LOGIN_PATH

    @property
    def shared_with(self) -> list[str]:
        """Where the JWT is shared: ``"this node"``, ``"the fleet"``."""
        return [cache.name for cache in self._caches]

    def share_with_fleet(self, redis_client: Any, namespace: str) -> None:
        """Share the JWT and refusals through the coordination Redis too (one login per
        JWT lifetime for the whole fleet)."""
        if self._api_key is not None and not any(
            isinstance(cache, RedisTokenCache) for cache in self._caches
        ):
            self._caches.append(
                RedisTokenCache(redis_client, namespace, self._key(), margin=REFRESH_MARGIN)
            )

    def get(self, *, force: bool = False) -> str:
        """The access JWT; ``force`` discards this one (the server refused it).

        Raises :class:`LoginDeferred` while a shared refusal is in force.
        """
        if self._static_jwt is not None and not self.can_refresh:
            return self._static_jwt
        with self._lock:
            if not force and self._usable(self._token, self._expires_at):
                self.fresh = False
                assert self._token is not None
                return self._token
            return self._acquire(0, rejected=self._token if force else None)

    def note_refused(self, exc: BaseException) -> TokenRecord:
        """Record a refusal (login or handshake) where every sharer sees it; returns it.

        The next attempt waits for :data:`REFUSAL_SCHEDULE`, stretched by the refusals in
        a row that any sharer has seen.
        """
        if exc is self._noted and self.refusal is not None:
            return self.refusal  # the login path recorded it under its locks
        with self._lock, self._all_locks():
            return self._record_refusal(exc)

    def connected(self) -> None:
        """The credentials work again: lift a refusal everyone may still be waiting on."""
        if self.refusal is None and self._failures == 0:
            return
        with self._lock, self._all_locks():
            self.refusal = None
            self._failures = 0
            self._save(TokenRecord(token=self._token, expires_at=self._expires_at))

    # -- internals -----------------------------------------------------------------

    def _key(self) -> str:
        assert self._api_key is not None
        return cache_key(self._options.base_url, self._api_key)

    def _usable(
        self, token: str | None, expires_at: float | None, rejected: str | None = None
    ) -> bool:
        if token is None or token == rejected:
            return False
        return expires_at is None or self._clock() < expires_at - REFRESH_MARGIN

    @property
    def _lock_timeout(self) -> float:
        return self._options.connect_timeout + 5.0

    def _acquire(self, level: int, rejected: str | None) -> str:
        """A JWT from cache ``level`` or deeper; logs in past the last one."""
        if level == len(self._caches):
            return self._login_and_share()
        cache = self._caches[level]
        with cache.locked(self._lock_timeout):  # on timeout, carry on unlocked
            record = cache.load()
            if record is not None:
                if record.refused_until > self._clock():
                    self.refusal = record
                    raise LoginDeferred(
                        record.refused_until,
                        record.reason,
                        cache.name,
                        record.status,
                        cache.location,
                    )
                if self._usable(record.token, record.expires_at, rejected):
                    assert record.token is not None
                    self._token, self._expires_at = record.token, record.expires_at
                    self.fresh = False
                    self._save(record, below=level)
                    return record.token
            return self._acquire(level + 1, rejected)

    def _login_and_share(self) -> str:
        """Log in (holding every cache's lock) and share the result either way."""
        self.fresh = True  # refused or not, this attempt's answer is not a stale token's
        try:
            token = self._login()
        except SpooledConnectionError as exc:
            if is_refusal(exc):
                self._noted = exc
                self._record_refusal(exc)
            raise
        self._token, self._expires_at = token, jwt_expiry(token)
        self.refusal = None
        self._failures = 0
        self._save(TokenRecord(token=token, expires_at=self._expires_at))
        return token

    def _record_refusal(self, exc: BaseException) -> TokenRecord:
        """The next refusal record (callers hold the locks); saved to every cache."""
        seen = [record.failures for record in self._load_all()]
        failures = max([self._failures, *seen]) + 1
        reason = redact(str(exc) or type(exc).__name__, *self.secrets())
        if isinstance(exc, AuthError):  # the JWT itself may be what was refused
            self._token = self._expires_at = None
        record = TokenRecord(
            token=self._token,
            expires_at=self._expires_at,
            refused_until=self._clock() + REFUSAL_SCHEDULE.delay(failures),
            failures=failures,
            reason=reason,
            status=getattr(exc, "status", None),
        )
        self._failures = failures
        self.refusal = record
        self._save(record)
        return record

    def _load_all(self) -> Iterator[TokenRecord]:
        for cache in self._caches:
            record = cache.load()
            if record is not None:
                yield record

    def _save(self, record: TokenRecord, *, below: int | None = None) -> None:
        for cache in self._caches[:below]:
            cache.save(record)

    @contextmanager
    def _all_locks(self, level: int = 0) -> Iterator[None]:
        """Every cache's lock, in the one order all sharers take them (no deadlock)."""
        if level == len(self._caches):
            yield
            return
        with self._caches[level].locked(self._lock_timeout), self._all_locks(level + 1):
            yield

    def _login(self) -> str:
        url = self.login_url
        try:
            with (
                httpx.Client(
                    timeout=self._options.connect_timeout,
                    transport=http_transport(
                        url, self._options.proxy, verify=self._options.verify_tls
                    ),
                ) as http,
                quiet_requests(),
            ):
                response = http.post(url, json={"api_key": self._api_key})
        except httpx.HTTPError as exc:
            raise SpooledConnectionError(
                redact(
                    f"login request to {url} failed: "
                    + http_failure(exc, url, self._options.proxy),
                    self._api_key,
                )
            ) from None
        if response.status_code == 407:
            raise proxy_refused(url, self._options.proxy, f"login at {url}")
        self.logins += 1
        if response.status_code == 429:
            raise LoginRateLimited(
                f"login at {url} refused with HTTP 429: too many logins for this key "
                "prefix (the server allows 5 a minute)",
                retry_after=None,
            )
        if response.status_code != 200:
            raise error_for_status(
                response.status_code,
                response.headers,
                response.text,
                what=f"login at {url}",
                secrets=self.secrets(),
            )
        body: Any = _json_or_none(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"login at {url} answered 200 without an access_token", status=200)
        return token


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
