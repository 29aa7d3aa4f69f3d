"""Settings of the Dramatiq integration, from the environment, a settings source and arguments.

``SpooledMiddleware()`` must work with no arguments (django-dramatiq instantiates the
classes named in ``DRAMATIQ_BROKER["MIDDLEWARE"]``), so every setting has a
``SPOOLED_*`` variable. Layers, later ones winning: environment, then a settings
source (a :class:`DramatiqSettings`, a mapping, or an object with ``SPOOLED_*``
attributes such as ``django.conf.settings``), then explicit arguments.

========================  ============================  ==============================
setting                   variable / attribute          meaning
========================  ============================  ==============================
``enabled``               ``SPOOLED_ENABLED``           ``false`` turns the listener off
``mode``                  ``SPOOLED_DRAMATIQ_MODE``     ``fork`` or ``every_process``
``transport``             ``SPOOLED_TRANSPORT``         ``ws`` or ``sse``
``subscriptions``         ``SPOOLED_SUBSCRIPTIONS``     list, or a ``.toml``/``.yaml`` path
``stop_timeout``          ``SPOOLED_STOP_TIMEOUT``      seconds the listener may take to stop
``coordination``          ``SPOOLED_COORDINATION``      fleet coordination [1]_
``catch_up`` ...          ``SPOOLED_CATCH_UP`` ...      catch-up [2]_
``api_key`` ...           ``SPOOLED_API_KEY`` ...       connection (``ConnectionOptions``)
========================  ============================  ==============================

.. [1] Of ``delivery="once"`` subscriptions: a
   :class:`~spooled_integrations.runtime.coordination.CoordinationConfig`, a mapping of
   its fields, JSON text, or ``lease`` / ``claim`` optionally followed by ``:<redis url>``
   (``SPOOLED_COORDINATION=claim:redis://redis:6379/1``).
.. [2] The :class:`~spooled_integrations.runtime.RuntimeConfig` fields ``catch_up``,
   ``catch_up_max_age``, ``catch_up_poll``, ``catch_up_interval``,
   ``catch_up_max_requests`` and ``checkpoint`` (variables ``SPOOLED_CATCH_UP``,
   ``SPOOLED_CATCH_UP_MAX_AGE``, ``SPOOLED_CATCH_UP_POLL``, ``SPOOLED_CATCH_UP_INTERVAL``,
   ``SPOOLED_CATCH_UP_MAX_REQUESTS``, ``SPOOLED_CHECKPOINT``). Each may also be given
   in ``runtime``; a top-level setting wins over that, and the variable counts only
   when neither gives it. They end up in :attr:`DramatiqSettings.runtime`.

Nothing here needs credentials: a web process that imports the broker module only to
send messages must not fail for a listener it never runs. Credentials are checked when
a worker boots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spooled_integrations._settings import RUNTIME_ENV, check_runtime_fields
from spooled_integrations.client import ConnectionOptions, SubscriptionFilter
from spooled_integrations.errors import ConfigurationError
from spooled_integrations.runtime import RuntimeConfig
from spooled_integrations.runtime.coordination import CoordinationField

__all__ = ["DramatiqSettings", "Mode", "resolve_settings"]

Mode = Literal["fork", "every_process"]

# Settings with an environment variable of their own; the connection's variables are
# read by ConnectionOptions.from_env.
_ENV_VARS = {
    "enabled": "SPOOLED_ENABLED",
    "mode": "SPOOLED_DRAMATIQ_MODE",
    "transport": "SPOOLED_TRANSPORT",
    "subscriptions": "SPOOLED_SUBSCRIPTIONS",
    "stop_timeout": "SPOOLED_STOP_TIMEOUT",
    "coordination": "SPOOLED_COORDINATION",
}
_CONNECTION_VARS = {
    "api_key": "SPOOLED_API_KEY",
    "token": "SPOOLED_TOKEN",
    "base_url": "SPOOLED_BASE_URL",
    "ws_url": "SPOOLED_WS_URL",
}
# Settings without a variable (structured values), still readable as SPOOLED_<NAME>.
_STRUCTURED = ("connection", "filter", "runtime")
_ALL_NAMES = {
    **_ENV_VARS,
    **_CONNECTION_VARS,
    **RUNTIME_ENV,  # runtime fields with a variable: moved into ``runtime``
    **{k: f"SPOOLED_{k.upper()}" for k in _STRUCTURED},
}
_BY_VARIABLE = {variable: name for name, variable in _ALL_NAMES.items()}
# RuntimeConfig fields this module fills itself; the rest may go in ``runtime``.
_RUNTIME_OWN = frozenset({"connection", "transport", "filter", "subscriptions"})
_RUNTIME_FIELDS = frozenset(RuntimeConfig.model_fields) - _RUNTIME_OWN


class DramatiqSettings(BaseModel):
    """The resolved settings of one :class:`~spooled_integrations.dramatiq.SpooledMiddleware`.

    ``subscriptions`` is kept as given and loaded when a worker boots, so every problem
    (together with the actors' ``spooled_*`` options) is reported at once, there.
    ``runtime`` passes further :class:`~spooled_integrations.runtime.RuntimeConfig`
    fields (``queue_size``, ``max_age``, ``publish_attempts``, the catch-up ones...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    enabled: bool = True
    mode: Mode = "fork"
    connection: ConnectionOptions = Field(default_factory=ConnectionOptions.from_env)
    transport: Literal["ws", "sse"] = "ws"
    subscriptions: Any = None
    filter: SubscriptionFilter | None = None
    coordination: CoordinationField = None
    """Fleet coordination of ``delivery="once"`` subscriptions (see the module doc)."""
    stop_timeout: float = Field(default=5.0, gt=0)
    runtime: dict[str, Any] = Field(default_factory=dict)

    @field_validator("runtime")
    @classmethod
    def _known_runtime_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _RUNTIME_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown runtime option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_RUNTIME_FIELDS))}"
            )
        return value

    def connection_problems(self) -> list[str]:
        """What stops this configuration from ever connecting (checked at worker boot)."""
        if self.connection.has_credentials():
            return []
        return [
            "no Spooled credentials: set SPOOLED_API_KEY (or SPOOLED_TOKEN), pass "
            "api_key=/connection= to SpooledMiddleware, or set SPOOLED_ENABLED=false "
            "to run the workers without a listener"
        ]


