"""The framework-neutral runtime: signals, subscriptions, routing and dispatch.

Importing this package starts nothing; a :class:`SpooledRuntime` starts its threads
in :meth:`~SpooledRuntime.start`.
"""

from spooled_integrations.runtime.dedupe import DuplicateFilter
from spooled_integrations.runtime.dispatcher import Dispatcher, DrainReport, RetryPolicy
from spooled_integrations.runtime.metrics import Metrics
from spooled_integrations.runtime.publisher import (
    PublishedCall,
    Publisher,
    RecordingPublisher,
    TargetPublisher,
    publish_with_retry,
)
from spooled_integrations.runtime.router import Router
from spooled_integrations.runtime.runtime import RuntimeConfig, SpooledRuntime
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
from spooled_integrations.runtime.subscriptions import (
    Subscription,
    SubscriptionSet,
    load_subscriptions,
)
from spooled_integrations.runtime.targets import TargetKind, register_target_kind, target_kinds

__all__ = [
    "Dispatcher",
    "DrainReport",
    "DuplicateFilter",
    "Metrics",
    "PublishedCall",
    "Publisher",
    "RecordingPublisher",
    "RetryPolicy",
    "Router",
    "RuntimeConfig",
    "SpooledRuntime",
    "Subscription",
    "SubscriptionSet",
    "TargetKind",
    "TargetPublisher",
    "caught_up",
    "connection_state_changed",
    "event_dropped",
    "event_published",
    "leadership_changed",
    "load_subscriptions",
    "publish_with_retry",
    "receiver_failed",
    "register_target_kind",
    "send_isolated",
    "spooled_signal",
    "stream_gap",
    "target_kinds",
]
