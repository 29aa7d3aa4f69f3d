"""One Spooled listener per ``dramatiq`` run, kept alive when its process dies.

The ``dramatiq`` main process does not watch its fork processes: if the listener's
fork is killed (OOM killer, ``kill -9``), events would silently stop. So the process
that runs the listener holds an exclusive ``flock`` on a file named after the
``dramatiq`` main process, and every worker process of the run checks that lock once a
second. The kernel releases the lock when its holder dies, however it dies; the first
worker to get it then runs the listener itself (:class:`ListenerWatch`). A holder that
stops cleanly removes the file before it lets go, so nobody takes over a shutdown.

The file appears under its final name already locked (it is locked under a temporary
name and renamed), so "the file exists and nobody holds it" always means its holder
is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, so no takeover
    fcntl = None  # type: ignore[assignment]

__all__ = ["ListenerLock", "ListenerWatch"]

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0


class ListenerLock:
    """The lock of the listener of the ``dramatiq`` run whose main process is ``main_pid``."""

    def __init__(self, main_pid: int, directory: str | None = None) -> None:
        folder = Path(directory or tempfile.gettempdir())
        self.path = folder / f"spooled-dramatiq-{main_pid}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def create(self) -> None:
        """Create the file, locked by this process (the listener's own process)."""
        if fcntl is None:
            return
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.replace(temporary, self.path)
        self._fd = fd

    def take_if_orphaned(self) -> bool:
        """Take the lock if the file exists and its holder is gone; True if taken."""
        if fcntl is None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False  # no listener started yet, or it stopped cleanly
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False  # the holder is alive
        if not _still_named(fd, self.path):  # removed by a clean stop meanwhile
            os.close(fd)
            return False
        self._fd = fd
        return True

    def remove_stale(self) -> None:
        """Remove a file left by a run whose main process had this pid before."""
        if self.take_if_orphaned():
            self.retire()

    def retire(self) -> None:
        """A clean stop: remove the file, then let go, so that nobody takes over."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(fd)

    def holder(self) -> str:
        """The pid written by the process that created the file (for log lines)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


class ListenerWatch:
    """A worker's thread that takes the listener over when its process dies."""

    def __init__(self, lock: ListenerLock, take_over: Callable[[], object]) -> None:
        self._lock = lock
        self._take_over = take_over
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="spooled-listener-watch", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (a worker shutting down); a lock taken over is retired."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(CHECK_INTERVAL * 2)
        self._lock.retire()

    def _run(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            holder = self._lock.holder()
            try:
                taken = self._lock.take_if_orphaned()
            except OSError:
                logger.warning("Spooled: cannot check the listener lock %s", self._lock.path)
                continue
            if not taken:
                continue
            if self._stop.is_set():  # shutting down after all
                self._lock.retire()
                return
            logger.critical(
                "Spooled listener process (pid %s) is gone; worker process %d takes the "
                "listener over so that events keep being routed",
                holder,
                os.getpid(),
            )
            try:
                self._take_over()
            except Exception:
                logger.critical("Spooled listener could not start here", exc_info=True)
                self._lock.retire()  # leave it to another process? it would fail alike
            return
