"""How the bootstep reaches an app: ``install(app)`` or config-only ``imports``.

A worker reads its bootsteps from ``app.steps["worker"]`` when the ``WorkController``
is built, *after* ``app.loader.init_worker()`` imported the ``imports``/``include``
modules and right after it sent ``worker_init``. So in config-only mode the import of
this package connects a ``worker_init`` receiver that adds the step to the booting
worker's app; whether the step then runs is decided by the settings
(``spooled_enabled``). ``install(app)`` adds the step directly, adds the
``--spooled/--no-spooled`` worker option (Celery's CLI reads ``app.user_options``
right after importing the app module, so call it there) and turns the listener on
unless a setting turns it off. Both routes are idempotent and may be combined.
"""

from __future__ import annotations

import threading
from typing import Any

import click
from celery import Celery
from celery.bin.base import CeleryOption
from celery.signals import worker_init

from spooled_integrations.celery.bootstep import SpooledStep, installed_apps

__all__ = ["install", "is_installed", "worker_option"]

_lock = threading.Lock()


def worker_option() -> click.Option:
    """A fresh ``--spooled/--no-spooled`` option for ``celery worker``."""
    return CeleryOption(
        ["--spooled/--no-spooled"],
        default=None,
        help_group="Spooled Options",
        help="Run the Spooled listener on this node (overrides spooled_enabled).",
    )


def install(app: Celery) -> Celery:
    """Enable Spooled for ``app``'s workers; a second call does nothing. Returns ``app``.

    Registers the bootstep and the worker option; starts nothing. Call it in the
    module that creates the app, so the option exists before the CLI parses it.
    """
    with _lock:
        if app in installed_apps:
            return app
        app.steps["worker"].add(SpooledStep)
        app.user_options["worker"].add(worker_option())
        installed_apps.add(app)
    return app


def is_installed(app: Celery) -> bool:
    """True once :func:`install` ran for ``app``."""
    return app in installed_apps


@worker_init.connect(weak=False, dispatch_uid="spooled_integrations.celery.add_step")
def _add_step(sender: Any = None, **kwargs: Any) -> None:
    """Config-only route: give a booting worker's app the step (a set: idempotent)."""
    app = getattr(sender, "app", None)
    if app is not None:
        app.steps["worker"].add(SpooledStep)
