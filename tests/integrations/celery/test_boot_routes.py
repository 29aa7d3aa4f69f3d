"""A real worker's boot log names the URL and every route, and ``check --celery`` run
against the same app and environment prints the same routes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

WORKER_APP = Path(__file__).parent / "worker_app"


@pytest.mark.slow
def test_worker_boot_log_lists_the_url_and_every_route(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(redis_url, emulator, mode="imports", pool="threads")
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    url = emulator.base_url.replace("http://", "ws://") + "/api/v1/ws"
    log = worker.output()
    assert f"Spooled listener enabled (spooled_enabled): ws {url}, 2 subscription(s)" in log
    assert f"Spooled runtime started: ws {url}, 2 subscription(s):" in log
    routes = [
        line.split("Spooled route ", 1)[1] for line in log.splitlines() if "Spooled route" in line
    ]
    assert routes == [
        "[0] emails-done: job.completed queue=emails -> task:spooled_testapp.record "
        "(every_node, event)",
        "[1] task:spooled_testapp.record_failed: job.failed queue=emails "
        "-> task:spooled_testapp.record_failed (every_node, data)",
    ]
    assert emulator.api_key not in log

    # check --celery, with the worker's environment, shows the same two rules
    result = subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "check", "--celery", "spooled_testapp"],
        cwd=WORKER_APP,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[0] emails-done" in result.stdout
    assert "[1] task:spooled_testapp.record_failed" in result.stdout
    assert f"listens to: ws {url}" in result.stdout
