"""``python -m spooled_integrations.celery ...``: the ``celery`` command, Spooled-aware.

Same arguments as ``celery``. It imports this package first, so ``inspect
spooled_status`` is a known command and ``worker --spooled/--no-spooled`` exists even
when the app enables Spooled by configuration only (where Celery's own CLI parses its
arguments before it imports ``imports``).
"""

from __future__ import annotations

import sys

from celery.bin.celery import celery as _celery_group
from celery.bin.worker import worker as _worker_command

from spooled_integrations.celery.install import worker_option


def main() -> None:
    if not any(param.name == "spooled" for param in _worker_command.params):
        _worker_command.params.append(worker_option())
    sys.exit(_celery_group(auto_envvar_prefix="CELERY"))


if __name__ == "__main__":
    main()
