"""What every bench node records in Redis, keyed by the run: publishes, task runs, drops.

``bench:<run>:pub`` / ``bench:<run>:exec``: hashes ``seq -> count``;
``bench:<run>:drops:<reason>``: a hash ``seq -> count`` of events the runtime dropped
(``event_dropped``), so the report can tell counted losses from silent ones.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

import redis

RUN = os.environ.get("BENCH_RUN", "manual")


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS"])


def seq_of(event: Any) -> int | None:
    data = event.get("data") if isinstance(event, dict) else None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) else None


def count(kind: str, seq: int | None) -> None:
    if seq is not None:
        client().hincrby(f"bench:{RUN}:{kind}", str(seq), 1)


def on_dropped(sender: Any, *, event: Any, reason: str, detail: str = "", **kw: Any) -> None:
    if event is not None:
        seq = event.data.get("seq")
    else:  # claim_holder_lost: the survivor has only the claim key, in the detail
        found = re.search(r"job-(\d+)", detail)
        seq = int(found.group(1)) if found else -1
    client().hincrby(f"bench:{RUN}:drops:{reason}", str(seq), 1)


def connect_drops() -> None:
    from spooled_integrations.runtime.signals import event_dropped

    event_dropped.connect(on_dropped, weak=False)
