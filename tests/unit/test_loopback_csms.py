"""The loopback CSMS speaks OCPP 1.6 and 2.0.1, whichever the charge point asks for: driven
here by a raw websocket client on 127.0.0.1, frame by frame, as a charge point sees it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from cpagent.protocol.v201 import schemas as schemas_v201
from cpagent.testing.csms import (
    STATION_ACTIONS_201,
    CsmsCallError,
    LoopbackCsms,
    schema_problem,
)

WAIT = 10.0

BOOT_201 = {
    "chargingStation": {"model": "Bench", "vendorName": "cpagent"},
    "reason": "PowerUp",
}
BOOT_16 = {"chargePointVendor": "cpagent", "chargePointModel": "Bench"}
TOKEN = {"idToken": "ABC123", "type": "ISO14443"}
NOW = "2026-12-07T21:00:00.000Z"


def tx_event(event: str, seq_no: int, tx_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": event,
        "timestamp": NOW,
        "triggerReason": "Authorized" if event == "Started" else "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id},
        **extra,
    }


class Station:
    """A raw charge point: sends CALLs and awaits their answers, reads the CSMS's CALLs."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def recv(self) -> list[Any]:
        raw = await asyncio.wait_for(self.ws.recv(), WAIT)
        message: list[Any] = json.loads(raw)
        return message

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """The CALLRESULT or CALLERROR frame answering ``action``."""
        unique_id = str(uuid.uuid4())
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        reply = await self.recv()
        assert reply[1] == unique_id, reply
        return reply


@asynccontextmanager
async def open_station(
    csms: LoopbackCsms, offered: Sequence[str], cp_id: str = "CP1"
) -> AsyncIterator[Station]:
    async with connect(
        f"{csms.url}/{cp_id}",
        subprotocols=[Subprotocol(p) for p in offered],
        open_timeout=WAIT,
        close_timeout=WAIT,
    ) as ws:
        yield Station(ws)


@pytest.fixture
async def station201(csms: LoopbackCsms) -> AsyncIterator[Station]:
    async with open_station(csms, ["ocpp2.0.1"]) as station:
        yield station


@pytest.fixture
async def strict() -> AsyncIterator[LoopbackCsms]:
    """A CSMS whose schema errors a test expects and checks itself."""
    async with LoopbackCsms() as server:
        yield server


# ------------------------------------------------------------------- default answers


def sample_request(action: str) -> dict[str, Any]:
    """A request payload for the actions whose default answer reads it."""
    if action == "Authorize":
        return {"idToken": TOKEN}
    if action == "TransactionEvent":
        return tx_event("Started", 0, "T1", idToken=TOKEN)
    return {}


@pytest.mark.parametrize("action", STATION_ACTIONS_201)
@pytest.mark.parametrize("boot_status", ["Accepted", "Pending", "Rejected"])
def test_every_default_201_answer_passes_its_schema(action: str, boot_status: str) -> None:
    assert (schemas_v201.SCHEMA_DIR / f"{action}Request.json").is_file()  # a real 2.0.1 name
    csms = LoopbackCsms(boot_status=boot_status)
    csms.id_tag_status["ABC123"] = "Blocked"
    answer = csms.default_reply(action, sample_request(action), "2.0.1")
    assert schema_problem(3, action, answer, "2.0.1") is None, answer


def test_2_0_1_default_answers_carry_the_configured_statuses() -> None:
    csms = LoopbackCsms(boot_status="Pending", boot_interval=7, heartbeat_interval=60)
    csms.id_tag_status["ABC123"] = "Blocked"
    boot = csms.default_reply("BootNotification", BOOT_201, "2.0.1")
    assert (boot["status"], boot["interval"]) == ("Pending", 7)
    assert boot["currentTime"].endswith("Z")
    assert csms.default_reply("Authorize", {"idToken": TOKEN}, "2.0.1") == {
        "idTokenInfo": {"status": "Blocked"}
    }
    other = {"idToken": "XYZ", "type": "ISO14443"}
    assert csms.default_reply("Authorize", {"idToken": other}, "2.0.1") == {
        "idTokenInfo": {"status": "Accepted"}
    }
    ended = tx_event("Ended", 3, "T1")
    assert csms.default_reply("TransactionEvent", ended, "2.0.1") == {}


