"""pytest fixtures for the Spooled emulator (registered as a ``pytest11`` entry point).

``spooled_emulator`` runs the default (production-like) mode and
``spooled_emulator_strict`` the public-backend-source mode, both with fast intervals so
tests see pings, health events and polls within a second. ``spooled_receivers_isolated``
sets aside every ``spooled_signal`` receiver connected before the test (by imported
modules or other tests) and drops those the test connects. Modules are imported inside
the fixtures, so loading this plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from spooled_integrations.testing.emulator import Emulator

__all__ = [
    "FAST_INTERVALS",
    "spooled_emulator",
    "spooled_emulator_strict",
    "spooled_receivers_isolated",
]

FAST_INTERVALS: dict[str, Any] = {
    "ping_interval": 1.0,
    "health_interval": 0.5,
    "job_poll_interval": 0.1,
    "queue_poll_interval": 0.2,
    "keepalive_interval": 0.5,
}
"""Intervals (seconds) the fixtures use instead of the production ones."""


def _running(strict: bool) -> Iterator[Emulator]:
    from spooled_integrations.testing.emulator import Emulator

    with Emulator(strict=strict, **FAST_INTERVALS) as emulator:
        yield emulator


@pytest.fixture
def spooled_emulator() -> Iterator[Emulator]:
    """A running emulator in default (production-like) mode with fast intervals."""
    yield from _running(strict=False)


@pytest.fixture
def spooled_emulator_strict() -> Iterator[Emulator]:
    """A running emulator in strict (backend-source) mode with fast intervals."""
    yield from _running(strict=True)


@pytest.fixture
def spooled_receivers_isolated() -> Iterator[None]:
    """Only the ``spooled_signal`` receivers this test connects, and only during it."""
    from spooled_integrations.runtime.signals import spooled_signal

    with spooled_signal.isolated():
        yield
