"""``SpooledMiddleware``: Dramatiq's hooks start, check and stop the Spooled listener.

* ``actor_options`` declares the ``spooled_*`` actor options (:mod:`.actors`).
* ``before_worker_boot`` checks everything (settings, credentials, subscriptions,
  actors, queues, options) in every worker process and raises :class:`SpooledBootError`
  listing every problem, which Dramatiq lets through, so a bad setup stops ``dramatiq``
  at its first boot instead of losing events. Bad settings do not raise when the
  middleware is built (the actors are not declared yet): they wait for the boot, so
  one error lists them with the subscription and actor problems.
* ``forks`` (mode ``"fork"``) asks the ``dramatiq`` command for one listener process;
  ``after_worker_boot`` starts a listener in the worker process itself in mode
  ``"every_process"``, or when no ``dramatiq`` command runs the worker.
* ``before_worker_shutdown`` stops it within ``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import dramatiq
from dramatiq.middleware import Middleware, MiddlewareError

from spooled_integrations._notices import first_to_say
from spooled_integrations.dramatiq.actors import ACTOR_OPTIONS, actor_subscriptions
from spooled_integrations.dramatiq.cli_context import is_cli_worker
from spooled_integrations.dramatiq.fork import spooled_listener
from spooled_integrations.dramatiq.listener_lock import ListenerLock, ListenerWatch
from spooled_integrations.dramatiq.prometheus import MultiprocessExporter, export_metrics
from spooled_integrations.dramatiq.publisher import DramatiqPublisher
from spooled_integrations.dramatiq.settings import DramatiqSettings, settings_and_problems
from spooled_integrations.dramatiq.status_file import StatusFile, StatusWriter
from spooled_integrations.errors import ConfigurationError, SettingsError, SubscriptionError
from spooled_integrations.runtime import (
    DrainReport,
    RuntimeConfig,
    SpooledRuntime,
    Subscription,
    SubscriptionSet,
)
from spooled_integrations.runtime.declared import as_option
from spooled_integrations.runtime.subscriptions import (
    in_rule_order,
    parse_subscriptions,
    position,
)

__all__ = ["SpooledBootError", "SpooledMiddleware"]

logger = logging.getLogger(__name__)

_BOOT_FAILED = 2
"""The dramatiq command's own code for a worker that could not start (RET_IMPORT)."""


class SpooledBootError(SettingsError, MiddlewareError):
    """The Spooled listener cannot run as configured; ``problems`` lists every reason.

    A :class:`~dramatiq.middleware.MiddlewareError`, so Dramatiq does not swallow it in
    ``before_worker_boot``: the worker process exits and ``dramatiq`` shuts down.
    """

    consequence = "the Spooled listener refused to boot"

    def __init__(self, problems: Sequence[str]) -> None:
        SettingsError.__init__(self, problems)


def _exit_with_problems_once(exc: SpooledBootError) -> NoReturn:
    """Under the ``dramatiq`` command every worker process fails the same boot: the
    first one logs the problems, the others one line, and none prints a traceback
    (the command then stops with the processes' exit code)."""
    run = f"boot problems of the dramatiq run {os.getppid()}"
    notices = Path(tempfile.gettempdir()) / "spooled-dramatiq-notices"
    if first_to_say(run, notices, forget_after=60.0):  # the processes fail together
        logger.critical("%s", exc)
    else:
        logger.critical(
            "Spooled listener refused to boot: the same %d problem(s), listed by another "
            "worker process of this run",
            len(exc.problems),
        )
    raise SystemExit(_BOOT_FAILED)


