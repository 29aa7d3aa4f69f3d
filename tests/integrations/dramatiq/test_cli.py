"""The real ``dramatiq`` command (``-p 2``) against Redis and RabbitMQ, the emulator as Spooled.

Each run gets unique queue names and is killed (whole process group) at teardown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spooled_integrations.dramatiq.status_file import StatusFile
from spooled_integrations.testing import Emulator

from .conftest import DramatiqRun

pytestmark = pytest.mark.slow

RunDramatiq = Callable[..., DramatiqRun]
EVENTS = 25
BOOT_TIMEOUT = 30.0
SHUTDOWN_LIMIT = 15.0  # dramatiq's own shutdown (consumers, -t 2 threads) plus ours


def pika_url(amqp_url: str) -> str:
    """kombu reads ``...//`` as vhost ``/``; pika needs it spelled ``/%2F``."""
    return amqp_url[:-2] + "/%2F" if amqp_url.endswith("//") else amqp_url


@pytest.fixture
def rabbitmq_broker(rabbitmq_url: str, unique_name: str) -> Iterator[dict[str, str]]:
    import pika

    url = pika_url(rabbitmq_url)
    yield {
        "SPOOLED_TEST_BROKER": "rabbitmq",
        "SPOOLED_TEST_BROKER_URL": url,
        "SPOOLED_TEST_QUEUE": unique_name,
    }
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for suffix in ("", ".DQ", ".XQ"):
        channel.queue_delete(unique_name + suffix)
    connection.close()


def spooled_env(emu: Emulator, **extra: str) -> dict[str, str]:
    return {"SPOOLED_BASE_URL": emu.base_url, "SPOOLED_API_KEY": emu.api_key, **extra}


def publish_failures(emu: Emulator, count: int) -> list[str]:
    ids = [f"job-{i}" for i in range(count)]
    for i, job_id in enumerate(ids):
        emu.publish(
            "job.failed", job_id=job_id, queue_name="emails", error=f"boom {i}", retry_count=0
        )
        emu.publish("job.completed", job_id=f"ok-{i}", queue_name="emails")  # not routed
    return ids


def assert_clean_stop(run: DramatiqRun) -> float:
    code, elapsed = run.terminate(SHUTDOWN_LIMIT)
    log = run.log_text()
    assert code == 0, f"exit code {code} after {elapsed:.1f}s\n{log}"
    deadline = time.monotonic() + 3
    while run.group_alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # the last daemonic fork may need a moment to be reaped
    assert not run.group_alive(), f"processes left behind\n{log}"
    assert "Traceback" not in log, log
    return elapsed


def check_fork_mode(
    emu: Emulator, run_dramatiq: RunDramatiq, broker_env: dict[str, str], *args: str
) -> None:
    run = run_dramatiq("cli_app", {**broker_env, **spooled_env(emu)}, *args)
    assert emu.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    time.sleep(1.0)  # every worker has booted before the fork starts; give stragglers time
    assert emu.connections_accepted("ws") == 1, run.log_text()
    assert emu.connections_current("ws") == 1

    expected = publish_failures(emu, EVENTS)
    records = run.wait_records(EVENTS, timeout=30)
    time.sleep(1.0)  # duplicates would arrive now
    records = run.records()
    assert len(records) == EVENTS, f"{len(records)} runs for {EVENTS} events\n{run.log_text()}"
    events = [r["event"] for r in records]
    assert sorted(e["data"]["job_id"] for e in events) == sorted(expected)
    assert {e["type"] for e in events} == {"job.failed"}
    by_job = {e["data"]["job_id"]: e["data"]["error"] for e in events}
    assert all(by_job[f"job-{i}"] == f"boom {i}" for i in range(EVENTS))
    assert "Spooled listener started" in run.log_text()
    # A worker process sees the fork's listener through the status file it writes.
    seen = records[-1]["spooled"]
    assert seen["listening_here"] is False and seen["connected"] is True, seen
    assert seen["health"] == "connected" and seen["stale"] is False
    assert seen["listener_pid"] != records[-1]["pid"]
    assert emu.api_key not in json.dumps(seen)
    status_file = StatusFile(run.pid).path
    assert status_file.exists()

    emu.stall(True)
    time.sleep(0.5)
    elapsed = assert_clean_stop(run)
    assert elapsed < SHUTDOWN_LIMIT
    log = run.log_text()
    assert "Spooled listener: SIGTERM received, stopping" in log
    assert "Spooled runtime stopped" in log
    assert emu.connections_accepted("ws") == 1
    assert not status_file.exists()  # a clean stop leaves no status behind


@pytest.mark.redis
def test_redis_fork_mode_one_listener_exact_delivery_clean_sigterm(
    emulator: Emulator, run_dramatiq: RunDramatiq, redis_broker: dict[str, str]
) -> None:
    check_fork_mode(emulator, run_dramatiq, redis_broker)


@pytest.mark.redis
def test_redis_fork_mode_under_spawn_reads_the_same_command_line(
    emulator: Emulator, run_dramatiq: RunDramatiq, redis_broker: dict[str, str]
) -> None:
    # Spawned workers and forks import nothing from the main process: each finds the
    # run's broker and modules in the sys.argv that multiprocessing gives it.
    check_fork_mode(emulator, run_dramatiq, redis_broker, "--use-spawn")


@pytest.mark.rabbitmq
def test_rabbitmq_fork_mode_one_listener_exact_delivery_clean_sigterm(
    emulator: Emulator, run_dramatiq: RunDramatiq, rabbitmq_broker: dict[str, str]
) -> None:
    check_fork_mode(emulator, run_dramatiq, rabbitmq_broker)


