"""``CoordinationConfig``: which strategy, which Redis, and the bounds every timer obeys.

Accepted spellings (:func:`parse_coordination`), so both frameworks' settings and an
environment variable can carry it:

- a :class:`CoordinationConfig` or a mapping of its fields;
- a JSON object string: ``'{"strategy": "claim", "redis_url": "redis://r:6379/1"}'``;
- ``"lease"`` or ``"claim"`` (Redis on localhost), ``"claim:redis://r:6379/1"``, or a
  bare ``redis://`` / ``rediss://`` / ``unix://`` URL (strategy ``lease``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from spooled_integrations._problems import describe_problems
from spooled_integrations._redact import redact_url
from spooled_integrations.errors import ConfigurationError

__all__ = ["CoordinationConfig", "CoordinationField", "parse_coordination"]

_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_STRATEGIES = ("lease", "claim")


class CoordinationConfig(BaseModel):
    """How the nodes of one fleet agree on who dispatches a ``once`` event.

    The repr hides the password of ``redis_url``; logs and ``status()`` show the
    redacted form only.
    """

    # hide_input_in_errors: pydantic's own text would show redis_url, password and all.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    strategy: Literal["lease", "claim"] = "lease"
    redis_url: str = "redis://localhost:6379/0"
    namespace: str = Field(default="default", min_length=1, pattern=r"^[^\s]+$")
    """Separates fleets sharing one Redis: keys are ``spooled:<kind>:<namespace>:...``."""
    lease_ttl: float = Field(default=10.0, ge=0.3)
    """Seconds a lease lives without renewal; a standby takes over about this long
    after the leader's last renewal. The leader stops dispatching when a renewal has
    not succeeded for ``2/3`` of it."""
    renew_interval: float | None = Field(default=None, gt=0)
    """Seconds between lease renewals (each also records the leader's progress);
    default ``min(lease_ttl / 3, 0.5)``. Must be at most ``lease_ttl / 3``."""
    dispatch_horizon: float | None = Field(default=None, gt=0)
    """Seconds past a renewal the leader may keep dispatching without another one
    (default ``min(2 * lease_ttl / 3, 4 * renew_interval)``, at most ``2/3`` of the
    TTL). It bounds what a takeover can lose: events that arrive while a dead leader's
    horizon runs out. A leader that passes it only pauses (it buffers, and dispatches
    what it held once a renewal succeeds); it loses the lease at ``2/3`` of the TTL."""
    takeover_skew: float = Field(default=0.25, ge=0)
    """Seconds of jitter allowed, on top of the measured lag, between two nodes'
    streams. On takeover a new leader finds the old leader's last recorded event in its
    own buffer, measures how much later it received it, and re-dispatches only events
    it received more than that lag plus this margin after the old leader's promised
    stop; nothing runs twice while the lag varies by less than this. When the event is
    not found, ``max(1 s, 4 * takeover_skew)`` is used instead."""
    claim_ttl: float = Field(default=120.0, gt=0)
    """Seconds a claim key lives: longer than any node can lag behind another
    (``buffer_max_age`` included), or a late node would win a second claim."""
    buffer_size: int = Field(default=10_000, ge=1)
    """``once`` events kept per node while Redis is unreachable (claim) or while no
    leader is known (lease: the standby's shadow)."""
    buffer_max_age: float = Field(default=30.0, gt=0)
    """Seconds such an event may wait before it is dropped and counted."""
    retry_interval: float = Field(default=0.5, gt=0)
    """Seconds between attempts while Redis is unreachable."""
    redis_timeout: float = Field(default=2.0, gt=0)
    """Socket and connect timeout of every Redis call (lease: capped at a sixth of the
    TTL so a hung call cannot outlast the leader's own deadline)."""
    node_id: str | None = Field(default=None, min_length=1)
    """Prefix of this node's fencing token (default ``host:pid``; a random suffix is
    always added, so a restarted process is never mistaken for its predecessor)."""

    @model_validator(mode="after")
    def _check(self) -> CoordinationConfig:
        if not self.redis_url.startswith(_URL_SCHEMES):
            raise ValueError(
                "redis_url must start with redis://, rediss:// or unix://, got "
                f"{redact_url(self.redis_url)!r}"
            )
        if self.renew_interval is not None and self.renew_interval > self.lease_ttl / 3:
            raise ValueError(
                f"renew_interval ({self.renew_interval:g}s) must be at most lease_ttl / 3 "
                f"({self.lease_ttl / 3:g}s)"
            )
        if self.dispatch_horizon is not None and self.dispatch_horizon > self.lease_ttl * 2 / 3:
            raise ValueError(
                f"dispatch_horizon ({self.dispatch_horizon:g}s) must be at most 2/3 of "
                f"lease_ttl ({self.lease_ttl * 2 / 3:g}s)"
            )
        if self.claim_ttl <= self.buffer_max_age:
            raise ValueError(
                f"claim_ttl ({self.claim_ttl:g}s) must be longer than buffer_max_age "
                f"({self.buffer_max_age:g}s): a buffered event claimed after its claim "
                "key expired would run twice"
            )
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

    @property
    def safe_url(self) -> str:
        """``redis_url`` without its password (for logs and status)."""
        return redact_url(self.redis_url)

    @property
    def effective_renew_interval(self) -> float:
        if self.renew_interval is not None:
            return self.renew_interval
        return min(self.lease_ttl / 3, 0.5)

    @property
    def effective_dispatch_horizon(self) -> float:
        if self.dispatch_horizon is not None:
            return self.dispatch_horizon
        return min(self.lease_ttl * 2 / 3, 4 * self.effective_renew_interval)


def parse_coordination(value: Any) -> CoordinationConfig | None:
    """A :class:`CoordinationConfig` from any accepted spelling (``None`` stays ``None``).

    Raises :class:`ConfigurationError` with one line per problem, each naming its
    field (``lease_ttl: Input should be greater than or equal to 0.3``).
    """
    if value is None or isinstance(value, CoordinationConfig):
        return value
    if isinstance(value, str):
        value = _from_text(value)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "expected a mapping, a JSON object, 'lease', 'claim' or '<strategy>:<redis url>', "
            f"got {type(value).__name__}"
        )
    try:
        return CoordinationConfig(**{str(k): v for k, v in value.items()})
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One ``field: message, got <value>`` per error, joined with ``; ``; a password
    in a value is hidden."""
    return describe_problems(exc)


def _from_text(text: str) -> Mapping[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"not a valid JSON object: {exc.msg}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError("expected a JSON object")
        return loaded
    if text.startswith(_URL_SCHEMES):
        return {"strategy": "lease", "redis_url": text}
    strategy, _, url = text.partition(":")
    if strategy not in _STRATEGIES:
        raise ConfigurationError(
            f"unknown strategy {strategy!r}; expected 'lease' or 'claim' (optionally "
            "followed by ':' and a Redis URL), or a JSON object"
        )
    return {"strategy": strategy, "redis_url": url} if url else {"strategy": strategy}


def _as_field(value: Any) -> CoordinationConfig | None:
    try:
        return parse_coordination(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


CoordinationField = Annotated[CoordinationConfig | None, BeforeValidator(_as_field)]
"""A settings-model field that takes any spelling :func:`parse_coordination` accepts."""
