"""Settings of the Dramatiq integration: arguments, a settings source, the environment.

``SpooledMiddleware()`` must work with no arguments (django-dramatiq instantiates the
classes named in ``DRAMATIQ_BROKER["MIDDLEWARE"]``), so every setting of the one model
(:mod:`spooled_integrations.settings`) has a ``SPOOLED_<NAME>`` variable. Layers, later
ones winning: environment, then a settings source (a :class:`DramatiqSettings`, a
mapping of names or ``SPOOLED_*`` names, or an object with ``SPOOLED_*`` attributes
such as ``django.conf.settings``), then keyword arguments (``<name>=``).

Two grouped forms stay: ``connection=`` (a ``ConnectionOptions`` or a mapping of its
fields) and ``runtime=`` (a mapping of runtime fields). A field given on its own wins
over the same field in the group; a variable counts only when neither gives it; a
``ConnectionOptions`` object given whole is used without the environment.

``stop_timeout`` (``SPOOLED_STOP_TIMEOUT``) is the deprecated name of
``shutdown_timeout``; it works for one more release and logs a warning.

Nothing here needs credentials: a web process that imports the broker module only to
send messages must not fail for a listener it never runs. Credentials are checked when
a worker boots.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from spooled_integrations import settings as model
from spooled_integrations._problems import problems_by_field
from spooled_integrations._redact import redact, redact_url
from spooled_integrations._settings import PASSWORDS, add_passwords, check_runtime_fields
from spooled_integrations._suggest import did_you_mean
from spooled_integrations.client import ConnectionOptions, SubscriptionFilter
from spooled_integrations.errors import ConfigurationError, SettingsError
from spooled_integrations.runtime.coordination import CoordinationField, parse_coordination

__all__ = ["DramatiqSettings", "Mode", "resolve_settings", "settings_and_problems"]

Mode = Literal["fork", "every_process"]

_MODEL = {s.name: s for s in model.for_framework("dramatiq")}
_CONNECTION_FIELDS = frozenset(n for n, s in _MODEL.items() if s.group == "connection")
_RUNTIME_FIELDS = frozenset(n for n, s in _MODEL.items() if s.group == "runtime")
_GROUPS = ("connection", "runtime")
_DEPRECATED = {d.old: d for d in model.DEPRECATED.values() if d.new in _MODEL}
# Every name a mapping or an argument may use, and every attribute a source may have.
_ARGUMENTS = frozenset({*_MODEL, *_GROUPS, *_DEPRECATED})
_BY_VARIABLE = {
    **model.by_variable("dramatiq"),
    **{f"SPOOLED_{group.upper()}": group for group in _GROUPS},
}
_ALL_NAMES = {name: variable for variable, name in _BY_VARIABLE.items()}
"""Every setting name and its ``SPOOLED_*`` variable / attribute (old ones included)."""


class DramatiqSettings(BaseModel):
    """The resolved settings of one :class:`~spooled_integrations.dramatiq.SpooledMiddleware`.

    ``subscriptions`` is kept as given and loaded when a worker boots, so every problem
    (together with the actors' ``spooled_*`` options) is reported at once, there.
    ``runtime`` holds the :class:`~spooled_integrations.runtime.RuntimeConfig` tuning
    fields given (``queue_size``, ``max_age``, ``publish_attempts``, the catch-up ones...).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    enabled: bool = True
    mode: Mode = model.SETTINGS["mode"].default
    connection: ConnectionOptions = Field(default_factory=ConnectionOptions.from_env)
    transport: Literal["ws", "sse"] = model.SETTINGS["transport"].default
    subscriptions: Any = None
    filter: SubscriptionFilter | None = None
    coordination: CoordinationField = None
    """Fleet coordination of ``delivery="once"`` subscriptions (see the module doc)."""
    shutdown_timeout: float = Field(default=model.SETTINGS["shutdown_timeout"].default, gt=0)
    runtime: dict[str, Any] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        # runtime= may hold a checkpoint URL with a password.
        for name, value in super().__repr_args__():
            if name == "runtime" and isinstance(value, dict):
                yield (
                    name,
                    {k: redact_url(v) if isinstance(v, str) else v for k, v in value.items()},
                )
            else:
                yield name, value

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and any(old in data for old in _DEPRECATED):
            data = dict(data)
            for old, entry in _DEPRECATED.items():
                if old in data:
                    model.warn_deprecated(old, entry.new)
                    value = data.pop(old)
                    data.setdefault(entry.new, value)
        return data

    @field_validator("runtime")
    @classmethod
    def _known_runtime_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _RUNTIME_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown runtime option(s) {', '.join(unknown)}"
                f"{did_you_mean(unknown[0], _RUNTIME_FIELDS)}; "
                f"known: {', '.join(sorted(_RUNTIME_FIELDS))}"
            )
        return value

    @property
    def stop_timeout(self) -> float:
        """Deprecated name of :attr:`shutdown_timeout` (kept for one release)."""
        return self.shutdown_timeout

    def connection_problems(self) -> list[str]:
        """What stops this configuration from ever connecting (checked at worker boot)."""
        if self.connection.has_credentials():
            return []
        return [
            "no Spooled credentials: set SPOOLED_API_KEY (or SPOOLED_TOKEN), pass "
            "api_key=/connection= to SpooledMiddleware, or set SPOOLED_ENABLED=false "
            "to run the workers without a listener"
        ]


