"""Remembered item verdicts: a GetVariables request or answer is refused or passed exactly as
the compiled validator alone refuses or passes it, with the same error, whatever came
before."""

from __future__ import annotations

import copy
import decimal
import random
from typing import Any

import pytest
from ocpp.exceptions import OCPPError

from cpagent.protocol.ocppj import MessageType
from cpagent.protocol.v201 import schemas
from cpagent.protocol.verdicts import ItemVerdicts, decomposes, item_key

CALL, RESULT = MessageType.Call, MessageType.CallResult
FIELDS = {(CALL, "GetVariables"): "getVariableData", (RESULT, "GetVariables"): "getVariableResult"}

GOOD_DATA: list[dict[str, Any]] = [
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}},
    {
        "component": {"name": "Connector", "evse": {"id": 2, "connectorId": 1}},
        "variable": {"name": "ConnectorType"},
        "attributeType": "Actual",
    },
    {
        "component": {"name": "DeviceDataCtrlr"},
        "variable": {"name": "ItemsPerMessage", "instance": "GetVariables"},
        "attributeType": "MaxSet",
        "customData": {"vendorId": "v", "anything": [1, 2.5, None]},
    },
]
BAD_DATA: list[Any] = [
    {"component": {"name": "EVSE", "evse": {"id": True}}, "variable": {"name": "Power"}},
    {"component": {"name": "EVSE", "evse": {"id": 1.0}}, "variable": {"name": "Power"}},
    {"component": {"name": "EVSE", "evse": {"id": "1"}}, "variable": {"name": "Power"}},
    {"component": {"name": "X" * 51}, "variable": {"name": "Power"}},
    {"component": {"name": "X", "instance": None}, "variable": {"name": "Power"}},
    {"component": {"name": "X"}, "variable": {"name": "Power"}, "attributeType": "actual"},
    {"component": {"name": "X"}, "variable": {"name": "Power"}, "extra": 1},
    {"component": {"name": "X"}},
    {"component": {"name": "X"}, "variable": {"name": "Y"}, "customData": {}},
    ["component", "variable"],
    "item",
]
GOOD_RESULTS: list[dict[str, Any]] = [
    {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeValue": "300",
    },
    {
        "attributeStatus": "Rejected",
        "attributeType": "Actual",
        "component": {"name": "SecurityCtrlr"},
        "variable": {"name": "BasicAuthPassword"},
        "attributeStatusInfo": {"reasonCode": "Other", "additionalInfo": "WriteOnly"},
    },
    {
        "attributeStatus": "UnknownComponent",
        "attributeType": "Target",
        "component": {"name": "Nope", "evse": {"id": 9}},
        "variable": {"name": "Power"},
    },
]
BAD_RESULTS: list[Any] = [
    {**GOOD_RESULTS[0], "attributeValue": "x" * 2501},
    {**GOOD_RESULTS[0], "attributeValue": 300},
    {**GOOD_RESULTS[0], "attributeStatus": "accepted"},
    {**GOOD_RESULTS[1], "attributeStatusInfo": {"reasonCode": "R" * 21}},
    {k: v for k, v in GOOD_RESULTS[0].items() if k != "attributeStatus"},
]


def verdict(validate: Any, kind: int, payload: Any) -> tuple[str, str, str] | None:
    """None for a valid payload; the error's class, code and cause for a refused one."""
    try:
        validate(kind, "GetVariables", payload)
    except OCPPError as err:
        return type(err).__name__, err.code, str(err.details)
    return None


@pytest.mark.parametrize("kind", [CALL, RESULT])
def test_the_getvariables_schemas_hold_their_items_independent(kind: int) -> None:
    schema = schemas.SCHEMAS.schema(kind, "GetVariables")
    field = FIELDS[kind, "GetVariables"]
    assert decomposes(schema, field)
    array = schema["properties"][field]
    assert not decomposes({**schema, "minProperties": 2}, field)
    assert not decomposes({**schema, "properties": {field: {**array, "maxItems": 5}}}, field)
    assert not decomposes({**schema, "properties": {field: {**array, "uniqueItems": True}}}, field)
    assert not decomposes({**schema, "properties": {field: {**array, "minItems": 2}}}, field)
    assert not decomposes({**schema, "properties": {field: {**array, "items": [{}]}}}, field)
    assert not decomposes(schema, "other")


