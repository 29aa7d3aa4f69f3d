"""One fleet node in a process of its own, for the SIGKILL tests (run as a script).

A runtime with ``NODE_STRATEGY`` coordination (``lease`` or ``claim``) routes
``job.completed`` to a publisher that appends ``<token> <seq>`` to the Redis list
``NODE_OUT`` (sleeping ``NODE_SLOW`` seconds first); every ``event_dropped`` is appended
to ``NODE_DROPS`` as ``<reason> <seq>`` (the seq read from the detail when the event is
not at hand). Prints ``READY <token>``, runs until SIGTERM, then stops the runtime and
prints ``STATUS <json>``.

Environment: ``SPOOLED_BASE_URL``, ``SPOOLED_API_KEY``, ``NODE_REDIS``, ``NODE_NS``,
``NODE_STRATEGY``, ``NODE_TTL``, ``NODE_SLOW``, ``NODE_OUT``, ``NODE_DROPS``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime, Subscription
from spooled_integrations.runtime.signals import event_dropped


class ListPublisher:
    name = "redis-list"

    def __init__(self, client: redis.Redis, key: str, slow: float) -> None:
        self.client = client
        self.key = key
        self.slow = slow
        self.token = "?"

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]:
        return []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None:
        if self.slow:
            time.sleep(self.slow)
        self.client.rpush(self.key, f"{self.token} {event.data['seq']}")


def main() -> None:
    env = os.environ
    client = redis.Redis.from_url(env["NODE_REDIS"])
    publisher = ListPublisher(client, env["NODE_OUT"], float(env.get("NODE_SLOW", "0")))
    config = RuntimeConfig(
        connection=ConnectionOptions.from_env(reconnect_delay=0.05, max_reconnect_delay=0.2),
        subscriptions=[{"events": ["job.completed"], "task": "t"}],
        coordination={
            "strategy": env.get("NODE_STRATEGY", "lease"),
            "redis_url": env["NODE_REDIS"],
            "namespace": env["NODE_NS"],
            "lease_ttl": float(env["NODE_TTL"]),
            "takeover_skew": 0.2,
        },
    )
    runtime = SpooledRuntime(config, publisher)
    assert runtime.coordinator is not None
    publisher.token = runtime.coordinator.token

    def on_drop(sender: Any, *, event: Any, reason: str, detail: str, **kw: Any) -> None:
        if event is not None:
            seq = event.data.get("seq")
        else:
            found = re.search(r"job-(\d+)", detail)
            seq = int(found.group(1)) if found else None
        client.rpush(env["NODE_DROPS"], f"{reason} {seq}")

    event_dropped.connect(on_drop, weak=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stop.set())
    runtime.start()
    print("READY", runtime.coordinator.token, flush=True)
    stop.wait()
    runtime.stop(timeout=5)
    print("STATUS", json.dumps(runtime.status()), flush=True)


if __name__ == "__main__":
    main()
