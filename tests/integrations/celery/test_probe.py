"""A real ``celery worker`` writes ``SPOOLED_HEALTH_FILE``; ``spooled-integrations health``
answers for it as a Kubernetes exec probe would: ready while connected, not ready but
alive once the key is revoked, neither once the worker is killed (a stale file)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

from ...conftest import run_health, wait_health

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_probe_follows_a_prefork_worker(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "spooled-health.json"
    worker = start_worker(
        redis_url,
        emulator,
        pool="prefork",
        env={"SPOOLED_HEALTH_FILE": str(path), "SPOOLED_RECONNECT_DELAY": "0.1"},
    )
    assert emulator.wait_for_connections(1, timeout=20), worker.output()
    assert wait_health(path, "connected"), worker.output()
    ready = run_health(path)
    assert ready.returncode == 0, ready.stdout + worker.output()
    assert json.loads(path.read_text())["pid"] == worker.proc.pid  # the main process
    assert emulator.api_key not in path.read_text()

    emulator.revoke_api_key()
    assert wait_health(path, "refused"), worker.output()
    assert run_health(path).returncode == 1  # readiness: not listening
    assert run_health(path, "--liveness").returncode == 0  # liveness: a restart cannot help

    os.killpg(worker.proc.pid, signal.SIGKILL)  # no shutdown runs: nothing removes the file
    worker.proc.wait(10)
    assert path.exists()
    time.sleep(2.5)
    dead = run_health(path, "--liveness", "--max-age", "2")
    assert dead.returncode == 1
    assert dead.stdout.startswith(f"unhealthy: stale: pid {worker.proc.pid} last wrote it")


def test_a_warm_shutdown_removes_the_file(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "spooled-health.json"
    worker = start_worker(redis_url, emulator, pool="threads", spooled_health_file=str(path))
    assert wait_health(path, "connected"), worker.output()
    assert run_health(path).returncode == 0
    worker.terminate(signum=signal.SIGTERM)
    assert worker.proc.returncode == 0, worker.output()
    assert not path.exists()
    assert run_health(path, "--liveness").returncode == 1
