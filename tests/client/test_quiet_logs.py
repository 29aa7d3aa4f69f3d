"""A flood of bad frames is one WARNING and a count, not a line per frame."""

from __future__ import annotations

import logging

import pytest

from spooled_integrations.testing import Emulator

from ..conftest import wait_until
from .conftest import ClientFactory


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_5000_bad_frames_are_one_warning_and_a_summary(
    spooled_emulator: Emulator,
    make_client: ClientFactory,
    transport: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="spooled_integrations.client")
    client = make_client(spooled_emulator, transport)
    client.on_event(lambda event: None)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    for n in range(5000):
        spooled_emulator.publish_raw(f"not json {n} " + "x" * 200)
    assert wait_until(lambda: client.stats.protocol_errors.get("not_json") == 5000, timeout=30)
    client.disconnect()  # a session's end says what it skipped
    lines = [r.getMessage() for r in caplog.records if "bad frame" in r.getMessage()]
    assert len(lines) == 2, lines
    first, summary = lines
    assert "skipped a bad frame (not_json)" in first and len(first) < 200  # a short excerpt
    assert "skipped 4,999 more bad frames" in summary and "not_json 4,999" in summary
