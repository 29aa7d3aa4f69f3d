"""Keep API keys, JWTs and URL passwords out of logs, reprs and exception text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["redact", "redact_mapping", "redact_url"]

_SECRET = re.compile(
    r"eyJ[\w-]{6,}(?:\.[\w-]*){0,2}"  # a JWT, or the start of one that was cut
    r"|\b(?:sk|sp)_(?:live|test)_[\w-]+"  # an API key
    r"|(?<=[?&]token=)[^&\s\"']+"  # a query credential
    r"|(?<=[?&]api_key=)[^&\s\"']+"
    r"|(?<=[?&]password=)[^&\s\"']+"
    r"|(?<=Bearer )[^\s\"',]+",
    re.IGNORECASE,
)
# keys whose value is a secret whatever it looks like (Celery masks settings the same way)
_SECRET_KEY = re.compile(r"api|token|key|secret|pass|auth|signature|cookie|credential", re.I)
# scheme://user:password@host -- the password part (redis://:pw@h has an empty user)
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^\s/]+)@")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every known secret and anything that looks like one replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _URL_PASSWORD.sub(r"\1:[redacted]@", text)
    return _SECRET.sub("[redacted]", text)


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info (and a ``password=`` query) hidden."""
    return redact(url)


def redact_mapping(value: Any) -> Any:
    """A copy of ``value`` (mappings and lists, nested) with the value of every key that
    names a secret (``Authorization``, ``api_key``, ``X-Token``...) replaced, and
    :func:`redact` applied to every string."""
    if isinstance(value, Mapping):
        return {
            key: "[redacted]"
            if isinstance(key, str) and _SECRET_KEY.search(key)
            else redact_mapping(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_mapping(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value
