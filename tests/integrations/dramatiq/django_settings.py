"""A Django settings module as a django-dramatiq project writes it: the broker and its
middleware by dotted path, the Spooled settings as ``SPOOLED_*`` names (the test passes
their values in ``DJANGO_TEST_*`` variables, so only Django's settings can carry them)."""

import json
import os

SECRET_KEY = "test-only-not-secret"
INSTALLED_APPS = ["django_dramatiq"]
DATABASES: dict[str, object] = {}
USE_TZ = True

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": os.environ["DJANGO_TEST_BROKER_URL"]},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.Retries",
        "spooled_integrations.dramatiq.SpooledMiddleware",
    ],
}

SPOOLED_BASE_URL = os.environ["DJANGO_TEST_BASE_URL"]
SPOOLED_API_KEY = os.environ["DJANGO_TEST_API_KEY"]
SPOOLED_SUBSCRIPTIONS = json.dumps(  # JSON text, as an environment-fed setting often is
    [
        {
            "events": ["job.completed"],
            "queue": "emails",
            "actor": "record_django",
            "delivery": "every_node",
        }
    ]
)
