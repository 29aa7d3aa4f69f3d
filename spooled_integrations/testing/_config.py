"""The emulator's knobs: production defaults, every interval configurable (seconds)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Everything :class:`~spooled_integrations.testing.Emulator` lets a test change.

    ``strict`` selects the public backend source behaviour (§1-§3 of the protocol
    notes); the default mode imitates production as the SDKs report it (§4).
    """

    strict: bool = False
    host: str = "127.0.0.1"
    ping_interval: float = 30.0
    health_interval: float = 10.0
    job_poll_interval: float = 2.0
    queue_poll_interval: float = 5.0
    keepalive_interval: float = 15.0
    max_stream_duration: float = 1800.0
    ws_connection_cap: int = 100
    login_limit: int = 5
    login_window: float = 60.0
    jwt_lifetime: float = 86400.0
    jwt_leeway: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "ping_interval",
            "health_interval",
            "job_poll_interval",
            "queue_poll_interval",
            "keepalive_interval",
            "max_stream_duration",
            "login_window",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.ws_connection_cap < 0 or self.login_limit < 0:
            raise ValueError("ws_connection_cap and login_limit must not be negative")
