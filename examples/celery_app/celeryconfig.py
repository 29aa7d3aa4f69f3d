"""Celery settings, Spooled included (credentials come from ``SPOOLED_API_KEY``)."""

import os

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
broker_connection_retry_on_startup = True
# The example's test runs it on a queue of its own.
task_default_queue = os.environ.get("CELERY_APP_QUEUE", "celery")

# -- Spooled ------------------------------------------------------------------------
imports = ["spooled_integrations.celery", "celery_app.tasks", "celery_app.receivers"]
spooled_enabled = True
spooled_subscriptions = [
    {
        "name": "email-sent",
        "events": ["job.completed"],
        "queue": "emails",
        "task": "celery_app.tasks.on_email_sent",
        "payload": "data",
        "max_age": 300,  # a task waiting longer than 5 minutes is dropped (expires)
        # One worker node listens in this example; say so, no fleet coordination needed.
        "delivery": "every_node",
    },
]
spooled_shutdown_timeout = 10