def test_a_1_6_payload_is_not_a_2_0_1_payload() -> None:
    """The check is per version: the 1.6 BootNotification fails the 2.0.1 schema."""
    assert schema_problem(2, "BootNotification", BOOT_16, "1.6") is None
    assert schema_problem(2, "BootNotification", BOOT_16, "2.0.1") is not None
    assert schema_problem(2, "BootNotification", BOOT_201, "2.0.1") is None


def test_versions_are_checked() -> None:
    with pytest.raises(ValueError, match="versions"):
        LoopbackCsms(versions=("2.1",))


# ---------------------------------------------------------------- 2.0.1 on the wire


async def test_a_2_0_1_station_is_answered_in_2_0_1(
    csms: LoopbackCsms, station201: Station
) -> None:
    assert station201.subprotocol == "ocpp2.0.1"
    reply = await station201.call("BootNotification", BOOT_201)
    assert reply[0] == 3 and reply[2]["status"] == "Accepted"
    assert reply[2]["interval"] == csms.heartbeat_interval
    assert schema_problem(3, "BootNotification", reply[2], "2.0.1") is None
    assert csms.subprotocols == ["ocpp2.0.1"]
    assert csms.version("CP1") == csms.version() == "2.0.1"
    received = await csms.wait_for_message("BootNotification", timeout=WAIT)
    assert (received.version, received.payload) == ("2.0.1", BOOT_201)

    heartbeat = await station201.call("Heartbeat", {})
    assert heartbeat[0] == 3 and heartbeat[2]["currentTime"].endswith("Z")
    status = {
        "timestamp": NOW,
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    }
    assert (await station201.call("StatusNotification", status))[2] == {}
    assert csms.payloads("StatusNotification") == [status]


async def test_a_schema_invalid_2_0_1_message_is_recorded(strict: LoopbackCsms) -> None:
    async with open_station(strict, ["ocpp2.0.1"]) as station:
        # The 1.6 shape of a BootNotification, on a 2.0.1 connection.
        reply = await station.call("BootNotification", BOOT_16)
        assert reply[0] == 3  # answered all the same, as the test CSMS always does
        assert len(strict.schema_errors) == 1
        assert strict.schema_errors[0].startswith("BootNotification from CP1:")
        # A schema-valid one adds nothing.
        await station.call("BootNotification", BOOT_201)
        assert len(strict.schema_errors) == 1


async def test_the_test_s_own_2_0_1_answers_are_validated(strict: LoopbackCsms) -> None:
    strict.responders["Heartbeat"] = lambda _payload: {"currentTime": "yesterday"}
    strict.responders["BootNotification"] = lambda payload: strict.default_reply(
        "BootNotification", payload
    )  # delegating: answered in the version of the connection
    async with open_station(strict, ["ocpp2.0.1"]) as station:
        boot = await station.call("BootNotification", BOOT_201)
        assert schema_problem(3, "BootNotification", boot[2], "2.0.1") is None
        assert strict.schema_errors == []
        await station.call("Heartbeat", {})
        assert len(strict.schema_errors) == 1
        assert strict.schema_errors[0].startswith("the test's Heartbeat answer:")


async def test_a_call_to_a_2_0_1_station_has_its_answer_validated(strict: LoopbackCsms) -> None:
    wanted = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    request = {"getVariableData": [wanted]}
    good = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "300",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            }
        ]
    }
    bad = {"getVariableResult": [{"attributeStatus": "Fine"}]}
    async with open_station(strict, ["ocpp2.0.1"]) as station:
        await strict.wait_connected("CP1", timeout=WAIT)
        for answer in (good, bad):
            calling = asyncio.create_task(strict.call("GetVariables", request, timeout=WAIT))
            message = await station.recv()
            assert message[0] == 2 and message[2:] == ["GetVariables", request]
            await station.ws.send(json.dumps([3, message[1], answer]))
            assert await calling == answer
            assert len(strict.schema_errors) == (0 if answer is good else 1)
        assert strict.schema_errors[0].startswith("GetVariables answer from CP1:")
        # A CALLERROR with a 2.0.1 code reaches the test as before.
        calling = asyncio.create_task(strict.call("GetVariables", request, timeout=WAIT))
        message = await station.recv()
        refusal = [4, message[1], "OccurrenceConstraintViolation", "no", {}]
        await station.ws.send(json.dumps(refusal))
        with pytest.raises(CsmsCallError) as refused:
            await calling
        assert refused.value.code == "OccurrenceConstraintViolation"


