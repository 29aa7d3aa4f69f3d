"""The one exception tree of spooled-integrations.

::

    SpooledError
    ├── ConfigurationError (also ValueError)     bad options, settings or subscriptions
    │   └── SubscriptionError                    every problem of a subscription set at once
    ├── ProtocolError (also ValueError)          a frame that cannot be understood; skipped
    ├── NotSupportedError                        an operation this transport cannot do
    ├── PublishError                             a target (task/actor) could not be reached
    └── SpooledConnectionError                   the connection failed or was refused
        ├── AuthError                            401/403: credentials refused; never retried blindly
        ├── RateLimitError                       429: retry after ``retry_after`` seconds
        └── ServerError                          5xx or another unexpected HTTP answer

Messages never contain API keys or JWTs: callers pass redacted text only (see
``spooled_integrations._redact.redact``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthError",
    "ConfigurationError",
    "NotSupportedError",
    "ProtocolError",
    "PublishError",
    "RateLimitError",
    "ServerError",
    "SpooledConnectionError",
    "SpooledError",
    "SubscriptionError",
]


class SpooledError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(SpooledError, ValueError):
    """Options, settings or subscriptions that cannot work."""


class SubscriptionError(ConfigurationError):
    """A subscription set with one or more problems, all listed in ``problems``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{count} problem(s) in the Spooled subscriptions:\n{lines}")


class ProtocolError(SpooledError, ValueError):
    """A frame or stream line that does not follow the Spooled protocol.

    ``reason`` is a short machine-readable tag (``not_json``, ``too_large``, ...) used
    as a counter label.
    """

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class NotSupportedError(SpooledError):
    """The transport cannot do this (e.g. ``subscribe`` on SSE)."""


class PublishError(SpooledError):
    """A routed event could not be handed to its task or actor."""


class SpooledConnectionError(SpooledError):
    """The realtime connection could not be opened or was lost.

    ``status`` is the HTTP status when the server answered, else ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(SpooledConnectionError):
    """The server refused the credentials (401/403). Not retried in a loop."""


class RateLimitError(SpooledConnectionError):
    """The server asked us to slow down (429); ``retry_after`` is in seconds."""

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(SpooledConnectionError):
    """A 5xx or other unexpected answer; retried with backoff."""
