"""The bootstep inside this process: ``start_worker`` and bare ``WorkController`` builds.

Fast tier: the in-memory broker, the emulator over real sockets, a real (embedded)
worker. The subprocess tests in ``test_workers.py`` cover the real CLI and brokers.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.concurrency.solo import TaskPool as SoloPool
from celery.contrib.testing.worker import start_worker
from celery.exceptions import ImproperlyConfigured

from spooled_integrations.celery import SpooledStep, install, is_installed, spooled_signal
from spooled_integrations.testing import Collector, Emulator

SUBSCRIPTIONS = [
    {
        "name": "emails-done",
        "events": ["job.completed"],
        "queue": "emails",
        "task": "boot.record",
        "delivery": "every_node",
    }
]


class GreenPool(SoloPool):
    """Stands in for gevent/eventlet (not installed here): same ``is_green`` flag."""

    is_green = True


@pytest.fixture
def records() -> Collector[Any]:
    return Collector()


def make_app(emu: Emulator | None, records: Collector[Any], **settings: Any) -> Celery:
    app = Celery("boot", broker="memory://", set_as_current=False)
    conf: dict[str, Any] = {"spooled_subscriptions": SUBSCRIPTIONS}
    if emu is not None:
        conf.update(spooled_base_url=emu.base_url, spooled_api_key=emu.api_key)
    app.conf.update(conf, **settings)

    @app.task(name="boot.record", shared=False)
    def record(payload: Any) -> None:
        records(payload)

    return app


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPOOLED_ENABLED", "SPOOLED_API_KEY", "SPOOLED_TOKEN", "SPOOLED_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def _step(worker: Any) -> SpooledStep:
    step = worker.blueprint.steps[SpooledStep.name]
    assert isinstance(step, SpooledStep)
    return step


def build_worker(app: Celery, **kwargs: Any) -> Any:
    """Build (not start) a WorkController: every boot-time check runs here."""
    options = {"pool_cls": "solo", "without_mingle": True, "without_gossip": True}
    return app.WorkController(hostname="boot@localhost", **{**options, **kwargs})


@pytest.fixture
def running(emulator: Emulator, records: Collector[Any]) -> Iterator[tuple[Celery, Any]]:
    app = install(make_app(emulator, records))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=15) as w:
        assert emulator.wait_for_connections(1, transport="ws", timeout=10)
        yield app, w


def test_events_run_tasks_and_signal_receivers_on_the_dispatch_thread(
    running: tuple[Celery, Any], emulator: Emulator, records: Collector[Any]
) -> None:
    seen: Collector[tuple[str, int, str]] = Collector()

    def receiver(sender: str, event: Any, **kwargs: Any) -> None:
        seen((event.job_id, os.getpid(), threading.current_thread().name))

    spooled_signal.connect(receiver, sender="job.completed", weak=False)
    try:
        emulator.publish("job.completed", job_id="j1", queue_name="emails", duration_ms=3)
        emulator.publish("job.completed", job_id="j2", queue_name="reports", duration_ms=3)
        assert records.wait_count(1, timeout=5)
        assert seen.wait_count(2, timeout=5)
    finally:
        spooled_signal.disconnect(receiver, sender="job.completed")
    assert [r["data"]["job_id"] for r in records.items] == ["j1"]
    json.dumps(records.items[0])  # plain JSON, no model objects
    assert {item[1] for item in seen.items} == {os.getpid()}
    assert {item[2] for item in seen.items} == {"spooled-dispatch"}


def test_status_in_process(running: tuple[Celery, Any]) -> None:
    app, worker = running
    replies = app.control.inspect(destination=[worker.hostname], timeout=2)._request(
        "spooled_status"
    )
    (status,) = replies.values()
    assert status["enabled"] is True and status["enabled_by"] == "install(app)"
    assert status["connected"] is True
    assert status["subscriptions"] == 1
    json.dumps(status)


def test_install_is_idempotent(records: Collector[Any]) -> None:
    app = make_app(None, records)
    assert not is_installed(app)
    assert install(app) is app
    install(app)
    assert is_installed(app)
    assert SpooledStep in app.steps["worker"]
    options = [o for o in app.user_options["worker"] if o.name == "spooled"]
    assert len(options) == 1


def test_imported_without_enabling_adds_a_disabled_step(
    emulator: Emulator, records: Collector[Any]
) -> None:
    app = make_app(emulator, records, imports=["spooled_integrations.celery"])
    worker = build_worker(app)
    step = _step(worker)
    assert step.enabled is False
    assert step not in worker.steps
    assert step.runtime is None


def test_config_only_enabling_builds_the_runtime(
    emulator: Emulator, records: Collector[Any]
) -> None:
    app = make_app(emulator, records, imports=["spooled_integrations.celery"], spooled_enabled=True)
    step = _step(build_worker(app))
    assert (step.enabled, step.enabled_by) == (True, "spooled_enabled")
    assert step.runtime is not None
    assert emulator.connections_accepted("ws") == 0  # building connects nothing


def test_worker_option_value_reaches_the_step(emulator: Emulator, records: Collector[Any]) -> None:
    app = install(make_app(emulator, records))
    step = _step(build_worker(app, spooled=False))
    assert (step.enabled, step.enabled_by) == (False, "--no-spooled")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"spooled_transport": "carrier-pigeon"}, "spooled_transport: must be 'ws' or 'sse'"),
        (
            {"spooled_subscriptions": [{"events": ["job.completed"], "task": "boot.nope"}]},
            "spooled_subscriptions: subscriptions[0].task: no task named 'boot.nope'",
        ),
        ({"spooled_api_key": None}, "spooled_api_key: no Spooled credentials"),
        ({"spooled_shutdown_timeout": 0}, "spooled_shutdown_timeout: must be > 0"),
    ],
)
def test_bad_config_fails_when_the_worker_is_built(
    settings: dict[str, Any], fragment: str, emulator: Emulator, records: Collector[Any]
) -> None:
    app = install(make_app(emulator, records, **settings))
    with pytest.raises(ImproperlyConfigured) as info:
        build_worker(app)
    assert fragment in str(info.value)


def test_green_pools_are_refused(emulator: Emulator, records: Collector[Any]) -> None:
    app = install(make_app(emulator, records))
    with pytest.raises(ImproperlyConfigured, match="green pool"):
        build_worker(app, pool_cls=GreenPool)
    # ...but a green node that opts out boots fine.
    assert _step(build_worker(app, pool_cls=GreenPool, spooled=False)).enabled is False


def test_cold_shutdown_is_prompt_while_the_server_is_stalled(
    running: tuple[Celery, Any], emulator: Emulator
) -> None:
    _, worker = running
    emulator.stall(True)
    started = time.monotonic()
    _step(worker).terminate(worker)
    assert time.monotonic() - started < 2.0
    assert _step(worker).status()["running"] is False


def test_a_forked_child_never_runs_the_listener(
    running: tuple[Celery, Any], emulator: Emulator, records: Collector[Any]
) -> None:
    _, worker = running
    step = _step(worker)
    assert step.runtime is not None
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads; that is the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            report = {
                "runtime": step.runtime is not None,
                "disarmed": step.disarmed,
                "status": sorted(step.status()),
            }
            step.stop(worker)  # must be a no-op in the child
            gc.collect()  # no finalizer may touch the parent's socket
            os.write(write_fd, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    _, code = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read())
    assert code == 0
    assert report == {
        "runtime": False,
        "disarmed": True,
        "status": ["enabled", "enabled_by", "pid"],
    }
    # The parent's connection is untouched and still delivers.
    emulator.publish("job.completed", job_id="after-fork", queue_name="emails", duration_ms=1)
    assert records.wait_count(1, timeout=5)
    assert emulator.connections_accepted("ws") == 1
    assert emulator.connections_current("ws") == 1
    assert step.runtime is not None and not step.disarmed


def test_sse_transport(emulator: Emulator, records: Collector[Any]) -> None:
    app = install(make_app(emulator, records, spooled_transport="sse"))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=15):
        assert emulator.wait_for_connections(1, transport="sse", timeout=10)
        emulator.publish("job.completed", job_id="j1", queue_name="emails", duration_ms=3)
        assert records.wait_count(1, timeout=5)
    assert records.items[0]["data"]["job_id"] == "j1"
    assert emulator.connections_accepted("ws") == 0
    assert emulator.connections_accepted("sse") == 1
