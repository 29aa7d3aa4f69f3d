"""What the Celery and Dramatiq settings readers share: runtime fields and passwords.

Both pass :class:`~spooled_integrations.runtime.runtime.RuntimeConfig` fields through
by name; :func:`check_runtime_fields` checks such values with the field's own rules, so
each reader can name the key at fault and report every problem at once.
:func:`add_passwords` puts ``coordination_password`` and ``checkpoint_password`` into
their Redis URLs: settings of their own, so Celery's ``inspect conf`` and ``report``
mask them (Celery masks a setting by its name, never a password inside a URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError, create_model

from spooled_integrations._redact import redact
from spooled_integrations.runtime.coordination import CoordinationConfig
from spooled_integrations.runtime.runtime import RuntimeConfig

__all__ = [
    "BOOLEAN_SPELLINGS",
    "PASSWORDS",
    "add_passwords",
    "check_runtime_fields",
    "with_password",
]

BOOLEAN_SPELLINGS = "true/false/1/0/yes/no/on/off"
"""How a message lists the accepted spellings of a boolean (any case)."""


def check_runtime_fields(
    values: Mapping[str, Any],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``values`` (``RuntimeConfig`` fields) checked and converted by their field rules.

    Returns the converted values and ``(field, message)`` for each problem; strings
    are parsed (``"off"`` for a bool, ``"2.5"`` for a float). Messages show the value
    given, with any URL password hidden.
    """
    fields: dict[str, Any] = {
        name: (RuntimeConfig.model_fields[name].annotation, RuntimeConfig.model_fields[name])
        for name in values
    }
    probe = create_model("SpooledRuntimeFields", **fields)
    try:
        checked = probe.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field, *inner = [str(part) for part in error["loc"]] or [""]
            given = error.get("input")
            shown = redact(repr(given))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] in ("bool_parsing", "bool_type"):
                message = f"expected {BOOLEAN_SPELLINGS}, got {shown}"
            elif isinstance(given, (str, int, float)):
                message = f"{message}, got {shown}"
            if inner:
                message = f"{'.'.join(inner)}: {message}"
            problems.append((field, message))
        return {}, problems
    return {name: getattr(checked, name) for name in values}, []


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
PASSWORDS = ("coordination_password", "checkpoint_password")
"""The settings that hold a Redis password apart from its URL."""


def _password_problem(password: Any) -> str | None:
    if isinstance(password, SecretStr):
        password = password.get_secret_value()
    if isinstance(password, str) and password:
        return None
    return f"expected a non-empty string, got {type(password).__name__}"


def with_password(url: str, password: Any) -> tuple[str, str | None]:
    """``url`` with ``password`` in its user-info, or ``url`` and the problem.

    The password is kept in its own setting so Celery's ``inspect conf`` and
    ``report`` mask it (they mask any setting named ``*_password``), not the URL.
    """
    problem = _password_problem(password)
    if problem:
        return url, problem
    if isinstance(password, SecretStr):
        password = password.get_secret_value()
    if not isinstance(url, str) or not url.startswith(REDIS_SCHEMES):
        return url, "needs a Redis URL (redis://, rediss:// or unix://) to add it to"
    parts = urlsplit(url)
    if parts.password:
        return url, "the URL already holds a password; give it in one place"
    user = quote(parts.username or "", safe="")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), None


def add_passwords(
    passwords: Mapping[str, Any],
    coordination: CoordinationConfig | None,
    checkpoint: Any,
    *,
    given: frozenset[str] = frozenset(),
) -> tuple[CoordinationConfig | None, Any, list[tuple[str, str]]]:
    """``coordination`` and ``checkpoint`` with the given :data:`PASSWORDS` in their URLs.

    ``passwords`` holds the password settings that were given; ``given`` names the
    URL settings that were given (``None`` with a name in ``given`` means it has
    problems of its own, reported elsewhere). Returns the updated values and
    ``(setting, message)`` per problem.
    """
    problems: list[tuple[str, str]] = []
    for setting, target in (
        ("coordination_password", "coordination"),
        ("checkpoint_password", "checkpoint"),
    ):
        password = passwords.get(setting)
        if password is None:
            continue
        current = coordination if target == "coordination" else checkpoint
        if current is None:
            problem = _password_problem(password)
            if problem is None and target not in given:
                problem = f"is set but no {target} is"
                if target == "checkpoint":
                    problem += (
                        " (a checkpoint in the coordination Redis uses coordination_password)"
                    )
            if problem:
                problems.append((setting, problem))
            continue
        url = current.redis_url if isinstance(current, CoordinationConfig) else current
        url, problem = with_password(url, password)
        if problem:
            problems.append((setting, problem))
        elif isinstance(current, CoordinationConfig):
            coordination = current.model_copy(update={"redis_url": url})
        else:
            checkpoint = url
    return coordination, checkpoint, problems
