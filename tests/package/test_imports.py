"""Importing the package is cheap and inert: no framework, no server, no thread."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, threading
import spooled_integrations, spooled_integrations.signals, spooled_integrations.testing
heavy = [m for m in ("celery", "dramatiq", "aiohttp", "redis") if m in sys.modules]
print(heavy, threading.active_count())
"""


def test_import_starts_nothing_and_pulls_in_no_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[] 1"


def test_public_names_resolve() -> None:
    import spooled_integrations

    for name in spooled_integrations.__all__:
        assert getattr(spooled_integrations, name) is not None, name
    assert spooled_integrations.signals.spooled_signal is spooled_integrations.spooled_signal


def test_frameworks_import_only_their_own_module() -> None:
    probe = "import sys, spooled_integrations.celery; print('dramatiq' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "False"
