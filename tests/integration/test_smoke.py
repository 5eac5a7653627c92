"""A full session on the real process: boot, plug, card, charge, stop, unplug."""

from __future__ import annotations

from cpagent.testing import LoopbackCsms
from tests.integration.conftest import AgentProcess


async def test_full_session_by_card(agent: AgentProcess, csms: LoopbackCsms) -> None:
    boot = csms.payloads("BootNotification")[0]
    assert boot["chargePointVendor"] == "TestVendor"
    assert boot["chargePointSerialNumber"] == "SN-0001"

    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    await agent.sim("tag", "TAG-1")
    assert (await csms.wait_for("Authorize", since=mark))["idTag"] == "TAG-1"
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["connectorId"] == 1 and start["idTag"] == "TAG-1" and start["meterStart"] == 0
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)
    state = await agent.wait_status(lambda s: s["connectors"][0]["energy_wh"] >= 2)
    assert state["connectors"][0]["transaction"]["id"] == 1

    await agent.sim("tag", "TAG-1")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == 1 and stop["reason"] == "Local"
    assert stop["meterStop"] >= 2
    await agent.sim("unplug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available", since=mark)
    assert await agent.stop() == 0
