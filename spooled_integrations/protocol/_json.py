"""JSON in one place: orjson when installed (the ``speed`` extra), else the stdlib."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the installed extras
    orjson = None  # type: ignore[assignment]

__all__ = ["JSONDecodeError", "dumps", "dumps_sorted", "loads"]

JSONDecodeError: tuple[type[Exception], ...] = (ValueError, TypeError)
"""What :func:`loads` raises on bad input (orjson's error is a ``ValueError``)."""


loads: Callable[[bytes | str], Any] = json.loads if orjson is None else orjson.loads
"""Parse one JSON document (bound directly: it runs for every frame)."""


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (non-ASCII kept raw, like serde_json)."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_sorted(value: Any) -> bytes:
    """Compact JSON with sorted keys: the same bytes for equal values on every node."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # integers beyond 64 bits: the stdlib handles them
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
