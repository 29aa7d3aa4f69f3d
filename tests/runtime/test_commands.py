"""``check`` and ``listen`` as subprocesses, the way users run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from spooled_integrations.testing import Collector, Emulator

GOOD = """
[[subscription]]
name = "emails-done"
events = ["job.completed"]
queue = "emails"
task = "billing.on_email_sent"

[[subscription]]
events = ["queue.*"]
actor = "ops.on_queue"
delivery = "every_node"

[[subscription]]
name = "audit"
events = ["*"]
"""

BAD = """
[[subscription]]
events = ["job.complete"]

[[subscription]]
name = "x"
events = ["queue.paused"]
job_id = "j"
task = "a"
actor = "b"
"""


def command(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "spooled_integrations", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    env.update(extra)
    return env


def test_check_prints_the_routing_table(tmp_path: Path) -> None:
    path = tmp_path / "subs.toml"
    path.write_text(GOOD)
    result = subprocess.run(
        command("check", str(path)),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0].split() == ["event", "filters", "target", "delivery", "rule"]
    rows = [line.split() for line in lines[2:6]]
    assert rows == [
        [
            "job.completed",
            "queue=emails",
            "task:billing.on_email_sent",
            "once",
            "[0]",
            "emails-done",
        ],
        ["queue.paused", "-", "actor:ops.on_queue", "every_node", "[1]"],
        ["queue.resumed", "-", "actor:ops.on_queue", "every_node", "[1]"],
        ["queue.stats", "-", "actor:ops.on_queue", "every_node", "[1]"],
    ]
    assert lines[6].split() == ["*", "-", "signals", "only", "-", "[2]", "audit"]
    assert f"{path}: OK, 3 subscription(s), 5 route(s), 2 with a target" in result.stdout
    assert "delivery='once' needs fleet coordination" in result.stdout


def test_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "subs.toml"
    path.write_text(BAD)
    result = subprocess.run(
        command("check", str(path)),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: 3 problem(s)",
        "  - subscriptions[0].events[0]: unknown event 'job.complete' (did you mean "
        "'job.completed'?)",
        "  - subscriptions[1] (name='x').task/actor: give one target, not both",
        "  - subscriptions[1] (name='x').job_id: none of the selected events (queue.paused) "
        "carries a job id, so this filter can never match",
    ]


def test_check_reports_unreadable_files(tmp_path: Path) -> None:
    result = subprocess.run(
        command("check", str(tmp_path / "absent.yaml")),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 1
    assert "cannot read subscription file" in result.stderr


class Listen:
    """A running ``listen`` process whose output lines are collected as they come."""

    def __init__(self, emu: Emulator, *args: str, **env: str) -> None:
        environment = clean_env(SPOOLED_API_KEY=emu.api_key, SPOOLED_BASE_URL=emu.base_url, **env)
        self.process = subprocess.Popen(
            command("listen", *args),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.out: Collector[str] = Collector()
        self.err: Collector[str] = Collector()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream: IO[str] | None, sink: Collector[str]) -> None:
        assert stream is not None
        for line in stream:
            sink(line.rstrip("\n"))

    def wait_err(self, text: str, timeout: float = 15.0) -> bool:
        return self.err.wait_for(lambda lines: any(text in line for line in lines), timeout)

    def wait_out(self, count: int, timeout: float = 10.0) -> bool:
        return self.out.wait_count(count, timeout)

    def finish(self, sig: int | None = signal.SIGINT, timeout: float = 10.0) -> int:
        if sig is not None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def listen(spooled_emulator: Emulator) -> Iterator[Any]:
    started: list[Listen] = []

    def start(*args: str, **env: str) -> Listen:
        process = Listen(spooled_emulator, *args, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def without_noise(lines: list[str]) -> list[str]:
    return [line for line in lines if "system.health" not in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listen_prints_events_and_states_and_exits_cleanly(
    spooled_emulator: Emulator, listen: Any, sig: int
) -> None:
    proc = listen()
    assert proc.wait_err("connection: connected"), proc.err.items
    spooled_emulator.publish(
        "job.completed",
        job_id="j1",
        queue_name="emails",
        duration_ms=12,
        timestamp="2024-05-01T10:00:00.123456789Z",
    )
    spooled_emulator.publish(
        "JobStatusChange",
        job_id="j2",
        queue_name="emails",
        old_status="processing",
        new_status="failed",
        timestamp="2024-05-01T10:00:01Z",
    )
    spooled_emulator.publish(
        "worker.registered", worker_id="w1", queue_name="emails", timestamp="2024-05-01T10:00:02Z"
    )
    assert proc.out.wait_for(lambda lines: len(without_noise(lines)) >= 4), proc.out.items
    assert proc.finish(sig) == 0, proc.err.items
    assert without_noise(proc.out.items) == [
        "10:00:00.123  job.completed     queue=emails  job=j1  duration_ms=12",
        "10:00:01.000  job.status        queue=emails  job=j2  old_status=processing new_status=failed",
        "10:00:01.000  job.failed        queue=emails  job=j2  old_status=processing "
        "new_status=failed  (from job.status)",
        "10:00:02.000  worker.joined     queue=emails  worker=w1",
    ]
    states = [line.split("-- ", 1)[1] for line in proc.err.items if "-- connection:" in line]
    assert states == [
        "connection: connecting",
        "connection: connected",
        "connection: disconnected",
    ]
    assert "Traceback" not in "\n".join(proc.err.items)


def test_listen_json_with_event_and_queue_filters(spooled_emulator: Emulator, listen: Any) -> None:
    proc = listen("--json", "--events", "job.*,WorkerRegistered", "--queue", "emails")
    assert proc.wait_err("connection: connected"), proc.err.items
    spooled_emulator.publish("job.completed", job_id="other-queue", queue_name="sms")
    spooled_emulator.publish("queue.paused", queue_name="emails")
    spooled_emulator.publish("job.created", job_id="j1", queue_name="emails", priority=2)
    spooled_emulator.publish("worker.joined", worker_id="w1", queue_name="emails")
    assert proc.wait_out(2), proc.err.items
    assert proc.finish() == 0
    lines = [json.loads(line) for line in proc.out.items]
    assert [(e["type"], e["data"].get("job_id") or e["data"]["worker_id"]) for e in lines] == [
        ("job.created", "j1"),
        ("worker.joined", "w1"),
    ]
    assert lines[0]["wire_type"] == "JobCreated" and lines[0]["timestamp"]


def test_listen_over_sse(spooled_emulator: Emulator, listen: Any) -> None:
    proc = listen("--transport", "sse", "--events", "job.failed")
    assert proc.wait_err("connection: connected"), proc.err.items
    spooled_emulator.publish("job.failed", job_id="j9", queue_name="q", error="boom", retry_count=1)
    assert proc.wait_out(1), proc.err.items
    assert proc.finish() == 0
    assert "job.failed" in proc.out.items[0] and "error=boom retry_count=1" in proc.out.items[0]


def test_listen_exits_1_when_credentials_are_refused(spooled_emulator: Emulator) -> None:
    result = subprocess.run(
        command("listen"),
        env=clean_env(SPOOLED_API_KEY="sk_test_wrong", SPOOLED_BASE_URL=spooled_emulator.base_url),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "stopped: AuthError" in result.stderr
    assert "sk_test_wrong" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "no credentials"),
        (("--events", "job.complete"), {"SPOOLED_API_KEY": "k"}, "did you mean 'job.completed'"),
        (("--base-url", "ftp://x"), {"SPOOLED_API_KEY": "k"}, "base_url"),
    ],
)
def test_listen_usage_errors_exit_2(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        command("listen", *args),
        env=clean_env(**env),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_the_signals_only_example_runs_until_sigterm(spooled_emulator: Emulator) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "signals_only.py"
    process = subprocess.Popen(
        [sys.executable, str(example)],
        env=clean_env(
            SPOOLED_API_KEY=spooled_emulator.api_key, SPOOLED_BASE_URL=spooled_emulator.base_url
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert spooled_emulator.wait_for_connections(1, "ws", timeout=15)
        spooled_emulator.publish(
            "job.failed", job_id="j2", queue_name="q", error="boom", retry_count=1
        )
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "job j2 failed (retry 1): boom" in output
    assert "stopped: drained" in output
