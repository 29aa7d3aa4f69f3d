"""Keep API keys, JWTs and URL passwords out of logs, reprs and exception text."""

from __future__ import annotations

import re

__all__ = ["redact", "redact_url"]

_SECRET = re.compile(
    r"eyJ[\w-]+\.[\w-]+\.[\w-]*"  # a JWT
    r"|\b(?:sk|sp)_(?:live|test)_[\w-]+"  # an API key
    r"|(?<=[?&]token=)[^&\s\"']+"  # a query credential
    r"|(?<=[?&]api_key=)[^&\s\"']+"
    r"|(?<=[?&]password=)[^&\s\"']+"
    r"|(?<=Bearer )[^\s\"',]+",
    re.IGNORECASE,
)
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
