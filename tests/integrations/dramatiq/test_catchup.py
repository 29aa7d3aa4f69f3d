"""Catch-up with the real ``dramatiq`` command (Redis broker, ``-p 2``): a restart sweeps
its downtime from the checkpoint and each job's actor runs once in total.

``cli_app`` runs ``record_completed`` for ``job.completed`` on Spooled queue ``emails``
and ``record_failure`` for every ``job.failed``; both write the whole event
(``derived_from`` included) to a file. Modes: ``fork`` (one listener process, a file
checkpoint) and ``every_process`` (a listener in each of the two worker processes, claim
coordination so each event is dispatched once, the checkpoint in the coordination
Redis, shared by both).
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
from .conftest import DramatiqRun

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RunDramatiq = Callable[..., DramatiqRun]
BOOT = 30.0
RUN = 30.0
SHUTDOWN_LIMIT = 30.0
RESTART_SWEPT = re.compile(
    r"Spooled catch-up \(restart [^)]*\): (\d+) event\(s\) recovered, (\d+) already delivered"
)


@pytest.fixture
def broker_env(redis_url: str, unique_name: str) -> Iterator[dict[str, str]]:
    """A Redis broker and queue of the test's own; its keys (and the ``spooled:*`` keys
    of namespace ``unique_name``) are deleted afterwards."""
    import redis

    yield {
        "SPOOLED_TEST_BROKER": "redis",
        "SPOOLED_TEST_BROKER_URL": redis_url,
        "SPOOLED_TEST_QUEUE": unique_name,
    }
    with redis.Redis.from_url(redis_url) as client:
        keys = [
            *client.scan_iter(f"dramatiq:{unique_name}*"),
            *client.scan_iter(f"spooled:*{unique_name}*"),
        ]
        if keys:
            client.delete(*keys)


def complete_jobs(emu: Emulator, count: int, queue: str = "emails") -> list[str]:
    return [emu.run_job(queue) for _ in range(count)]


def fail_job(emu: Emulator, queue: str = "emails") -> str:
    return emu.run_job(queue, "failed", error="boom")


def events(*runs: DramatiqRun) -> list[dict[str, Any]]:
    return [record["event"] for run in runs for record in run.records()]


def runs_per_job(*runs: DramatiqRun) -> Counter[tuple[str, str]]:
    """How often each ``(event type, job id)`` was run by an actor."""
    return Counter((e["type"], e["data"]["job_id"]) for e in events(*runs))


def wait_for(
    condition: Callable[[], bool], what: str, runs: list[DramatiqRun], timeout: float
) -> None:
    if wait_until(condition, timeout, interval=0.05):
        return
    logs = "\n".join(f"--- run {i} ---\n{run.log_text()}" for i, run in enumerate(runs))
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def wait_runs(runs: list[DramatiqRun], expected: Counter[tuple[str, str]]) -> None:
    def done() -> bool:
        got = runs_per_job(*runs)
        return all(got[key] >= n for key, n in expected.items())

    wait_for(done, f"{sum(expected.values())} actor runs", runs, RUN)


def stop_cleanly(run: DramatiqRun, listeners: int) -> None:
    code, elapsed = run.terminate(SHUTDOWN_LIMIT)
    log = run.log_text()
    assert code == 0, f"exit code {code} after {elapsed:.1f}s\n{log}"
    wait_for(lambda: not run.group_alive(), "the processes to exit", [run], 10)
    assert run.log_text().count("Spooled runtime stopped") == listeners, log


@pytest.mark.parametrize("mode", ["fork", "every_process"])
def test_a_restarted_dramatiq_runs_each_job_of_its_downtime_once(
    mode: str,
    emulator: Emulator,
    run_dramatiq: RunDramatiq,
    broker_env: dict[str, str],
    redis_url: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    env = {
        **broker_env,
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "SPOOLED_TEST_COMPLETED_QUEUE": "emails",
    }
    checkpoint = tmp_path / "spooled.checkpoint"
    if mode == "fork":
        env["SPOOLED_TEST_RUNTIME"] = json.dumps({"checkpoint": str(checkpoint)})
        listeners = 1
    else:
        env["SPOOLED_DRAMATIQ_MODE"] = "every_process"
        env["SPOOLED_COORDINATION"] = json.dumps(
            {"strategy": "claim", "redis_url": redis_url, "namespace": unique_name}
        )
        listeners = 2  # -p 2; no checkpoint setting: the coordination Redis is used

    first = run_dramatiq("cli_app", env)
    assert emulator.wait_for_connections(listeners, timeout=BOOT), first.log_text()
    live = complete_jobs(emulator, 4)
    wait_runs([first], Counter(("job.completed", job) for job in live))
    stop_cleanly(first, listeners)
    if mode == "fork":
        saved = json.loads(checkpoint.read_text())
    else:
        import redis

        with redis.Redis.from_url(redis_url) as client:
            saved = json.loads(client.get(f"spooled:checkpoint:{unique_name}") or "null")
    assert saved is not None and saved["position"] > time.time() - 60, saved

    # While nothing listens: these are only in the job list.
    down = complete_jobs(emulator, 5)
    failed = fail_job(emulator)
    # record_failure takes every queue, so the sweep lists them all and recovers these
    # too, but no actor wants a job.completed on "reports".
    elsewhere = complete_jobs(emulator, 2, queue="reports")

    second = run_dramatiq("cli_app", env)
    both = [first, second]
    wait_for(
        lambda: len(RESTART_SWEPT.findall(second.log_text())) == listeners,
        "the restart sweep",
        both,
        60,
    )
    # Live again. The actors run these after what the sweep enqueued before them.
    after = complete_jobs(emulator, 3)
    expected = Counter(("job.completed", job) for job in live + down + after)
    expected[("job.failed", failed)] = 1
    wait_runs(both, expected)

    assert runs_per_job(first, second) == expected, second.log_text()
    origin = {(e["type"], e["data"]["job_id"]): e["derived_from"] for e in events(first, second)}
    replayed = {key for key, derived_from in origin.items() if derived_from == "catch_up"}
    assert replayed == {("job.completed", job) for job in down} | {("job.failed", failed)}
    log = second.log_text()
    assert "says events were dispatched up to" in log, log
    recovered = sum(int(found[0]) for found in RESTART_SWEPT.findall(log))
    swept = len(down) + 1 + len(elsewhere)
    if mode == "fork":
        assert recovered == swept, log
    else:  # both listeners swept; a claim decided which one dispatched each event
        assert recovered >= swept, log
    stop_cleanly(second, listeners)
