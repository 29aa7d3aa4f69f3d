"""A real ``celery worker`` writes ``SPOOLED_HEALTH_FILE``; ``spooled-integrations health``
answers for it as a Kubernetes exec probe would: ready while connected, not ready but
alive once the key is revoked, neither once the worker is killed (a stale file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def health(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "health", "--file", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def wait_health(path: Path, wanted: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text())["health"] == wanted:
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return False


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
    ready = health(path)
    assert ready.returncode == 0, ready.stdout + worker.output()
    assert json.loads(path.read_text())["pid"] == worker.proc.pid  # the main process
    assert emulator.api_key not in path.read_text()

    emulator.revoke_api_key()
    assert wait_health(path, "refused"), worker.output()
    assert health(path).returncode == 1  # readiness: not listening
    assert health(path, "--liveness").returncode == 0  # liveness: a restart cannot help

    os.killpg(worker.proc.pid, signal.SIGKILL)  # no shutdown runs: nothing removes the file
    worker.proc.wait(10)
    assert path.exists()
    time.sleep(2.5)
    dead = health(path, "--liveness", "--max-age", "2")
    assert dead.returncode == 1
    assert dead.stdout.startswith(f"unhealthy: stale: pid {worker.proc.pid} last wrote it")


def test_a_warm_shutdown_removes_the_file(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "spooled-health.json"
    worker = start_worker(redis_url, emulator, pool="threads", spooled_health_file=str(path))
    assert wait_health(path, "connected"), worker.output()
    assert health(path).returncode == 0
    worker.terminate(signum=signal.SIGTERM)
    assert worker.proc.returncode == 0, worker.output()
    assert not path.exists()
    assert health(path, "--liveness").returncode == 1
