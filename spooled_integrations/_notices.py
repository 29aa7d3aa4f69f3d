"""Say a thing once per node, not once per process or per boot.

A Dramatiq run boots one worker process per core, and each would report the same boot
problems with a traceback; a single node reboots with the same rules and would repeat
the same advice every time. A file created atomically (``O_EXCL``) decides who says
it: the first process to create it. Any other error answers "say it" — a notice is
never lost to a read-only disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

__all__ = ["first_to_say"]


def first_to_say(key: str, directory: Path, *, forget_after: float | None = None) -> bool:
    """Whether no process has said ``key`` in ``directory`` before (and now this one has).

    ``forget_after``: seconds after which what was said counts as unsaid (a key that
    names a process id, which the system reuses).
    """
    path = directory / f"said-{hashlib.sha256(key.encode()).hexdigest()[:24]}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if forget_after is not None and time.time() - path.stat().st_mtime > forget_after:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return True
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True
