"""Routing cost per event: 1 vs 10 vs 1,000 subscriptions, index vs a linear scan.

The subscriptions are for different events (each pairs an event type with its own
queue, the usual way rules differ). Every size routes the same stream of events; the
ratios against the 1-subscription router are what matter (P2: 1,000 rules <= 1.2x of
1; absolute times depend on the machine). A linear scan over the same compiled rules
is timed as the reference for what the index saves. The last rows have every rule match every event: the router
returns a tuple built at load time, so matching costs the same; the cost of many matches
is in the publishes that follow. Not a test.

    python bench/routing.py [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from spooled_integrations.protocol import Event, EventType, normalize
from spooled_integrations.runtime import Router, Subscription, load_subscriptions
from spooled_integrations.runtime.router import _compile

# Types that carry a queue name (a queue filter on the others is rejected at load).
_NO_QUEUE = (EventType.WORKER_LEFT, EventType.WORKER_HEARTBEAT)
TYPES = [t for t in EventType if t.category in ("job", "queue", "worker") and t not in _NO_QUEUE]


def rules(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"r{i}", "events": [TYPES[i % len(TYPES)].value], "queue": f"q{i}", "task": "t"}
        for i in range(count)
    ]


def events(count: int) -> list[Event]:
    """Events of every type over 50 queues: some match a rule, most match none."""
    made = []
    for i in range(count):
        event_type = TYPES[i % len(TYPES)]
        data: dict[str, Any] = {"queue_name": f"q{i % 50}", "job_id": f"j{i}", "worker_id": "w"}
        frame = json.dumps({"type": event_type.value, "data": data})
        made.append(normalize(frame)[0])
    return made


def linear(subs: list[Subscription]) -> Callable[[Event], list[Subscription]]:
    """The obvious matcher over the same compiled filters: try every rule in turn."""
    compiled = [(sub.event_types, sub.matches_all, _compile(sub, i)) for i, sub in enumerate(subs)]

    def match(event: Event) -> list[Subscription]:
        return [
            route.subscription
            for types, matches_all, route in compiled
            if (matches_all or event.type in types) and route.accepts(event)
        ]

    return match


def timed(match: Callable[[Event], Any], stream: list[Event]) -> float:
    started = time.perf_counter()
    for event in stream:
        match(event)
    return (time.perf_counter() - started) / len(stream) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    stream = events(args.events)
    contenders: dict[str, Callable[[Event], Any]] = {}
    for size in (1, 10, 1000):
        subs = load_subscriptions(rules(size))
        contenders[f"router, {size:>4} rules"] = Router(subs).match
        contenders[f"linear, {size:>4} rules"] = linear(list(subs))
    hits = [
        normalize(
            json.dumps({"type": "JobCompleted", "data": {"job_id": "j", "queue_name": "q0"}})
        )[0]
    ] * len(stream)
    for size in (10, 1000):
        same = [{"events": ["job.completed"], "queue": "q0", "task": "t"}] * size
        contenders[f"router, {size:>4} rules all matching"] = Router(same).match

    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):  # interleaved, so drift hits everyone alike
        for name, match in contenders.items():
            samples[name].append(timed(match, hits if "all matching" in name else stream))
    medians = {name: statistics.median(values) for name, values in samples.items()}

    print(f"{args.events} events x {args.rounds} rounds; median ns per event")
    for kind in ("router", "linear"):
        reference = medians[f"{kind},    1 rules"]
        for size in (1, 10, 1000):
            name = f"{kind}, {size:>4} rules"
            print(f"  {name:<34} {medians[name]:>9.0f} ns   x{medians[name] / reference:.2f} vs 1")
    print("  every event matching every rule (a ready answer: the cost is in the publishes):")
    for size in (10, 1000):
        name = f"router, {size:>4} rules all matching"
        print(f"  {name:<34} {medians[name]:>9.0f} ns")
    ratio = medians["router, 1000 rules"] / medians["router,    1 rules"]
    saved = medians["linear, 1000 rules"] / medians["router, 1000 rules"]
    verdict = "met" if ratio <= 1.2 else "NOT met"
    print(f"target: router 1000/1 <= 1.2x: {ratio:.2f}x ({verdict})")
    print(f"index vs linear scan at 1000 rules: {saved:.0f}x faster")


if __name__ == "__main__":
    main()
