"""Read the ``spooled_*`` Celery settings, check them all, and fail at boot naming each key.

Every value is read with ``app.conf.get("spooled_<name>")``, so Django's ``CELERY_``
namespace works unchanged (``CELERY_SPOOLED_API_KEY``); nothing is added to Celery's
defaults. A setting the config leaves empty is read from its ``SPOOLED_*`` environment
variable. Which settings exist, their variables and defaults: the one model,
:data:`spooled_integrations.settings.SETTINGS` (``docs/configuration.md`` lists it).
``SPOOLED_ENABLED`` is the exception: it *overrides* ``spooled_enabled`` (the per-node
switch when the ``--spooled/--no-spooled`` worker option is not available), and the
worker option overrides both. Every problem is collected before anything raises, so a
bad config is fixed in one round trip, not one key at a time.

``celery inspect conf`` and ``celery report`` mask a setting by its name only
(``celery.app.utils.HIDDEN_SETTINGS``: ``*_key``, ``*_token``, ``*_password``...), so
the Redis passwords have settings of their own (``spooled_coordination_password``,
``spooled_checkpoint_password``); a secret left in a value Celery would print is named
in a boot WARNING (:func:`shown_secrets` asks Celery's own sanitiser).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from celery import Celery
from celery.app.utils import filter_hidden_settings
from celery.exceptions import ImproperlyConfigured
from pydantic import ValidationError

from spooled_integrations import settings as model
from spooled_integrations._problems import problems_by_field, shown_value
from spooled_integrations._redact import redact
from spooled_integrations._settings import (
    BOOLEAN_SPELLINGS,
    PASSWORDS,
    add_passwords,
    check_runtime_fields,
)
from spooled_integrations._suggest import did_you_mean
from spooled_integrations.celery.publisher import CeleryPublisher
from spooled_integrations.celery.taskoptions import task_subscriptions
from spooled_integrations.client import ConnectionOptions, SubscriptionFilter
from spooled_integrations.errors import ConfigurationError, SettingsError, SubscriptionError
from spooled_integrations.runtime import SubscriptionSet
from spooled_integrations.runtime.coordination import CoordinationConfig, parse_coordination
from spooled_integrations.runtime.declared import as_option
from spooled_integrations.runtime.runtime import RuntimeConfig
from spooled_integrations.runtime.subscriptions import (
    Subscription,
    parse_subscriptions,
    position,
)

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "SETTINGS",
    "SpooledCelerySettings",
    "SpooledImproperlyConfigured",
    "read_enabled",
    "read_settings",
    "setting_label",
    "shown_secrets",
]

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT: float = model.SETTINGS["shutdown_timeout"].default

_MODEL = {s.name: s for s in model.for_framework("celery")}
_CONNECTION_FIELDS = tuple(name for name, s in _MODEL.items() if s.group == "connection")
_RUNTIME_FIELDS = tuple(name for name, s in _MODEL.items() if s.group == "runtime")

SETTINGS: frozenset[str] = frozenset(s.celery_key for s in _MODEL.values())
"""Every setting this module reads; any other ``spooled_*`` key is reported as a typo."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SpooledImproperlyConfigured(ImproperlyConfigured, SettingsError):
    """Celery's ``ImproperlyConfigured`` and this package's ``SettingsError`` at once.

    ``problems`` lists every problem, each starting with the setting it is about.
    """

    consequence = "the worker was not started"

    def __init__(self, problems: Iterable[str]) -> None:
        SettingsError.__init__(self, list(problems))


@dataclass(frozen=True)
class SpooledCelerySettings:
    """Everything the bootstep needs, already validated."""

    runtime: RuntimeConfig
    publisher: CeleryPublisher
    coordination: CoordinationConfig | None = None
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    metrics_port: int | None = None


def setting_label(app: Celery, name: str) -> str:
    """How a message names a setting: ``spooled_x``, plus the namespaced spelling."""
    namespace = getattr(app, "namespace", None)
    if namespace:
        return f"{name} ({namespace.upper()}_{name.upper()})"
    return name


