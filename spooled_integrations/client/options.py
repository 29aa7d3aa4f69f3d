"""Connection options, connection states and the subscription filter (Go ``realtime`` names)."""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from spooled_integrations._problems import describe_problems
from spooled_integrations._redact import redact_mapping, redact_url
from spooled_integrations.client.proxy import check_proxy_url
from spooled_integrations.errors import ConfigurationError
from spooled_integrations.protocol import Event, EventType, resolve, wire_dotted_name

__all__ = ["ConnectionOptions", "ConnectionState", "SubscriptionFilter", "liveness_problem"]

WS_PATH = "/api/v1/ws"
SSE_SERVER_KEEPALIVE = 15.0
"""The backend's SSE keep-alive: a ``: ping`` comment after 15 s without data."""


def liveness_problem(transport: str, liveness_timeout: float | None) -> str | None:
    """Why ``liveness_timeout`` would replace a healthy but quiet stream, or ``None``.

    On WebSocket any value works: the client sends its own ``Ping`` every third of it.
    On SSE only the server speaks, at least every 15 s when idle (a self-hosted server
    or the emulator may be faster, so this is a warning, not a refusal).
    """
    least = SSE_SERVER_KEEPALIVE + 5.0
    if transport != "sse" or liveness_timeout is None or liveness_timeout >= least:
        return None
    return (
        f"liveness_timeout={liveness_timeout:g} s is shorter than the Spooled server's SSE "
        f"keep-alive ({SSE_SERVER_KEEPALIVE:g} s): a quiet stream would be replaced every "
        f"{liveness_timeout:g} s; use at least {least:g} s, or WebSocket, or leave it unset"
    )


