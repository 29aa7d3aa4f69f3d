"""Prometheus metrics of a runtime, read from its own counters when scraped.

The runtime already counts everything (:class:`~spooled_integrations.runtime.metrics.Metrics`,
:meth:`SpooledRuntime.status`), so a collector reads them at scrape time: nothing is
counted twice and the dispatch thread pays nothing for it. The one exception is the
histogram of event age at dispatch, counted on the dispatch thread as each event goes
out (:class:`AgeHistogram`: a bucket index and two additions, no lock; parsing the
event's timestamp is most of its cost). Needs the ``prometheus`` extra (``prometheus_client``), imported only when called::

    from spooled_integrations.runtime.prometheus import register
    register(runtime)                    # into prometheus_client.REGISTRY
    prometheus_client.start_http_server(9808)

:func:`serve` does both on a registry of its own (the Celery worker's
``spooled_metrics_port``); the Dramatiq integration writes the same metrics into the
Prometheus middleware's multiprocess directory instead
(:mod:`spooled_integrations.dramatiq.prometheus`). Labels hold reasons and states only,
never a URL or a credential.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spooled_integrations.client import ConnectionState
from spooled_integrations.protocol.timestamps import parse_timestamp

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from spooled_integrations.runtime.runtime import SpooledRuntime

__all__ = [
    "AGE_BUCKETS",
    "COUNTERS",
    "HEALTHS",
    "ONE_OF_HELP",
    "STATES",
    "AgeHistogram",
    "MetricsServer",
    "Reading",
    "SpooledCollector",
    "read",
    "register",
    "require_prometheus",
    "serve",
]

logger = logging.getLogger(__name__)

COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("received", "spooled_events_received", "Events handed to the dispatcher."),
    ("dispatched", "spooled_events_dispatched", "Events that went through signals and routing."),
    ("published", "spooled_events_published", "Messages handed to a task or actor."),
    ("signals_sent", "spooled_signals_sent", "Events sent on spooled_signal."),
    (
        "duplicates_suppressed",
        "spooled_duplicates_suppressed",
        "Repeats of a job transition suppressed by the duplicate window.",
    ),
    (
        "coalesced",
        "spooled_events_coalesced",
        "Second forms of a transition joined into the first.",
    ),
    ("receiver_failures", "spooled_receiver_failures", "Signal receivers that raised."),
    (
        "publish_retries",
        "spooled_publish_retries",
        "Publish attempts that failed and were retried.",
    ),
    ("reconnects", "spooled_reconnects", "Connections re-established after the first one."),
    ("caught_up", "spooled_events_caught_up", "Events a catch-up sweep recovered and dispatched."),
    ("catch_up_requests", "spooled_catch_up_requests", "Job-list requests of catch-up sweeps."),
)
"""``(runtime counter, metric name, help)`` of the plain counters (``_total`` is added)."""

BY_REASON: tuple[tuple[str, str, str], ...] = (
    ("dropped", "spooled_events_dropped", "Events dropped, by reason."),
    ("protocol_errors", "spooled_protocol_errors", "Frames skipped, by protocol-error reason."),
)

HEALTHS = (
    "connected",
    "degraded",
    "connecting",
    "reconnecting",
    "refused",
    "disconnected",
    "stopped",
)
"""Every value of :attr:`SpooledRuntime.health`: one series each, 1 for the current one."""

STATES = tuple(state.value for state in ConnectionState)

AGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
"""Seconds from the server's timestamp to dispatch: milliseconds live, an hour for a
catch-up sweep's recovered events."""

AGE_METRIC = "spooled_event_age_seconds"
AGE_HELP = "Seconds from an event's server timestamp to its dispatch (clock skew included)."

_EXTRA = "pip install 'spooled-integrations[prometheus]'"


def require_prometheus() -> Any:
    """``prometheus_client``, or an ImportError that names the extra to install."""
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(f"Spooled Prometheus metrics need prometheus_client: {_EXTRA}") from None
    return prometheus_client


@dataclass(frozen=True)
class Reading:
    """What the metrics show of a runtime at one moment (JSON-free, ready to export)."""

    counters: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    health: str = "stopped"
    state: str = ConnectionState.DISCONNECTED.value
    running: bool = False
    queue_depth: int = 0
    queue_size: int = 0
    leader: bool | None = None
    """Lease coordination: this node leads; ``None`` without a lease."""
    coordination_available: bool | None = None
    last_event_at: float | None = None
    """Seconds since the epoch."""

    def gauges(self) -> dict[str, tuple[str, float | None]]:
        """``{metric name: (help, value)}`` of the plain gauges; ``None``: not shown."""
        return {
            "spooled_running": ("1 while the listener runs (started, not stopped).", self.running),
            "spooled_queue_depth": ("Frames waiting for the dispatch thread.", self.queue_depth),
            "spooled_queue_size": ("Frames the dispatch queue holds at most.", self.queue_size),
            "spooled_lease_leader": (
                "Lease coordination: 1 while this node is the leader, 0 on standby.",
                None if self.leader is None else float(self.leader),
            ),
            "spooled_coordination_available": (
                "Fleet coordination: 1 while its Redis answers, 0 while it does not.",
                None if self.coordination_available is None else float(self.coordination_available),
            ),
            "spooled_last_event_timestamp_seconds": (
                "When the last event dispatched arrived (seconds since the epoch).",
                self.last_event_at,
            ),
        }