def _parse_bool(value: Any) -> bool | None:
    """A bool from a bool or a usual spelling; ``None`` when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def read_enabled(
    app: Celery,
    *,
    cli: bool | None,
    installed: bool,
    environ: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Should this worker node listen? Returns the answer and where it came from.

    Precedence: the worker option ``--spooled/--no-spooled``, then ``SPOOLED_ENABLED``,
    then ``spooled_enabled``, then whether :func:`install` was called for ``app``.
    """
    env = os.environ if environ is None else environ
    if cli is not None:
        return cli, "--spooled" if cli else "--no-spooled"
    raw_env = env.get("SPOOLED_ENABLED")
    if raw_env is not None and raw_env.strip():
        parsed = _parse_bool(raw_env)
        if parsed is None:
            raise SpooledImproperlyConfigured(
                [f"SPOOLED_ENABLED: expected {BOOLEAN_SPELLINGS}, got {shown_value(raw_env)}"]
            )
        return parsed, "SPOOLED_ENABLED"
    value = app.conf.get("spooled_enabled")
    if value is not None:
        parsed = _parse_bool(value)
        if parsed is None:
            label = setting_label(app, "spooled_enabled")
            raise SpooledImproperlyConfigured(
                [f"{label}: expected {BOOLEAN_SPELLINGS}, got {shown_value(value)}"]
            )
        return parsed, setting_label(app, "spooled_enabled")
    if installed:
        return True, "install(app)"
    return False, "default (spooled_enabled is not set)"


class _Reader:
    """Collects problems while reading settings; :meth:`fail_if_any` raises them all at once."""

    def __init__(self, app: Celery, environ: Mapping[str, str]) -> None:
        self.app = app
        self.env = environ
        self.problems: list[str] = []
        self.from_env: dict[str, str] = {}  # setting -> the variable its value came from

    def get(self, name: str) -> Any:
        """``spooled_<name>``; when it is unset or empty, ``SPOOLED_<NAME>``."""
        value = self.app.conf.get(f"spooled_{name}")
        setting = _MODEL.get(name)
        if (value is None or value == "") and setting is not None:
            text = self.env.get(setting.env)
            if text is not None and text.strip():
                self.from_env[name] = setting.env
                try:
                    return setting.from_text(text)
                except ValueError as exc:
                    self.problem(name, str(exc))
                    return None
        return value

    def label(self, name: str) -> str:
        if name in self.from_env:
            return self.from_env[name]
        return setting_label(self.app, f"spooled_{name}")

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{self.label(name)}: {message}")

    def number(
        self, name: str, default: float | None, *, minimum: float = 0.0, strict: bool = True
    ) -> float | None:
        value = self.get(name)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problem(name, f"expected a number of seconds, got {shown_value(value)}")
            return default
        if isinstance(value, bool) or not math.isfinite(number):
            self.problem(name, f"expected a finite number, got {shown_value(value)}")
            return default
        if number < minimum or (strict and number == minimum):
            relation = ">" if strict else ">="
            self.problem(name, f"must be {relation} {minimum:g}, got {shown_value(value)}")
            return default
        return number

    def fail_if_any(self) -> None:
        if self.problems:
            raise SpooledImproperlyConfigured(self.problems)


def _spooled_keys(app: Celery) -> dict[str, str]:
    """``{key as written: spooled_<name>}`` of every ``spooled_*`` key in the config."""
    namespace = getattr(app, "namespace", None)
    prefixes = ["spooled_"]
    if namespace:
        prefixes.append(f"{namespace.lower()}_spooled_")
    try:
        keys = list(app.conf.keys())
    except Exception:  # a config we cannot list: skip the checks, not the boot
        logger.debug("cannot list the Celery config keys; skipping the key checks")
        return {}
    found = {}
    for key in keys:
        if not isinstance(key, str):
            continue
        lower = key.lower()
        for prefix in prefixes:
            if lower.startswith(prefix):
                found[key] = "spooled_" + lower[len(prefix) :]
                break
    return found


def unknown_settings(app: Celery) -> list[str]:
    """``spooled_*`` keys in the config that nothing reads (typos), with a suggestion."""
    return [
        f"{key}: unknown Spooled setting{did_you_mean(name, SETTINGS)}"
        for key, name in _spooled_keys(app).items()
        if name not in SETTINGS
    ]


