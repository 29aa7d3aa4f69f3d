"""What the Celery and Dramatiq settings readers share about runtime tuning fields.

Both pass :class:`~spooled_integrations.runtime.runtime.RuntimeConfig` fields through
by name; :func:`check_runtime_fields` checks such values with the field's own rules, so
each reader can name the key at fault and report every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError, create_model

from spooled_integrations._redact import redact
from spooled_integrations.runtime.runtime import RuntimeConfig

__all__ = ["BOOLEAN_SPELLINGS", "check_runtime_fields"]

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
