"""The shipped examples work as documented: ``examples/celery_app`` (config-only, a real
worker) and ``examples/django_settings.py`` (the ``CELERY_SPOOLED_*`` form)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from spooled_integrations.celery import read_settings
from spooled_integrations.testing import Emulator

EXAMPLES = Path(__file__).parents[3] / "examples"


def _wait_for_lines(worker: Any, lines: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = worker.output()
        if all(line in output for line in lines):
            return
        time.sleep(0.05)
    pytest.fail(f"missing {lines!r} in the worker log:\n{worker.output()}")


@pytest.mark.slow
def test_celery_app_example(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(
        redis_url, emulator, app="celery_app", env={"CELERY_BROKER_URL": redis_url}
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    emulator.publish("job.completed", job_id="job-1", queue_name="emails", duration_ms=42)
    emulator.publish("job.completed", job_id="job-x", queue_name="reports", duration_ms=1)
    emulator.publish("job.failed", job_id="job-2", queue_name="emails", error="SMTP timeout")
    _wait_for_lines(
        worker,
        [
            "email job job-1 completed in 42 ms",
            "Spooled job job-2 failed on queue emails: SMTP timeout",
        ],
    )
    assert "job-x" not in worker.output()
    assert "Spooled listener enabled (spooled_enabled)" in worker.output()


def test_django_settings_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOOLED_API_KEY", "sk_test_django_example")
    spec = importlib.util.spec_from_file_location(
        "django_settings", EXAMPLES / "django_settings.py"
    )
    assert spec is not None and spec.loader is not None
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)

    app = Celery("proj", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")

    @app.task(name="billing.tasks.on_email_sent", shared=False)
    def on_email_sent(payload: Any) -> None: ...

    assert app.conf.get("spooled_enabled") is True
    assert "spooled_integrations.celery" in app.conf.imports
    runtime = read_settings(app, environ={}).runtime
    assert runtime.connection.api_key is not None
    assert runtime.connection.api_key.get_secret_value() == "sk_test_django_example"
    assert runtime.filter is not None and runtime.filter.queue_name == "emails"
    (subscription,) = runtime.subscriptions
    assert subscription.options == {"queue": "billing", "priority": 5}
