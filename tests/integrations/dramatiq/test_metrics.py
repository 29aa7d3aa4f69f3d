"""Spooled metrics in Dramatiq's own Prometheus exposition: a real ``dramatiq`` run, scraped.

The run has the ``Prometheus`` middleware (port and directory of the test's own); the
listener, in its fork process or in every worker process, writes its metrics where
that middleware serves from.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spooled_integrations.testing import Emulator

from .conftest import DramatiqRun

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
BOOT_TIMEOUT = 30.0
EVENTS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, found


def scrape_until(
    port: int, condition: Callable[[Samples], bool], run: DramatiqRun, timeout: float = 30
) -> Samples:
    deadline = time.monotonic() + timeout
    values: Samples = {}
    while time.monotonic() < deadline:
        try:
            _, values = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            values = {}
        try:
            if values and condition(values):
                return values
        except KeyError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the scrape never showed what was expected: {values}\n{run.log_text()}")


def without_pid(values: Samples, name: str, **labels: str) -> list[float]:
    """The values of ``name`` with ``labels``, whatever their ``pid`` label."""
    wanted = set(labels.items())
    return [
        value
        for (sample, found), value in values.items()
        if sample == name and wanted == {(k, v) for k, v in found if k != "pid"}
    ]


@pytest.fixture
def metrics_env(
    emulator: Emulator, redis_url: str, unique_name: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    import redis

    db = tmp_path / "prometheus"
    db.mkdir()
    yield {
        "SPOOLED_TEST_BROKER_URL": redis_url,
        "SPOOLED_TEST_QUEUE": unique_name,
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "dramatiq_prom_db": str(db),
        "dramatiq_prom_port": str(free_port()),
        "dramatiq_prom_host": "127.0.0.1",
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"dramatiq:{unique_name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def publish(emulator: Emulator) -> None:
    for i in range(EVENTS):
        emulator.publish("job.failed", job_id=f"job-{i}", queue_name="emails", error="boom")
    emulator.publish("job.started", job_id="other", queue_name="emails")  # not routed


def test_the_fork_listener_appears_in_the_prometheus_middleware_exposition(
    emulator: Emulator, metrics_env: dict[str, str], run_dramatiq: Callable[..., DramatiqRun]
) -> None:
    run = run_dramatiq("metrics_app", metrics_env)
    port = int(metrics_env["dramatiq_prom_port"])
    assert emulator.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    publish(emulator)
    assert len(run.wait_records(EVENTS, timeout=30)) == EVENTS, run.log_text()

    values = scrape_until(
        port, lambda v: v[("spooled_events_dispatched_total", ())] == EVENTS + 1, run
    )
    assert values[("spooled_events_published_total", ())] == EVENTS
    assert values[("spooled_health", (("health", "connected"),))] == 1
    assert values[("spooled_health", (("health", "stopped"),))] == 0
    assert values[("spooled_connection_state", (("state", "connected"),))] == 1
    assert values[("spooled_event_age_seconds_count", ())] == EVENTS + 1
    assert ("spooled_lease_leader", ()) not in values  # no lease: no leadership to show
    # Dramatiq's own metrics in the same exposition: the actor ran in the workers.
    ran = without_pid(
        values,
        "dramatiq_messages_total",
        queue_name=metrics_env["SPOOLED_TEST_QUEUE"],
        actor_name="record_failure",
    )
    assert ran == [EVENTS], values
    text, _ = scrape(port)
    assert emulator.api_key not in text

    emulator.drop_connections()
    scrape_until(
        port,
        lambda v: (
            v[("spooled_reconnects_total", ())] == 1
            and v[("spooled_health", (("health", "connected"),))] == 1
        ),
        run,
    )


def test_every_process_listeners_each_show_their_health_and_sum_their_counts(
    emulator: Emulator, metrics_env: dict[str, str], run_dramatiq: Callable[..., DramatiqRun]
) -> None:
    env = {**metrics_env, "SPOOLED_DRAMATIQ_MODE": "every_process"}
    run = run_dramatiq("metrics_app", env)
    port = int(env["dramatiq_prom_port"])
    assert emulator.wait_for_connections(2, timeout=BOOT_TIMEOUT), run.log_text()
    publish(emulator)
    run.wait_records(2 * EVENTS, timeout=30)

    values = scrape_until(
        port, lambda v: v[("spooled_events_dispatched_total", ())] == 2 * (EVENTS + 1), run
    )
    healthy = without_pid(values, "spooled_health", health="connected")
    assert healthy == [1.0, 1.0], values  # one series per listening process
    pids = {dict(labels).get("pid") for (name, labels) in values if name == "spooled_health"}
    assert len(pids) == 2, values


def test_a_worker_that_takes_over_a_killed_fork_keeps_the_metrics_going(
    emulator: Emulator, metrics_env: dict[str, str], run_dramatiq: Callable[..., DramatiqRun]
) -> None:
    run = run_dramatiq("metrics_app", metrics_env)
    port = int(metrics_env["dramatiq_prom_port"])
    assert emulator.wait_for_connections(1, timeout=BOOT_TIMEOUT), run.log_text()
    publish(emulator)
    scrape_until(port, lambda v: v[("spooled_events_dispatched_total", ())] == EVENTS + 1, run)
    found = re.search(r"Spooled listener started in pid (\d+) \(mode=fork", run.log_text())
    assert found, run.log_text()
    os.kill(int(found.group(1)), signal.SIGKILL)
    deadline = time.monotonic() + 15
    while emulator.connections_accepted("ws") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.connections_accepted("ws") == 2, run.log_text()

    published_at = time.time()
    publish(emulator)
    # The dead fork's counts stay in the sums; the new listener's gauges replace its own.
    values = scrape_until(
        port,
        lambda v: (
            v[("spooled_events_dispatched_total", ())] == 2 * (EVENTS + 1)
            and v[("spooled_health", (("health", "connected"),))] == 1
        ),
        run,
    )
    assert values[("spooled_events_published_total", ())] == 2 * EVENTS
    assert values[("spooled_running", ())] == 1
    # Written by the new listener: the dead fork's value was older.
    assert values[("spooled_last_event_timestamp_seconds", ())] >= published_at
