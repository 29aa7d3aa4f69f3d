"""Timestamps: the fast path for the backend's form agrees with the general parser."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spooled_integrations.protocol import format_timestamp, parse_timestamp


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+0000"]),
    st.integers(min_value=0, max_value=999),
)
def test_any_utc_timestamp_with_0_to_9_fraction_digits(
    moment: datetime, digits: int, sep: str, zone: str, nanos: int
) -> None:
    fraction = f"{moment.microsecond:06d}{nanos:03d}"[:digits]
    m = moment
    text = f"{m.year:04d}-{m.month:02d}-{m.day:02d}{sep}{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
    text += (f".{fraction}" if digits else "") + zone
    expected = moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    assert parse_timestamp(text) == expected.replace(tzinfo=timezone.utc)


@given(st.text(max_size=40))
def test_anything_else_parses_or_raises_value_error(text: str) -> None:
    try:
        parsed = parse_timestamp(text)
    except ValueError:
        return
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        "2025-02-30T01:02:03Z",
        "2025-12-13T24:00:00Z",
        "2025-12-13X01:02:03Z",
        "2025-12-13T01:02:03.Z",
        "2025-12-13T01:02:03.1234567890Z",
        "2025-12-13T01:02:03",
        "\uff12\uff10\uff12\uff15-12-13T01:02:03Z",
    ],
)
def test_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_offsets_and_round_trip() -> None:
    parsed = parse_timestamp("2025-12-13T01:02:03.5-02:30")
    assert parsed.utcoffset() == -timedelta(hours=2, minutes=30)
    moment = datetime(2025, 12, 13, 1, 2, 3, 120000, tzinfo=timezone.utc)
    assert parse_timestamp(format_timestamp(moment)) == moment