def read(runtime: SpooledRuntime) -> Reading:
    """One consistent reading of ``runtime`` (its :meth:`~SpooledRuntime.status`)."""
    status = runtime.status()
    counters = status["counters"]
    coordination = status.get("coordination") or {}
    role = coordination.get("role")
    last = status.get("last_event_at")
    return Reading(
        counters={key: int(counters.get(key, 0)) for key, _, _ in COUNTERS},
        by_reason={key: dict(counters.get(key) or {}) for key, _, _ in BY_REASON},
        health=str(status["health"]),
        state=str(status["state"]),
        running=bool(status["running"]),
        queue_depth=int(status["queue_depth"]),
        queue_size=int(status["queue_size"]),
        leader=None if role is None else role == "leader",
        coordination_available=coordination.get("available")
        if coordination.get("active", True) and "available" in coordination
        else None,
        last_event_at=parse_timestamp(last).timestamp() if last else None,
    )


class AgeHistogram:
    """Event ages counted by bucket on the one thread that observes (the dispatch
    thread), read by a scrape from any thread: no lock, so a scrape may miss the event
    being counted at that instant, never more."""

    def __init__(self, bounds: tuple[float, ...] = AGE_BUCKETS) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, age: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, age)] += 1
        self._sum += age

    def family(self) -> Metric:
        """The ``spooled_event_age_seconds`` histogram as it stands."""
        from prometheus_client.core import HistogramMetricFamily

        counts, total = list(self._counts), self._sum
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return HistogramMetricFamily(AGE_METRIC, AGE_HELP, buckets=buckets, sum_value=total)


class SpooledCollector:
    """A ``prometheus_client`` collector that reads a runtime when scraped."""

    def __init__(self, runtime: SpooledRuntime, ages: AgeHistogram | None = None) -> None:
        self.runtime = runtime
        self.ages = ages
        """The event-age histogram, fed by the runtime (:func:`register` makes it)."""

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the runtime (checked for clashes)."""
        from prometheus_client.core import HistogramMetricFamily

        yield from _families(None)
        if self.ages is not None:
            yield HistogramMetricFamily(AGE_METRIC, AGE_HELP)

    def collect(self) -> Iterator[Metric]:
        yield from _families(read(self.runtime))
        if self.ages is not None:
            yield self.ages.family()


def _families(reading: Reading | None) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    shown = reading or Reading()
    for key, name, help_text in COUNTERS:
        counter = CounterMetricFamily(name, help_text)
        if reading is not None:
            counter.add_metric([], shown.counters.get(key, 0))
        yield counter
    for key, name, help_text in BY_REASON:
        counter = CounterMetricFamily(name, help_text, labels=["reason"])
        for reason, count in sorted(shown.by_reason.get(key, {}).items()):
            counter.add_metric([reason], count)
        yield counter
    for name, (help_text, value) in shown.gauges().items():
        gauge = GaugeMetricFamily(name, help_text)
        if reading is not None and value is not None:
            gauge.add_metric([], float(value))
        yield gauge
    yield _one_of("spooled_health", "health", HEALTHS, shown.health, reading is not None)
    yield _one_of("spooled_connection_state", "state", STATES, shown.state, reading is not None)


ONE_OF_HELP = {
    "spooled_health": "1 for the listener's health verdict (connected, degraded, refused...).",
    "spooled_connection_state": "1 for the connection's state.",
}


def _one_of(name: str, label: str, values: tuple[str, ...], current: str, show: bool) -> Metric:
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(name, ONE_OF_HELP[name], labels=[label])
    if show:
        for value in (*values, *(() if current in values else (current,))):
            gauge.add_metric([value], 1.0 if value == current else 0.0)
    return gauge


def register(
    runtime: SpooledRuntime, registry: CollectorRegistry | None = None
) -> SpooledCollector:
    """Export ``runtime``'s metrics from ``registry`` (default: ``prometheus_client.REGISTRY``).

    Adds a :class:`SpooledCollector` and the ``spooled_event_age_seconds`` histogram,
    which the runtime's dispatch thread feeds from now on. One runtime per registry:
    the metric names carry no runtime label.
    """
    prometheus = require_prometheus()
    target = prometheus.REGISTRY if registry is None else registry
    collector = SpooledCollector(runtime, AgeHistogram())
    target.register(collector)
    assert collector.ages is not None
    runtime.observe_event_age(collector.ages.observe)
    return collector


class MetricsServer:
    """An HTTP endpoint serving one runtime's metrics (and its process's) on a port."""

    def __init__(self, server: Any, thread: threading.Thread, registry: CollectorRegistry) -> None:
        self._server = server
        self._thread = thread
        self.registry = registry
        self.port = int(server.server_address[1])
        """The port it listens on (the one asked for, or the one chosen for port 0)."""

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5.0)

    def forget(self) -> None:
        """In a forked child: close this process's copy of the listening socket, so
        that only the parent holds the port (the serving thread is the parent's)."""
        server, self._server = self._server, None
        if server is not None:
            server.socket.close()

    def __repr__(self) -> str:
        return f"MetricsServer(port={self.port}, serving={self._server is not None})"


def serve(runtime: SpooledRuntime, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve ``runtime``'s metrics at ``http://<addr>:<port>/metrics`` from a thread.

    A registry of its own: the Spooled metrics, the event-age histogram and this
    process's ``process_*``/``python_*`` metrics. ``OSError`` when the port is taken.
    """
    prometheus = require_prometheus()
    registry = prometheus.CollectorRegistry()
    prometheus.ProcessCollector(registry=registry)
    prometheus.PlatformCollector(registry=registry)
    register(runtime, registry)
    server, thread = prometheus.start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread, registry)
