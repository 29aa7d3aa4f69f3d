"""The README's first section is the two commands (``.ci/run`` runs the second one
verbatim), and its links point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_first_section_is_the_two_commands() -> None:
    first = README.split("\n## ", 2)[1]
    assert first.startswith("Two commands\n")
    commands = re.findall(r"```sh\n(.*?)\n```", first, re.DOTALL)
    assert commands == [
        'pip install -e ".[all]" && spooled-integrations demo',
        'pip install -e ".[all,dev]" && python -m pytest',
    ]
    assert commands[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_linked_and_named_files_exist() -> None:
    linked = re.findall(r"\]\(([^)#]+)\)", README)
    named = re.findall(r"`((?:examples|docs|tests|bench)/[^`]*)`", README)
    missing = [p for p in linked + named if not p.startswith("http") and not (REPO / p).exists()]
    assert not missing, missing
