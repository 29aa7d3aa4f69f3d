"""The listener lock: held while its process lives, taken over only when it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from spooled_integrations.dramatiq.listener_lock import ListenerLock

HOLD = """
import sys, time
from spooled_integrations.dramatiq.listener_lock import ListenerLock
lock = ListenerLock(int(sys.argv[1]), sys.argv[2])
lock.create()
print("held", flush=True)
time.sleep(60)
"""


def test_a_live_holder_keeps_it_and_a_clean_stop_leaves_nothing_to_take(tmp_path: Path) -> None:
    holder = ListenerLock(4242, str(tmp_path))
    holder.create()
    other = ListenerLock(4242, str(tmp_path))
    assert holder.path.exists()
    assert holder.holder() == str(os.getpid())
    assert not other.take_if_orphaned()  # flock: another open file description
    holder.retire()
    assert not holder.path.exists()
    assert not other.take_if_orphaned()


def test_the_lock_of_a_killed_process_is_taken_by_one_taker(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, "4343", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        first, second = ListenerLock(4343, str(tmp_path)), ListenerLock(4343, str(tmp_path))
        assert not first.take_if_orphaned()
        child.kill()
        child.wait(5)
        assert first.take_if_orphaned()
        assert not second.take_if_orphaned()  # exactly one taker
        assert first.held
        first.retire()
        assert not second.take_if_orphaned()
    finally:
        child.kill()
        child.wait(5)
        if child.stdout is not None:
            child.stdout.close()


def test_a_file_left_by_an_earlier_run_is_removed_at_boot(tmp_path: Path) -> None:
    stale = ListenerLock(4444, str(tmp_path))
    stale.create()
    os.close(stale._fd or -1)  # the process died long ago: the file stays, unlocked
    fresh = ListenerLock(4444, str(tmp_path))
    fresh.remove_stale()
    assert not fresh.path.exists()
    assert not fresh.held
    started = time.monotonic()
    fresh.create()  # the new run's listener
    assert time.monotonic() - started < 1
    fresh.retire()
