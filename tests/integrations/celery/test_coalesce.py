"""A routed task in a real Celery worker gets the direct form's fields of a transition
the emulator sends in both forms (status change first, as its default mode does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

pytestmark = pytest.mark.slow


def test_routed_tasks_get_error_and_duration_once(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    # A window above the default 50 ms: a loaded test machine may pause the listener's
    # reader between the two frames of a transition (nothing here waits it out).
    worker = start_worker(redis_url, emulator, pool="solo", spooled_coalesce_window=2.0)
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()

    failed = emulator.run_job("emails", "failed", error="smtp refused")
    completed = emulator.run_job("emails", "completed")
    # Published last, so it runs last (one solo worker, one queue, order kept): once it
    # ran, a second run of the others would have too.
    last = emulator.run_job("emails", "completed")
    assert worker.wait_records(3)[-1]["payload"]["data"]["job_id"] == last

    records = worker.records()
    assert [r["task"] for r in records] == ["record_failed", "record", "record"]
    failure = records[0]["payload"]  # spooled_payload="data"
    assert failure["job_id"] == failed
    assert (failure["error"], failure["retry_count"]) == ("smtp refused", 0)
    assert (failure["old_status"], failure["new_status"]) == ("processing", "failed")
    done = records[1]["payload"]  # the whole event
    assert done["data"]["job_id"] == completed
    assert isinstance(done["data"]["duration_ms"], int)
    assert (done["wire_type"], done["derived_from"]) == ("JobCompleted", None)
