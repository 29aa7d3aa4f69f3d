"""RFC 3339 timestamps as the backend writes them (chrono: ``Z``, 0-9 fraction digits).

``datetime.fromisoformat`` on Python 3.10 rejects 9-digit fractions, so we parse
ourselves and truncate to microseconds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import overload

__all__ = ["format_optional", "format_timestamp", "parse_timestamp"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))\Z",
    re.ASCII,
)


# The backend's own form (UTC, ``Z``): checked here, built by the C ``fromisoformat``
# in the one shape every Python from 3.10 reads; much faster than the general path.
_BACKEND = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.(\d{1,9}))?[Zz]\Z", re.ASCII)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC-offset ``datetime``.

    Raises ``ValueError`` for anything else.
    """
    fast = _BACKEND.match(text)
    if fast is not None:
        fraction = fast[1]
        if fraction is None:
            return datetime.fromisoformat(text[:19] + "+00:00")
        if len(fraction) >= 6:
            return datetime.fromisoformat(text[:26] + "+00:00")
        return datetime.fromisoformat(text[:20] + (fraction + "00000")[:6] + "+00:00")
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu:
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
    )


def format_timestamp(moment: datetime) -> str:
    """Format like chrono does for ``DateTime<Utc>``: UTC, ``Z``, shortest exact fraction."""
    utc = moment.astimezone(timezone.utc)
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    micros = utc.microsecond
    if micros == 0:
        return base + "Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


@overload
def format_optional(moment: None) -> None: ...
@overload
def format_optional(moment: datetime | float) -> str: ...
@overload
def format_optional(moment: datetime | float | None) -> str | None: ...


def format_optional(moment: datetime | float | None) -> str | None:
    """:func:`format_timestamp` of a datetime or of epoch seconds; ``None`` stays ``None``
    (status reports and logs show "never" that way)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    return format_timestamp(moment)