class _Layers:
    """Values by setting with where each came from; environment values kept apart."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.env: dict[str, Any] = {}  # connection and runtime fields from variables
        self.layers: dict[str, tuple[str, bool]] = {}  # name -> (layer, from an old name)
        self.problems: list[str] = []
        self.credentials_given = False  # an api_key or token, valid or not

    def put(
        self, name: str, value: Any, origin: str, *, layer: str, from_env: bool = False
    ) -> None:
        """``layer``: ``environment``, ``settings`` or ``argument``; within one layer a
        new name wins over its old one, whichever comes first."""
        if name in _DEPRECATED:
            new = _DEPRECATED[name].new
            model.warn_deprecated(name, new, where=origin)
            if self.layers.get(new) == (layer, False):
                return  # the new name given in the same layer wins
            name, deprecated = new, True
        else:
            deprecated = False
        if from_env and name in (_CONNECTION_FIELDS | _RUNTIME_FIELDS):
            self.env[name] = value
        else:
            self.values[name] = value
        self.origins[name] = origin
        self.layers[name] = (layer, deprecated)


def resolve_settings(
    source: Any = None, *, environ: Mapping[str, str] | None = None, **explicit: Any
) -> DramatiqSettings:
    """Merge environment, ``source`` and ``explicit`` (``None`` values mean "not given").

    Raises :class:`~spooled_integrations.errors.SettingsError` listing every problem,
    each naming the variable, key or argument at fault; an unknown argument is a
    :class:`TypeError`, as for any function.
    """
    settings, problems = settings_and_problems(source, environ=environ, **explicit)
    if problems:
        raise SettingsError(problems)
    return settings


def settings_and_problems(
    source: Any = None, *, environ: Mapping[str, str] | None = None, **explicit: Any
) -> tuple[DramatiqSettings, list[str]]:
    """:func:`resolve_settings` without raising: the settings and every problem.

    With problems the settings are a stand-in that never connects (defaults, the
    subscriptions as given, and credentials only if some were given), so a worker
    boot can report them together with the subscription and actor problems.
    """
    for name in explicit:
        if name not in _ARGUMENTS:
            raise TypeError(
                f"unknown Spooled Dramatiq setting {name!r}{did_you_mean(name, _ARGUMENTS)}"
            )
    env = os.environ if environ is None else environ
    if source is None:
        source = _django_settings()
    layers = _Layers()
    if not isinstance(source, DramatiqSettings):
        for variable, name in _BY_VARIABLE.items():
            text = env.get(variable)
            if name in _GROUPS or text is None or not text.strip():
                continue
            setting = _MODEL[_DEPRECATED[name].new if name in _DEPRECATED else name]
            try:
                value = setting.from_text(text)
            except ValueError as exc:
                layers.problems.append(f"{variable} (environment): {exc}")
                continue
            layers.put(name, value, f"{variable} (environment)", layer="environment", from_env=True)
    _read_source(source, layers)
    for name, value in explicit.items():
        if value is not None:
            layers.put(name, value, f"{name}= (argument)", layer="argument")
    values, origins, problems = layers.values, layers.origins, layers.problems
    connection = _connection(layers)
    problems.extend(_runtime(layers))
    problems.extend(_passwords(layers))
    try:
        # a connection with problems is replaced, so the other fields are checked too
        settings = DramatiqSettings(connection=connection or ConnectionOptions(), **values)
    except ValidationError as exc:
        for field, message in problems_by_field(exc):
            name = field.split(".", 1)[0]
            problems.append(f"{origins.get(name, name or 'settings')}: {message}")
    else:
        if not problems:
            return settings, []
    return _stand_in(values, layers.credentials_given), problems


def _stand_in(values: Mapping[str, Any], credentials: bool) -> DramatiqSettings:
    """Settings that only carry the subscriptions to a boot that reports problems."""
    connection = ConnectionOptions.model_construct(
        api_key=SecretStr("stand-in") if credentials else None, token=None
    )
    return DramatiqSettings.model_construct(
        connection=connection, subscriptions=values.get("subscriptions")
    )


def _runtime(layers: _Layers) -> list[str]:
    """Gather the runtime fields into ``values["runtime"]``, checked by their own rules.

    A field given on its own wins over the same key in ``runtime``; a variable counts
    only when neither gives one. Returns the problems, each naming its origin.
    """
    values, origins = layers.values, layers.origins
    given = values.get("runtime")
    if given is not None and not isinstance(given, Mapping):
        for name in _RUNTIME_FIELDS:
            values.pop(name, None)
        return []  # DramatiqSettings reports the type of ``runtime``
    runtime = dict(given or {})
    where = {name: f"{origins['runtime']}[{name!r}]" for name in runtime}
    for name in _RUNTIME_FIELDS:
        if name in values:
            runtime[name], where[name] = values.pop(name), origins[name]
        elif name not in runtime and name in layers.env:
            runtime[name], where[name] = layers.env[name], origins[name]
    checked, problems = check_runtime_fields(
        {name: value for name, value in runtime.items() if name in _RUNTIME_FIELDS}
    )
    values["runtime"] = {**runtime, **checked}
    return [f"{where.get(name, 'runtime')}: {message}" for name, message in problems]


def _passwords(layers: _Layers) -> list[str]:
    """Put the Redis passwords into the coordination and checkpoint URLs."""
    values, origins = layers.values, layers.origins
    passwords = {name: values.pop(name) for name in PASSWORDS if name in values}
    if not passwords:
        return []
    coordination = None
    with contextlib.suppress(ConfigurationError):  # DramatiqSettings reports it
        coordination = parse_coordination(values.get("coordination"))
    runtime = values.get("runtime")
    checkpoint = runtime.get("checkpoint") if isinstance(runtime, dict) else None
    given = frozenset(name for name in ("coordination",) if values.get(name) is not None)
    coordination, checkpoint, problems = add_passwords(
        passwords, coordination, checkpoint, given=given
    )
    if coordination is not None:
        values["coordination"] = coordination
    if checkpoint is not None and isinstance(runtime, dict):
        runtime["checkpoint"] = checkpoint
    return [f"{origins.get(name, name)}: {message}" for name, message in problems]


def _django_settings() -> Any:
    """``django.conf.settings`` when Django is loaded and configured, else ``None``.

    django-dramatiq builds every middleware from its dotted path with no arguments, so
    without this the ``SPOOLED_*`` settings of settings.py would be ignored. Django is
    never imported here: a process that has not loaded it does not use it.
    """
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    try:
        settings = conf.settings
        return settings if settings.configured else None
    except Exception:  # a half-set-up Django: the environment and arguments still work
        return None


def _read_source(source: Any, layers: _Layers) -> None:
    """Put the settings of a settings object, mapping or attribute holder in ``layers``."""
    if source is None:
        return
    if isinstance(source, DramatiqSettings):
        for name in DramatiqSettings.model_fields:
            layers.put(name, getattr(source, name), f"settings.{name}", layer="settings")
        return
    if isinstance(source, Mapping):
        unknown: list[str] = []
        for key, value in source.items():
            found = key if key in _ARGUMENTS else _BY_VARIABLE.get(str(key))
            if found is None:
                unknown.append(str(key))
            elif value is not None:
                layers.put(found, value, f"settings[{key!r}]", layer="settings")
        for key in sorted(unknown):
            hint = did_you_mean(key, _ARGUMENTS) or did_you_mean(key, _BY_VARIABLE)
            layers.problems.append(f"settings[{key!r}]: unknown Spooled Dramatiq setting{hint}")
        return
    for variable, name in _BY_VARIABLE.items():
        value = getattr(source, variable, None)
        if value is not None:
            layers.put(name, value, f"settings.{variable}", layer="settings")


def _connection(layers: _Layers) -> ConnectionOptions | None:
    """One ``ConnectionOptions``: a given object plus the fields given on their own;
    otherwise the environment, then a given mapping, then the fields given on their own."""
    values, origins = layers.values, layers.origins
    fields = {name: values.pop(name) for name in list(values) if name in _CONNECTION_FIELDS}
    given = values.pop("connection", None)
    if isinstance(given, ConnectionOptions):
        if not fields:
            return given
        merged: dict[str, Any] = {
            name: getattr(given, name) for name in ConnectionOptions.model_fields
        }
    elif given is None or isinstance(given, Mapping):
        env_fields = {n: v for n, v in layers.env.items() if n in _CONNECTION_FIELDS}
        merged = {**env_fields, **dict(given or {})}
        where = origins.get("connection", "connection")
        origins.update({name: f"{where}[{name!r}]" for name in dict(given or {})})
    else:
        layers.problems.append(
            f"{origins.get('connection', 'connection')}: expected ConnectionOptions or a "
            f"mapping, got {type(given).__name__}"
        )
        return None
    given = {**merged, **fields}
    layers.credentials_given = any(given.get(name) for name in ("api_key", "token"))
    try:
        return ConnectionOptions(**given)
    except (ValidationError, TypeError) as exc:
        if isinstance(exc, TypeError):
            layers.problems.append(f"connection: {redact(str(exc))}")
            return None
        for where, found in problems_by_field(exc):
            field, _, inner = where.partition(".")
            message = found
            if found == "unknown field":
                message = f"unknown connection option{did_you_mean(field, _CONNECTION_FIELDS)}"
            origin = origins.get(field, "connection")
            layers.problems.append(f"{origin}: {inner + ': ' if inner else ''}{message}")
    return None
