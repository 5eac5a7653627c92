"""OCPP 2.0.1 end to end: the real ``cpagent run`` speaking 2.0.1 to the loopback CSMS.

Blocks B (boot, heartbeat interval), C (Authorize), E (TransactionEvent Started, Updated,
Ended with contiguous seqNo), G (StatusNotification with the 2.0.1 statuses) and J (meter
values in transactions). Every frame both ways passes the 2.0.1 schemas (the ``csms``
fixture fails the test otherwise). Waits are event-driven and bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cpagent.testing import LoopbackCsms
from tests.integration.conftest import AgentProcess, run_cli

AgentFactory = Callable[..., AgentProcess]
ENERGY = "Energy.Active.Import.Register"

FAST = {
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
    "AlignedDataCtrlr": {"Interval": 0},
}


async def started_agent(
    agent_factory: AgentFactory, csms: LoopbackCsms, **kwargs: Any
) -> AgentProcess:
    agent = agent_factory(ocpp201=kwargs.pop("ocpp201", FAST), **kwargs)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    return agent


def events(csms: LoopbackCsms) -> list[dict[str, Any]]:
    return csms.payloads("TransactionEvent")


async def test_boot_speaks_201_and_reports_each_evse(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, connectors=2)
    assert csms.subprotocols == ["ocpp2.0.1"]
    (boot,) = csms.payloads("BootNotification")
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"]["vendorName"] == "TestVendor"
    assert boot["chargingStation"]["serialNumber"] == "SN-0001"
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
    statuses = {p["evseId"]: p for p in csms.payloads("StatusNotification")}
    assert {e: (p["connectorId"], p["connectorStatus"]) for e, p in statuses.items()} == {
        1: (1, "Available"),
        2: (1, "Available"),
    }
    state = await agent.status()
    assert state["ocpp_version"] == "2.0.1"
    assert state["csms"]["registration"] == "Accepted"
    assert state["ocpp201"] == {"transactions": []}
    assert state["queue"] == {"depth": 0, "failed": 0, "held_for_other_versions": {}}


async def test_a_card_session_is_one_transaction_with_contiguous_events(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
    await agent.sim("tag", "CARD-1")
    authorize = await csms.wait_for("Authorize")
    assert authorize["idToken"] == {"idToken": "CARD-1", "type": "ISO14443"}
    started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    tx_id = started["transactionInfo"]["transactionId"]
    assert started["seqNo"] == 0
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == {"idToken": "CARD-1", "type": "ISO14443"}
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert "offline" not in started
    begin = started["meterValue"][0]["sampledValue"]
    assert begin[0]["context"] == "Transaction.Begin"
    await csms.wait_for(
        "TransactionEvent",
        lambda p: p["triggerReason"] == "MeterValuePeriodic" and p["seqNo"] >= 2,
    )
    state = await agent.status()
    (running,) = state["ocpp201"]["transactions"]
    assert running["transaction_id"] == tx_id and running["evse_id"] == 1
    assert state["connectors"][0]["transaction"]["id"] == tx_id
    text = (await run_cli("status", "--config", str(agent.config_path))).stdout
    assert f"transaction {tx_id} for CARD-1" in text and "next seqNo" in text, text
    await agent.sim("unplug", "1")
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended["triggerReason"] == "EVCommunicationLost"
    sent = [p for p in events(csms) if p["transactionInfo"]["transactionId"] == tx_id]
    assert [p["seqNo"] for p in sent] == list(range(len(sent)))
    assert sent[0]["eventType"] == "Started" and sent[-1]["eventType"] == "Ended"
    assert {p["eventType"] for p in sent[1:-1]} == {"Updated"}
    charging = [p for p in sent if p["triggerReason"] == "ChargingStateChanged"]
    assert "Charging" in [p["transactionInfo"]["chargingState"] for p in charging]

    def register(event: dict[str, Any], *contexts: str) -> list[float]:
        return [
            v["value"]
            for mv in event.get("meterValue", [])
            for v in mv["sampledValue"]
            if v.get("measurand", ENERGY) == ENERGY and v.get("context") in contexts
        ]

    (begin_wh,) = register(sent[0], "Transaction.Begin")
    periodic = [wh for p in sent[1:-1] for wh in register(p, "Sample.Periodic")]
    (end_wh,) = register(sent[-1], "Transaction.End")
    assert [begin_wh, *periodic, end_wh] == sorted([begin_wh, *periodic, end_wh])
    assert end_wh > begin_wh
    # TxEndedInterval 0 (the factory value): the Ended event carries no periodic reading.
    assert register(sent[-1], "Sample.Periodic") == []
    await agent.wait_status(lambda s: s["ocpp201"]["transactions"] == [])
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
