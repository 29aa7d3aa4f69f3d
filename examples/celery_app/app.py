"""The Celery app; all Spooled configuration lives in :mod:`celery_app.celeryconfig`."""

from celery import Celery

app = Celery("celery_app")
app.config_from_object("celery_app.celeryconfig")