@pytest.mark.redis
def test_redis_every_process_mode_listens_in_each_worker_and_stops_mid_backoff(
    emulator: Emulator, run_dramatiq: RunDramatiq, redis_broker: dict[str, str]
) -> None:
    """Without coordination every listening process dispatches every event: 2 x N runs."""
    env = {**redis_broker, **spooled_env(emulator, SPOOLED_DRAMATIQ_MODE="every_process")}
    run = run_dramatiq("cli_app", env)
    assert emulator.wait_for_connections(2, timeout=BOOT_TIMEOUT), run.log_text()
    time.sleep(1.0)
    assert emulator.connections_accepted("ws") == 2
    assert "spooled_listener' is ready" not in run.log_text()  # no Spooled fork process

    publish_failures(emulator, 5)
    records = run.wait_records(10, timeout=30)
    time.sleep(0.5)
    assert len(run.records()) == 10, run.log_text()
    assert sorted(r["event"]["data"]["job_id"] for r in records) == sorted(
        [f"job-{i}" for i in range(5)] * 2
    )

    emulator.stop()  # both listeners lose the server and back off
    time.sleep(1.5)
    assert_clean_stop(run)
    assert run.log_text().count("Spooled runtime stopped") == 2


def test_the_fork_stops_when_the_dramatiq_main_process_dies(
    emulator: Emulator, run_dramatiq: RunDramatiq, unique_name: str
) -> None:
    """SIGKILL of ``dramatiq`` itself: no orphaned listener keeps dispatching."""
    env = {
        "SPOOLED_TEST_BROKER": "stub",
        "SPOOLED_TEST_QUEUE": unique_name,
        **spooled_env(emulator),
    }
    run = run_dramatiq("cli_app", env)
    assert emulator.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    run.process.kill()
    run.process.wait(5)
    deadline = time.monotonic() + 5
    while emulator.connections_current("ws") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.connections_current("ws") == 0


def test_a_bad_subscription_stops_dramatiq_at_boot(
    emulator: Emulator, run_dramatiq: RunDramatiq, tmp_path: Path, unique_name: str
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[subscription]]\nname = "typo"\nevents = ["job.failed"]\nactor = "record_failur"\n'
    )
    env = {
        "SPOOLED_TEST_BROKER": "stub",
        "SPOOLED_TEST_QUEUE": unique_name,
        **spooled_env(emulator, SPOOLED_SUBSCRIPTIONS=str(rules)),
    }
    run = run_dramatiq("cli_app", env)
    try:
        code = run.process.wait(BOOT_TIMEOUT)
    except Exception:
        pytest.fail(f"dramatiq kept running with a bad subscription\n{run.log_text()}")
    log = run.log_text()
    assert code != 0
    assert "Spooled listener refused to boot" in log
    assert "no actor 'record_failur'" in log and "did you mean 'record_failure'?" in log
    assert emulator.connections_accepted("ws") == 0


@pytest.mark.redis
def test_a_killed_listener_fork_is_replaced_by_one_worker(
    emulator: Emulator, run_dramatiq: RunDramatiq, redis_broker: dict[str, str]
) -> None:
    """The dramatiq main process ignores a dead fork; a worker takes the listener over."""
    import os
    import re
    import signal

    run = run_dramatiq("cli_app", {**redis_broker, **spooled_env(emulator)})
    assert emulator.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    found = re.search(r"Spooled listener started in pid (\d+) \(mode=fork", run.log_text())
    assert found, run.log_text()
    os.kill(int(found.group(1)), signal.SIGKILL)

    deadline = time.monotonic() + 10
    while emulator.connections_accepted("ws") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)  # the other worker's checks: it must not start a second listener
    log = run.log_text()
    assert emulator.connections_accepted("ws") == 2, log
    assert emulator.connections_current("ws") == 1, log
    assert log.count("takes the listener over") == 1, log
    assert emulator.login_count == 1, log  # the takeover reused the node's JWT

    expected = publish_failures(emulator, EVENTS)
    run.wait_records(EVENTS, timeout=30)
    time.sleep(1.0)
    records = run.records()
    assert sorted(r["event"]["data"]["job_id"] for r in records) == sorted(expected), log
    assert_clean_stop(run)
    assert emulator.connections_current("ws") == 0


@pytest.mark.redis
def test_django_dramatiq_reads_spooled_settings_from_django(
    emulator: Emulator, run_dramatiq: RunDramatiq, redis_broker: dict[str, str]
) -> None:
    """django-dramatiq builds ``SpooledMiddleware`` from its dotted path with no
    arguments; the ``SPOOLED_*`` settings of settings.py (subscriptions as JSON text)
    must still reach it."""
    pytest.importorskip("django_dramatiq")
    env = {
        "DJANGO_TEST_BROKER_URL": redis_broker["SPOOLED_TEST_BROKER_URL"],
        "DJANGO_TEST_BASE_URL": emulator.base_url,
        "DJANGO_TEST_API_KEY": emulator.api_key,
        "SPOOLED_TEST_QUEUE": redis_broker["SPOOLED_TEST_QUEUE"],
    }
    run = run_dramatiq("django_tasks", env)
    assert emulator.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    emulator.publish("job.completed", job_id="dj-1", queue_name="emails", duration_ms=5)
    records = run.wait_records(1, timeout=30)
    assert [r["event"]["data"]["job_id"] for r in records] == ["dj-1"], run.log_text()
    assert_clean_stop(run)
