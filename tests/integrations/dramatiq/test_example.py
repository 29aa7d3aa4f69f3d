"""``examples/dramatiq_app`` as its README runs it: ``dramatiq app -p 2`` against Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from spooled_integrations.testing import Emulator

from .conftest import REPO, DramatiqRun

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EXAMPLE = REPO / "examples" / "dramatiq_app"


@pytest.fixture
def example_queue(redis_url: str, unique_name: str) -> Iterator[str]:
    import redis

    yield unique_name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"dramatiq:{unique_name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def wait_for_text(run: DramatiqRun, *needles: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = run.log_text()
        if all(needle in log for needle in needles) or run.process.poll() is not None:
            return log
        time.sleep(0.05)
    return run.log_text()


def test_example_app_routes_both_ways_and_stops_cleanly(
    run_dramatiq: Callable[..., DramatiqRun], redis_url: str, example_queue: str
) -> None:
    with Emulator(ping_interval=1.0) as emu:
        env = {
            "SPOOLED_BASE_URL": emu.base_url,
            "SPOOLED_API_KEY": emu.api_key,
            "REDIS_URL": redis_url,
            "EXAMPLE_QUEUE": example_queue,
        }
        run = run_dramatiq("app", env, cwd=EXAMPLE)
        assert emu.wait_for_connections(1, timeout=30), run.log_text()
        emu.publish("job.failed", job_id="j-7", queue_name="reports", error="disk full")
        emu.publish("job.completed", job_id="j-8", queue_name="emails")
        emu.publish("job.completed", job_id="j-9", queue_name="reports")  # no rule for it
        log = wait_for_text(
            run,
            "Spooled job j-7 failed on queue reports: disk full",
            "Spooled email job j-8 completed",
            timeout=30,
        )
        assert "Spooled job j-7 failed on queue reports: disk full" in log, log
        assert "Spooled email job j-8 completed" in log, log
        code, _ = run.terminate(15)
        log = run.log_text()
        assert code == 0, log
        assert "j-9" not in log
        assert "Traceback" not in log
        assert emu.connections_accepted("ws") == 1
