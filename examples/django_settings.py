"""Spooled for a Django project's Celery workers: the ``CELERY_SPOOLED_*`` settings.

Django projects load Celery settings with a namespace, so every Spooled setting takes
the ``CELERY_`` prefix (``spooled_api_key`` becomes ``CELERY_SPOOLED_API_KEY``)::

    # proj/celery.py
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()

Paste the block below into ``settings.py``. Unset credentials fall back to the
``SPOOLED_API_KEY`` / ``SPOOLED_TOKEN`` / ``SPOOLED_BASE_URL`` environment variables, and
``SPOOLED_ENABLED=0`` turns the listener off on one node. A misspelt
``CELERY_SPOOLED_*`` name stops the worker at boot with the setting's name.
"""

import os

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

# -- Spooled --------------------------------------------------------------------------
CELERY_IMPORTS = ["spooled_integrations.celery"]
CELERY_SPOOLED_ENABLED = True
CELERY_SPOOLED_API_KEY = os.environ.get("SPOOLED_API_KEY")  # or omit: env fallback
CELERY_SPOOLED_TRANSPORT = "ws"  # or "sse"
CELERY_SPOOLED_FILTER = {"queue_name": "emails"}  # server-side: fewer bytes on the wire
CELERY_SPOOLED_SUBSCRIPTIONS = [
    {
        "name": "email-sent",
        "events": ["job.completed"],
        "queue": "emails",
        "task": "billing.tasks.on_email_sent",
        "options": {"queue": "billing", "priority": 5},
        "max_age": 600,
    },
]
# or a file: CELERY_SPOOLED_SUBSCRIPTIONS = BASE_DIR / "spooled.toml"
CELERY_SPOOLED_RECONNECT_DELAY = 1.0
CELERY_SPOOLED_MAX_RECONNECT_DELAY = 30.0
CELERY_SPOOLED_LIVENESS_TIMEOUT = 75.0
CELERY_SPOOLED_SHUTDOWN_TIMEOUT = 10.0
