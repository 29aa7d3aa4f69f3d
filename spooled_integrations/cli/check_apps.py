"""The routes a worker would build from a Celery app or a Dramatiq broker module.

``check --celery proj`` and ``check --dramatiq module`` load the app the way ``celery
-A proj`` and ``dramatiq module`` do (the current directory importable), then run the
same code a worker runs at boot: Celery's :func:`read_settings` and the runtime's own
checks, Dramatiq's :meth:`SpooledMiddleware.build_runtime`. So the table and the
problems are the boot's, not a second opinion; nothing connects to Spooled.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spooled_integrations.runtime import SpooledRuntime

__all__ = ["AppProblems", "AppRoutes", "celery_routes", "dramatiq_routes"]


@dataclass
class AppRoutes:
    """What a worker of the app would run: its runtime (not started) and notes."""

    label: str
    runtime: SpooledRuntime
    notes: list[str] = field(default_factory=list)


class AppProblems(Exception):
    """The app cannot be loaded, or its worker would refuse to boot: every reason."""

    def __init__(self, label: str, problems: list[str]) -> None:
        super().__init__(f"{label}: {len(problems)} problem(s)")
        self.label = label
        self.problems = problems


def _importable_cwd() -> None:
    """As ``celery -A`` and ``dramatiq`` (``--path .``) do: the cwd comes first."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _load_failure(what: str, exc: BaseException) -> list[str]:
    return [f"cannot load {what}: {type(exc).__name__}: {exc}"]


def celery_routes(spec: str) -> AppRoutes:
    """The runtime a worker of ``celery -A <spec>`` builds; :class:`AppProblems` lists
    every problem its boot would report."""
    label = f"Celery app {spec!r}"
    try:
        from celery.app.utils import find_app
    except ImportError:
        raise AppProblems(
            label, ["Celery is not installed; pip install 'spooled-integrations[celery]'"]
        ) from None
    _importable_cwd()
    try:
        app = find_app(spec)
        app.loader.import_default_modules()  # the config's imports/include, as a worker does
    except Exception as exc:
        raise AppProblems(label, _load_failure(label, exc)) from None
    from celery import Celery

    if not isinstance(app, Celery):
        raise AppProblems(label, [f"{spec!r} is a {type(app).__name__}, not a Celery app"])
    from spooled_integrations.celery.bootstep import installed_apps
    from spooled_integrations.celery.settings import (
        SpooledImproperlyConfigured,
        read_enabled,
        read_settings,
    )
    from spooled_integrations.errors import ConfigurationError, SubscriptionError
    from spooled_integrations.runtime import SpooledRuntime

    problems: list[str] = []
    notes: list[str] = []
    try:
        enabled, enabled_by = read_enabled(app, cli=None, installed=app in installed_apps)
        if not enabled:
            notes.append(
                f"the listener is off for this app ({enabled_by}); a worker started with "
                "--spooled or SPOOLED_ENABLED=1 builds these routes"
            )
    except SpooledImproperlyConfigured as exc:
        problems.extend(exc.problems)
    try:
        settings = read_settings(app)
    except SpooledImproperlyConfigured as exc:
        raise AppProblems(label, problems + exc.problems) from None
    if settings.metrics_port is not None:
        problems.extend(_metrics_problems("spooled_metrics_port"))
    try:
        runtime = SpooledRuntime(settings.runtime, settings.publisher)
    except (SubscriptionError, ConfigurationError) as exc:
        problems.extend(getattr(exc, "problems", None) or [str(exc)])
    if problems:
        raise AppProblems(label, problems)
    return AppRoutes(label, runtime, notes)


def _metrics_problems(setting: str) -> list[str]:
    from spooled_integrations.runtime.prometheus import require_prometheus

    try:
        require_prometheus()
    except ImportError as exc:
        return [f"{setting}: {exc}"]
    return []


def dramatiq_routes(spec: str) -> AppRoutes:
    """The runtime the ``SpooledMiddleware`` of ``dramatiq <spec>``'s broker builds;
    :class:`AppProblems` lists every problem its boot would report."""
    label = f"Dramatiq broker {spec!r}"
    try:
        from dramatiq.cli import import_broker
    except ImportError:
        raise AppProblems(
            label, ["Dramatiq is not installed; pip install 'spooled-integrations[dramatiq]'"]
        ) from None
    _importable_cwd()
    try:
        _, broker = import_broker(spec)  # type: ignore[no-untyped-call,unused-ignore]
    except Exception as exc:
        raise AppProblems(label, _load_failure(label, exc)) from None
    from spooled_integrations.dramatiq import SpooledMiddleware
    from spooled_integrations.dramatiq.middleware import SpooledBootError

    found = [m for m in broker.middleware if isinstance(m, SpooledMiddleware)]
    if not found:
        raise AppProblems(
            label,
            [
                "the broker has no SpooledMiddleware; add it before declaring actors: "
                "broker.add_middleware(SpooledMiddleware(...))"
            ],
        )
    middleware = found[0]
    notes = []
    if not middleware.settings.enabled:
        notes.append(
            "the listener is off (SPOOLED_ENABLED=false); with it on, a worker builds these routes"
        )
    try:
        runtime = middleware.build_runtime(broker)
    except SpooledBootError as exc:
        raise AppProblems(label, list(exc.problems)) from None
    notes.append(f"the listener runs in mode={middleware.settings.mode!r}")
    return AppRoutes(label, runtime, notes)
