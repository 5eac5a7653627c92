"""The OCPP 2.0.1 schema validation: the OCPP-J 2.0.1 error code for each kind of fault, and
a payload left as it was given (the schemas' defaults are not written into it)."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.messages import MessageType

from cpagent.protocol.v201 import schemas

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            {"reason": "PowerUp", "chargingStation": {"model": 1, "vendorName": "V"}},
            "TypeConstraintViolation",
        ),
        ({"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        ({**BOOT, "reason": "Sunrise"}, "PropertyConstraintViolation"),
        (
            {**BOOT, "chargingStation": {"model": "M" * 21, "vendorName": "V"}},
            "PropertyConstraintViolation",
        ),
        ({**BOOT, "colour": "red"}, "FormatViolation"),
    ],
)
def test_each_fault_has_its_201_code(payload: dict[str, Any], code: str) -> None:
    with pytest.raises(Exception) as err:
        schemas.validate(MessageType.Call, "BootNotification", payload)
    assert err.value.code == code  # type: ignore[attr-defined]
    assert len(err.value.details["cause"]) <= 200  # type: ignore[attr-defined]


def test_a_valid_payload_is_left_as_it_was() -> None:
    event = {
        "eventType": "Started",
        "timestamp": "2026-01-01T00:00:00Z",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "t"},
    }
    before = repr(event)
    schemas.validate(MessageType.Call, "TransactionEvent", event)
    assert repr(event) == before  # no "offline": false added from the schema's default


def test_every_schema_compiles() -> None:
    assert schemas.preload() == len(list(schemas.SCHEMA_DIR.glob("*.json"))) > 100
