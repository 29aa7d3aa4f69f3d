"""A real ``dramatiq`` run (fork mode, Redis broker) writes ``SPOOLED_HEALTH_FILE`` from its
listener process; ``spooled-integrations health`` answers for it as a Kubernetes exec
probe would: ready while connected, alive but not ready once the key is revoked, and
neither after the run is killed (a stale file)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spooled_integrations.testing import Emulator

from ...conftest import run_health, wait_health
from .conftest import DramatiqRun

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_probe_follows_the_fork_mode_listener(
    emulator: Emulator,
    run_dramatiq: Callable[..., DramatiqRun],
    redis_broker: dict[str, str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "spooled-health.json"
    env = {
        **redis_broker,
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "SPOOLED_RECONNECT_DELAY": "0.1",
        "SPOOLED_HEALTH_FILE": str(path),
    }
    run = run_dramatiq("cli_app", env)
    assert emulator.wait_for_connections(1, timeout=30), run.log_text()
    assert wait_health(path, "connected"), run.log_text()
    ready = run_health(path)
    assert ready.returncode == 0, ready.stdout + run.log_text()
    writer = json.loads(path.read_text())["pid"]
    assert writer != run.pid  # the listener's fork, not the main process
    assert emulator.api_key not in path.read_text()

    emulator.revoke_api_key()
    assert wait_health(path, "refused"), run.log_text()
    assert run_health(path).returncode == 1
    assert run_health(path, "--liveness").returncode == 0

    os.killpg(run.pid, signal.SIGKILL)  # the whole run: nobody removes the file
    run.process.wait(10)
    assert path.exists()
    time.sleep(2.5)
    dead = run_health(path, "--liveness", "--max-age", "2")
    assert dead.returncode == 1
    assert dead.stdout.startswith(f"unhealthy: stale: pid {writer} last wrote it")


def test_probe_follows_a_listener_taken_over(
    emulator: Emulator,
    run_dramatiq: Callable[..., DramatiqRun],
    redis_broker: dict[str, str],
    tmp_path: Path,
) -> None:
    """The fork dies; a worker process takes the listener over and writes the same file."""
    path = tmp_path / "spooled-health.json"
    env = {
        **redis_broker,
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "SPOOLED_HEALTH_FILE": str(path),
    }
    run = run_dramatiq("cli_app", env)
    assert wait_health(path, "connected"), run.log_text()
    fork = json.loads(path.read_text())["pid"]
    os.kill(fork, signal.SIGKILL)  # the OOM killer, say

    def taken_over() -> bool:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return record["pid"] not in (fork, run.pid) and record["health"] == "connected"

    deadline = time.monotonic() + 30
    while not taken_over() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert taken_over(), run.log_text()
    assert "takes the listener over" in run.log_text()
    assert run_health(path).returncode == 0
