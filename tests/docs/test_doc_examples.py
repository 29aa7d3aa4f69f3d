"""The test files shown in docs/ run: each ```python block that starts with
``# test_<name>.py`` is written to a directory of its own and run by pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n# (test_\w+\.py)\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        found.extend(BLOCK.findall(page.read_text(encoding="utf-8")))
    return found


def test_the_docs_have_test_examples() -> None:
    names = [name for name, _ in examples()]
    assert len(names) == len(set(names)), names
    assert {"test_receivers.py", "test_rules.py", "test_celery_tasks.py"} <= set(names)


@pytest.mark.parametrize(("name", "code"), examples(), ids=[n for n, _ in examples()])
def test_doc_example_passes(name: str, code: str, tmp_path: Path) -> None:
    (tmp_path / name).write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
