"""The Celery app the worker-subprocess tests run, configured from the environment.

``SPTEST_MODE`` picks how Spooled is enabled:

- ``install``: ``spooled_integrations.celery.install(app)`` here; credentials from the
  ``SPOOLED_*`` environment (the fallback path);
- ``imports``: config only (``imports`` + ``spooled_enabled``); this module never
  imports the integration;
- ``django``: a settings object with ``CELERY_``-prefixed names, loaded with
  ``namespace="CELERY"`` exactly as Django projects do.

``SPTEST_PROBE_EVERY`` (seconds), when set, shortens the catch-up probe period of
``catch_up_poll="auto"`` (30 s in production): a test-only speed-up.

Every task appends one JSON line (``{"task", "pid", "payload"}``) to ``SPTEST_OUT``; a
single ``write`` on an ``O_APPEND`` descriptor keeps lines whole across processes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery

MODE = os.environ.get("SPTEST_MODE", "install")
QUEUE = os.environ["SPTEST_QUEUE"]
OUT = os.environ["SPTEST_OUT"]
EXTRA: dict[str, Any] = json.loads(os.environ.get("SPTEST_SETTINGS", "{}"))

if os.environ.get("SPTEST_PROBE_EVERY"):
    # TEST-ONLY SPEED-UP, never do this in an application: the "auto" catch-up probes the
    # job list every PROBE_EVERY (30) seconds; the tests of auto polling against the
    # strict emulator shorten that so they need not wait half a minute.
    from spooled_integrations.runtime import catchup

    catchup.PROBE_EVERY = float(os.environ["SPTEST_PROBE_EVERY"])

app = Celery("spooled_testapp")

base: dict[str, Any] = {
    "broker_url": os.environ["SPTEST_BROKER"],
    "broker_connection_retry_on_startup": True,
    # Nothing consumes the default queue: a routed task only runs if task_routes applied.
    "task_default_queue": f"{QUEUE}.unrouted",
    "task_routes": {"spooled_testapp.*": {"queue": QUEUE}},
    "worker_hijack_root_logger": True,
}
spooled: dict[str, Any] = {
    "spooled_subscriptions": [
        {
            "name": "emails-done",
            "events": ["job.completed"],
            "queue": "emails",
            "task": "spooled_testapp.record",
            "delivery": "every_node",
        }
    ],
    "spooled_shutdown_timeout": 5.0,
    "spooled_reconnect_delay": 0.2,
    "spooled_max_reconnect_delay": 1.0,
    **EXTRA,
}


def _record(name: str, payload: Any) -> None:
    line = json.dumps({"task": name, "pid": os.getpid(), "payload": payload}) + "\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.task(name="spooled_testapp.record")
def record(payload: Any) -> None:
    _record("record", payload)


@app.task(
    name="spooled_testapp.record_failed",
    spooled_events=["job.failed"],
    spooled_queue="emails",
    spooled_payload="data",
    spooled_delivery="every_node",
)
def record_failed(payload: Any) -> None:
    _record("record_failed", payload)


if MODE == "install":
    from spooled_integrations.celery import install

    app.conf.update(base, **spooled)
    install(app)
elif MODE == "imports":
    app.conf.update(
        base,
        imports=["spooled_integrations.celery"],
        spooled_enabled=True,
        spooled_base_url=os.environ.get("SPTEST_BASE_URL"),
        spooled_api_key=os.environ.get("SPTEST_API_KEY"),
        **spooled,
    )
elif MODE == "django":

    class DjangoSettings:
        """What a Django settings module holds (upper case, ``CELERY_`` prefix)."""

    for key, value in {
        **base,
        "imports": ["spooled_integrations.celery"],
        "spooled_enabled": True,
        "spooled_base_url": os.environ.get("SPTEST_BASE_URL"),
        "spooled_api_key": os.environ.get("SPTEST_API_KEY"),
        **spooled,
    }.items():
        setattr(DjangoSettings, f"CELERY_{key.upper()}", value)
    app.config_from_object(DjangoSettings, namespace="CELERY")
else:
    raise RuntimeError(f"unknown SPTEST_MODE {MODE!r}")
