"""The one-word verdict an operator or a probe reads: connected, degraded, refused, …"""

from __future__ import annotations

from typing import Any

from spooled_integrations.runtime import RecordingPublisher
from spooled_integrations.testing import Emulator

from ..conftest import wait_until


def test_a_connected_runtime_is_healthy_and_a_stopped_one_says_so(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    runtime = make_runtime(spooled_emulator)
    assert runtime.health == "stopped"
    runtime.start()
    assert wait_until(lambda: runtime.health == "connected")
    status = runtime.status()
    assert status["health"] == "connected" and status["degraded_by"] == []
    assert status["refused_until"] is None
    runtime.stop(timeout=2)
    assert runtime.health == "stopped"


def test_connected_without_its_coordination_redis_is_degraded(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    once = [{"events": ["job.completed"], "queue": "q", "task": "t", "delivery": "once"}]
    runtime = make_runtime(
        spooled_emulator,
        RecordingPublisher(),
        subscriptions=once,
        coordination={"strategy": "claim", "redis_url": "redis://127.0.0.1:1/0"},
    )
    runtime.start()
    assert wait_until(lambda: runtime.status()["connected"])
    spooled_emulator.publish("job.completed", job_id="j-1", queue_name="q")  # needs Redis
    assert wait_until(lambda: runtime.health == "degraded", timeout=15)
    (reason,) = runtime.status()["degraded_by"]
    assert "coordination Redis is unreachable" in reason


def test_failing_catch_up_sweeps_make_a_connected_runtime_degraded(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    runtime = make_runtime(
        spooled_emulator,
        RecordingPublisher(),
        subscriptions=[{"events": ["job.completed"], "queue": "q", "task": "t"}],
        catch_up_poll="always",
        catch_up_interval=0.2,
    )
    spooled_emulator.reject_rest(1000, 500)
    runtime.start()
    assert wait_until(lambda: runtime.health == "degraded", timeout=15)
    (reason,) = runtime.status()["degraded_by"]
    assert reason.startswith("catch-up sweeps fail")
