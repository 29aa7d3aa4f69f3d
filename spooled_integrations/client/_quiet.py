"""Our own HTTP requests at DEBUG in httpx's log, everyone else's left as they are.

httpx logs every request at INFO on the ``httpx`` logger. Ours are routine (a login, a
job-list poll every few seconds) and would bury a worker's log, so while one of our
calls runs, its records are moved to DEBUG. A filter on that logger, added the first
time we make a request (never at import), tells them apart by a thread-local flag.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

__all__ = ["quiet_requests"]

_local = threading.local()
_lock = threading.Lock()


class _OursAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and getattr(_local, "quiet", False):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _install() -> None:
    httpx_logger = logging.getLogger("httpx")
    with _lock:
        if not any(isinstance(f, _OursAtDebug) for f in httpx_logger.filters):
            httpx_logger.addFilter(_OursAtDebug())


@contextlib.contextmanager
def quiet_requests() -> Iterator[None]:
    """httpx's INFO line for requests made inside the block is logged at DEBUG."""
    _install()
    _local.quiet = True
    try:
        yield
    finally:
        _local.quiet = False
