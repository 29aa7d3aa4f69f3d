"""SSE decoding: our bytes decoder vs httpx-sse's line + event decoders.

Both contenders get the same axum-framed stream in 4 KiB chunks and must produce the
same messages. Runs interleaved, several rounds; prints medians and the ratio to
httpx-sse (higher is faster). Not a test.

    python bench/sse_decoder.py [--events 50000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import codecs
import statistics
import time
from collections.abc import Callable

from httpx_sse._decoders import (
    SSEDecoder as HttpxSSEDecoder,  # private, hence not used in the package
)
from httpx_sse._decoders import SSELineDecoder

from spooled_integrations.protocol import SSEDecoder

FRAME = (
    b"event: job.status\n"
    b'data: {"type":"JobStatusChange","data":{"job_id":"3f2c","queue_name":"emails",'
    b'"old_status":"pending","new_status":"processing","timestamp":"2025-12-13T01:02:03.123456789Z"}}\n\n'
    b": keepalive\n\n"
)


def chunks(events: int, size: int = 4096) -> list[bytes]:
    stream = FRAME * events
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def ours(parts: list[bytes]) -> int:
    decoder = SSEDecoder()
    count = 0
    for part in parts:
        count += len(decoder.feed(part))
    return count


def httpx_sse(parts: list[bytes]) -> int:
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    decoder = HttpxSSEDecoder()
    count = 0
    for part in parts:
        for line in lines.decode(text.decode(part)):
            if decoder.decode(line) is not None:
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    parts = chunks(args.events)
    contenders: dict[str, Callable[[list[bytes]], int]] = {
        "httpx-sse (reference)": httpx_sse,
        "ours": ours,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            started = time.perf_counter()
            count = fn(parts)
            times[name].append(time.perf_counter() - started)
            assert count == args.events, (name, count)
    reference = statistics.median(times["httpx-sse (reference)"])
    print(f"{'decoder':24} {'median s':>10} {'events/s':>12} {'speed vs ref':>13}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:24} {median:10.4f} {args.events / median:12,.0f} {reference / median:12.2f}x")


if __name__ == "__main__":
    main()