async def test_transaction_events_are_recorded_per_transaction(
    csms: LoopbackCsms, station201: Station
) -> None:
    csms.id_tag_status["ABC123"] = "Blocked"
    started = tx_event("Started", 0, "T1", idToken=TOKEN)
    other = tx_event("Started", 0, "T2")
    ended = tx_event("Ended", 1, "T1")
    ended["transactionInfo"]["stoppedReason"] = "Local"
    answers = [(await station201.call("TransactionEvent", e))[2] for e in (started, other, ended)]
    assert answers == [{"idTokenInfo": {"status": "Blocked"}}, {}, {}]
    assert csms.transaction_events("T1") == [started, ended]
    assert csms.transaction_events() == [started, other, ended]
    assert csms.transactions201 == {"T1": [started, ended], "T2": [other]}
    assert "offline" not in csms.transaction_events()[0]  # as sent: no schema defaults added
    assert csms.transactions == {}  # the 1.6 record is untouched
    found = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=WAIT
    )
    assert found == ended


async def test_a_data_transfer_is_accepted(csms: LoopbackCsms, station201: Station) -> None:
    reply = await station201.call("DataTransfer", {"vendorId": "cpagent", "data": "x"})
    assert reply[2] == {"status": "Accepted"}


# -------------------------------------------------------------- choosing a version


async def test_a_1_6_station_is_answered_in_1_6_as_before(csms: LoopbackCsms) -> None:
    async with open_station(csms, ["ocpp1.6"]) as station:
        assert station.subprotocol == "ocpp1.6"
        reply = await station.call("BootNotification", BOOT_16)
        assert reply[2]["status"] == "Accepted"
        assert schema_problem(3, "BootNotification", reply[2], "1.6") is None
        start = {"connectorId": 1, "idTag": "ABC", "meterStart": 0, "timestamp": NOW}
        tx = await station.call("StartTransaction", start)
        assert tx[2] == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
        assert csms.transactions == {1: start}
        assert csms.version("CP1") == "1.6"
        assert csms.messages()[0].version == "1.6"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp2.1", "ocpp1.6"], "ocpp1.6"),
    ],
)
async def test_the_first_subprotocol_the_station_lists_is_used(
    csms: LoopbackCsms, offered: list[str], chosen: str
) -> None:
    async with open_station(csms, offered) as station:
        assert station.subprotocol == chosen
        assert csms.subprotocols == [chosen]
        assert csms.version("CP1") == chosen.removeprefix("ocpp")


async def test_a_1_6_only_csms_closes_a_2_0_1_station() -> None:
    async with LoopbackCsms(versions=("1.6",)) as csms:
        async with open_station(csms, ["ocpp2.0.1"]) as station:
            assert station.subprotocol is None  # the handshake completes without one
            with pytest.raises(ConnectionClosed) as closed:
                await station.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
        assert await csms.wait_closed(1, timeout=WAIT) == [1002]
        assert csms.subprotocols == [None]
        assert csms.connections == {} and csms.received == []
        # A 1.6 station is served as ever.
        async with open_station(csms, ["ocpp1.6"]) as station:
            assert (await station.call("BootNotification", BOOT_16))[2]["status"] == "Accepted"
        assert csms.schema_errors == []


# ------------------------------------------------------------- python -m cpagent.testing


async def test_the_command_serves_2_0_1_and_prints_the_traffic() -> None:
    command = [sys.executable, "-m", "cpagent.testing", "--port", "0"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout = process.stdout
    assert stdout is not None

    async def line() -> str:
        return (await asyncio.wait_for(stdout.readline(), WAIT)).decode()

    try:
        listening = await line()
        assert "(OCPP 1.6 and OCPP 2.0.1)" in listening, listening
        found = re.search(r"(ws://\S+)/<charge point id>", listening)
        assert found, listening
        url = found[1]
        async with connect(f"{url}/CP9", subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"
            station = Station(ws)
            reply = await station.call("BootNotification", BOOT_201)
            assert reply[2]["status"] == "Accepted"
        sent, answered = await line(), await line()
        assert "CP9 CP -> CSMS" in sent and '"BootNotification"' in sent
        assert "CP9 CSMS -> CP" in answered and '"Accepted"' in answered
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)
