"""The OCPP 1.6 schemas shipped with ``ocpp``, and the OCPP-J 1.6 names of their errors.

Errors are the library's OCPPError classes, chosen as the library chooses them, so a
CALLERROR carries the same code either way. The three schemas whose decimals need exact
arithmetic (``multipleOf`` 0.1) go through the library's Decimal-aware validators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ocpp
from ocpp.exceptions import (
    FormatViolationError,
    OCPPError,
    ProtocolError,
    TypeConstraintViolationError,
)

from cpagent.protocol.ocppj import MessageType
from cpagent.protocol.schemas import SchemaSet, json_path

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"


def _error(rule: Any, details: dict[str, str]) -> OCPPError:
    """The OCPPError for a broken schema ``rule``, chosen as the ``ocpp`` library does."""
    if rule in ("type", "maxLength"):
        return TypeConstraintViolationError(details=details)
    if rule == "required":
        return ProtocolError(details=details)
    return FormatViolationError(details=details)


SCHEMAS = SchemaSet(
    "1.6",
    SCHEMA_DIR,
    request_suffix="",
    error_for=_error,
    decimal_schemas={
        (MessageType.Call, "SetChargingProfile"),
        (MessageType.Call, "RemoteStartTransaction"),
        (MessageType.CallResult, "GetCompositeSchedule"),
    },
)
validate = SCHEMAS.validate
preload = SCHEMAS.preload
date_time_fields = SCHEMAS.date_time_fields

__all__ = ["SCHEMAS", "SCHEMA_DIR", "date_time_fields", "json_path", "preload", "validate"]
