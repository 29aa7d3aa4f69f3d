"""Client fixtures: fast options pointed at the emulator, and clients that always stop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spooled_integrations.client import (
    BaseClient,
    ConnectionOptions,
    SubscriptionFilter,
    create_client,
)
from spooled_integrations.testing import Emulator

FAST = {
    "reconnect_delay": 0.05,
    "max_reconnect_delay": 0.2,
    "healthy_after": 0.5,
    "connect_timeout": 2.0,
}


def fast_options(emu: Emulator, **overrides: Any) -> ConnectionOptions:
    values: dict[str, Any] = {"base_url": emu.base_url, "api_key": emu.api_key, **FAST}
    values.update(overrides)
    return ConnectionOptions(**values)


ClientFactory = Callable[..., BaseClient]


@pytest.fixture
def make_options() -> Callable[..., ConnectionOptions]:
    """``make_options(emu, **overrides)``: fast reconnect settings aimed at ``emu``."""
    return fast_options


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """``make_client(emu, "ws"|"sse", filter=None, **options)``; disconnected at teardown."""
    made: list[BaseClient] = []

    def factory(
        emu: Emulator, transport: str, filter: SubscriptionFilter | None = None, **overrides: Any
    ) -> BaseClient:
        client = create_client(fast_options(emu, **overrides), transport, filter)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield factory
    for client in made:
        client.disconnect()


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
