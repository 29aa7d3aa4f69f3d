"""The one "did you mean" helper of every message that names an unknown name."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

__all__ = ["by_meaning", "closest", "did_you_mean"]


def closest(
    name: str, known: Iterable[str] | Mapping[str, object], *, cutoff: float = 0.6
) -> str | None:
    """The known name closest to ``name`` (``None`` when none is close).

    ``known`` may map spellings to what a suggestion shows (an alias to its canonical
    name, say); matching then uses the keys and returns ``str()`` of the value.
    """
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    if not found:
        return None
    return str(known[found[0]]) if isinstance(known, Mapping) else found[0]


def did_you_mean(
    name: str, known: Iterable[str] | Mapping[str, object], *, cutoff: float = 0.6
) -> str:
    """``" (did you mean 'x'?)"`` for the known name closest to ``name``, else ``""``."""
    found = closest(name, known, cutoff=cutoff)
    return f" (did you mean {found!r}?)" if found is not None else ""


def by_meaning(name: str, meaning: Mapping[str, str]) -> str | None:
    """The name ``name`` means, for names that say a thing in other words (``done`` for
    ``completed``): ``meaning`` looked up by its last word (``job.done``,
    ``JobDone``, ``job_done`` → ``done``), lowercased."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", ".", name)  # JobDone -> Job.Done
    words = spaced.lower().replace("-", ".").replace("_", ".").split(".")
    return meaning.get(words[-1]) if words else None
