"""Changing ``[csms] ocpp_version`` on a data_dir that still holds undelivered messages.

Nothing is lost and nothing goes out in the wrong words: messages queued in one version stay
in the store while the agent speaks the other, ``cpagent status`` counts them, and they are
delivered, in order, when the agent speaks their version again. A session the agent died
during is closed in the version it was started in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cpagent.testing import LoopbackCsms
from tests.integration.conftest import AgentProcess, run_cli

AgentFactory = Callable[..., AgentProcess]


def speak(agent: AgentProcess, version: str) -> None:
    """Rewrite the agent's config for ``version``, keeping its data_dir."""
    agent.tables["csms"]["ocpp_version"] = version
    if version == "2.0.1":
        agent.tables.pop("ocpp16", None)
    else:
        agent.tables["ocpp16"] = {"MeterValueSampleInterval": 0}
    agent.write()


async def restart(agent: AgentProcess, csms: LoopbackCsms, version: str) -> int:
    """Stop the agent (if running), switch it to ``version`` and start it; returns the mark
    of the CSMS's messages from before the start."""
    if agent.proc is not None and agent.proc.returncode is None:
        assert await agent.stop() == 0
    speak(agent, version)
    mark = csms.mark()
    await agent.start()
    await csms.wait_for("BootNotification", since=mark)
    return mark


async def agent_status_text(agent: AgentProcess) -> str:
    result = await run_cli("status", "--config", str(agent.config_path))
    assert result.returncode == 0, result
    return result.stdout


def held(state: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = state["queue"]["held_for_other_versions"]
    return found


async def test_a_stop_queued_in_16_waits_through_201_and_goes_out_in_16(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory()
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p.get("connectorId") == 1)
    await agent.sim("plug", "1")
    await agent.sim("tag", "CARD-16")
    started = await csms.wait_for("StartTransaction")
    (tx_id,) = csms.transactions
    await agent.sim("network", "down")
    await agent.sim("unplug", "1")
    await agent.wait_status(
        lambda s: s["queue"]["depth"] >= 1 and not s["connectors"][0]["transaction"]
    )

    mark = await restart(agent, csms, "2.0.1")
    state = await agent.wait_status(lambda s: s["csms"]["registration"] == "Accepted")
    assert state["ocpp_version"] == "2.0.1"
    assert held(state) == {"1.6": 1} and state["queue"]["depth"] == 0
    status = await agent_status_text(agent)
    assert "1 message(s) in OCPP 1.6 kept until it is spoken again" in status
    # The 2.0.1 charger works meanwhile; nothing of 1.6 goes to the 2.0.1 CSMS.
    await agent.sim("plug", "1")
    await agent.sim("tag", "CARD-201")
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started", since=mark)
    await agent.sim("unplug", "1")
    await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert csms.messages("StopTransaction", since=mark) == []

    mark = await restart(agent, csms, "1.6")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == tx_id and stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= started["meterStart"]
    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert held(state) == {}
    assert len(csms.messages("StopTransaction")) == 1


async def test_a_session_killed_in_201_is_ended_in_201_by_a_16_agent(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(ocpp201={"SampledDataCtrlr": {"TxUpdatedInterval": 0}})
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p.get("evseId") == 1)
    await agent.sim("plug", "1")
    await agent.sim("tag", "CARD-201")
    started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    tx_id = started["transactionInfo"]["transactionId"]
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    await agent.kill9()

    mark = await restart(agent, csms, "1.6")
    state = await agent.wait_status(lambda s: s["csms"]["registration"] == "Accepted")
    assert held(state) == {"2.0.1": 1}
    assert csms.messages("StopTransaction", since=mark) == []

    mark = await restart(agent, csms, "2.0.1")
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["offline"] is True
    events = csms.transaction_events(tx_id)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1] is not events[0] and events[-1]["eventType"] == "Ended"
    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert held(state) == {}
