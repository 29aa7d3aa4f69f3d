"""The worker module of the django-dramatiq test: Django is set up first (as
``django_dramatiq.setup`` does for ``manage.py rundramatiq``), which builds the broker
and the Spooled middleware from ``DRAMATIQ_BROKER``; then the actor is declared."""

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django

django.setup()

import dramatiq  # noqa: E402

QUEUE = os.environ["SPOOLED_TEST_QUEUE"]
OUTPUT = os.environ["SPOOLED_TEST_OUTPUT"]


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def record_django(event: dict[str, object]) -> None:
    with open(OUTPUT, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "event": event}) + "\n")
