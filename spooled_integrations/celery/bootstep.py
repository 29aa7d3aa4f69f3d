"""The Worker-blueprint bootstep that runs one Spooled runtime per worker node.

Why a Worker bootstep that requires the Pool:

- it runs in the worker's **main process**, once per node, under every pool, and under
  ``celery.contrib.testing.start_worker`` (which builds a real ``WorkController``);
- it starts **after** the pool, so prefork children are forked before any listener
  thread or socket exists;
- the blueprint stops it on warm shutdown (``stop``) and cold shutdown (``terminate``),
  before the pool is torn down, so queued events can still be sent to the broker.

Everything that can be wrong is checked when the step is *built* (with the
``WorkController``), so a bad config stops the worker before it consumes anything.
Building and starting do no network I/O: the runtime connects on its own thread.

Fork safety: prefork forks replacement children from the main process *after* the
runtime runs there; :mod:`~spooled_integrations.celery.forksafety` disarms the copy in
every child, and every entry point here also checks the owning pid.

gevent and eventlet pools are refused at boot: the runtime uses real OS threads and
blocking sockets, which green pools monkey-patch. Run the listener on a prefork,
threads or solo node (``--spooled``) and the green nodes with ``--no-spooled``.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from spooled_integrations.celery.forksafety import track, untrack
from spooled_integrations.celery.settings import (
    SpooledCelerySettings,
    SpooledImproperlyConfigured,
    read_enabled,
    read_settings,
)
from spooled_integrations.errors import ConfigurationError, SubscriptionError
from spooled_integrations.runtime.runtime import SpooledRuntime

if TYPE_CHECKING:
    from spooled_integrations.runtime.prometheus import MetricsServer

__all__ = ["SpooledStep", "installed_apps"]

logger = logging.getLogger(__name__)

installed_apps: weakref.WeakSet[Any] = weakref.WeakSet()
"""Apps passed to :func:`spooled_integrations.celery.install` (enabled by default)."""

_TERMINATE_TIMEOUT = 1.0


def _green_pool_problems(parent: Any) -> list[str]:
    pool_cls = getattr(parent, "pool_cls", None)
    if pool_cls is None or not getattr(pool_cls, "is_green", False):
        return []
    name = f"{pool_cls.__module__}.{getattr(pool_cls, '__qualname__', pool_cls)}"
    return [
        f"spooled_enabled: the Spooled listener does not run under a green pool "
        f"({name}); it needs real threads. Start this node with --no-spooled (or "
        "SPOOLED_ENABLED=0) and run the listener on a prefork, threads or solo node"
    ]


def _metrics_problems() -> list[str]:
    from spooled_integrations.runtime.prometheus import require_prometheus

    try:
        require_prometheus()
    except ImportError as exc:
        return [f"spooled_metrics_port: {exc}"]
    return []


class SpooledStep(bootsteps.StartStopStep):
    """Runs the Spooled runtime in the worker main process (see the module docstring)."""

    label = "Spooled"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, spooled: bool | None = None, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.runtime: SpooledRuntime | None = None
        self.settings: SpooledCelerySettings | None = None
        self.disarmed = False
        self.hostname = str(getattr(parent, "hostname", "") or "")
        self._pid = os.getpid()
        self._stopped = False
        self._lock = threading.Lock()
        self._metrics: MetricsServer | None = None
        app = parent.app
        # Every problem is collected before anything raises: one error at the first boot.
        problems: list[str] = []
        try:
            self.enabled, self.enabled_by = read_enabled(
                app, cli=spooled, installed=app in installed_apps
            )
        except SpooledImproperlyConfigured as exc:
            problems.extend(exc.problems)
            self.enabled, self.enabled_by = True, "a spooled_enabled that is not a boolean"
        if not self.enabled:
            logger.info("Spooled listener is off on this node (%s)", self.enabled_by)
            return
        problems.extend(_green_pool_problems(parent))
        try:
            self.settings = read_settings(app)
        except SpooledImproperlyConfigured as exc:
            problems.extend(exc.problems)
        if self.settings is not None and self.settings.metrics_port is not None:
            problems.extend(_metrics_problems())
        if problems or self.settings is None:
            raise SpooledImproperlyConfigured(problems)
        try:
            self.runtime = SpooledRuntime(self.settings.runtime, self.settings.publisher)
        except (SubscriptionError, ConfigurationError) as exc:
            found = getattr(exc, "problems", None) or [str(exc)]
            raise SpooledImproperlyConfigured(found) from None
        runtime = self.settings.runtime
        logger.info(
            "Spooled listener enabled (%s): %s %s, %d subscription(s), shutdown timeout %gs",
            self.enabled_by,
            runtime.transport,
            self.runtime.url,
            len(runtime.subscriptions),
            self.settings.shutdown_timeout,
        )

    def create(self, parent: Any) -> None:
        return None

    def disarm(self) -> SpooledRuntime | None:
        """In a forked child: forget the runtime without touching it (see forksafety)."""
        runtime, self.runtime = self.runtime, None
        self.disarmed = True
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.forget()  # the child's copy of the endpoint's socket
        return runtime

    def _owned(self) -> bool:
        return not self.disarmed and os.getpid() == self._pid

    def start(self, parent: Any) -> None:
        runtime = self.runtime
        if runtime is None or not self._owned():
            return
        track(self)
        runtime.start()
        self._serve_metrics(runtime)

    def _serve_metrics(self, runtime: SpooledRuntime) -> None:
        """``spooled_metrics_port``: Prometheus metrics from this (main) process. A port
        already taken costs the endpoint, not the listener: logged, the worker runs on."""
        port = self.settings.metrics_port if self.settings is not None else None
        if port is None:
            return
        from spooled_integrations.runtime.prometheus import serve

        try:
            self._metrics = serve(runtime, port)
        except OSError as exc:
            logger.error("Spooled metrics endpoint not started on port %d: %s", port, exc)
            return
        logger.info("Spooled metrics at http://0.0.0.0:%d/metrics", port)

    def stop(self, parent: Any) -> None:
        """Warm shutdown: dispatch what is queued, bounded by ``spooled_shutdown_timeout``."""
        timeout = self.settings.shutdown_timeout if self.settings else 0.0
        self._stop(timeout)

    def terminate(self, parent: Any) -> None:
        """Cold shutdown: close now; queued events are counted as dropped."""
        timeout = self.settings.shutdown_timeout if self.settings else 0.0
        self._stop(min(timeout, _TERMINATE_TIMEOUT))

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)

    def _stop(self, timeout: float) -> None:
        if not self._owned():  # a forked child: its copy is parked, never stopped
            return
        with self._lock:
            runtime = self.runtime
            if runtime is None or self._stopped:
                return
            self._stopped = True
        untrack(self)
        # The runtime bounds its own stop; this guard holds even if it did not, so a
        # worker always exits within its shutdown time.
        worker = threading.Thread(
            target=runtime.stop, args=(timeout,), name="spooled-stop", daemon=True
        )
        worker.start()
        worker.join(timeout + 2.0)
        if worker.is_alive():
            logger.error(
                "Spooled runtime did not stop within %.1fs; leaving it to exit with the worker",
                timeout + 2.0,
            )
        metrics, self._metrics = self._metrics, None
        if metrics is not None:  # after the drain: its last counts stay scrapable until now
            metrics.close()

    def info(self, parent: Any) -> dict[str, Any]:  # type: ignore[override]  # stubs say None
        """``celery inspect stats`` carries this under ``spooled``: the listener's health is
        where Celery operators look, with no extra command to register."""
        return {"spooled": self.status()}

    def status(self) -> dict[str, Any]:
        """What ``celery inspect spooled_status`` shows for this node (JSON-ready)."""
        result: dict[str, Any] = {
            "enabled": self.enabled,
            "enabled_by": self.enabled_by,
            "pid": os.getpid(),
        }
        runtime = self.runtime
        if runtime is not None and self._owned():
            result.update(runtime.status())
        return result
