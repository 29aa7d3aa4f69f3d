"""The test files of docs/testing.md pass together in one pytest run, as a user's suite
would hold them: the receiver test's module-level receiver must not hear the events the
other examples publish (they ask for ``spooled_receivers_isolated``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n# (test_\w+\.py)\n(.*?)```", re.DOTALL)
ISOLATED_SNIPPET = """
from spooled_integrations import spooled_signal
from spooled_integrations.testing import Collector

heard = Collector()


def on_job_failed(sender, event, **kwargs):
    heard(event.job_id)


def test_only_my_receiver_runs(spooled_receivers_isolated):
    assert not spooled_signal.has_receivers_for("job.failed")  # test_receivers.py's: set aside
    spooled_signal.connect(on_job_failed, sender="job.failed", weak=False)
    assert list(spooled_signal.receivers_for("job.failed")) == [on_job_failed]


def test_and_gone_after_it():
    assert on_job_failed not in list(spooled_signal.receivers_for("job.failed"))
    assert spooled_signal.has_receivers_for("job.failed")  # test_receivers.py's is back
"""


def test_the_testing_page_examples_pass_in_one_run(tmp_path: Path) -> None:
    blocks = BLOCK.findall((DOCS / "testing.md").read_text(encoding="utf-8"))
    names = [name for name, _ in blocks]
    assert {"test_receivers.py", "test_dramatiq_actors.py"} <= set(names)
    for name, code in blocks:
        (tmp_path / name).write_text(code, encoding="utf-8")
    # The page's "isolate and connect it inside the test" pattern, runnable.
    (tmp_path / "test_zz_isolated_pattern.py").write_text(ISOLATED_SNIPPET, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(blocks) + 2} passed" in result.stdout, result.stdout
