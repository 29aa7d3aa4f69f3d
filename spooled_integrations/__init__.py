"""Realtime Spooled events for Celery and Dramatiq worker fleets.

Importing this package imports no framework and starts nothing.
"""

from spooled_integrations.client import (
    ClientStats,
    ConnectionOptions,
    ConnectionState,
    RealtimeClient,
    SSEClient,
    SubscriptionFilter,
    WebSocketClient,
    create_client,
)
from spooled_integrations.errors import (
    AuthError,
    ConfigurationError,
    NotSupportedError,
    ProtocolError,
    PublishError,
    RateLimitError,
    ServerError,
    SpooledConnectionError,
    SpooledError,
    SubscriptionError,
)
from spooled_integrations.protocol import Event, EventType, JobEvent, QueueEvent, WorkerEvent

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ClientStats",
    "ConfigurationError",
    "ConnectionOptions",
    "ConnectionState",
    "Event",
    "EventType",
    "JobEvent",
    "NotSupportedError",
    "ProtocolError",
    "PublishError",
    "QueueEvent",
    "RateLimitError",
    "RealtimeClient",
    "SSEClient",
    "ServerError",
    "SpooledConnectionError",
    "SpooledError",
    "SubscriptionError",
    "SubscriptionFilter",
    "WebSocketClient",
    "WorkerEvent",
    "__version__",
    "create_client",
]
