"""OCPP 2.0.1 TxStartPoint and TxStopPoint (Part 2 E01-E03, E06-E10) end to end: the real
``cpagent run`` process, configured or told by SetVariables where its transactions begin
and end, driven with ``cpagent sim``; what the loopback CSMS receives is asserted, every
frame checked against the 2.0.1 schemas.
"""

from __future__ import annotations

from typing import Any

from cpagent.testing import LoopbackCsms
from tests.integration.test_ocpp201_transactions import (
    AgentFactory,
    Payload,
    assert_contiguous,
    ended,
    once_each,
    set_variables,
    started_agent,
    tables,
    token,
    tx_id_of,
)


def points(start: str, stop: str = "EVConnected,Authorized", **tx: Any) -> dict[str, Any]:
    return tables(TxCtrlr={"TxStartPoint": start, "TxStopPoint": stop, **tx})


async def next_event(csms: LoopbackCsms, since: int, **fields: Any) -> Payload:
    """The first TransactionEvent since ``since`` whose top-level fields match."""
    return await csms.wait_for(
        "TransactionEvent",
        lambda p: all(p.get(k) == v for k, v in fields.items()),
        since=since,
    )


async def test_e02_ev_connected_first_then_the_card_then_the_card_again(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """TxStartPoint EVConnected: the plug-in begins the transaction without a token and
    without energy; the card authorizes it in an Updated event; the card again ends it."""
    agent = await started_agent(agent_factory, csms, points("EVConnected"))
    mark = csms.mark()
    await agent.sim("plug", "1")
    started = await next_event(csms, mark, eventType="Started")
    assert started["triggerReason"] == "CablePluggedIn"
    assert "idToken" not in started
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    assert started["evse"] == {"id": 1, "connectorId": 1}
    tx_id = tx_id_of(started)
    state = await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is not None)
    assert state["connectors"][0]["contactor_closed"] is False

    await agent.sim("tag", "CARD-1")
    authorized = await next_event(csms, mark, triggerReason="Authorized")
    assert (authorized["eventType"], tx_id_of(authorized)) == ("Updated", tx_id)
    assert authorized["idToken"] == token("CARD-1")
    charging = await csms.wait_for(
        "TransactionEvent",
        lambda p: p["transactionInfo"].get("chargingState") == "Charging",
        since=mark,
    )
    assert tx_id_of(charging) == tx_id
    await agent.wait_status(lambda s: s["connectors"][0]["contactor_closed"])

    await agent.sim("tag", "CARD-1")
    end = await ended(csms, tx_id, since=mark)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "StopAuthorized",
        "Local",
    )
    assert_contiguous(once_each(csms, tx_id))


async def test_f02_a_remote_start_names_and_authorizes_the_transaction_the_ev_began(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    config = tables(
        TxCtrlr={"TxStartPoint": "EVConnected"}, AuthCtrlr={"AuthorizeRemoteStart": False}
    )
    agent = await started_agent(agent_factory, csms, config)
    mark = csms.mark()
    await agent.sim("plug", "1")
    tx_id = tx_id_of(await next_event(csms, mark, eventType="Started"))
    request = {"idToken": token("APP-1", "Central"), "remoteStartId": 77, "evseId": 1}
    answer = await csms.call("RequestStartTransaction", request)
    assert answer == {"status": "Accepted", "transactionId": tx_id}
    remote = await next_event(csms, mark, triggerReason="RemoteStart")
    assert remote["eventType"] == "Updated" and tx_id_of(remote) == tx_id
    assert remote["transactionInfo"]["remoteStartId"] == 77
    assert remote["idToken"] == token("APP-1", "Central")
    await agent.wait_status(lambda s: s["connectors"][0]["contactor_closed"])

    assert await csms.call("RequestStopTransaction", {"transactionId": tx_id}) == {
        "status": "Accepted"
    }
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "Remote"
    assert_contiguous(once_each(csms, tx_id))


async def test_e03_authorized_first_set_at_run_time_then_the_ev_then_the_unplug(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """SetVariables TxStartPoint Authorized applies at once: the card begins the
    transaction with no EV (Idle), the plug-in brings the energy, the unplug ends it."""
    agent = await started_agent(agent_factory, csms)
    await set_variables(csms, "TxCtrlr", TxStartPoint="Authorized")
    mark = csms.mark()
    await agent.sim("tag", "CARD-2")
    started = await next_event(csms, mark, eventType="Started")
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == token("CARD-2")
    assert started["transactionInfo"]["chargingState"] == "Idle"
    tx_id = tx_id_of(started)

    await agent.sim("plug", "1")
    await csms.wait_for(
        "TransactionEvent",
        lambda p: p["transactionInfo"].get("chargingState") == "Charging",
        since=mark,
    )
    await agent.sim("unplug", "1")
    end = await ended(csms, tx_id, since=mark)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "EVCommunicationLost",
        "EVDisconnected",
    )
    assert_contiguous(once_each(csms, tx_id))


async def test_e03_no_ev_within_ev_connection_timeout_ends_it_with_timeout(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, points("Authorized", EVConnectionTimeOut=1))
    mark = csms.mark()
    await agent.sim("tag", "CARD-3")
    tx_id = tx_id_of(await next_event(csms, mark, eventType="Started"))
    end = await ended(csms, tx_id, since=mark)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "EVConnectTimeout",
        "Timeout",
    )
    assert_contiguous(once_each(csms, tx_id))


