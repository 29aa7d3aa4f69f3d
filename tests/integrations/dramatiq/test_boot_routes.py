"""``dramatiq app`` (examples/dramatiq_app, fork mode): the listener's boot log names the
URL and every route, and ``check --dramatiq app`` in the same environment agrees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from spooled_integrations.testing import Emulator

from .conftest import REPO, DramatiqRun

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EXAMPLE = REPO / "examples" / "dramatiq_app"


def _wait_for(run: DramatiqRun, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = run.log_text()
        if needle in log or run.process.poll() is not None:
            return log
        time.sleep(0.05)
    return run.log_text()


def test_fork_listener_logs_the_url_and_every_route(
    run_dramatiq: Callable[..., DramatiqRun], redis_url: str, unique_name: str
) -> None:
    with Emulator() as emu:
        env = {
            "SPOOLED_BASE_URL": emu.base_url,
            "SPOOLED_API_KEY": emu.api_key,
            "REDIS_URL": redis_url,
            "EXAMPLE_QUEUE": unique_name,
        }
        run = run_dramatiq("app", env, cwd=EXAMPLE)
        log = _wait_for(run, "Spooled listener started in pid")
        url = emu.base_url.replace("http://", "ws://") + "/api/v1/ws"
        assert f"(mode=fork): ws {url}, 2 subscription(s), actors: on_email_sent, " in log, log
        assert f"Spooled runtime started: ws {url}, 2 subscription(s):" in log
        routes = [
            line.split("Spooled route ", 1)[1]
            for line in log.splitlines()
            if "Spooled route " in line
        ]
        assert routes == [
            "[0] emails-done: job.completed queue=emails max_age=300s "
            "-> actor:on_email_sent (once, data)",
            "[1] actor:on_job_failed: job.failed -> actor:on_job_failed (once, event)",
        ], log
        assert emu.api_key not in log

        result = subprocess.run(
            [sys.executable, "-m", "spooled_integrations", "check", "--dramatiq", "app"],
            cwd=EXAMPLE,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "[0] emails-done" in result.stdout
        assert "[1] actor:on_job_failed" in result.stdout
        assert f"listens to: ws {url}" in result.stdout
        code, _ = run.terminate(15)
        assert code == 0, run.log_text()
