"""The public home of the blinker signals (defined in :mod:`spooled_integrations.runtime.signals`).

Read that module's docstring once: receivers defined inside a function must be
connected with ``weak=False``, or blinker forgets them when the function returns.
"""

from spooled_integrations.runtime.signals import (
    caught_up,
    connection_state_changed,
    event_dropped,
    event_published,
    leadership_changed,
    receiver_failed,
    send_isolated,
    spooled_signal,
    stream_gap,
)

__all__ = [
    "caught_up",
    "connection_state_changed",
    "event_dropped",
    "event_published",
    "leadership_changed",
    "receiver_failed",
    "send_isolated",
    "spooled_signal",
    "stream_gap",
]
