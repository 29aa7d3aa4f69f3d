"""Sans-I/O protocol layer: SSE decoding, frame normalization, the event vocabulary."""

from spooled_integrations.protocol.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    decode_frame,
    derive_lifecycle,
    normalize,
)
from spooled_integrations.protocol.models import Event, JobEvent, QueueEvent, WorkerEvent
from spooled_integrations.protocol.sse import SSEDecoder, SSEMessage
from spooled_integrations.protocol.timestamps import format_timestamp, parse_timestamp
from spooled_integrations.protocol.vocabulary import (
    TERMINAL_STATUSES,
    EventType,
    canonical_name,
    resolve,
    wire_dotted_name,
    wire_variant,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "TERMINAL_STATUSES",
    "Event",
    "EventType",
    "JobEvent",
    "QueueEvent",
    "SSEDecoder",
    "SSEMessage",
    "WorkerEvent",
    "canonical_name",
    "decode_frame",
    "derive_lifecycle",
    "format_timestamp",
    "normalize",
    "parse_timestamp",
    "resolve",
    "wire_dotted_name",
    "wire_variant",
]
