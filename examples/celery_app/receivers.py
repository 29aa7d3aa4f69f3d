"""A signal receiver for ``job.failed``: runs in the worker main process, not a task."""

import logging
from typing import Any

from spooled_integrations.runtime import spooled_signal

logger = logging.getLogger(__name__)


@spooled_signal.connect_via("job.failed")
def on_job_failed(sender: str, event: Any, **kwargs: Any) -> None:
    # Quick and non-blocking: this runs on the dispatch thread, before routing.
    logger.warning(
        "Spooled job %s failed on queue %s: %s",
        event.job_id,
        event.queue_name,
        event.data.get("error"),
    )
