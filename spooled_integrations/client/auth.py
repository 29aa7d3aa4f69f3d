"""API key → access JWT, fetched once and cached until shortly before it expires.

The login endpoint is rate limited per key prefix (5 per sliding minute, shared by
every key of an environment), so logging in on every reconnect locks a whole fleet
out. One :class:`TokenProvider` per client is reused across reconnects.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from spooled_integrations._redact import redact
from spooled_integrations.client._quiet import quiet_requests
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions
from spooled_integrations.errors import AuthError, ConfigurationError, SpooledConnectionError

__all__ = ["TokenProvider"]

LOGIN_PATH = "/api/v1/auth/login"
REFRESH_MARGIN = 60.0
"""Renew this many seconds before ``exp`` (the server allows 60 s of leeway)."""


def jwt_expiry(token: str) -> float | None:
    """``exp`` of a JWT, read without verifying (only we use it, to plan renewal)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class TokenProvider:
    """Gives the access JWT for handshakes; logs in with the API key when needed."""

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
        self.logins = 0
        self.fresh = False
        """Whether the last :meth:`get` logged in (so a refusal is not a stale token)."""

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

    def get(self, *, force: bool = False) -> str:
        """The access JWT; ``force`` discards the cached one (after a 401)."""
        if self._static_jwt is not None and not self.can_refresh:
            return self._static_jwt
        with self._lock:
            now = self._clock()
            fresh = self._token is not None and (
                self._expires_at is None or now < self._expires_at - REFRESH_MARGIN
            )
            self.fresh = force or not fresh
            if self.fresh:
                self._token = self._login()
                self._expires_at = jwt_expiry(self._token)
            assert self._token is not None
            return self._token

    def _login(self) -> str:
        url = self._options.base_url + LOGIN_PATH
        try:
            with (
                httpx.Client(
                    timeout=self._options.connect_timeout, verify=self._options.verify_tls
                ) as http,
                quiet_requests(),
            ):
                response = http.post(url, json={"api_key": self._api_key})
        except httpx.HTTPError as exc:
            raise SpooledConnectionError(
                redact(f"login request to {url} failed: {exc!r}", self._api_key)
            ) from None
        self.logins += 1
        if response.status_code != 200:
            raise error_for_status(
                response.status_code,
                response.headers,
                response.text,
                what="login",
                secrets=self.secrets(),
            )
        body: Any = _json_or_none(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError("login answered 200 without an access_token", status=200)
        return token


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
