"""How a configuration problem reads: the field, what is wrong, and the value given.

pydantic's own text shows the whole input (``input_value={'api_key': ...}``), so no
model error is shown as is: :func:`problem_lines` rebuilds each line from the error's
parts, with the value given in full and every secret in it hidden.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, ValidationError

from spooled_integrations._redact import redact

__all__ = ["describe_problems", "problem_lines", "problems_by_field", "shown_value"]

_SCALARS = (str, int, float, bool, type(None))

SECRET_FIELDS = frozenset({"api_key", "token"})
"""Fields whose value a message never shows, whatever its type."""


def shown_value(value: Any) -> str:
    """A bad value as a message shows it: its repr with secrets hidden, or its type."""
    if isinstance(value, SecretStr):
        return "[redacted]"
    if isinstance(value, _SCALARS):
        return redact(repr(value))
    return type(value).__name__  # a container may hold secrets no pattern knows


def problems_by_field(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, "<what is wrong>, got <value>")`` per error of ``exc``; ``field`` is the
    dotted location (empty for a whole-model check)."""
    found = []
    for error in exc.errors(include_url=False):
        parts = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif "got " not in message and not SECRET_FIELDS & set(parts):
            given = error.get("input")
            # our own checks of a container say what is wrong in it; a type says little
            if error["type"] != "value_error" or isinstance(given, _SCALARS):
                message = f"{message}, got {shown_value(given)}"
        found.append((".".join(parts), redact(message)))
    return found


def problem_lines(exc: ValidationError) -> list[str]:
    """One ``<field>: <what is wrong>, got <value>`` line per error of ``exc``."""
    return [
        f"{field}: {message}" if field else message for field, message in problems_by_field(exc)
    ]


def describe_problems(exc: ValidationError) -> str:
    """:func:`problem_lines` joined with ``; ``."""
    return "; ".join(problem_lines(exc))
