"""Catch-up with real ``celery worker`` processes (Redis broker), the emulator as Spooled.

Every job is a real emulator job moved to ``completed`` (or ``failed``). The worker app's
rules run ``spooled_testapp.record`` for ``job.completed`` and ``record_failed`` for
``job.failed`` on queue ``emails``; each run writes the event it got, ``derived_from``
included, to a file. What must hold, per job: exactly one run in total, whether the
event came live, from the sweep after a restart, or from polling a server whose stream
carries no job events.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

from ...conftest import wait_until
from .conftest import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]
BOOT = 30.0  # seconds a worker may take to connect on a busy machine
RUN = 30.0  # seconds the tasks of a batch may take to run
RESTART_SWEPT = re.compile(
    r"Spooled catch-up \(restart [^)]*\): (\d+) event\(s\) recovered, (\d+) already delivered"
)


def complete_jobs(emu: Emulator, count: int, queue: str = "emails") -> list[str]:
    return [emu.run_job(queue) for _ in range(count)]


def fail_job(emu: Emulator, queue: str = "emails") -> str:
    return emu.run_job(queue, "failed", error="boom")


def all_records(*workers: WorkerProcess) -> list[dict[str, Any]]:
    return [record for worker in workers for record in worker.records()]


def job_id(record: dict[str, Any]) -> str:
    """``record`` gets the whole event, ``record_failed`` only its data."""
    payload = record["payload"]
    data = payload["data"] if record["task"] == "record" else payload
    return str(data["job_id"])


def runs(records: list[dict[str, Any]], task: str = "record") -> Counter[str]:
    """How often ``task`` ran per job id."""
    return Counter(job_id(r) for r in records if r["task"] == task)


def derived(records: list[dict[str, Any]]) -> dict[str, str | None]:
    """``derived_from`` of the event each ``record`` run got, by job id."""
    return {job_id(r): r["payload"]["derived_from"] for r in records if r["task"] == "record"}


def wait_for(
    condition: Callable[[], bool], what: str, workers: tuple[WorkerProcess, ...], timeout: float
) -> None:
    if wait_until(condition, timeout, interval=0.05):
        return
    logs = "\n".join(f"--- {w.node} (exit {w.proc.poll()}) ---\n{w.output()}" for w in workers)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def wait_runs(
    workers: tuple[WorkerProcess, ...], expected: Counter[str], timeout: float = RUN
) -> None:
    """Until every job of ``expected`` ran at least as often as expected (any task)."""

    def done() -> bool:
        records = all_records(*workers)
        got = runs(records) + runs(records, "record_failed")
        return all(got[job] >= n for job, n in expected.items())

    wait_for(done, f"{sum(expected.values())} task runs", workers, timeout)


def stop_cleanly(worker: WorkerProcess) -> None:
    """SIGTERM (warm shutdown): the runtime stops and writes its checkpoint."""
    worker.terminate(timeout=60)
    assert worker.proc.returncode == 0, worker.output()
    assert "Spooled runtime stopped" in worker.output()


@pytest.fixture
def redis_keys(redis_url: str, unique_name: str) -> Iterator[str]:
    """A namespace of the test's own; its ``spooled:*`` keys are deleted afterwards."""
    import redis

    yield unique_name
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(f"spooled:*{unique_name}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def strict_emulator() -> Iterator[Emulator]:
    """The public backend's behaviour: no job events on the stream."""
    with Emulator(strict=True, ping_interval=1.0, keepalive_interval=0.5) as emu:
        yield emu


# -- a restart with a checkpoint -------------------------------------------------------


@pytest.mark.parametrize("store", ["file", "coordination-redis"])
def test_a_restarted_worker_runs_each_job_of_its_downtime_once(
    store: str,
    redis_url: str,
    emulator: Emulator,
    start_worker: StartWorker,
    tmp_path: Path,
    unique_name: str,
    redis_keys: str,
) -> None:
    checkpoint = tmp_path / "spooled.checkpoint"
    settings: dict[str, Any]
    if store == "file":
        settings = {"spooled_checkpoint": str(checkpoint)}
    else:
        # No spooled_checkpoint: with coordination it defaults to the coordination Redis.
        settings = {
            "spooled_coordination": {
                "strategy": "claim",
                "redis_url": redis_url,
                "namespace": redis_keys,
            },
            "spooled_subscriptions": [
                {
                    "events": ["job.completed"],
                    "queue": "emails",
                    "task": "spooled_testapp.record",
                    "delivery": "once",
                }
            ],
        }
    first = start_worker(redis_url, emulator, queue=unique_name, **settings)
    assert emulator.wait_for_connections(1, timeout=BOOT), first.output()
    live = complete_jobs(emulator, 4)
    wait_runs((first,), Counter(live))
    stop_cleanly(first)
    if store == "file":
        saved = json.loads(checkpoint.read_text())
        assert saved["position"] > time.time() - 60
        assert {f"job.completed:{job}" for job in live} <= set(saved["recent"])
    else:
        import redis

        with redis.Redis.from_url(redis_url) as client:
            saved = json.loads(client.get(f"spooled:checkpoint:{redis_keys}") or "null")
        assert saved is not None and saved["position"] > time.time() - 60

    # While no worker listens: these are only in the job list.
    down = complete_jobs(emulator, 5)
    failed = fail_job(emulator)
    complete_jobs(emulator, 2, queue="reports")  # no rule wants these

    second = start_worker(redis_url, emulator, queue=unique_name, **settings)
    workers = (first, second)
    wait_for(lambda: RESTART_SWEPT.search(second.output()) is not None, "the sweep", workers, 60)
    after = complete_jobs(emulator, 3)  # live again; they run after anything swept
    expected = Counter(live + down + after)
    wait_runs(workers, expected + Counter([failed]))

    # (The fixture prints the worker logs of a failed test.)
    records = all_records(*workers)
    assert runs(records) == expected
    assert runs(records, "record_failed") == Counter([failed])
    origin = derived(records)
    assert {job: origin[job] for job in down} == dict.fromkeys(down, "catch_up")
    assert all(origin[job] != "catch_up" for job in live + after)
    log = second.output()
    assert "says events were dispatched up to" in log
    swept = RESTART_SWEPT.search(log)
    assert swept is not None and int(swept.group(1)) == len(down) + 1  # + the failed job


# -- a server whose stream carries no job events ---------------------------------------


def wait_start_swept(worker: WorkerProcess) -> None:
    """Until the sweep from start() to the first connection is done: jobs finished from
    now on are found by polls (the start sweep looks a few seconds past the connection
    and would take some of them, and it does not count for auto polling)."""
    wait_for(
        lambda: "Spooled catch-up (start " in worker.output(), "the start sweep", (worker,), BOOT
    )


def wait_polled_past(
    worker: WorkerProcess,
    inspect_status: Callable[..., dict[str, Any]],
    broker: str,
    moment: float,
) -> dict[str, Any]:
    """Until a poll began after ``moment`` plus the sweeps' overlap (no later poll can
    find a job finished before ``moment``); returns that status."""
    from spooled_integrations.protocol import parse_timestamp
    from spooled_integrations.runtime.catchup import SKEW

    status: dict[str, Any] = {}

    def past() -> bool:
        nonlocal status
        status = inspect_status(broker, worker.node)
        sweep = (status.get("catch_up") or {}).get("last_sweep")
        return bool(sweep) and parse_timestamp(sweep["since"]).timestamp() > moment + 0.1

    wait_for(past, "a poll past the last job", (worker,), 30 + SKEW)
    return status


@pytest.mark.parametrize("poll", ["always", "auto"])
def test_strict_server_jobs_run_once_each_from_polling(
    poll: str,
    redis_url: str,
    strict_emulator: Emulator,
    start_worker: StartWorker,
    inspect_status: Callable[..., dict[str, Any]],
) -> None:
    emu = strict_emulator
    worker = start_worker(
        redis_url,
        emu,
        spooled_catch_up_poll=poll,
        spooled_catch_up_interval=0.5,
        # auto: the first probe 2 s after connecting instead of 30 s (see the app).
        env={"SPTEST_PROBE_EVERY": "2"} if poll == "auto" else None,
    )
    wait_start_swept(worker)
    first = complete_jobs(emu, 6)
    wait_runs((worker,), Counter(first))
    if poll == "auto":
        assert "polling the job list every 0.5s" in worker.output()
    second = complete_jobs(emu, 4)
    finished = time.time()
    wait_runs((worker,), Counter(first + second))
    # Polls overlap by a few seconds: wait for one that no longer covers these jobs.
    status = wait_polled_past(worker, inspect_status, redis_url, finished)

    records = worker.records()
    assert runs(records) == Counter(first + second)
    assert set(derived(records).values()) == {"catch_up"}
    assert status["counters"]["published"] == len(first + second)
    assert status["catch_up"]["poll"] == poll
    if poll == "always":
        assert status["catch_up"]["polling"] is True


def test_strict_server_auto_polling_stays_on(
    redis_url: str,
    strict_emulator: Emulator,
    start_worker: StartWorker,
    inspect_status: Callable[..., dict[str, Any]],
) -> None:
    emu = strict_emulator
    worker = start_worker(
        redis_url,
        emu,
        spooled_catch_up_poll="auto",
        spooled_catch_up_interval=0.5,
        env={"SPTEST_PROBE_EVERY": "2"},  # see the app: a test-only speed-up
    )
    wait_start_swept(worker)
    jobs = complete_jobs(emu, 3)
    wait_runs((worker,), Counter(jobs))
    wait_for(lambda: "polling the job list every" in worker.output(), "polling", (worker,), 30)
    # Several polls later (the sweeps overlap by SKEW seconds): still polling.
    status = wait_polled_past(worker, inspect_status, redis_url, time.time())
    assert "polling stops" not in worker.output()
    assert status["catch_up"]["polling"] is True
