"""``examples/subscriptions.toml``: ``check`` accepts it, and a Celery worker would too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spooled_integrations.protocol import Event
from spooled_integrations.runtime import Router, load_subscriptions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriptions.toml"
TASKS = (
    "shop.billing.send_receipt",
    "shop.ops.record_failure",
    "shop.ops.page_on_call",
    "shop.admin.record_job_history",
)


def test_check_command_accepts_the_example() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    result = subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{EXAMPLE}: OK, 5 subscription(s)" in result.stdout
    for name in ("receipt-after-email", "record-failure", "page-on-dead-letter", "job-history"):
        assert name in result.stdout


def test_rules_route_as_their_comments_say() -> None:
    router = Router(load_subscriptions(EXAMPLE))

    def names(event_type: str, **data: object) -> list[str | None]:
        event = Event(type=event_type, data=data, wire_type=event_type)
        return [sub.name for sub in router.match(event)]

    assert names("job.completed", job_id="j", queue_name="emails") == [
        "receipt-after-email",
        "job-history",
    ]
    assert names("job.completed", job_id="j", queue_name="reports") == ["job-history"]
    assert names("job.failed", job_id="j", queue_name="sms") == ["record-failure", "job-history"]
    assert names("job.status", job_id="j", queue_name="x", new_status="deadletter") == [
        "page-on-dead-letter"
    ]
    assert names("job.status", job_id="j", queue_name="x", new_status="failed") == []
    assert names("worker.joined", worker_id="w", queue_name="x") == ["worker-audit"]


def test_a_celery_worker_accepts_the_example_options() -> None:
    from celery import Celery

    from spooled_integrations.celery import read_settings

    app = Celery("shop", set_as_current=False)
    app.conf.update(spooled_api_key="sk_test_example", spooled_subscriptions=str(EXAMPLE))

    def task(payload: object) -> None: ...

    for name in TASKS:
        app.task(name=name, shared=False)(task)
    settings = read_settings(app, environ={})  # raises, listing every problem, if not
    assert len(settings.runtime.subscriptions) == 5
