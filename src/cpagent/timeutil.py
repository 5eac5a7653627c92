"""Timestamps as OCPP wants them: RFC 3339, UTC, millisecond precision, ``Z`` suffix."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Format an aware datetime as ``2026-11-25T21:31:59.843Z``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def to_millisecond(ts: datetime) -> datetime:
    """``ts`` cut to the millisecond: the precision of an OCPP timestamp on the wire."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def now_iso() -> str:
    return iso(utcnow())


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive input is taken as UTC."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def expired(expiry: str | None) -> bool:
    """Whether an RFC 3339 expiry (of an authorization entry) has passed; None never
    expires, and one that cannot be read counts as passed."""
    if expiry is None:
        return False
    try:
        return parse_iso(expiry) <= utcnow()
    except ValueError:
        return True
