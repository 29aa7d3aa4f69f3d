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

ClientFactory = Callable[..., BaseClient]


@pytest.fixture
def make_client(make_options: Callable[..., ConnectionOptions]) -> Iterator[ClientFactory]:
    """``make_client(emu, "ws"|"sse", filter=None, **options)``; disconnected at teardown."""
    made: list[BaseClient] = []

    def factory(
        emu: Emulator, transport: str, filter: SubscriptionFilter | None = None, **overrides: Any
    ) -> BaseClient:
        client = create_client(make_options(emu, **overrides), transport, filter)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield factory
    for client in made:
        client.disconnect()


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