class SpooledMiddleware(Middleware):  # type: ignore[misc,unused-ignore]  # untyped before 2.0
    """Run a Spooled listener for a Dramatiq broker and route its events to actors.

    Build it with no arguments (``SPOOLED_*`` environment variables), from a settings
    source (a :class:`DramatiqSettings`, a mapping, or an object with ``SPOOLED_*``
    attributes), and/or with keyword arguments, which win; see :mod:`.settings`. Add it
    to the broker before declaring actors that use ``spooled_*`` options.
    """

    def __init__(self, settings: Any = None, **options: Any) -> None:
        """``options``: any setting of :mod:`spooled_integrations.settings` by name
        (``api_key=``, ``shutdown_timeout=``, ``queue_size=``...), plus the grouped
        ``connection=`` and ``runtime=``; see :mod:`.settings`."""
        # Problems wait for the worker boot, where they are reported with the actors'.
        self.settings: DramatiqSettings
        self.settings, self.setting_problems = settings_and_problems(settings, **options)
        self._lock = threading.Lock()
        self._runtime: SpooledRuntime | None = None
        self._prepared: SpooledRuntime | None = None
        self._owner_pid = 0  # the process whose threads self._runtime runs
        self._watch: ListenerWatch | None = None  # fork mode: ready to replace the fork
        self._status_writer: StatusWriter | None = None  # fork mode: for the workers
        self._metrics: MultiprocessExporter | None = None  # with Dramatiq's Prometheus

    def __repr__(self) -> str:
        s = self.settings
        return f"SpooledMiddleware(enabled={s.enabled}, mode={s.mode!r}, transport={s.transport!r})"

    # -- what Dramatiq reads ---------------------------------------------------------

    @property
    def actor_options(self) -> set[str]:
        return set(ACTOR_OPTIONS)

    @property
    def forks(self) -> list[Callable[[], int]]:
        if self.settings.enabled and self.settings.mode == "fork" and not self.setting_problems:
            return [spooled_listener]
        return []

    # -- hooks -------------------------------------------------------------------------

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not self.settings.enabled:
            logger.info("Spooled listener disabled (SPOOLED_ENABLED=false)")
            return
        try:
            runtime = self.build_runtime(broker)
        except SpooledBootError as exc:
            if is_cli_worker(broker):
                _exit_with_problems_once(exc)
            raise
        with self._lock:
            self._prepared = runtime

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not self.settings.enabled:
            return
        with self._lock:
            prepared, self._prepared = self._prepared, None
        if self.settings.mode == "fork" and is_cli_worker(broker):
            logger.debug("Spooled listener runs in the dramatiq fork process, not here")
            self._watch_listener(broker)
            return
        if self.settings.mode == "fork":
            logger.info(
                "Spooled listener runs in this process: the worker was not started by the "
                "dramatiq command, so there is no fork process for it"
            )
        self.start(broker, prepared)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        self.stop()

    # -- the listener --------------------------------------------------------------------

    def check(self, broker: dramatiq.Broker) -> list[str]:
        """Every problem that would stop the listener from booting (empty when fine)."""
        try:
            self.build_runtime(broker)
        except SpooledBootError as exc:
            return exc.problems
        return []

    def subscriptions(self, broker: dramatiq.Broker) -> SubscriptionSet:
        """The configured subscriptions plus the actors' ``spooled_*`` ones, validated."""
        subscriptions, problems = self._collect(broker)
        if problems:
            raise SpooledBootError(problems)
        return subscriptions

    def build_runtime(self, broker: dramatiq.Broker) -> SpooledRuntime:
        """A runtime ready to start; :class:`SpooledBootError` lists every problem."""
        settings = self.settings
        publisher = DramatiqPublisher(broker)
        subscriptions, problems = self._collect(broker, publisher)
        problems = self.setting_problems + settings.connection_problems() + problems
        if problems:
            raise SpooledBootError(problems)
        extra = dict(settings.runtime)
        if settings.coordination is not None:
            extra["coordination"] = settings.coordination
        try:
            config = RuntimeConfig(
                connection=settings.connection,
                transport=settings.transport,
                filter=settings.filter,
                subscriptions=subscriptions,
                **extra,
            )
            return SpooledRuntime(config, publisher)
        except SubscriptionError as exc:
            raise SpooledBootError(exc.problems) from None
        except ConfigurationError as exc:
            raise SpooledBootError([str(exc)]) from None

    def start(
        self, broker: dramatiq.Broker, runtime: SpooledRuntime | None = None
    ) -> SpooledRuntime:
        """Start the listener in this process (idempotent); no network I/O on this thread."""
        with self._lock:
            if self._runtime is not None and self._owner_pid == os.getpid():
                return self._runtime
            runtime = runtime or self.build_runtime(broker)
            runtime.start()
            self._runtime, self._owner_pid = runtime, os.getpid()
            if self.settings.mode == "fork":  # the workers' status() reads it
                self._status_writer = StatusWriter(StatusFile(os.getppid()), runtime.status)
                self._status_writer.start()
            self._metrics = self._export_metrics(broker, runtime)
        self._log_started(runtime)
        return runtime

    def stop(self, timeout: float | None = None) -> DrainReport | None:
        """Stop this process's listener within ``timeout`` (default ``shutdown_timeout``) s."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
            self._prepared = None
            if runtime is None or self._owner_pid != os.getpid():
                return None  # nothing started here (a copy inherited through fork has no threads)
            writer, self._status_writer = self._status_writer, None
            metrics, self._metrics = self._metrics, None
        if writer is not None:
            writer.stop()
        limit = self.settings.shutdown_timeout if timeout is None else timeout
        report = runtime.stop(limit)
        if metrics is not None:
            metrics.stop()  # its last write says "stopped"
        if report.left or report.timed_out:
            logger.warning(
                "Spooled listener stopped with %d event(s) not dispatched (timed out: %s)",
                report.left,
                report.timed_out,
            )
        return report

    def status(self) -> dict[str, Any]:
        """The listener's status, plus where it runs: in ``mode="fork"`` a worker process
        reads what the listener's process wrote (``listener_pid``, ``status_age``,
        ``stale`` when it stopped writing)."""
        settings = self.settings
        with self._lock:
            runtime = self._runtime if self._owner_pid == os.getpid() else None
        base: dict[str, Any] = {"enabled": settings.enabled, "mode": settings.mode}
        if runtime is None:
            written = StatusFile(os.getppid()).read() if settings.mode == "fork" else None
            if written is not None:  # the fork process's listener, a second old at most
                return {**base, **written, "listening_here": False}
            return {**base, "running": False, "listening_here": False}
        return {**base, **runtime.status(), "listening_here": True}

    # -- helpers -----------------------------------------------------------------------

    def _export_metrics(
        self, broker: dramatiq.Broker, runtime: SpooledRuntime
    ) -> MultiprocessExporter | None:
        """With Dramatiq's ``Prometheus`` middleware, the listener's metrics join its
        exposition (:mod:`.prometheus`); a failure there costs the metrics only."""
        try:
            return export_metrics(broker, runtime, fork_mode=self.settings.mode == "fork")
        except Exception:
            logger.exception("Spooled metrics are not exported to the Prometheus middleware")
            return None

    def _watch_listener(self, broker: dramatiq.Broker) -> None:
        """Take the listener over if the fork process dies (see :mod:`.listener_lock`)."""
        lock = ListenerLock(os.getppid())
        lock.remove_stale()  # the fork starts after every worker booted
        watch = ListenerWatch(lock, lambda: self.start(broker))
        with self._lock:
            self._watch = watch
        watch.start()

    def _collect(
        self, broker: dramatiq.Broker, publisher: DramatiqPublisher | None = None
    ) -> tuple[SubscriptionSet, list[str]]:
        """The subscriptions and every problem; with ``publisher``, the targets of every
        rule that could be read are checked too, even when others have problems."""
        problems: list[str] = []
        configured: list[tuple[int, Subscription]] = []
        try:
            configured, problems = parse_subscriptions(self.settings.subscriptions or [])
        except ConfigurationError as exc:
            problems.append(str(exc))
        from_actors, actor_problems = actor_subscriptions(broker, partial=True)
        problems.extend(actor_problems)
        if publisher is not None:
            for index, sub in configured:
                problems.extend(f"{position(index, sub.name)}.{p}" for p in publisher.problems(sub))
            for sub in from_actors:
                problems.extend(
                    f"actor {sub.actor!r}: {as_option(p)}" for p in publisher.problems(sub)
                )
        if problems:
            return SubscriptionSet(), in_rule_order(problems)
        try:
            return SubscriptionSet([*(sub for _, sub in configured), *from_actors]), []
        except SubscriptionError as exc:
            return SubscriptionSet(), exc.problems

    def _log_started(self, runtime: SpooledRuntime) -> None:
        config = runtime.config
        targets = sorted({str(s.actor) for s in config.subscriptions if s.actor is not None})
        logger.info(
            "Spooled listener started in pid %d (mode=%s): %s %s, %d subscription(s), actors: %s",
            os.getpid(),
            self.settings.mode,
            config.transport,
            runtime.url,
            len(config.subscriptions),
            ", ".join(targets) or "none (signals only)",
        )
