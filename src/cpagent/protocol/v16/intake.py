"""What an OCPP 1.6 CSMS sends, bounded and checked before the charge point acts on it.

The frame and value checks of :mod:`cpagent.protocol.intake`, on the 1.6 schemas' date-time
fields, and the charging profiles of SetChargingProfile and RemoteStartTransaction parsed
as the station will use them (OCPP-J 1.6 §4.2.3 codes).
"""

from __future__ import annotations

from typing import Any

from ocpp.exceptions import FormatViolationError

from cpagent.protocol import intake
from cpagent.protocol.intake import MAX_DEPTH, MAX_FRAME_CHARS, FrameError, read_frame
from cpagent.protocol.v16 import schemas
from cpagent.station.smart_charging import ProfileFormatError, parse_profile

_PROFILE_FIELDS = {
    "SetChargingProfile": "csChargingProfiles",
    "RemoteStartTransaction": "chargingProfile",
}
"""Charging profiles the handlers parse."""


def check_request(action: str, payload: dict[str, Any]) -> None:
    """:func:`cpagent.protocol.intake.check_request`, and a FormationViolation for a charging
    profile that does not parse."""
    intake.check_request(action, payload, schemas.date_time_fields(action))
    profile_field = _PROFILE_FIELDS.get(action)
    if profile_field is not None and profile_field in payload:
        try:
            parse_profile(payload[profile_field])
        except ProfileFormatError as err:
            raise FormatViolationError(description=f"{profile_field}: {err}") from None


__all__ = ["MAX_DEPTH", "MAX_FRAME_CHARS", "FrameError", "check_request", "read_frame"]
