"""The OCPP 2.0.1 schemas shipped with ``ocpp``, and the OCPP-J 2.0.1 names of their errors.

OCPP 2.0.1 Part 4 §4.3 names what is wrong more precisely than 1.6 did: a field of the
wrong JSON type is a TypeConstraintViolation, a missing required field or an array of the
wrong length an OccurrenceConstraintViolation, a value outside an enumeration, a length or
a range a PropertyConstraintViolation, and a field the schema does not know a
FormatViolation (every 2.0.1 schema has ``additionalProperties: false``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ocpp
from ocpp.exceptions import (
    FormatViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)

from cpagent.protocol.schemas import SchemaSet

SCHEMA_DIR = Path(ocpp.__file__).parent / "v201" / "schemas"

_OCCURRENCE = frozenset({"required", "minItems", "maxItems", "minProperties"})
_PROPERTY = frozenset(
    {"enum", "const", "maxLength", "minLength", "minimum", "maximum", "exclusiveMinimum"}
)


def _error(rule: Any, details: dict[str, str]) -> OCPPError:
    if rule == "type":
        return TypeConstraintViolationError(details=details)
    if rule in _OCCURRENCE:
        return OccurrenceConstraintViolationError(details=details)
    if rule in _PROPERTY:
        return PropertyConstraintViolationError(details=details)
    return FormatViolationError(details=details)


SCHEMAS = SchemaSet("2.0.1", SCHEMA_DIR, request_suffix="Request", error_for=_error)
validate = SCHEMAS.validate
preload = SCHEMAS.preload
date_time_fields = SCHEMAS.date_time_fields

__all__ = ["SCHEMAS", "SCHEMA_DIR", "date_time_fields", "preload", "validate"]
