"""The one exception tree of spooled-integrations.

::

    SpooledError
    ├── ConfigurationError (also ValueError)     bad options, settings or subscriptions
    │   └── SettingsError                        every problem of the settings at once
    │       └── SubscriptionError                every problem of a subscription set at once
    ├── ProtocolError (also ValueError)          a frame that cannot be understood; skipped
    ├── NotSupportedError                        an operation this transport cannot do
    ├── PublishError                             a target (task/actor) could not be reached
    └── SpooledConnectionError                   the connection failed or was refused
        ├── AuthError                            401/403: credentials refused; never retried blindly
        ├── RateLimitError                       429: retry after ``retry_after`` seconds
        └── ServerError                          5xx or another unexpected HTTP answer

Messages never contain API keys, JWTs or URL passwords: callers pass redacted text
(``spooled_integrations._redact``), and every message and listed problem goes through
``redact`` once more here, so a secret a caller missed is still hidden. A problem
shows the value given (``got 'ftp://user:[redacted]@host'``), never a cut part of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from spooled_integrations._redact import redact as _redact

__all__ = [
    "AuthError",
    "ConfigurationError",
    "NotSupportedError",
    "ProtocolError",
    "PublishError",
    "RateLimitError",
    "ServerError",
    "SettingsError",
    "SpooledConnectionError",
    "SpooledError",
    "SubscriptionError",
]


class SpooledError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(_redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(SpooledError, ValueError):
    """Options, settings or subscriptions that cannot work."""


class SettingsError(ConfigurationError):
    """Settings with one or more problems, all listed in ``problems``.

    The one error type that lists problems: the message is ``N problem(s) in the
    Spooled <subject>[; <consequence>]:`` and a ``  - problem`` line each. Framework
    flavours (Celery's ``ImproperlyConfigured``, Dramatiq's ``MiddlewareError``) are
    subclasses that only add their framework's base class and a ``consequence``.
    """

    subject = "settings"
    consequence = ""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = [_redact(problem) for problem in problems]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        after = f"; {self.consequence}" if self.consequence else ""
        super().__init__(
            f"{len(self.problems)} problem(s) in the Spooled {self.subject}{after}:\n{lines}"
        )


class SubscriptionError(SettingsError):
    """A subscription set with one or more problems, all listed in ``problems``."""

    subject = "subscriptions"


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
