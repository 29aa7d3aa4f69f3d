"""Build the coordinator a :class:`CoordinationConfig` asks for."""

from __future__ import annotations

from typing import Any

from spooled_integrations.runtime.coordination.base import Coordinator
from spooled_integrations.runtime.coordination.config import CoordinationConfig

__all__ = ["create_coordinator"]


def create_coordinator(config: CoordinationConfig, *, signal_sender: Any = None) -> Coordinator:
    """A :class:`LeaseCoordinator` or :class:`ClaimCoordinator` (imports redis-py now).

    Raises :class:`~spooled_integrations.errors.ConfigurationError` when redis-py is
    missing or the URL cannot be parsed. Does no network I/O.
    """
    if config.strategy == "lease":
        from spooled_integrations.runtime.coordination.lease import LeaseCoordinator

        return LeaseCoordinator(config, signal_sender=signal_sender)
    from spooled_integrations.runtime.coordination.claim import ClaimCoordinator

    return ClaimCoordinator(config, signal_sender=signal_sender)
