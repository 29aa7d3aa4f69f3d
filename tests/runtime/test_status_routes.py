"""``status()`` and the start log name the URL in use and every route, without secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from spooled_integrations.client import ConnectionOptions, ConnectionState
from spooled_integrations.runtime import RecordingPublisher, RuntimeConfig, SpooledRuntime
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

RuntimeFactory = Callable[..., SpooledRuntime]

SECRET = "sk_live_hidden_in_a_rule"
RULES = [
    {
        "name": "email-sent",
        "events": ["job.completed", "job.failed"],
        "queue": ["emails", "bulk"],
        "where": {"priority": [1, 2]},
        "max_age": 300,
        "task": "billing.on_email_sent",
        "payload": "data",
        "delivery": "every_node",
        "options": {"countdown": 5, "headers": {"X-Api-Key": SECRET}},
    },
    {"events": ["worker.*"], "worker_id": "w-1", "actor": "ops.on_worker"},
    {"name": "audit", "events": ["*"]},
]


def _publisher() -> RecordingPublisher:
    return RecordingPublisher(known_targets=["task:billing.on_email_sent", "actor:ops.on_worker"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_status_holds_the_url_and_every_route(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, transport: str
) -> None:
    runtime = make_runtime(spooled_emulator, _publisher(), subscriptions=RULES, transport=transport)
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    status = json.loads(json.dumps(runtime.status()))  # JSON-ready

    host = spooled_emulator.base_url.split("://", 1)[1]
    expected_url = f"ws://{host}/api/v1/ws" if transport == "ws" else f"http://{host}/api/v1/events"
    assert status["url"] == expected_url
    assert status["subscriptions"] == 3  # the count stays, for what reads it
    assert status["routes"] == [
        {
            "index": 0,
            "name": "email-sent",
            "events": ["job.completed", "job.failed"],
            "filters": {"queue": ["bulk", "emails"], "where": {"priority": [1, 2]}, "max_age": 300},
            "target": {"kind": "task", "name": "billing.on_email_sent"},
            "delivery": "every_node",
            "payload": "data",
            "options": {"countdown": 5, "headers": {"X-Api-Key": "[redacted]"}},
        },
        {
            "index": 1,
            "name": None,
            "events": ["worker.*"],
            "filters": {"worker_id": ["w-1"]},
            "target": {"kind": "actor", "name": "ops.on_worker"},
            "delivery": "once",
            "payload": "event",
            "options": {},
        },
        {
            "index": 2,
            "name": "audit",
            "events": ["*"],
            "filters": {},
            "target": None,
            "delivery": None,
            "payload": None,
            "options": {},
        },
    ]
    text = json.dumps(status)
    assert SECRET not in text and spooled_emulator.api_key not in text


def test_status_without_rules_has_an_empty_route_list(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(spooled_emulator)
    status = runtime.status()  # before start too: the config is known
    assert status["routes"] == [] and status["subscriptions"] == 0
    assert status["url"].endswith("/api/v1/ws")


def test_start_log_lists_the_url_then_one_line_per_route(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spooled_integrations.runtime.runtime")
    runtime = make_runtime(spooled_emulator, _publisher(), subscriptions=RULES)
    runtime.start()
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "spooled_integrations.runtime.runtime" and r.levelno == logging.INFO
    ]
    started = next(i for i, line in enumerate(lines) if line.startswith("Spooled runtime started"))
    assert f"ws {runtime.url}, 3 subscription(s):" in lines[started]
    assert lines[started + 1 : started + 4] == [
        "  Spooled route [0] email-sent: job.completed,job.failed queue=bulk|emails "
        "where.priority=[1, 2] max_age=300s -> task:billing.on_email_sent (every_node, data)",
        "  Spooled route [1]: worker.* worker_id=w-1 -> actor:ops.on_worker (once, event)",
        "  Spooled route [2] audit: * -> signals only",
    ]
    assert SECRET not in caplog.text and spooled_emulator.api_key not in caplog.text


def test_start_log_without_rules_says_signals_only(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spooled_integrations.runtime.runtime")
    runtime = make_runtime(spooled_emulator, transport="sse")
    runtime.start()
    started = [r.getMessage() for r in caplog.records if "runtime started" in r.getMessage()]
    assert len(started) == 1
    assert (
        f"sse {runtime.url}, 0 subscription(s) (events reach signal receivers only)" in (started[0])
    )
    assert "Spooled route" not in caplog.text


def test_sse_job_stream_url_names_the_job(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(spooled_emulator, transport="sse", filter={"job_id": "job 7"})
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    assert runtime.status()["url"] == f"{spooled_emulator.base_url}/api/v1/events/jobs/job%207"
    assert spooled_emulator.wait_for_connections(1, "sse")


def test_status_names_the_proxy_in_use_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def status(**connection: Any) -> Any:
        options = ConnectionOptions(
            base_url="https://api.example", api_key="sk_test_0123456789", **connection
        )
        return SpooledRuntime(RuntimeConfig(connection=options)).status()["proxy"]

    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert status() is None
    shown = status(proxy="http://user:s3cret-pw@proxy.example:3128")
    assert shown == "http://user:[redacted]@proxy.example:3128 (from proxy)"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:8080")
    assert status() == "http://proxy.example:8080 (from HTTPS_PROXY)"
    monkeypatch.setenv("NO_PROXY", "api.example")
    assert status() is None
