"""``spooled_metrics_port``: a real ``celery worker`` serves Prometheus metrics, scraped."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spooled_integrations.testing import Emulator

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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


def scrape_until(port: int, condition: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    deadline = time.monotonic() + timeout
    values: Samples = {}
    while time.monotonic() < deadline:
        try:
            _, values = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            values = {}
        if values and condition(values):
            return values
        time.sleep(0.2)
    pytest.fail(f"the scrape never showed what was expected: {values}")


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_the_worker_main_process_serves_dispatched_counts_and_health(
    pool: str, redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    port = free_port()
    worker = start_worker(redis_url, emulator, pool=pool, spooled_metrics_port=port)
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    for i in range(3):
        emulator.publish("job.completed", job_id=f"job-{i}", queue_name="emails", duration_ms=i)
    emulator.publish("job.started", job_id="other", queue_name="emails")
    worker.wait_records(3)

    values = scrape_until(port, lambda v: v[("spooled_events_dispatched_total", ())] == 4)
    assert values[("spooled_events_published_total", ())] == 3
    assert values[("spooled_health", (("health", "connected"),))] == 1
    assert values[("spooled_connection_state", (("state", "connected"),))] == 1
    assert values[("spooled_event_age_seconds_count", ())] == 4
    assert values[("spooled_queue_depth", ())] == 0
    text, _ = scrape(port)
    assert emulator.api_key not in text
    assert f"Spooled metrics at http://0.0.0.0:{port}/metrics" in worker.output()

    # A dropped connection: the reconnect is counted and health is connected again.
    emulator.drop_connections()
    scrape_until(
        port,
        lambda v: (
            v[("spooled_reconnects_total", ())] == 1
            and v[("spooled_health", (("health", "connected"),))] == 1
        ),
    )

    worker.terminate()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the endpoint went with the worker


def test_a_taken_port_costs_the_endpoint_not_the_listener(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # as the endpoint binds
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(redis_url, emulator, spooled_metrics_port=port)
        assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
        emulator.publish("job.completed", job_id="job-0", queue_name="emails", duration_ms=0)
        worker.wait_records(1)
        assert f"Spooled metrics endpoint not started on port {port}" in worker.output()


def test_a_bad_port_stops_the_worker_at_boot(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(redis_url, emulator, spooled_metrics_port="http")
    assert worker.proc.wait(30) != 0
    assert "spooled_metrics_port: expected a port from 1 to 65535, got 'http'" in worker.output()


def _listening_inode(port: int) -> str:
    """The inode of the socket listening on ``port`` (``/proc/net/tcp``, state 0A)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _sockets(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[8:-1])
    return found


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_prefork_children_forked_later_do_not_hold_the_endpoint_socket(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    port = free_port()
    worker = start_worker(
        redis_url,
        emulator,
        pool="prefork",
        concurrency=2,
        args=("--max-tasks-per-child", "1"),
        spooled_metrics_port=port,
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    for i in range(3):
        emulator.publish("job.completed", job_id=f"job-{i}", queue_name="emails", duration_ms=i)
    worker.wait_records(3)  # each child ran one task and was replaced by a fresh fork
    scrape_until(port, lambda v: v[("spooled_events_published_total", ())] == 3)
    inode = _listening_inode(port)
    assert inode in _sockets(worker.proc.pid)
    children = _children(worker.proc.pid)
    assert children, "the prefork pool has no children"
    held = [child for child in children if inode in _sockets(child)]
    assert not held, f"children {held} hold the metrics endpoint's socket"