@pytest.mark.parametrize(
    ("kind", "good", "bad"), [(CALL, GOOD_DATA, BAD_DATA), (RESULT, GOOD_RESULTS, BAD_RESULTS)]
)
def test_every_verdict_is_the_validators_whatever_was_remembered(
    kind: int, good: list[Any], bad: list[Any]
) -> None:
    verdicts = ItemVerdicts(schemas.validate, schemas.SCHEMAS.schema, FIELDS, kept=8)
    field = FIELDS[kind, "GetVariables"]
    rng = random.Random(17)
    refused = 0
    for _ in range(600):
        items = [copy.deepcopy(rng.choice(good)) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.3:
            items.insert(rng.randint(0, len(items)), copy.deepcopy(rng.choice(bad)))
        payload: Any = {field: items}
        if rng.random() < 0.1:
            payload["customData"] = rng.choice([{"vendorId": "v"}, {}])
        if rng.random() < 0.05:
            payload = items
        expected = verdict(schemas.validate, kind, payload)
        assert verdict(verdicts.validate, kind, payload) == expected, payload
        refused += expected is not None
    assert 100 < refused < 500  # both verdicts were tried, often


def test_other_actions_and_schemas_of_another_form_are_validated_whole() -> None:
    calls: list[str] = []

    def validate(kind: int, action: str, payload: dict[str, Any]) -> None:
        calls.append(action)
        schemas.validate(kind, action, payload)

    fields = {**FIELDS, (CALL, "GetReport"): "componentVariable"}
    verdicts = ItemVerdicts(validate, schemas.SCHEMAS.schema, fields)
    request = {"getVariableData": GOOD_DATA}
    for _ in range(3):
        verdicts.validate(CALL, "GetVariables", request)
        report = {"requestId": 1, "componentVariable": [{"component": {"name": "EVSE"}}]}
        verdicts.validate(CALL, "GetReport", report)
        verdicts.validate(CALL, "Heartbeat", {})
    # GetReport's request has more than its array: never judged by its items.
    assert calls == ["GetVariables"] + ["GetReport", "Heartbeat"] * 3


def test_a_request_of_remembered_items_is_judged_once() -> None:
    calls: list[dict[str, Any]] = []

    def validate(kind: int, action: str, payload: dict[str, Any]) -> None:
        calls.append(payload)
        schemas.validate(kind, action, payload)

    verdicts = ItemVerdicts(validate, schemas.SCHEMAS.schema, FIELDS)
    verdicts.validate(CALL, "GetVariables", {"getVariableData": GOOD_DATA})
    verdicts.validate(CALL, "GetVariables", {"getVariableData": GOOD_DATA[::-1]})
    verdicts.validate(CALL, "GetVariables", {"getVariableData": GOOD_DATA[1:2] * 3})
    assert len(calls) == 1
    # The same names in another key order are another item, checked once.
    turned = [{"variable": i["variable"], "component": i["component"]} for i in GOOD_DATA[:1]]
    verdicts.validate(CALL, "GetVariables", {"getVariableData": turned})
    assert len(calls) == 2


def test_items_without_a_key_are_validated_with_their_payload_every_time() -> None:
    """A value marshal cannot encode (none that JSON gives) leaves the payload to the
    validator, whatever it holds beside."""
    calls: list[dict[str, Any]] = []

    def validate(kind: int, action: str, payload: dict[str, Any]) -> None:
        calls.append(payload)
        schemas.validate(kind, action, payload)

    verdicts = ItemVerdicts(validate, schemas.SCHEMAS.schema, FIELDS)
    odd = {**GOOD_DATA[0], "component": {"name": "EVSE", "evse": {"id": decimal.Decimal(1)}}}
    for _ in range(2):
        payload = {"getVariableData": [*GOOD_DATA, odd]}
        assert verdict(verdicts.validate, CALL, payload) == verdict(schemas.validate, CALL, payload)
        assert verdicts.passed(payload) is None
    assert len(calls) == 2


def test_prepared_verdicts_read_no_schema_later() -> None:
    read: list[tuple[int, str]] = []

    def schema_of(kind: int, action: str) -> dict[str, Any]:
        read.append((kind, action))
        return schemas.SCHEMAS.schema(kind, action)

    verdicts = ItemVerdicts(schemas.validate, schema_of, FIELDS)
    verdicts.prepare()
    assert sorted(read) == sorted(FIELDS)
    verdicts.validate(CALL, "GetVariables", {"getVariableData": GOOD_DATA})
    verdicts.validate(RESULT, "GetVariables", {"getVariableResult": GOOD_RESULTS})
    assert len(read) == 2


def test_only_the_payload_just_passed_by_its_items_is_named_passed() -> None:
    verdicts = ItemVerdicts(schemas.validate, schemas.SCHEMAS.schema, FIELDS)
    answer = {"getVariableResult": GOOD_RESULTS}
    verdicts.validate(RESULT, "GetVariables", answer)
    assert verdicts.passed(answer) == ("getVariableResult", [item_key(r) for r in GOOD_RESULTS])
    assert verdicts.passed({"getVariableResult": GOOD_RESULTS}) is None  # another object
    verdicts.validate(CALL, "Heartbeat", {})
    assert verdicts.passed(answer) is None
    broken = {"getVariableResult": [*GOOD_RESULTS, BAD_RESULTS[0]]}
    with pytest.raises(OCPPError):
        verdicts.validate(RESULT, "GetVariables", broken)
    assert verdicts.passed(broken) is None
