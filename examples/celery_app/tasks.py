"""The task Spooled's ``job.completed`` events on queue ``emails`` run."""

import logging
from typing import Any

from celery_app.app import app

logger = logging.getLogger(__name__)


@app.task(name="celery_app.tasks.on_email_sent")
def on_email_sent(data: dict[str, Any]) -> None:
    """``data`` is the event's data as plain JSON: job_id, queue_name, duration_ms, ..."""
    logger.info("email job %s completed in %s ms", data["job_id"], data.get("duration_ms"))
