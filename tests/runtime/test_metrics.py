"""Counters: exact totals when many threads count at once, by-reason tables, bad names."""

from __future__ import annotations

import threading

import pytest

from spooled_integrations.runtime.metrics import COUNTERS, Metrics


def test_concurrent_increments_are_never_lost() -> None:
    metrics = Metrics()
    start = threading.Barrier(8)

    def count() -> None:
        start.wait()
        for _ in range(20_000):
            metrics.incr("received")
            metrics.incr("dispatched", 2)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    snapshots = [metrics.snapshot() for _ in range(50)]  # reading while they count is safe
    for thread in threads:
        thread.join()
    assert metrics.get("received") == 160_000
    assert metrics.snapshot()["dispatched"] == 320_000
    assert all(set(COUNTERS) <= set(s) for s in snapshots)


def test_by_reason_tables_and_unknown_names() -> None:
    metrics = Metrics()
    metrics.drop("overflow", 3)
    metrics.drop("stale")
    metrics.protocol_error("not_json")
    assert metrics.dropped("overflow") == 3
    assert metrics.get("dropped") == 4
    assert metrics.snapshot()["protocol_errors"] == {"not_json": 1}
    with pytest.raises(KeyError):
        metrics.incr("no_such_counter")
    with pytest.raises(KeyError):
        metrics.get("no_such_counter")
