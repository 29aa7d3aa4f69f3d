"""A Celery app that runs local tasks on Spooled events, enabled by configuration only.

Run it (Redis on localhost, your Spooled API key in the environment)::

    export SPOOLED_API_KEY=sk_live_...        # or SPOOLED_BASE_URL=... for the emulator
    cd examples
    celery -A celery_app worker -l INFO

What enables Spooled is four lines of ``celeryconfig.py``; no code calls this package::

    imports = ["spooled_integrations.celery", "celery_app.tasks", "celery_app.receivers"]
    spooled_enabled = True
    spooled_subscriptions = [
        {"events": ["job.completed"], "queue": "emails",
         "task": "celery_app.tasks.on_email_sent", "payload": "data"},
    ]

- every ``job.completed`` on the Spooled queue ``emails`` becomes a call of the Celery
  task ``celery_app.tasks.on_email_sent`` with the event's data (a plain dict), sent
  with ``app.send_task`` so ``task_routes`` apply;
- every ``job.failed`` reaches the blinker receiver in ``celery_app/receivers.py``; it
  runs in the worker's main process on the Spooled dispatch thread, so it must be quick;
- ``celery -A celery_app worker --no-spooled`` is not available in config-only mode
  (Celery parses worker options before it imports ``imports``): start nodes that should
  not listen with ``SPOOLED_ENABLED=0``, or run the worker as ``python -m
  spooled_integrations.celery -A celery_app worker --no-spooled``;
- ``python -m spooled_integrations.celery -A celery_app inspect spooled_status`` shows
  each node's connection state and counters.

Try it without an account: ``spooled-integrations emulator`` prints a base URL and an
API key to export as ``SPOOLED_BASE_URL`` and ``SPOOLED_API_KEY``.
"""

from celery_app.app import app

__all__ = ["app"]
