# mypy: allow-untyped-calls
# (Dramatiq 1.x ships py.typed but leaves most broker methods unannotated.)
"""The fork function: the one Spooled listener of a ``dramatiq`` run, in its own process.

The ``dramatiq`` command forks it from its main process after the workers booted
(``SpooledMiddleware.forks``). The main process never imported the user's broker, and
a fork function gets no arguments, so this process imports the broker and the actor
modules itself, from the ``dramatiq`` command line in its ``sys.argv`` (see
:mod:`.cli_context`); ``SPOOLED_DRAMATIQ_BROKER=module:broker`` overrides the broker.
It serves the broker's middleware whose ``forks`` asked for this function, running its
runtime until SIGTERM, SIGINT or SIGHUP, or until the ``dramatiq`` main process is gone,
and stops within the middleware's ``shutdown_timeout`` plus a small grace period, whatever
the connection is doing (a watchdog ends the process if stopping hangs).

The ``dramatiq`` main process does not restart a fork that dies; this one catches and
logs everything it can so that it does not, and holds the run's listener lock so that
a worker process takes the listener over if it dies all the same (see
:mod:`.listener_lock`).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, cast

import dramatiq

from spooled_integrations.dramatiq.cli_context import cli_args
from spooled_integrations.dramatiq.listener_lock import ListenerLock

__all__ = ["BROKER_VARIABLE", "Listener", "serve", "spooled_listener"]

logger = logging.getLogger(__name__)

BROKER_VARIABLE = "SPOOLED_DRAMATIQ_BROKER"
_RET_OK, _RET_FAILED, _RET_IMPORT = 0, 1, 2  # dramatiq.cli's exit codes
_PARENT_CHECK_INTERVAL = 1.0
_WATCHDOG_GRACE = 5.0
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


class _ShutdownTimeout(Protocol):
    @property
    def shutdown_timeout(self) -> float: ...


class Listener(Protocol):
    """What this process runs: a ``SpooledMiddleware`` (kept abstract so that the
    middleware module, which names this module's fork function, is not imported here)."""

    @property
    def settings(self) -> _ShutdownTimeout: ...

    @property
    def forks(self) -> list[Callable[[], int]]: ...

    def start(self, broker: dramatiq.Broker) -> object: ...

    def stop(self) -> object: ...


def spooled_listener() -> int:
    """Run the Spooled listener of this ``dramatiq`` run (a Dramatiq fork function)."""
    try:
        broker = _load_broker()
    except Exception:
        logger.critical(
            "Spooled listener could not load the Dramatiq broker; no Spooled events will be "
            "routed by this dramatiq run (set %s=module:broker if the dramatiq command "
            "line cannot be found)",
            BROKER_VARIABLE,
            exc_info=True,
        )
        return _RET_IMPORT
    middleware = _find_middleware(broker)
    if middleware is None:
        logger.critical(
            "Spooled listener: the broker %r has no SpooledMiddleware (was it added after "
            "the broker module was imported?); no Spooled events will be routed",
            broker,
        )
        return _RET_FAILED
    return serve(middleware, broker)


def serve(middleware: Listener, broker: dramatiq.Broker) -> int:
    """Run ``middleware``'s listener on this (main) thread until told to stop."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            logger.info("Spooled listener: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    for signum in _STOP_SIGNALS:
        signal.signal(signum, on_signal)
    parent = os.getppid()
    lock = ListenerLock(parent)  # if this process dies, a worker takes over
    lock.create()
    try:
        middleware.start(broker)
    except Exception:
        lock.retire()
        logger.critical(
            "Spooled listener refused to start; no Spooled events will be routed",
            exc_info=True,
        )
        return _RET_FAILED
    while not stop.wait(_PARENT_CHECK_INTERVAL):
        if os.getppid() != parent:
            logger.warning("Spooled listener: the dramatiq main process is gone, stopping")
            break
    _start_watchdog(middleware.settings.shutdown_timeout + _WATCHDOG_GRACE)
    lock.retire()  # a clean stop: no worker takes over
    try:
        middleware.stop()
    finally:
        try:
            broker.close()
        except Exception:
            logger.warning("Spooled listener: closing the broker failed", exc_info=True)
    return _RET_OK


def _load_broker() -> dramatiq.Broker:
    from dramatiq.cli import import_broker

    args = cli_args()
    override = os.environ.get(BROKER_VARIABLE, "").strip()
    broker_path: str | None = override or getattr(args, "broker", None)
    if not broker_path:
        raise RuntimeError(
            f"sys.argv is not a dramatiq command line and {BROKER_VARIABLE} is not set; "
            "cannot tell which broker to use"
        )
    modules: list[str] = list(getattr(args, "modules", None) or [])
    for path in reversed(getattr(args, "path", None) or []):
        if path not in sys.path:
            sys.path.insert(0, path)
    logger.debug("Spooled listener: loading broker %s and modules %s", broker_path, modules)
    _, broker = import_broker(broker_path)
    for module in modules:
        importlib.import_module(module)
    return broker  # type: ignore[no-any-return]


def _find_middleware(broker: dramatiq.Broker) -> Listener | None:
    """The middleware that asked for this fork (``spooled_listener in middleware.forks``)."""
    for middleware in broker.middleware:
        forks: Any = getattr(middleware, "forks", ())
        if spooled_listener in forks:
            return cast(Listener, middleware)
    return None


def _start_watchdog(seconds: float) -> None:
    """End the process if stopping (or exiting) takes longer than ``seconds``.

    Runtime threads stop within their own timeouts, but a broker call stuck on a dead
    socket could still keep a non-daemon thread, and with it the process, alive; the
    ``dramatiq`` main process would then wait for this fork forever.
    """

    def expire() -> None:
        time.sleep(seconds)
        logger.error("Spooled listener did not stop within %.0fs; exiting now", seconds)
        logging.shutdown()
        os._exit(_RET_FAILED)

    threading.Thread(target=expire, name="spooled-stop-watchdog", daemon=True).start()
