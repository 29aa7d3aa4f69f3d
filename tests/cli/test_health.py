"""``spooled-integrations health`` reading the ``health_file`` a real runtime writes.

The runtime runs in this process against the emulator; the command runs as a
subprocess, as a Kubernetes exec probe would run it. Worker processes writing the
file are tested in tests/integrations/{celery,dramatiq}/test_probe.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spooled_integrations import ConnectionOptions, RuntimeConfig, SpooledRuntime
from spooled_integrations.errors import ConfigurationError
from spooled_integrations.testing import Emulator

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2, "connect_timeout": 2.0}


def health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "health", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**environ, **env},
        check=False,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def written_health(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["health"])
    except (OSError, ValueError):
        return None


def test_connected_refused_stopped(spooled_emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "probe" / "health.json"  # the directory is created
    connection = ConnectionOptions(
        base_url=spooled_emulator.base_url, api_key=spooled_emulator.api_key, **FAST
    )
    runtime = SpooledRuntime(RuntimeConfig(connection=connection, health_file=str(path)))
    runtime.start()
    try:
        assert wait_until(lambda: written_health(path) == "connected"), runtime.status()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        ready = health("--file", str(path))
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert ready.stdout.startswith("healthy: connected (pid ")
        by_env = health("--json", SPOOLED_HEALTH_FILE=str(path))  # as the worker reads it
        assert by_env.returncode == 0
        answer = json.loads(by_env.stdout)
        assert answer["healthy"] is True
        assert answer["status"]["pid"] == os.getpid()
        assert answer["status"]["state"] == "connected"
        assert spooled_emulator.api_key not in path.read_text()

        spooled_emulator.revoke_api_key()  # a key nobody will restore by restarting
        assert wait_until(lambda: written_health(path) == "refused"), runtime.status()
        not_ready = health("--file", str(path))
        assert not_ready.returncode == 1
        assert not_ready.stdout.startswith("unhealthy: refused (pid ")
        assert spooled_emulator.api_key not in not_ready.stdout
        live = health("--file", str(path), "--liveness")
        assert live.returncode == 0, live.stdout  # restarting would not fix a key
        allowed = health("--file", str(path), "--allow", "refused")
        assert allowed.returncode == 0

    finally:
        runtime.stop()
    assert not path.exists()  # a clean stop removes it: a stopped listener is not healthy
    gone = health("--file", str(path), "--liveness")
    assert gone.returncode == 1
    assert "no health file" in gone.stdout


def test_a_file_not_rewritten_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    old = {"health": "connected", "pid": 4242, "written_at": time.time() - 60}
    path.write_text(json.dumps(old))
    stale = health("--file", str(path), "--liveness")
    assert stale.returncode == 1
    assert re.fullmatch(
        r"unhealthy: stale: pid 4242 last wrote it 6\d\.\d s ago \(max 10 s\)\n", stale.stdout
    )
    assert health("--file", str(path), "--max-age", "120").returncode == 0


def test_allow_widens_readiness(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    reason = "the coordination Redis is unreachable: once-dispatch is paused"
    record = {"health": "degraded", "degraded_by": [reason], "pid": 1, "written_at": time.time()}
    path.write_text(json.dumps(record))
    strict = health("--file", str(path))
    assert strict.returncode == 1
    assert strict.stdout.strip().endswith(f": {reason}")
    assert health("--file", str(path), "--allow", "degraded").returncode == 0
    path.write_text(json.dumps({**record, "health": "stopped"}))
    assert health("--file", str(path), "--liveness").returncode == 1


def test_unreadable_or_unset(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    path.write_text("{not json")
    assert health("--file", str(path), "--liveness").returncode == 1
    unset = health()
    assert unset.returncode == 2
    assert "SPOOLED_HEALTH_FILE" in unset.stderr


@pytest.mark.parametrize("value", ["", "  ", "/var/run/spooled/"])
def test_the_setting_names_a_file(value: str) -> None:
    with pytest.raises(ConfigurationError, match="health_file"):
        RuntimeConfig(connection=ConnectionOptions(api_key="sk_test_x"), health_file=value)


def test_a_dramatiq_fork_mode_status_file_reads_as_a_health_file(tmp_path: Path) -> None:
    from spooled_integrations.dramatiq.status_file import StatusFile

    status_file = StatusFile(12345, directory=str(tmp_path))
    status_file.write({"health": "connected", "state": "connected"})
    result = health("--file", str(status_file.path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pid {os.getpid()}" in result.stdout  # the writer, under its own key
