"""``spooled-integrations demo`` as a subprocess, the way the README tells users to run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

TASK_LINE = re.compile(r"task\s+demo\.on_email_sent ran for job (\w+)")
RECEIVER_LINE = re.compile(r"receiver\s+on_job_failed got job\.failed for job (\w+)")


def run_demo(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    environ.update(env)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    return result, time.monotonic() - started


def summary(stdout: str) -> dict[str, str]:
    block = stdout.split("\nSummary\n", 1)[1].split("\n\n", 1)[0]
    rows = (line.strip().split("  ", 1) for line in block.splitlines())
    return {label: text.strip() for label, text in rows}


def test_demo_runs_each_task_once_and_exits_0() -> None:
    result, seconds = run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    assert seconds < 20, f"the demo took {seconds:.1f}s"
    out = result.stdout
    tasks = TASK_LINE.findall(out)
    assert len(tasks) == 5 and len(set(tasks)) == 5, out
    assert len(RECEIVER_LINE.findall(out)) == 1, out
    # Every event of a job is printed, in the order the emulator caused it.
    first = tasks[0]
    kinds = re.findall(rf"event\s+(\S+)\s+job {first}", out)
    assert kinds == ["job.created", "job.status", "job.started", "job.status", "job.completed"]
    # The two jobs finished during the network blip: never heard, recovered, run once.
    for job in tasks[3:]:
        recovered = re.findall(rf"event\s+(\S+)\s+job {job}.*recovered from the job list", out)
        assert recovered == ["job.created", "job.started", "job.completed"], out
    rows = summary(out)
    assert rows["tasks run"].startswith("5 of 5 expected")
    assert rows["receiver"] == "on_job_failed ran 1 of 1 expected"
    assert rows["catch-up"].startswith("6 event(s) of 2 jobs"), rows
    # 3 + 1 completed and 1 failed job, each sent twice by the emulator, plus what the
    # sweep found again of the jobs that had arrived live.
    assert int(rows["duplicates"].split()[0]) >= 5
    assert rows["events received"].startswith("30 ")
    assert rows["shutdown"].endswith("no thread or socket left")
    assert '"state": "connected"' in out and '"enabled_by": "install(app)"' in out
    assert "the reply to inspect spooled_status" in out
    assert out.rstrip().endswith("ran exactly once.")
    # Only the blip's own warnings: the dropped connection and the refused reconnect.
    warnings = result.stderr.splitlines()
    assert [line.split(":")[0] for line in warnings] == [
        "WARNING spooled_integrations.client"
    ] * 2, result.stderr
    assert "connection lost" in warnings[0] and "503" in warnings[1], result.stderr


def test_demo_over_sse_ignores_spooled_environment() -> None:
    # SPOOLED_* variables would point the worker at another server or turn it off.
    result, _ = run_demo(
        "--transport",
        "sse",
        "--jobs",
        "1",
        SPOOLED_ENABLED="0",
        SPOOLED_WS_URL="ws://127.0.0.1:9/api/v1/ws",
        SPOOLED_TOKEN="not-a-token",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ignoring SPOOLED_ENABLED, SPOOLED_TOKEN, SPOOLED_WS_URL" in result.stdout
    assert '"transport": "sse"' in result.stdout
    assert len(TASK_LINE.findall(result.stdout)) == 1 + 2  # --jobs 1, and the blip's two


def test_demo_fails_clearly_when_things_do_not_happen_in_time() -> None:
    result, seconds = run_demo("--timeout", "0.001")
    assert result.returncode == 1
    assert "spooled-integrations demo FAILED:" in result.stderr
    assert "within 0.001s" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 20


@pytest.mark.parametrize("args", [("--jobs", "0"), ("--timeout", "0")])
def test_demo_refuses_nonsense_arguments(args: tuple[str, str]) -> None:
    result, _ = run_demo(*args)
    assert result.returncode == 2
    assert "must be positive" in result.stderr
