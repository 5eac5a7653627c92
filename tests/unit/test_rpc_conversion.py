"""What the OCPP-J endpoint makes of a CSMS request for a 1.6 handler and of the handler's
answer: exactly what the ``ocpp`` library makes of them, without its per-request cost; and
the OCPP 1.6 schemas with exact decimals judge alike whichever validator answers first."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.v16 import call_result

from cpagent.protocol.rpc import _snake, _wire
from cpagent.protocol.v16 import call_result as answers
from cpagent.protocol.v16 import schemas

SAMPLES: list[Any] = [
    None,
    "Accepted",
    7,
    2.5,
    True,
    [{"id_tag": "A", "expiry_date": None, "parent_id_tag": "P"}, None],
    {"soc_limit_reached": 1, "csms_url": None, "charging_schedule_period": [{"start_period": 0}]},
    {"reason_code": "Other", "additional_info": None},
]
ANSWERS = [
    cls
    for cls in vars(answers).values()
    if isinstance(cls, type)
    and issubclass(cls, answers.Answer)
    and hasattr(call_result, cls.__name__)
]


def library_answer(response: Any) -> Any:
    return snake_to_camel_case(remove_nones(serialize_as_dict(response)))


@pytest.mark.parametrize("cls", ANSWERS, ids=lambda cls: cls.__name__)
def test_every_1_6_answer_goes_on_the_wire_as_the_library_puts_it(cls: type) -> None:
    """Each answer a 1.6 handler gives, with any values in its fields, is the payload the
    library makes of its own answer class with the same values."""
    library_cls = getattr(call_result, cls.__name__)
    fields = dataclasses.fields(library_cls)
    for shift in range(len(SAMPLES)):
        values = {f.name: SAMPLES[(i + shift) % len(SAMPLES)] for i, f in enumerate(fields)}
        assert _wire(cls(**values)) == library_answer(library_cls(**values)), values


def test_a_request_reaches_its_handler_as_the_library_names_its_fields() -> None:
    payload = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingSchedule": {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]},
            "validFrom": "2025-01-01T00:00:00Z",
        },
        "ocppCSMSURL": "ws://x",
        "key": ["HeartbeatInterval", "MeterValueSampleInterval"],
    }
    assert _snake(payload) == camel_to_snake_case(payload)


PROFILE: dict[str, Any] = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}],
    },
}


def with_limit(limit: float) -> dict[str, Any]:
    schedule = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    return {"idTag": "T", "chargingProfile": {**PROFILE, "chargingSchedule": schedule}}


@pytest.mark.parametrize(
    "payload",
    [
        {"idTag": "T"},
        {"idTag": "T", "connectorId": 2},
        with_limit(6),
        with_limit(6.1),
        with_limit(6.05),
        with_limit(float("nan")),
        {"connectorId": 1},
        {"idTag": "T", "connectorId": "1"},
        {"idTag": "T" * 21},
        {"idTag": True},
        {"idTag": "T", "extra": 1},
        {"idTag": "T", "chargingProfile": {**PROFILE, "stackLevel": -1}},
    ],
)
def test_remote_start_is_judged_as_the_exact_validator_judges_it(payload: dict[str, Any]) -> None:
    """RemoteStartTransaction has decimals that need exact arithmetic (limit multipleOf
    0.1); a request without a fraction is checked by the compiled validator first, and
    the verdict and error are still the exact validator's."""

    def verdict(check: Any) -> tuple[str, Any] | None:
        try:
            check(2, "RemoteStartTransaction", payload)
        except OCPPError as err:
            return type(err).__name__, err.details
        return None

    assert verdict(schemas.validate) == verdict(schemas.SCHEMAS._validate_exactly)