def _connection(reader: _Reader) -> ConnectionOptions | None:
    values: dict[str, Any] = {}
    for name in _CONNECTION_FIELDS:
        value = reader.get(name)
        if value is not None and value != "":
            values[name] = value
    if not any(values.get(name) for name in ("api_key", "token")):
        reader.problem(
            "api_key",
            "no Spooled credentials; set spooled_api_key (or the SPOOLED_API_KEY "
            "environment variable) or spooled_token (SPOOLED_TOKEN)",
        )
    try:
        return ConnectionOptions(**values)
    except ValidationError as exc:
        for where, message in problems_by_field(exc):
            field = where.split(".", 1)[0]
            if f"spooled_{field}" in SETTINGS:
                inner = where[len(field) + 1 :]
                reader.problem(field, f"{inner}: {message}" if inner else message)
            else:
                reader.problems.append(f"Spooled connection settings: {message}")
    return None


def _transport(reader: _Reader) -> Literal["ws", "sse"]:
    value = reader.get("transport")
    if value is None:
        return "ws"
    text = str(value).strip().lower()
    if text in ("ws", "websocket"):
        return "ws"
    if text == "sse":
        return "sse"
    reader.problem("transport", f"must be 'ws' or 'sse', got {shown_value(value)}")
    return "ws"


def _filter(reader: _Reader) -> SubscriptionFilter | None:
    value = reader.get("filter")
    if value is None or isinstance(value, SubscriptionFilter):
        return value
    if not isinstance(value, Mapping):
        reader.problem(
            "filter",
            "expected a mapping with queue_name, job_id, worker_id and/or events, "
            f"got {shown_value(value)}",
        )
        return None
    try:
        return SubscriptionFilter(**value)
    except ValidationError as exc:
        for where, message in problems_by_field(exc):
            reader.problem("filter", f"{where}: {message}" if where else message)
    return None


def _config_subscriptions(reader: _Reader) -> tuple[list[tuple[int, Subscription]], bool]:
    """The configured rules that could be read, with their positions, and whether all
    were valid; their targets are checked even when some are not (all problems at once)."""
    value = reader.get("subscriptions")
    if value is None:
        return [], True
    try:
        rules, problems = parse_subscriptions(value)
    except ConfigurationError as exc:
        reader.problem("subscriptions", str(exc))
        return [], False
    for problem in problems:
        reader.problem("subscriptions", problem)
    return rules, not problems


def _external_tasks(reader: _Reader) -> frozenset[str]:
    value = reader.get("external_tasks")
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) for v in value
    ):
        reader.problem("external_tasks", f"expected a list of task names, got {shown_value(value)}")
        return frozenset()
    return frozenset(value)


def _metrics_port(reader: _Reader) -> int | None:
    value = reader.get("metrics_port")
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        reader.problem("metrics_port", f"expected a port from 1 to 65535, got {shown_value(value)}")
        return None
    return int(text)


def _coordination(reader: _Reader) -> CoordinationConfig | None:
    value = reader.get("coordination")
    try:
        return parse_coordination(value)
    except ConfigurationError as exc:
        for problem in str(exc).split("; "):
            reader.problem("coordination", problem)
    return None


