"""Routed tasks' results and ids, with a real worker on Redis and a Redis result backend.

A routed task's result is stored only when its rule asks (``options.ignore_result:
false``); the task id every publish returns reaches the ``event_published`` signal and
``last_published`` in status, and it is the id the task itself sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from spooled_integrations.testing import Emulator

QUIET = 20  # job.completed on "emails": rule without options
KEPT = 5  # job.completed on "reports": options.ignore_result = false
FAILED = 3  # job.failed on "emails": task option spooled_options={"ignore_result": False}
OWN = 3  # job.started on "emails": the task says ignore_result=False, the rule nothing


@pytest.fixture
def result_keys(redis_url: str, unique_name: str) -> Iterator[Callable[[], set[str]]]:
    """The test's own ``celery-task-meta-<id>`` keys, as task ids; deleted afterwards."""
    prefix = f"{unique_name}:"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pattern = f"{prefix}*celery-task-meta-*"  # Celery 5.3 puts a "_" after the prefix

    def keys() -> set[str]:
        return {key.rsplit("celery-task-meta-", 1)[1] for key in client.scan_iter(pattern)}

    keys.prefix = prefix  # type: ignore[attr-defined]
    yield keys
    found = list(client.scan_iter(f"{prefix}*"))
    if found:
        client.delete(*found)
    client.close()


def _published(out: Path) -> list[dict[str, Any]]:
    path = Path(f"{out}.published")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_results_are_stored_only_for_rules_that_ask_and_ids_reach_signal_and_status(
    redis_url: str,
    emulator: Emulator,
    start_worker: Callable[..., Any],
    inspect_status: Callable[..., dict[str, Any]],
    result_keys: Callable[[], set[str]],
) -> None:
    worker = start_worker(
        redis_url,
        emulator,
        app="spooled_resultsapp",
        pool="prefork",
        concurrency=2,
        env={"SPTEST_RESULT_PREFIX": result_keys.prefix},  # type: ignore[attr-defined]
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()

    for i in range(QUIET):
        emulator.publish("job.completed", job_id=f"quiet-{i}", queue_name="emails", duration_ms=i)
    for i in range(KEPT):
        emulator.publish("job.completed", job_id=f"kept-{i}", queue_name="reports", duration_ms=i)
    for i in range(FAILED):
        emulator.publish("job.failed", job_id=f"failed-{i}", queue_name="emails", error="x")
    for i in range(OWN):
        emulator.publish("job.started", job_id=f"own-{i}", queue_name="emails")
    total = QUIET + KEPT + FAILED + OWN
    runs = worker.wait_records(total)
    assert len(runs) == total

    # The id each task saw, by the job of its event.
    seen = {run["payload"]["data"]["job_id"]: run["id"] for run in runs}
    assert len(seen) == total and len(set(seen.values())) == total
    stored = {seen[f"kept-{i}"] for i in range(KEPT)} | {seen[f"failed-{i}"] for i in range(FAILED)}

    # A result is written just after its task returns: wait for the ones asked for.
    assert _wait(lambda: result_keys() >= stored), (result_keys(), stored)
    time.sleep(0.5)  # any result of the other tasks, written as late, is there by now
    assert result_keys() == stored

    # event_published: one per message, in the main process, with the task's own id.
    assert _wait(lambda: len(_published(worker.out)) >= total)
    published = _published(worker.out)
    assert len(published) == total
    assert {p["job_id"]: p["message_id"] for p in published} == seen
    rules = {p["rule"] for p in published}
    assert rules == {
        "emails-quiet",
        "reports-kept",
        "own-setting",
        "task:spooled_resultsapp.record_failed",
    }

    status = inspect_status(redis_url, worker.node)
    assert status["counters"]["published"] == total
    last = status["last_published"]
    assert last["emails-quiet"]["message_id"] == seen[f"quiet-{QUIET - 1}"]
    assert last["emails-quiet"]["job_id"] == f"quiet-{QUIET - 1}"
    assert last["emails-quiet"]["target"] == "task:spooled_resultsapp.record"
    assert last["emails-quiet"]["event"] == "job.completed"
    assert last["reports-kept"]["message_id"] == seen[f"kept-{KEPT - 1}"]
    assert last["own-setting"]["message_id"] == seen[f"own-{OWN - 1}"]
