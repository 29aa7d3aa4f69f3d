"""``spooled-integrations … | head``: a reader that leaves early is no crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_closed_stdout_gives_no_traceback(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spooled_integrations",
            "health",
            "--json",
            "--file",
            str(tmp_path / "absent.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head -c 0` would
    code = process.wait(timeout=60)
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code == 1
