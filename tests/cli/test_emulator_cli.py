"""``spooled-integrations emulator publish|job`` against a real ``emulator`` process.

The emulator runs as the command line starts it; a runtime in this process listens to
it, so every assertion is about events that really went over the WebSocket.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spooled_integrations import ConnectionOptions, RuntimeConfig, SpooledRuntime, spooled_signal
from spooled_integrations.protocol import Event
from spooled_integrations.testing import Collector

KEY = "sk_test_cli_emulator_key"


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def emulator_url(tmp_path: Path) -> Iterator[str]:
    """``spooled-integrations emulator --port 0`` in a process of its own; its URL."""
    out = tmp_path / "emulator.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    command = ["emulator", "--port", "0", "--api-key", KEY, "--ping-interval", "1"]
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "spooled_integrations", *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline and process.poll() is None:
            found = re.search(r"listening on (http://\S+)", out.read_text())
            time.sleep(0.05)
        assert found, out.read_text()
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0, out.read_text()
        assert "Spooled emulator stopped." in out.read_text()


@pytest.fixture
def heard(emulator_url: str, spooled_receivers_isolated: None) -> Iterator[Collector]:
    """Every event a runtime connected to the CLI emulator receives."""
    events = Collector()

    def on_event(sender: object, event: Event, **kwargs: object) -> None:
        events(event)

    spooled_signal.connect(on_event, weak=False)
    config = RuntimeConfig(connection=ConnectionOptions(base_url=emulator_url, api_key=KEY))
    with SpooledRuntime(config) as runtime:
        deadline = time.monotonic() + 10
        while runtime.health != "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.health == "connected", runtime.status()
        yield events


def test_publish_sends_the_event_with_typed_fields(emulator_url: str, heard: Collector) -> None:
    result = cli(
        "emulator",
        "publish",
        "job.completed",
        "--field",
        "job_id=j1",
        "--field",
        "queue_name=emails",
        "--field",
        "duration_ms=5",
        "--url",
        emulator_url,
    )
    assert result.returncode == 0, result.stderr
    assert '"job_id": "j1"' in result.stdout
    assert heard.wait_for(lambda items: any(e.type == "job.completed" for e in items), 10)
    (event,) = [e for e in heard.items if e.type == "job.completed"]
    assert event.job_id == "j1"
    assert event.data["queue_name"] == "emails"
    assert event.data["duration_ms"] == 5  # JSON, not the text "5"


def test_job_create_and_status_publish_the_lifecycle(emulator_url: str, heard: Collector) -> None:
    created = cli(
        "emulator", "job", "create", "emails", "--payload", '{"to": "a@example.com"}',
        "--api-key", KEY, "--url", emulator_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id), created.stdout
    failed = cli(
        "emulator", "job", "status", job_id, "failed", "--error", "SMTP timeout",
        "--url", emulator_url,
    )  # fmt: skip
    assert failed.returncode == 0, failed.stderr
    assert '"status": "failed"' in failed.stdout

    def seen(kind: str) -> bool:
        return any(e.type == kind and e.job_id == job_id for e in heard.items)

    assert heard.wait_for(lambda _: seen("job.created") and seen("job.failed"), 10)
    (failure,) = [e for e in heard.items if e.type == "job.failed" and e.job_id == job_id]
    assert failure.data.get("error") == "SMTP timeout"  # both forms, coalesced into one


def test_refusals_exit_1_without_echoing_the_key(emulator_url: str) -> None:
    wrong = "sk_test_not_the_right_key_123"
    result = cli("emulator", "job", "create", "emails", "--api-key", wrong, "--url", emulator_url)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert wrong not in result.stdout + result.stderr
    unknown = cli("emulator", "job", "status", "no-such-job", "completed", "--url", emulator_url)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr


def test_usage_errors_and_no_emulator() -> None:
    bad = cli("emulator", "publish", "job.completed", "--field", "no-equals-sign")
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr
    no_key = cli("emulator", "job", "create", "emails")
    assert no_key.returncode == 2 and "--api-key" in no_key.stderr
    nobody = cli("emulator", "publish", "job.completed", "--url", "http://127.0.0.1:9")
    assert nobody.returncode == 1
    assert "no emulator answered at http://127.0.0.1:9" in nobody.stderr


def test_help_shows_the_defaults() -> None:
    text = cli("emulator", "--help").stdout
    assert "(default: 127.0.0.1)" in text
    assert "(default: 8787)" in text
    assert "(default: 30)" in text  # --ping-interval
    assert "publish" in text and "job" in text
    publish = cli("emulator", "publish", "--help").stdout
    assert "http://127.0.0.1:8787" in publish
