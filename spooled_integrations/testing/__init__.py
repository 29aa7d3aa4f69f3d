"""Test helpers: :class:`Emulator` (a local Spooled server), :class:`Collector`, and a
pytest plugin (fixtures ``spooled_emulator`` and ``spooled_emulator_strict``).

Importing this package is cheap: the emulator (and aiohttp) load on first use of
:class:`Emulator`, which needs the ``testing`` extra
(``pip install spooled-integrations[testing]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spooled_integrations.testing.collector import Collector

if TYPE_CHECKING:
    from spooled_integrations.testing.emulator import Emulator

__all__ = ["Collector", "Emulator"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from spooled_integrations.testing.emulator import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
