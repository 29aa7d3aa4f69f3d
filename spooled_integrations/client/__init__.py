"""Realtime clients for Spooled (mirrors the Go ``realtime`` package), and a small
REST client for job lookups (:class:`JobsClient`)."""

from __future__ import annotations

from typing import Literal

from spooled_integrations.client.auth import TokenProvider
from spooled_integrations.client.base import BaseClient, ClientStats, RealtimeClient
from spooled_integrations.client.options import (
    ConnectionOptions,
    ConnectionState,
    SubscriptionFilter,
)
from spooled_integrations.client.rest import JobPage, JobsClient, JobSummary
from spooled_integrations.client.sse import SSEClient
from spooled_integrations.client.websocket import WebSocketClient

__all__ = [
    "BaseClient",
    "ClientStats",
    "ConnectionOptions",
    "ConnectionState",
    "JobPage",
    "JobSummary",
    "JobsClient",
    "RealtimeClient",
    "SSEClient",
    "SubscriptionFilter",
    "TokenProvider",
    "Transport",
    "WebSocketClient",
    "create_client",
]

Transport = Literal["ws", "sse"]


def create_client(
    options: ConnectionOptions,
    transport: Transport = "ws",
    filter: SubscriptionFilter | None = None,
) -> BaseClient:
    """A :class:`WebSocketClient` (``"ws"``) or :class:`SSEClient` (``"sse"``)."""
    if transport == "ws":
        return WebSocketClient(options, filter=filter)
    if transport == "sse":
        return SSEClient(options, filter=filter)
    raise ValueError(f"transport must be 'ws' or 'sse', not {transport!r}")
