"""Spooled metrics in the exposition of Dramatiq's own ``Prometheus`` middleware.

That middleware serves, from a fork of the ``dramatiq`` main process (port 9191 by
default), what every process of the run writes into its directory in
``prometheus_client``'s multiprocess mode. A collector in the listener's process cannot
reach that server, so the listener's process writes its metrics there too, when the
broker has that middleware: the counters every second (as increments, from the
runtime's own counts), the gauges every second, the event-age histogram as events go
out. So one endpoint per node carries the Spooled metrics beside Dramatiq's, the
``mode="fork"`` listener's included.

Gauges use the multiprocess mode that fits where the listener runs: ``mostrecent`` in
``mode="fork"`` (one listener per run; a worker that takes a dead fork's place
overwrites its values), ``liveall`` in ``mode="every_process"`` (one series per
process, with a ``pid`` label, gone when the process ends).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from spooled_integrations.runtime.prometheus import (
    AGE_BUCKETS,
    AGE_HELP,
    AGE_METRIC,
    BY_REASON,
    COUNTERS,
    HEALTHS,
    ONE_OF_HELP,
    STATES,
    read,
)

if TYPE_CHECKING:
    import dramatiq

    from spooled_integrations.runtime.runtime import SpooledRuntime

__all__ = ["MultiprocessExporter", "export_metrics", "prometheus_directory"]

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 1.0
"""Seconds between two writes of the counters and gauges (a scrape is this much behind)."""


def prometheus_directory(broker: dramatiq.Broker) -> str | None:
    """The multiprocess directory of the broker's ``Prometheus`` middleware, or ``None``
    when it has none (its module is imported by then, if it has one)."""
    module = sys.modules.get("dramatiq.middleware.prometheus")
    if module is None:
        return None
    if any(isinstance(m, module.Prometheus) for m in broker.middleware):
        return str(module.DB_PATH)
    return None


def export_metrics(
    broker: dramatiq.Broker, runtime: SpooledRuntime, *, fork_mode: bool
) -> MultiprocessExporter | None:
    """Start writing ``runtime``'s metrics where the broker's Prometheus middleware
    serves from; ``None`` (and nothing done) without that middleware."""
    directory = prometheus_directory(broker)
    if directory is None:
        return None
    exporter = MultiprocessExporter(
        runtime, directory, gauge_mode="mostrecent" if fork_mode else "liveall"
    )
    exporter.start()
    return exporter


def _multiprocess_prometheus(directory: str) -> Any:
    """``prometheus_client`` writing into ``directory``, as the middleware sets it up."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from spooled_integrations.runtime.prometheus import require_prometheus

    prometheus = require_prometheus()
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        # Imported before the variable was set (by the application, in the fork
        # process): its values would stay in memory, where no scrape sees them.
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return prometheus


class MultiprocessExporter:
    """Copies one runtime's metrics into a multiprocess directory (see the module)."""

    def __init__(self, runtime: SpooledRuntime, directory: str, *, gauge_mode: str) -> None:
        self.runtime = runtime
        self.directory = directory
        self.gauge_mode = gauge_mode
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sync at a time (the thread's, stop()'s)
        self._written: dict[tuple[str, str], int] = {}  # (counter, reason) -> value written
        self._metrics: dict[str, Any] = {}

    def start(self) -> None:
        prometheus = _multiprocess_prometheus(self.directory)
        for _, name, help_text in COUNTERS:
            self._metrics[name] = prometheus.Counter(name, help_text, registry=None)
        for _, name, help_text in BY_REASON:
            self._metrics[name] = prometheus.Counter(name, help_text, ["reason"], registry=None)
        for name, label in (("spooled_health", "health"), ("spooled_connection_state", "state")):
            self._metrics[name] = self._gauge(name, ONE_OF_HELP[name], [label])
        histogram = prometheus.Histogram(AGE_METRIC, AGE_HELP, buckets=AGE_BUCKETS, registry=None)
        self.runtime.observe_event_age(histogram.observe)
        self.sync()
        self._thread = threading.Thread(target=self._run, name="spooled-metrics", daemon=True)
        self._thread.start()
        logger.debug("Spooled metrics written to %s for the Prometheus middleware", self.directory)

    def _gauge(self, name: str, help_text: str, labels: list[str] | None = None) -> Any:
        prometheus = _multiprocess_prometheus(self.directory)
        return prometheus.Gauge(
            name, help_text, labels or [], registry=None, multiprocess_mode=self.gauge_mode
        )

    def stop(self) -> None:
        """Write the last values (``stopped``), then stop writing."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
        self.sync()

    def _run(self) -> None:
        while not self._stop.wait(SYNC_INTERVAL):
            try:
                self.sync()
            except Exception:
                logger.exception("writing the Spooled metrics failed; retrying")

    def sync(self) -> None:
        """Write one reading of the runtime: counter increments, gauge values."""
        reading = read(self.runtime)
        with self._lock:
            for key, name, _ in COUNTERS:
                self._add(name, "", reading.counters.get(key, 0))
            for key, name, _ in BY_REASON:
                for reason, count in reading.by_reason.get(key, {}).items():
                    self._add(name, reason, count)
            for name, (help_text, value) in reading.gauges().items():
                if value is None:
                    continue  # made at the first value: a new gauge shows 0 at once
                if name not in self._metrics:
                    self._metrics[name] = self._gauge(name, help_text)
                self._metrics[name].set(float(value))
            for name, label, values, current in (
                ("spooled_health", "health", HEALTHS, reading.health),
                ("spooled_connection_state", "state", STATES, reading.state),
            ):
                for value in (*values, *(() if current in values else (current,))):
                    self._metrics[name].labels(**{label: value}).set(float(value == current))

    def _add(self, name: str, reason: str, total: int) -> None:
        written = self._written.get((name, reason), 0)
        if total > written:
            metric = self._metrics[name]
            (metric.labels(reason=reason) if reason else metric).inc(total - written)
            self._written[(name, reason)] = total