def _tuning(reader: _Reader) -> dict[str, Any]:
    """Runtime tuning values, checked by :class:`RuntimeConfig`'s own field rules."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for name in _RUNTIME_FIELDS:
        value = reader.get(name)
        if value is not None:
            values[name], labels[name] = value, reader.label(name)
    checked, problems = check_runtime_fields(values)
    reader.problems.extend(f"{labels.get(name, 'tuning')}: {message}" for name, message in problems)
    return checked


def _passwords(
    reader: _Reader, coordination: CoordinationConfig | None, tuning: dict[str, Any]
) -> CoordinationConfig | None:
    """The Redis passwords put into their URLs (``tuning``'s checkpoint in place)."""
    passwords = {}
    for name in PASSWORDS:
        value = reader.get(name)
        if value is not None and value != "":
            passwords[name] = value
    given = frozenset(name for name in ("coordination", "checkpoint") if reader.get(name))
    coordination, checkpoint, problems = add_passwords(
        passwords, coordination, tuning.get("checkpoint"), given=given
    )
    if checkpoint is not None:
        tuning["checkpoint"] = checkpoint
    for name, message in problems:
        reader.problem(name, message)
    return coordination


def shown_secrets(app: Celery) -> list[str]:
    """The ``spooled_*`` keys whose value ``celery inspect conf`` and ``celery report``
    would print with a secret in it, judged by Celery's own sanitiser."""
    found = []
    for key in _spooled_keys(app):
        shown = repr(filter_hidden_settings({key: app.conf.get(key)})[key])
        if redact(shown) != shown:
            found.append(key)
    return found


def _warn_shown_secrets(app: Celery) -> None:
    keys = _spooled_keys(app)
    for key in shown_secrets(app):
        name = keys[key]
        if name in ("spooled_coordination", "spooled_checkpoint"):
            fix = f"put the Redis password in {name}_password instead"
        elif (setting := _MODEL.get(name.removeprefix("spooled_"))) is not None:
            fix = f"give the value as {setting.env} instead"
        else:
            fix = "keep it out of the Celery config"
        logger.warning(
            "the Spooled setting %s holds a secret that celery inspect conf and celery "
            "report print as written (Celery masks a setting by its name: *_password, "
            "*_key, *_token...); %s",
            key,
            fix,
        )


_RULE = re.compile(r"subscriptions\[(\d+)\]")


def _rule_order(problem: str) -> int:
    """Rule problems in rule order (parse and target problems of one rule together)."""
    found = _RULE.search(problem)
    return int(found.group(1)) if found else sys.maxsize


def _task_rules(
    reader: _Reader,
    publisher: CeleryPublisher,
    configured: list[tuple[int, Subscription]],
    valid: bool,
) -> SubscriptionSet | None:
    """Configured rules plus task-option rules, checked against the app's tasks."""
    from_tasks, problems = task_subscriptions(reader.app, partial=True)
    reader.problems.extend(problems)
    for index, sub in configured:
        for problem in publisher.problems(sub):
            reader.problem("subscriptions", f"{position(index, sub.name)}.{problem}")
    for sub in from_tasks:
        reader.problems.extend(
            f"task {sub.task!r}: {as_option(p)}" for p in publisher.problems(sub)
        )
    if not valid or problems:
        return None
    try:
        return SubscriptionSet([*(sub for _, sub in configured), *from_tasks])
    except SubscriptionError as exc:
        for problem in exc.problems:
            reader.problem("subscriptions", problem)
    return None


def read_settings(
    app: Celery, *, environ: Mapping[str, str] | None = None
) -> SpooledCelerySettings:
    """Read and check every ``spooled_*`` setting and task option of ``app``.

    Call it once the app's tasks are registered (the bootstep runs it when the worker
    is built). Raises :class:`SpooledImproperlyConfigured` listing every problem, so
    the worker never starts half-configured.
    """
    reader = _Reader(app, os.environ if environ is None else environ)
    reader.problems.extend(unknown_settings(app))
    connection = _connection(reader)
    transport = _transport(reader)
    subscription_filter = _filter(reader)
    external = _external_tasks(reader)
    publisher = CeleryPublisher(app, external_tasks=external)
    first = len(reader.problems)
    configured, valid = _config_subscriptions(reader)
    subscriptions = _task_rules(reader, publisher, configured, valid)
    reader.problems[first:] = sorted(reader.problems[first:], key=_rule_order)
    coordination = _coordination(reader)
    timeout = reader.number("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
    metrics_port = _metrics_port(reader)
    tuning = _tuning(reader)
    coordination = _passwords(reader, coordination, tuning)
    _warn_shown_secrets(app)
    reader.fail_if_any()
    assert connection is not None and subscriptions is not None and timeout is not None
    try:
        runtime = RuntimeConfig(
            connection=connection,
            transport=transport,
            filter=subscription_filter,
            subscriptions=subscriptions,
            coordination=coordination,
            **tuning,
        )
    except ConfigurationError as exc:  # checked above; kept so nothing slips through
        raise SpooledImproperlyConfigured([str(exc)]) from None
    return SpooledCelerySettings(
        runtime=runtime,
        publisher=publisher,
        coordination=coordination,
        shutdown_timeout=timeout,
        metrics_port=metrics_port,
    )
