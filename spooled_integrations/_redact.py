"""Keep API keys and JWTs out of logs, reprs and exception text."""

from __future__ import annotations

import re

__all__ = ["redact"]

_SECRET = re.compile(
    r"eyJ[\w-]+\.[\w-]+\.[\w-]*"  # a JWT
    r"|\b(?:sk|sp)_(?:live|test)_[\w-]+"  # an API key
    r"|(?<=[?&]token=)[^&\s\"']+"  # a query credential
    r"|(?<=[?&]api_key=)[^&\s\"']+"
    r"|(?<=Bearer )[^\s\"',]+",
    re.IGNORECASE,
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every known secret and anything that looks like one replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SECRET.sub("[redacted]", text)
