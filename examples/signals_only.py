"""Spooled events in a plain Python process: signal receivers, no Celery, no Dramatiq.

Run it with credentials in the environment (or against the local emulator)::

    export SPOOLED_API_KEY=sk_live_...            # or: spooled-integrations emulator
    python examples/signals_only.py               # Ctrl-C to stop

    # against the emulator, in two terminals:
    spooled-integrations emulator --port 8787     # prints the API key
    SPOOLED_BASE_URL=http://127.0.0.1:8787 SPOOLED_API_KEY=<key> python examples/signals_only.py

Receivers are module-level functions: blinker holds receivers weakly by default, so a
receiver defined inside a function would vanish when that function returns (connect
such receivers with ``weak=False``). Receivers run on the runtime's dispatch thread,
one event at a time; keep them quick.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import (
    RuntimeConfig,
    SpooledRuntime,
    connection_state_changed,
    event_dropped,
    receiver_failed,
    spooled_signal,
    stream_gap,
)

log = logging.getLogger("signals_only")


@spooled_signal.connect_via("job.completed")
def on_completed(sender: str, *, event: Event, **kw: Any) -> None:
    """One job type: aliases work too (``JobCompleted``)."""
    log.info(
        "job %s on %s completed in %s ms",
        event.job_id,
        event.queue_name,
        event.data.get("duration_ms"),
    )


@spooled_signal.connect_via("job.failed")
def on_failed(sender: str, *, event: Event, **kw: Any) -> None:
    job = event.job()  # the typed view: Go field names plus the backend's extras
    log.warning("job %s failed (retry %s): %s", job.job_id, job.retry_count, job.error)


@spooled_signal.connect
def on_any(sender: str, *, event: Event, **kw: Any) -> None:
    """Every event, known or not."""
    log.debug("%s %s", sender, dict(event.data))


@connection_state_changed.connect
def on_state(sender: SpooledRuntime, *, state: Any, previous: Any, **kw: Any) -> None:
    log.info("connection %s -> %s", previous.value, state.value)


@stream_gap.connect
def on_gap(sender: SpooledRuntime, *, disconnected_at: Any, reconnected_at: Any, **kw: Any) -> None:
    log.warning(
        "no stream from %s to %s: events in between may be missing", disconnected_at, reconnected_at
    )


@event_dropped.connect
def on_dropped(sender: Any, *, reason: str, detail: str, **kw: Any) -> None:
    log.warning("dropped (%s): %s", reason, detail)


@receiver_failed.connect
def on_receiver_failed(sender: Any, *, receiver: Any, exception: BaseException, **kw: Any) -> None:
    log.error("receiver %r raised %r (already logged with its traceback)", receiver, exception)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = RuntimeConfig(connection=ConnectionOptions.from_env(), transport="ws")
    runtime = SpooledRuntime(config)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    runtime.start()  # returns at once; connecting happens in the background
    try:
        while not stop.wait(60):
            counters = runtime.status()["counters"]
            log.info("received %d, dropped %s", counters["received"], counters["dropped"])
    finally:
        report = runtime.stop(timeout=10)
        log.info("stopped: drained %d, left %d", report.drained, report.left)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