async def test_e06_stop_point_ev_connected_outlives_the_card_until_the_unplug(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """TxStopPoint EVConnected: the card again ends the authorization (Updated,
    StopAuthorized) and the energy; the transaction ends at the unplug."""
    agent = await started_agent(agent_factory, csms, points("PowerPathClosed", "EVConnected"))
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "CARD-4")
    tx_id = tx_id_of(await next_event(csms, mark, eventType="Started"))
    await agent.wait_status(lambda s: s["connectors"][0]["contactor_closed"])

    await agent.sim("tag", "CARD-4")
    stop_auth = await next_event(csms, mark, triggerReason="StopAuthorized")
    assert stop_auth["eventType"] == "Updated" and tx_id_of(stop_auth) == tx_id
    assert stop_auth["idToken"] == token("CARD-4")
    state = await agent.wait_status(lambda s: not s["connectors"][0]["contactor_closed"])
    assert state["connectors"][0]["transaction"] is not None

    await agent.sim("unplug", "1")
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert_contiguous(once_each(csms, tx_id))


async def test_e01_energy_transfer_begins_at_the_draw_and_ends_when_the_ev_stops(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """TxStartPoint and TxStopPoint EnergyTransfer: the EV authorized is supplied and the
    transaction begins as it draws; it ends, StoppedByEV, when the EV stops drawing."""
    agent = await started_agent(agent_factory, csms, points("EnergyTransfer", "EnergyTransfer"))
    mark = csms.mark()
    await agent.sim("ev", "1", "B")
    await agent.sim("tag", "CARD-5")
    state = await agent.wait_status(lambda s: s["connectors"][0]["contactor_closed"])
    assert state["connectors"][0]["transaction"] is None

    await agent.sim("ev", "1", "C")
    started = await next_event(csms, mark, eventType="Started")
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["idToken"] == token("CARD-5")
    tx_id = tx_id_of(started)

    await agent.sim("ev", "1", "B")
    end = await ended(csms, tx_id, since=mark)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "ChargingStateChanged",
        "StoppedByEV",
    )
    await agent.wait_status(lambda s: not s["connectors"][0]["contactor_closed"])
    assert_contiguous(once_each(csms, tx_id))


async def test_set_variables_refuses_points_without_facts_and_empty_lists(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await started_agent(agent_factory, csms)
    data = [
        {"attributeValue": value, "component": {"name": "TxCtrlr"}, "variable": {"name": name}}
        for name, value in [
            ("TxStartPoint", "ParkingBayOccupancy"),
            ("TxStopPoint", ""),
            ("TxStopPoint", "EVConnected,PowerPathClosed"),
        ]
    ]
    answer = await csms.call("SetVariables", {"setVariableData": data})
    results = answer["setVariableResult"]
    assert [r["attributeStatus"] for r in results] == ["Rejected", "Rejected", "Accepted"]
    assert "needs at least one point" in results[1]["attributeStatusInfo"]["additionalInfo"]


async def test_kill9_during_a_transaction_the_ev_began_ends_it_as_power_loss(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """A transaction with no token yet is on disk like any other: after kill -9 it ends with
    PowerLoss and no idToken, its events contiguous; the next plug-in is a new one."""
    agent = await started_agent(agent_factory, csms, points("EVConnected"))
    mark = csms.mark()
    await agent.sim("plug", "1")
    tx_id = tx_id_of(await next_event(csms, mark, eventType="Started"))
    await agent.kill9()
    mark = csms.mark()
    await agent.start()
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert "idToken" not in end
    assert_contiguous(once_each(csms, tx_id))
    mark = csms.mark()
    await agent.sim("plug", "1")
    again = await next_event(csms, mark, eventType="Started")
    assert tx_id_of(again) != tx_id and again["triggerReason"] == "CablePluggedIn"
