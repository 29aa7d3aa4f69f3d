"""Fleet coordination: ``delivery="once"`` subscriptions dispatched by one node, not all.

Every listening node reads every event; without coordination each of them would run a
``once`` rule's task. Two strategies share one Redis (redis-py, the ``redis`` extra,
imported only when a coordinator is built):

``lease``
    One node holds a lease (``SET NX PX`` on ``spooled:lease:<namespace>``) and
    dispatches; the others stay connected as standbys, keep a bounded shadow of the
    events they did not dispatch, and take over when the lease expires. See
    :mod:`.lease` for the timing rules and for what a takeover may lose.
``claim``
    Every node claims each event's identity key
    (``SET spooled:claim:<namespace>:<identity_key> NX PX claim_ttl``) and only the
    winner dispatches; no takeover gap, one Redis round trip per event (claims are
    pipelined, up to 64 at a time, while events queue up). See
    :mod:`.claim`.

Only subscriptions with a target and ``delivery="once"`` are coordinated; signals and
``every_node`` subscriptions run on every node regardless. When Redis cannot be
reached, listeners keep reading and ``once`` dispatch waits in a buffer bounded in
size and age; what falls out of it is counted as ``dropped{"coordination_unavailable"}``
and sent on :data:`~spooled_integrations.runtime.signals.event_dropped`. Counts are per
node: during a fleet-wide Redis outage every node counts what *it* could not keep.
"""

from __future__ import annotations

from spooled_integrations.runtime.coordination.base import Coordinator, DispatchHooks
from spooled_integrations.runtime.coordination.config import (
    CoordinationConfig,
    CoordinationField,
    parse_coordination,
)
from spooled_integrations.runtime.coordination.factory import create_coordinator

__all__ = [
    "CoordinationConfig",
    "CoordinationField",
    "Coordinator",
    "DispatchHooks",
    "create_coordinator",
    "parse_coordination",
]