class ConnectionState(str, enum.Enum):
    """The Go package's four connection states."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"

    def __str__(self) -> str:
        return self.value


class ConnectionOptions(BaseModel):
    """How to reach Spooled and how hard to try.

    ``max_reconnect_attempts`` defaults to 0, meaning unlimited: a worker fleet must
    outlive any outage (the Go default of 10 would leave it deaf after ~4 minutes).
    Secrets are :class:`~pydantic.SecretStr`, so they never show in a repr.
    """

    # hide_input_in_errors: pydantic's own text would show the whole input (keys included).
    model_config = ConfigDict(
        frozen=True, arbitrary_types_allowed=True, extra="forbid", hide_input_in_errors=True
    )

    base_url: str = "https://api.spooled.cloud"
    ws_url: str = ""
    token: SecretStr | None = None
    api_key: SecretStr | None = None
    auto_reconnect: bool = True
    max_reconnect_attempts: int = Field(default=0, ge=0)
    reconnect_delay: float = Field(default=1.0, gt=0)
    max_reconnect_delay: float = Field(default=30.0, gt=0, validate_default=True)
    healthy_after: float = Field(default=10.0, ge=0)
    """Seconds a connection must stay up (or deliver an event) before backoff resets."""
    connect_timeout: float = Field(default=10.0, gt=0)
    liveness_timeout: float | None = Field(default=None, gt=0)
    """Silence after which a connection counts as dead; ``None``: 45 s on WebSocket (the
    client asks for a Ping every third of it), 45 s on SSE (3 x the 15 s keep-alive)."""
    token_cache: str = "auto"  # noqa: S105 - a place, not a secret
    """Where the access JWT is kept between the processes and restarts of this node:
    ``"auto"`` (a file only this user can read, in the user's cache directory), a
    directory path, or ``"off"``."""
    verify_tls: bool = True
    proxy: str | None = None
    """The HTTP proxy for every connection: ``None`` reads ``HTTPS_PROXY``/``HTTP_PROXY``/
    ``NO_PROXY``; ``"off"`` (or ``""``) goes direct whatever they say; or an
    ``http://[user:password@]host:port`` URL (``NO_PROXY`` still applies to it)."""
    extra_headers: dict[str, str] = Field(default_factory=dict)
    max_frame_bytes: int = Field(default=1024 * 1024, gt=0)
    debug: bool = False
    logger: logging.Logger | None = None

    @field_validator("base_url", mode="before")
    @classmethod
    def _http_url(cls, value: Any) -> Any:
        # A field check, not a model one: reported together with the other fields' problems.
        return _check_url(value, ("http", "https"), required=True)

    @field_validator("ws_url", mode="before")
    @classmethod
    def _ws_url(cls, value: Any) -> Any:
        return _check_url(value, ("ws", "wss"), required=False)

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy_url(cls, value: Any) -> Any:
        return check_proxy_url(value) if isinstance(value, str) else value

    @field_validator("token", "api_key", mode="before")
    @classmethod
    def _strip_secret(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()  # a trailing newline from a secrets file breaks headers
            return value or None
        if value is not None and not isinstance(value, SecretStr):
            # pydantic's own message would not say which type was given
            raise ValueError(f"must be a string, got {type(value).__name__}")
        return value

    @field_validator("max_reconnect_delay")
    @classmethod
    def _delays(cls, value: float, info: ValidationInfo) -> float:
        # A field check (not a model one) so pydantic never holds the whole input.
        first = info.data.get("reconnect_delay")
        if first is not None and value < first:
            raise ValueError(f"must be >= reconnect_delay ({first:g}), got {value:g}")
        return value

    def __repr_args__(self) -> Any:
        # Headers may carry credentials (Authorization, X-Api-Key) and a URL a password.
        for name, value in super().__repr_args__():
            if name == "extra_headers":
                yield name, redact_mapping(value)
            elif name in ("base_url", "ws_url", "proxy") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ConnectionOptions:
        """Options from ``SPOOLED_API_KEY``, ``SPOOLED_TOKEN``, ``SPOOLED_BASE_URL``,
        ``SPOOLED_WS_URL``; keyword arguments win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key, name in (
            ("api_key", "SPOOLED_API_KEY"),
            ("token", "SPOOLED_TOKEN"),
            ("base_url", "SPOOLED_BASE_URL"),
            ("ws_url", "SPOOLED_WS_URL"),
        ):
            if env.get(name):
                values[key] = env[name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid Spooled connection options: {describe_problems(exc)}"
            ) from None

    @property
    def resolved_ws_url(self) -> str:
        """The WebSocket URL: ``ws_url`` or derived from ``base_url``; path appended once."""
        if self.ws_url:
            parts = urlsplit(self.ws_url)
        else:
            base = urlsplit(self.base_url)
            parts = base._replace(scheme="wss" if base.scheme == "https" else "ws")
        path = parts.path.rstrip("/")
        if not path.endswith(WS_PATH):
            path += WS_PATH
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    @property
    def effective_logger(self) -> logging.Logger:
        return self.logger or logging.getLogger("spooled_integrations.client")

    def has_credentials(self) -> bool:
        return self.token is not None or self.api_key is not None


def _check_url(value: Any, schemes: tuple[str, ...], *, required: bool) -> Any:
    """``value`` stripped of blanks and a trailing ``/``, if it is a URL of ``schemes``
    with a host; the message shows the value given (password hidden)."""
    if not isinstance(value, str):
        return value  # pydantic reports the type
    url = value.strip().rstrip("/")
    if not url and not required:
        return url
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        spelled = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ValueError(
            f"must be a URL starting with {spelled}, with a host, got {redact_url(value)!r}"
        )
    if parts.username is not None or parts.password is not None:
        # it would be sent as Basic auth and logged by httpx with each request
        raise ValueError(
            "must not hold a user or password (Spooled authenticates with api_key or "
            f"token; other credentials go in extra_headers), got {redact_url(value)!r}"
        )
    return url


class SubscriptionFilter(BaseModel):
    """Which events to receive (Go ``SubscriptionFilter``).

    ``queue_name`` and ``events`` go to the server in the connect URL; all four are also
    applied here, because the server ignores ``job_id`` and never filters by worker.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_name: str | None = None
    job_id: str | None = None
    worker_id: str | None = None
    events: tuple[str, ...] = ()

    @field_validator("events", mode="before")
    @classmethod
    def _canonical_events(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            names = []
            for name in value:
                if not isinstance(name, str):
                    raise ValueError("events must be strings")
                found = resolve(name)
                names.append(found.value if found is not None else name.strip())
            return tuple(dict.fromkeys(names))
        return value

    def query_params(self) -> dict[str, str]:
        """Server-side filter parameters (backend spellings; empty ``events`` omitted)."""
        params: dict[str, str] = {}
        if self.queue_name:
            params["queue"] = self.queue_name
        if self.job_id:
            params["job_id"] = self.job_id
        if self.events:
            wire: list[str] = []
            for name in self.events:
                found = resolve(name)
                if found is None:
                    wire.append(name)
                    continue
                wire.append(wire_dotted_name(found))
                if found.category == "job" and found is not EventType.JOB_STATUS:
                    # lifecycle events may arrive as status changes
                    wire.append(wire_dotted_name(EventType.JOB_STATUS))
            params["events"] = ",".join(dict.fromkeys(wire))
        return params

    def matches(self, event: Event) -> bool:
        """Client-side check; pings always pass (they prove liveness)."""
        if event.type == EventType.PING:
            return True
        if self.events and event.type not in self.events:
            return False
        data = event.data
        for key, wanted in (
            ("queue_name", self.queue_name),
            ("job_id", self.job_id),
            ("worker_id", self.worker_id),
        ):
            if wanted is not None and key in data and data[key] != wanted:
                return False
        return True
