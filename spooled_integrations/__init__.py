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
from spooled_integrations.runtime import (
    Publisher,
    RuntimeConfig,
    SpooledRuntime,
    Subscription,
    load_subscriptions,
)
from spooled_integrations.signals import (
    caught_up,
    connection_state_changed,
    event_dropped,
    event_published,
    leadership_changed,
    receiver_failed,
    spooled_signal,
    stream_gap,
)

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
    "Publisher",
    "QueueEvent",
    "RateLimitError",
    "RealtimeClient",
    "RuntimeConfig",
    "SSEClient",
    "ServerError",
    "SpooledConnectionError",
    "SpooledError",
    "SpooledRuntime",
    "Subscription",
    "SubscriptionError",
    "SubscriptionFilter",
    "WebSocketClient",
    "WorkerEvent",
    "__version__",
    "caught_up",
    "connection_state_changed",
    "create_client",
    "event_dropped",
    "event_published",
    "leadership_changed",
    "load_subscriptions",
    "receiver_failed",
    "spooled_signal",
    "stream_gap",
]
