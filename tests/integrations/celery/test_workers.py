"""Real ``celery worker`` subprocesses on real brokers, with the emulator as Spooled.

What must hold on every pool and broker: N matching events run the routed task exactly
N times with the right payloads, non-matching events run nothing, and the node holds
exactly one Spooled connection (also after prefork replaced its children).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import celery
import pytest

from spooled_integrations.testing import Emulator

pytestmark = pytest.mark.slow

N = 5
CELERY_BIN = os.path.join(os.path.dirname(sys.executable), "celery")
MODULE_CLI = [sys.executable, "-m", "spooled_integrations.celery"]
# Celery 5.3 checks ``inspect`` commands against a list built before the app is loaded,
# so there only the module CLI knows spooled_status (docs/operations.md says so).
_CELERY_VERSION = tuple(int(part) for part in celery.__version__.split(".")[:2])
INSTALLED_CLI = [CELERY_BIN] if _CELERY_VERSION >= (5, 4) else MODULE_CLI


def _publish_mix(emu: Emulator, count: int = N, start: int = 0) -> None:
    """Non-matching events around ``count`` matching ``job.completed`` on ``emails``."""
    emu.publish("job.completed", job_id="other-queue", queue_name="reports", duration_ms=1)
    emu.publish("job.started", job_id="started", queue_name="emails")
    emu.publish("job.failed", job_id="failed-elsewhere", queue_name="reports", error="x")
    for i in range(start, start + count):
        emu.publish("job.completed", job_id=f"job-{i}", queue_name="emails", duration_ms=i)
    emu.publish("job.retrying", job_id="retrying", queue_name="emails")


def _assert_completed_payloads(records: list[dict[str, Any]], ids: range) -> None:
    assert sorted(r["payload"]["data"]["job_id"] for r in records) == sorted(
        f"job-{i}" for i in ids
    )
    for record in records:
        assert record["task"] == "record"
        payload = record["payload"]
        assert payload["type"] == "job.completed"
        assert payload["data"]["queue_name"] == "emails"
        assert payload["data"]["duration_ms"] == int(payload["data"]["job_id"][4:])


@pytest.mark.parametrize("broker_name", ["redis", "rabbitmq"])
@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_each_matching_event_runs_the_routed_task_once(
    pool: str,
    broker_name: str,
    request: pytest.FixtureRequest,
    emulator: Emulator,
    start_worker: Callable[..., Any],
    inspect_status: Callable[..., dict[str, Any]],
) -> None:
    broker = request.getfixturevalue(f"{broker_name}_url")
    worker = start_worker(broker, emulator, pool=pool, concurrency=2)
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()

    _publish_mix(emulator)
    records = worker.wait_records(N)
    _assert_completed_payloads(records, range(N))

    status = inspect_status(broker, worker.node)
    assert status["enabled"] is True
    assert status["connected"] is True
    assert status["counters"]["published"] == N
    assert status["counters"]["dispatched"] == N + 4  # the non-matching ones too
    time.sleep(0.3)  # a duplicate would have run by now
    assert len(worker.records()) == N
    assert emulator.connections_current("ws") == 1
    assert emulator.connections_accepted("ws") == 1


def test_prefork_child_replacement_keeps_one_listener(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(
        redis_url, emulator, pool="prefork", concurrency=2, args=("--max-tasks-per-child", "1")
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    _publish_mix(emulator, count=4)
    first = worker.wait_records(4)
    # Every child ran one task and was replaced by a fresh fork of the main process.
    assert len({r["pid"] for r in first}) >= 3

    _publish_mix(emulator, count=2, start=4)
    records = worker.wait_records(6)
    _assert_completed_payloads(records, range(6))
    time.sleep(0.3)
    assert len(worker.records()) == 6
    assert emulator.connections_accepted("ws") == 1
    assert emulator.connections_current("ws") == 1


@pytest.mark.parametrize(
    ("fault", "signum"),
    [
        ("stalled", signal.SIGTERM),  # warm shutdown: the step's stop()
        ("server_down", signal.SIGTERM),  # mid-backoff
        ("stalled", signal.SIGQUIT),  # cold shutdown: the step's terminate()
    ],
    ids=["warm-stalled", "warm-server-down", "cold-stalled"],
)
def test_shutdown_signal_exits_within_the_shutdown_timeout(
    fault: str,
    signum: signal.Signals,
    redis_url: str,
    emulator: Emulator,
    start_worker: Callable[..., Any],
) -> None:
    shutdown_timeout = 3.0
    worker = start_worker(
        redis_url,
        emulator,
        pool="prefork",
        spooled_shutdown_timeout=shutdown_timeout,
        # Long enough that neither the liveness check nor a reconnect ends the wait.
        spooled_liveness_timeout=120,
        spooled_reconnect_delay=30,
        spooled_max_reconnect_delay=60,
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    emulator.publish("job.completed", job_id="job-0", queue_name="emails", duration_ms=0)
    worker.wait_records(1)
    if fault == "stalled":
        emulator.stall(True)
    else:
        emulator.stop()
    time.sleep(0.5)
    elapsed = worker.terminate(timeout=30, signum=signum)
    assert worker.proc.returncode == 0, worker.output()
    assert elapsed < shutdown_timeout + 3.0, f"took {elapsed:.1f}s\n{worker.output()}"
    assert "Spooled runtime stopped" in worker.output()


@pytest.mark.parametrize("mode", ["imports", "django"])
def test_config_only_enabling(
    mode: str, redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(redis_url, emulator, mode=mode, pool="threads")
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    emulator.publish("job.completed", job_id="job-0", queue_name="emails", duration_ms=0)
    emulator.publish("job.failed", job_id="job-1", queue_name="emails", error="boom")
    records = worker.wait_records(2)
    by_task = {r["task"]: r["payload"] for r in records}
    assert by_task["record"]["data"]["job_id"] == "job-0"
    # Declared by task options, with payload="data".
    assert by_task["record_failed"]["job_id"] == "job-1"
    assert by_task["record_failed"]["error"] == "boom"
    assert emulator.connections_accepted("ws") == 1


def test_install_and_imports_together_start_one_listener(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(
        redis_url,
        emulator,
        mode="install",
        imports=["spooled_integrations.celery"],
        spooled_enabled=True,
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    worker.wait_ready()
    emulator.publish("job.completed", job_id="job-0", queue_name="emails", duration_ms=0)
    worker.wait_records(1)
    time.sleep(0.3)
    assert len(worker.records()) == 1
    assert emulator.connections_accepted("ws") == 1
    assert worker.output().count("Spooled runtime started") == 1


def test_nodes_can_opt_out(
    redis_url: str,
    emulator: Emulator,
    start_worker: Callable[..., Any],
    inspect_status: Callable[..., dict[str, Any]],
) -> None:
    by_option = start_worker(redis_url, emulator, args=("--no-spooled",))
    by_env = start_worker(redis_url, emulator, mode="imports", env={"SPOOLED_ENABLED": "0"})
    by_module_cli = start_worker(
        redis_url,
        emulator,
        mode="imports",
        command=(sys.executable, "-m", "spooled_integrations.celery"),
        args=("--no-spooled",),
    )
    for worker in (by_option, by_env, by_module_cli):
        worker.wait_ready()
    assert inspect_status(redis_url, by_option.node)["enabled_by"] == "--no-spooled"
    assert inspect_status(redis_url, by_env.node)["enabled_by"] == "SPOOLED_ENABLED"
    assert inspect_status(redis_url, by_module_cli.node)["enabled"] is False
    assert emulator.connections_accepted("ws") == 0


def inspect_cli(worker: Any, command: list[str], what: str) -> dict[str, Any]:
    """``<command> -A spooled_testapp inspect <what>`` for one worker node: its reply."""
    arguments = ["-A", "spooled_testapp", "inspect", what, "-d", worker.node, "--json", "-t", "5"]
    result = subprocess.run(
        [*command, *arguments],
        env=worker.env,
        cwd=worker.log.parent,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    replies = json.loads(result.stdout.decode().strip().splitlines()[-1])
    reply: dict[str, Any] = replies[worker.node]
    return reply


def test_inspect_spooled_status_from_the_command_line(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    installed = start_worker(redis_url, emulator, mode="install")
    config_only = start_worker(redis_url, emulator, mode="imports")
    assert emulator.wait_for_connections(2, transport="ws", timeout=20)
    installed.wait_ready()
    config_only.wait_ready()
    assert emulator.login_count == 1  # two nodes on one host share the JWT
    for worker, command in (
        (installed, INSTALLED_CLI),
        (config_only, MODULE_CLI),
    ):
        status = inspect_cli(worker, command, "spooled_status")
        assert status["enabled"] is True
        assert status["connected"] is True
        assert status["transport"] == "ws"


def test_bad_config_stops_the_worker_at_boot(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(
        redis_url,
        emulator,
        mode="django",
        spooled_transport="tcp",
        spooled_subscriptions=[
            {"name": "x", "events": ["job.complete"], "task": "spooled_testapp.record"}
        ],
    )
    code = worker.proc.wait(30)
    output = worker.output()
    assert code != 0
    assert "ImproperlyConfigured" in output
    assert "spooled_transport (CELERY_SPOOLED_TRANSPORT): must be 'ws' or 'sse'" in output
    assert "subscriptions[0] (name='x').events[0]: unknown event 'job.complete'" in output
    assert " ready." not in output
    assert emulator.connections_accepted("ws") == 0


def test_inspect_stats_shows_the_listener_health_even_when_refused(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    """Config-only enabling registers no command, but every worker answers ``inspect
    stats``; a refused key leaves the worker up, its listener visibly ``refused``."""
    emulator.revoke_api_key()
    worker = start_worker(redis_url, emulator, mode="imports")
    worker.wait_ready()

    def stats() -> dict[str, Any]:
        spooled: dict[str, Any] = inspect_cli(worker, [CELERY_BIN], "stats")["spooled"]
        return spooled

    deadline = time.monotonic() + 20
    while (status := stats())["health"] != "refused" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status["health"] == "refused", status
    assert status["refused_until"] and "HTTP 401" in status["last_error"]
    assert emulator.api_key not in json.dumps(status)
    assert emulator.login_count == 1  # and no second login while refused
    log = worker.log.read_text() if worker.log.exists() else ""
    assert log.count("Check SPOOLED_API_KEY") == 1, log
