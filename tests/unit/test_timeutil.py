"""OCPP timestamps: RFC 3339, UTC, exactly three fraction digits, ``Z`` suffix."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cpagent.timeutil import iso, now_iso, parse_iso, utcnow

RFC3339_Z_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (datetime(2026, 11, 25, 21, 31, 59, 843000, tzinfo=UTC), "2026-11-25T21:31:59.843Z"),
        (datetime(2026, 11, 25, 21, 31, 59, tzinfo=UTC), "2026-11-25T21:31:59.000Z"),
        # milliseconds are truncated, never rounded up into the next second
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "2026-12-31T23:59:59.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), "2026-01-02T03:04:05.006Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
    ],
)
def test_iso_formats_utc_with_millis_and_z(ts: datetime, text: str) -> None:
    assert iso(ts) == text
    assert RFC3339_Z_MILLIS.match(iso(ts))


def test_iso_converts_other_offsets_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 1, 1, 0, 30, 0, 250000, tzinfo=cet)) == "2025-12-31T23:30:00.250Z"
    minus = timezone(timedelta(hours=-9, minutes=-30))
    assert iso(datetime(2026, 6, 1, 20, 0, 0, 1000, tzinfo=minus)) == "2026-06-02T05:30:00.001Z"


def test_now_iso_is_current_utc() -> None:
    before = utcnow()
    text = now_iso()
    after = utcnow()
    assert RFC3339_Z_MILLIS.match(text), text
    parsed = parse_iso(text)
    assert before - timedelta(milliseconds=1) <= parsed <= after
    assert utcnow().tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T21:31:59.843Z", datetime(2026, 11, 25, 21, 31, 59, 843000, tzinfo=UTC)),
        ("2026-11-25T21:31:59Z", datetime(2026, 11, 25, 21, 31, 59, tzinfo=UTC)),
        ("2026-11-25t21:31:59.5z", datetime(2026, 11, 25, 21, 31, 59, 500000, tzinfo=UTC)),
        ("2026-11-25T22:31:59.843+01:00", datetime(2026, 11, 25, 21, 31, 59, 843000, tzinfo=UTC)),
        ("2026-11-25T21:31:59.843", datetime(2026, 11, 25, 21, 31, 59, 843000, tzinfo=UTC)),
    ],
)
def test_parse_iso(text: str, expected: datetime) -> None:
    parsed = parse_iso(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_round_trip() -> None:
    text = "2026-11-25T21:31:59.843Z"
    assert iso(parse_iso(text)) == text
    assert iso(parse_iso("2026-11-25T22:31:59.843+01:00")) == text


def test_parse_iso_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_iso("yesterday")
