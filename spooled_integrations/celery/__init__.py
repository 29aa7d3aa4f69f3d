"""Celery integration: a Spooled listener in the worker, events routed to local tasks.

Enable it with configuration only::

    imports = ["spooled_integrations.celery"]      # or include = [...]
    spooled_enabled = True
    spooled_api_key = "sk_live_..."                  # or SPOOLED_API_KEY in the env
    spooled_subscriptions = [
        {"events": ["job.completed"], "queue": "emails", "task": "billing.on_email_sent"},
    ]

or with one call where the app is defined: ``spooled_integrations.celery.install(app)``.
``spooled_enabled = True`` alone does nothing: something must load this package
(``imports``/``include`` or ``install``), and only then do the settings apply.
Django: the same settings with the ``CELERY_`` prefix (``CELERY_SPOOLED_API_KEY``).
Tasks can subscribe themselves: ``@app.task(spooled_events=["job.completed"],
spooled_queue="emails")``. Every setting is described in
:mod:`spooled_integrations.celery.settings`.

What runs where:

- one runtime per worker node, in the **main process**, started by a Worker-blueprint
  bootstep after the pool (:mod:`~spooled_integrations.celery.bootstep`);
- events become ``app.send_task(name, args=[payload], **options)`` calls, so
  ``task_routes`` apply; the task runs wherever Celery routes it;
- receivers of :data:`spooled_signal` run in the worker main process, on the runtime's
  dispatch thread (not in a pool child and not in a task): keep them quick and
  thread-safe;
- ``celery -A proj inspect spooled_status`` shows every node's runtime status.

Choosing nodes: ``celery worker --spooled/--no-spooled`` overrides the setting for one
worker. Celery reads worker options before it imports ``imports``, so the option
exists only when the module is imported where the app is defined (``install(app)``
does that), or when the worker runs as ``python -m spooled_integrations.celery -A proj
worker ...``. In config-only mode set ``SPOOLED_ENABLED=0``/``1`` in the node's
environment instead. The same applies to ``inspect spooled_status``: Celery's CLI
accepts it once this module is imported (``install(app)``, or ``python -m
spooled_integrations.celery -A proj inspect spooled_status``).

Importing this module starts nothing: it registers the bootstep hook, the worker
option's factory and the inspect command. gevent/eventlet pools are refused at boot.
"""

from __future__ import annotations

try:
    import celery as _celery  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        'spooled_integrations.celery needs Celery: pip install "spooled-integrations[celery]"'
    ) from exc

from spooled_integrations.celery.bootstep import SpooledStep
from spooled_integrations.celery.control import spooled_status
from spooled_integrations.celery.install import install, is_installed, worker_option
from spooled_integrations.celery.publisher import CeleryPublisher
from spooled_integrations.celery.settings import (
    SETTINGS,
    SpooledImproperlyConfigured,
    read_settings,
)
from spooled_integrations.celery.taskoptions import TASK_OPTIONS
from spooled_integrations.runtime.signals import spooled_signal

__all__ = [
    "SETTINGS",
    "TASK_OPTIONS",
    "CeleryPublisher",
    "SpooledImproperlyConfigured",
    "SpooledStep",
    "install",
    "is_installed",
    "read_settings",
    "spooled_signal",
    "spooled_status",
    "worker_option",
]
