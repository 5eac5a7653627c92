"""OCPP 2.0.1 NotifyReport payloads: ReportDataType, and reports split within the limits."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.catalogue import Attribute, DataType, Mutability
from cpagent.protocol.v201.device_model import (
    AttributeRecord,
    DeviceModel,
    ReportBase,
    ReportRecord,
    SetStatus,
)
from cpagent.protocol.v201.reports import (
    notify_report_parts,
    report_data,
    split_report,
)

SCHEMA = json.loads(
    (Path(ocpp.__file__).parent / "v201" / "schemas" / "NotifyReportRequest.json").read_text()
)
VALIDATOR = jsonschema.Draft6Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
WHEN = dt.datetime(2026, 12, 7, 21, 0, 0, tzinfo=dt.UTC)
PASSWORD = "s3cret-password-0123456789"
SECURITY = ComponentRef("SecurityCtrlr")
BASIC_AUTH = VariableRef("BasicAuthPassword")


def wire(payload: dict[str, Any]) -> bytes:
    """The frame as the ocpp library sends it, with a real 36-character message id."""
    frame = ocpp.messages.Call(
        unique_id="0f8fad5b-d9cb-469f-a165-70867728950e", action="NotifyReport", payload=payload
    )
    return str(frame.to_json()).encode("utf-8")


def station(evses: int = 2) -> DeviceModel:
    model, _warnings = DeviceModel.from_config(evses, {})
    result = model.set(SECURITY, BASIC_AUTH, PASSWORD)
    assert result.status in (SetStatus.ACCEPTED, SetStatus.REBOOT_REQUIRED)
    return model


def entries(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for part in parts for item in part["reportData"]]


def check_parts(parts: list[dict[str, Any]], items: int, size: int) -> None:
    for seq_no, part in enumerate(parts):
        VALIDATOR.validate(part)
        assert part["seqNo"] == seq_no
        assert part["tbc"] is (seq_no < len(parts) - 1)
        assert part["requestId"] == 7
        assert part["generatedAt"] == "2026-12-07T21:00:00.000Z"
        assert 1 <= len(part["reportData"]) <= items
        assert len(wire(part)) <= size


@pytest.fixture(scope="module")
def full() -> list[ReportRecord]:
    return station().base_report(ReportBase.FULL_INVENTORY)


def test_every_report_data_of_a_full_inventory_validates(full: list[ReportRecord]) -> None:
    items = [report_data(r) for r in full]
    VALIDATOR.validate(
        {"requestId": 1, "generatedAt": "2026-12-07T21:00:00Z", "seqNo": 0, "reportData": items}
    )
    connector = next(i for i in items if i["component"]["name"] == "Connector")
    assert connector["component"]["evse"] == {"id": 1, "connectorId": 1}
    heartbeat = next(i for i in items if i["variable"]["name"] == "HeartbeatInterval")
    assert heartbeat["variableAttribute"][0]["mutability"] == "ReadWrite"
    assert heartbeat["variableCharacteristics"]["dataType"] == "integer"
    assert heartbeat["variableCharacteristics"]["supportsMonitoring"] is False
    assert "evse" not in heartbeat["component"]
    assert "instance" not in heartbeat["variable"]


def test_optional_fields_are_left_out_and_present_ones_are_exact() -> None:
    record = ReportRecord(
        ComponentRef("Controller", "main", 2),
        VariableRef("Power", "max"),
        (
            AttributeRecord(Attribute.ACTUAL, None, Mutability.READ_ONLY),
            AttributeRecord(Attribute.MAX_SET, "11000.5", Mutability.READ_WRITE),
        ),
        DataType.DECIMAL,
        "W",
        ("a", "b"),
        0.0,
        22000.5,
    )
    assert report_data(record) == {
        "component": {"name": "Controller", "instance": "main", "evse": {"id": 2}},
        "variable": {"name": "Power", "instance": "max"},
        "variableAttribute": [
            {"type": "Actual", "mutability": "ReadOnly"},
            {"type": "MaxSet", "value": "11000.5", "mutability": "ReadWrite"},
        ],
        "variableCharacteristics": {
            "unit": "W",
            "dataType": "decimal",
            "minLimit": 0,
            "maxLimit": 22000.5,
            "valuesList": "a,b",
            "supportsMonitoring": False,
        },
    }


def test_a_write_only_value_is_never_in_a_report(full: list[ReportRecord]) -> None:
    parts = notify_report_parts(7, WHEN, full, 50, 65536)
    assert PASSWORD not in json.dumps(parts)
    password = next(i for i in entries(parts) if i["variable"]["name"] == "BasicAuthPassword")
    assert password["variableAttribute"] == [{"type": "Actual", "mutability": "WriteOnly"}]
    # Even a record that carries the value (it should not) does not put it on the wire.
    leaky = ReportRecord(
        SECURITY,
        BASIC_AUTH,
        (AttributeRecord(Attribute.ACTUAL, PASSWORD, Mutability.WRITE_ONLY),),
        DataType.STRING,
        None,
        (),
        None,
        None,
    )
    assert PASSWORD not in json.dumps(report_data(leaky))


def test_full_inventory_split_by_items(full: list[ReportRecord]) -> None:
    parts = notify_report_parts(7, WHEN, full, 10, 65536)
    check_parts(parts, 10, 65536)
    assert len(parts) == -(-len(full) // 10)
    assert entries(parts) == [report_data(r) for r in full]
    assert parts[-1]["tbc"] is False


def test_full_inventory_split_by_bytes(full: list[ReportRecord]) -> None:
    parts = notify_report_parts(7, WHEN, full, 1000, 2048)
    check_parts(parts, 1000, 2048)
    assert len(parts) > 2
    assert entries(parts) == [report_data(r) for r in full]
    # Greedy: each part but the last is full, the next record would not have fitted.
    for part, following in itertools.pairwise(parts):
        more = following["tbc"] or len(following["reportData"]) > 1
        grown = dict(part, tbc=more, reportData=[*part["reportData"], following["reportData"][0]])
        assert len(wire(grown)) > 2048


def test_one_item_per_message(full: list[ReportRecord]) -> None:
    parts = notify_report_parts(7, WHEN, full, 1, 65536)
    check_parts(parts, 1, 65536)
    assert len(parts) == len(full)
    assert entries(parts) == [report_data(r) for r in full]


def test_a_byte_limit_that_fits_exactly_one_item() -> None:
    records = station().base_report(ReportBase.SUMMARY_INVENTORY)
    assert len(records) > 2
    alone = notify_report_parts(7, WHEN, records[:1], 50, 65536)[0]
    alone_tbc = dict(alone, tbc=True)
    limit = max(len(wire(alone)), len(wire(alone_tbc)))
    split = split_report(7, WHEN, records[:1] * 3, 50, limit)
    check_parts(split.parts, 1, limit)
    assert len(split.parts) == 3
    assert split.oversized == ()
    # A byte fewer and the last part, whose tbc is false ("false" is a byte longer than
    # "true"), no longer fits: it is sent alone anyway and named.
    tighter = split_report(7, WHEN, records[:1] * 3, 50, len(wire(alone)) - 1)
    assert [len(p["reportData"]) for p in tighter.parts] == [1, 1, 1]
    assert tighter.oversized == (2,)


def test_a_record_too_big_alone_is_sent_alone_and_named(full: list[ReportRecord]) -> None:
    split = split_report(7, WHEN, full[:5], 50, 100)
    assert entries(split.parts) == [report_data(r) for r in full[:5]]
    assert [len(p["reportData"]) for p in split.parts] == [1] * 5
    assert split.oversized == (0, 1, 2, 3, 4)
    for part in split.parts:
        VALIDATOR.validate(part)


def test_an_empty_report_sends_nothing() -> None:
    assert notify_report_parts(7, WHEN, [], 50, 65536) == []


@pytest.mark.parametrize(("items", "size"), [(0, 65536), (50, 0), (-1, -1)])
def test_limits_below_one_are_refused(items: int, size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        notify_report_parts(7, WHEN, [], items, size)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.integers(min_value=1, max_value=400),
    size=st.integers(min_value=700, max_value=40000),
    count=st.integers(min_value=0, max_value=400),
)
def test_every_part_respects_both_limits(
    full: list[ReportRecord], items: int, size: int, count: int
) -> None:
    records = full[:count]
    split = split_report(7, WHEN, records, items, size)
    assert entries(split.parts) == [report_data(r) for r in records]
    for seq_no, part in enumerate(split.parts):
        assert part["seqNo"] == seq_no
        assert part["tbc"] is (seq_no < len(split.parts) - 1)
        assert 1 <= len(part["reportData"]) <= items
        if len(wire(part)) > size:
            assert len(part["reportData"]) == 1
    oversized_parts = [i for i, p in enumerate(split.parts) if len(wire(p)) > size]
    starts = []
    position = 0
    for part in split.parts:
        starts.append(position)
        position += len(part["reportData"])
    assert split.oversized == tuple(starts[i] for i in oversized_parts)
