"""GetVariables answered through the charge point's OCPP-J endpoint: the frames on the wire are
the ones the encoder writes for each answer, whatever was asked and answered before."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cpagent.config import parse_config
from cpagent.protocol.ocppj import CallResult
from cpagent.protocol.v201.adapter import V201Adapter
from cpagent.protocol.v201.charge_point import ChargePoint
from cpagent.protocol.v201.device_model import DeviceModel
from cpagent.protocol.v201.settings import Variables
from cpagent.store import Store


class Wire:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, frame: str) -> None:
        self.sent.append(frame)


async def no_reset(_kind: str) -> None:
    raise AssertionError("no reset expected")


ASKED: list[dict[str, Any]] = [
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    {"component": {"name": "ocppcommctrlr"}, "variable": {"name": "heartbeatinterval"}},
    {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}},
    {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "Power"}},
    {"component": {"name": "EVSE", "evse": {"id": 3}}, "variable": {"name": "Power"}},
    {
        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "ConnectorType"},
    },
    {
        "component": {"name": "SecurityCtrlr"},
        "variable": {"name": "BasicAuthPassword"},
    },
    {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeType": "Target",
    },
    {"component": {"name": "Nöpe"}, "variable": {"name": "Wärme"}},
    {"component": {"name": "ChargingStation"}, "variable": {"name": "Nope"}},
    {
        "component": {"name": "DeviceDataCtrlr"},
        "variable": {"name": "ItemsPerMessage", "instance": "GetVariables"},
    },
]


@pytest.fixture
def charge_point(tmp_path: Path) -> Any:
    config = parse_config(
        {
            "charge_point": {"id": "CP", "vendor": "Vé", "model": "M", "connectors": 2},
            "csms": {"url": "ws://127.0.0.1:9/ocpp", "ocpp_version": "2.0.1"},
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    store = Store(tmp_path / "data")
    store.open()
    model, _ = DeviceModel.from_config(2, {})
    adapter = V201Adapter(config, store, Variables(model), request_reset=no_reset)
    wire = Wire()
    yield ChargePoint("CP", wire, adapter, model, response_timeout=1), wire
    store.close()


async def test_each_answer_is_the_frame_the_encoder_writes(charge_point: Any) -> None:
    cp, wire = charge_point
    rng = random.Random(5)
    heartbeat = cp.model.get_at(("OCPPCommCtrlr", None, None, None, "HeartbeatInterval", None))
    expected = heartbeat.value
    for n in range(300):
        if n % 50 == 7:  # a value changes between two answers
            expected = str(60 + n)
            data = {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "attributeValue": expected,
            }
            changed = await cp.on_set_variables({"setVariableData": [data]})
            assert changed["setVariableResult"][0]["attributeStatus"] == "Accepted"
        asked = [rng.choice(ASKED) for _ in range(rng.randint(1, 8))]
        unique_id = f"é-{n}"
        request = [2, unique_id, "GetVariables", {"getVariableData": asked}]
        await cp.route_message(json.dumps(request))
        frame = wire.sent[-1]
        kind, answered, payload = json.loads(frame)
        assert (kind, answered) == (3, unique_id)
        assert frame == CallResult(unique_id, payload).to_json()
        results = payload["getVariableResult"]
        assert [(r["component"], r["variable"]) for r in results] == [
            (a["component"], a["variable"]) for a in asked
        ]
        for r in results:
            if r["variable"]["name"] == "HeartbeatInterval" and r["attributeType"] == "Actual":
                assert r["attributeValue"] == expected
