"""HTTP answers → typed errors, shared by login, the WebSocket handshake and SSE."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from spooled_integrations._redact import redact
from spooled_integrations.errors import (
    AuthError,
    RateLimitError,
    ServerError,
    SpooledConnectionError,
)

__all__ = ["error_for_status", "retry_after_seconds"]


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """``Retry-After`` in seconds (numeric form only), or ``None``."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _message(body: str) -> str:
    """The server's message: JSON ``message``/``error`` or the text/plain body."""
    text = body.strip()[:300]
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict):
        for key in ("message", "error"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    return text


def error_for_status(
    status: int,
    headers: Mapping[str, Any] | None,
    body: str,
    *,
    what: str,
    secrets: Iterable[str | None] = (),
) -> SpooledConnectionError:
    """The typed error for a non-success answer; message redacted."""
    # Redact the whole body before cutting it short: a JWT cut in two no longer looks
    # like one.
    message = _message(redact(body, *secrets))
    detail = redact(f"{what} refused with HTTP {status}: {message or 'no body'}", *secrets)
    if status in (401, 403):
        return AuthError(detail, status=status)
    if status == 429:
        return RateLimitError(detail, status=status, retry_after=retry_after_seconds(headers))
    if status >= 500:
        return ServerError(detail, status=status)
    return SpooledConnectionError(detail, status=status)