def resolve_settings(
    source: Any = None, *, environ: Mapping[str, str] | None = None, **explicit: Any
) -> DramatiqSettings:
    """Merge environment, ``source`` and ``explicit`` (``None`` values mean "not given").

    Raises :class:`ConfigurationError` naming the variable, key or argument at fault.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if not isinstance(source, DramatiqSettings):
        for name, variable in _ENV_VARS.items():
            if env.get(variable):
                values[name] = env[variable]
                origins[name] = f"{variable} (environment)"
    for name, (value, origin) in _read_source(source).items():
        values[name], origins[name] = value, origin
    for name, value in explicit.items():
        if name not in _ALL_NAMES:
            raise TypeError(f"unknown Spooled Dramatiq setting {name!r}")
        if value is not None:
            values[name], origins[name] = value, f"{name}= (argument)"
    values["connection"] = _connection(values, origins, env)
    problems = _runtime(values, origins, {} if isinstance(source, DramatiqSettings) else env)
    settings: DramatiqSettings | None = None
    try:
        settings = DramatiqSettings(**values)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            where = origins.get(field, field or "settings")
            problems.append(f"{where}: {error['msg']}")
    if settings is None or problems:
        raise ConfigurationError("invalid Spooled Dramatiq settings: " + "; ".join(problems))
    return settings


def _runtime(values: dict[str, Any], origins: dict[str, str], env: Mapping[str, str]) -> list[str]:
    """Move the runtime fields of :data:`RUNTIME_ENV` into ``values["runtime"]``, checked.

    A top-level value wins over the same key in ``runtime``; the variable counts only
    when neither gives one. Returns the problems, each naming where its value came from.
    """
    given = values.get("runtime")
    if given is not None and not isinstance(given, Mapping):
        for name in RUNTIME_ENV:
            values.pop(name, None)
        return []  # DramatiqSettings reports the type of ``runtime``
    runtime = dict(given or {})
    where = {name: f"{origins['runtime']}[{name!r}]" for name in runtime}
    for name, variable in RUNTIME_ENV.items():
        if name in values:
            runtime[name], where[name] = values.pop(name), origins[name]
        elif name not in runtime and env.get(variable):
            runtime[name], where[name] = env[variable], f"{variable} (environment)"
    checked, problems = check_runtime_fields(
        {name: value for name, value in runtime.items() if name in _RUNTIME_FIELDS}
    )
    values["runtime"] = {**runtime, **checked}
    return [f"{where.get(name, 'runtime')}: {message}" for name, message in problems]


def _read_source(source: Any) -> dict[str, tuple[Any, str]]:
    """``{setting: (value, origin)}`` from a settings object, mapping or attribute holder."""
    if source is None:
        return {}
    if isinstance(source, DramatiqSettings):
        return {
            name: (getattr(source, name), f"settings.{name}")
            for name in DramatiqSettings.model_fields
        }
    found: dict[str, tuple[Any, str]] = {}
    if isinstance(source, Mapping):
        unknown = []
        for key, value in source.items():
            name = key if key in _ALL_NAMES else _BY_VARIABLE.get(str(key))
            if name is None:
                unknown.append(str(key))
            elif value is not None:
                found[name] = (value, f"settings[{key!r}]")
        if unknown:
            known = ", ".join(sorted(_ALL_NAMES))
            raise ConfigurationError(
                f"unknown Spooled Dramatiq setting(s) {', '.join(sorted(unknown))}; known: "
                f"{known} (or their SPOOLED_* names)"
            )
        return found
    for name, variable in _ALL_NAMES.items():
        value = getattr(source, variable, None)
        if value is not None:
            found[name] = (value, f"settings.{variable}")
    return found


def _connection(
    values: dict[str, Any], origins: dict[str, str], env: Mapping[str, str]
) -> ConnectionOptions:
    """One ``ConnectionOptions``: a given object wins; else env plus the given fields."""
    fields = {name: values.pop(name) for name in list(_CONNECTION_VARS) if name in values}
    given = values.pop("connection", None)
    try:
        if isinstance(given, ConnectionOptions):
            if not fields:
                return given
            merged = {name: getattr(given, name) for name in ConnectionOptions.model_fields}
            return ConnectionOptions(**{**merged, **fields})
        if given is not None and not isinstance(given, Mapping):
            raise ConfigurationError(
                f"{origins.get('connection', 'connection')}: expected ConnectionOptions or a "
                f"mapping, got {type(given).__name__}"
            )
        return ConnectionOptions.from_env(env, **{**dict(given or {}), **fields})
    except (ValidationError, TypeError) as exc:
        raise ConfigurationError(f"invalid Spooled connection options: {exc}") from None
