"""Delivery of money-bearing messages when the CSMS answers with errors or not at all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cpagent.testing import CallErrorReply, LoopbackCsms
from tests.integration.conftest import AgentProcess
from tests.integration.test_session import AgentFactory, booted, start_session


async def test_start_transaction_retried_after_callerrors_with_the_same_message_id(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 1}
    )
    await agent.start()
    await booted(csms, 1)
    answers: list[Any] = [
        CallErrorReply("InternalError", "database busy"),
        CallErrorReply("NotAnOcppCode", "something odd"),
    ]

    def start_transaction(payload: dict[str, Any]) -> Any:
        if answers:
            return answers.pop(0)
        return csms.default_reply("StartTransaction", payload)

    csms.responders["StartTransaction"] = start_transaction
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "RETRY")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"]["id"] == 1)
    attempts = csms.messages("StartTransaction", since=mark)
    assert len(attempts) == 3
    assert len({m.unique_id for m in attempts}) == 1  # one message, sent three times
    assert len(csms.subprotocols) == 1  # never reconnected

    await agent.sim("tag", "RETRY")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == 1


async def test_a_changed_retry_interval_applies_to_the_retry_already_waiting(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(ocpp16={"TransactionMessageRetryInterval": 3600})
    await agent.start()
    await booted(csms, 1)
    answers: list[Any] = [CallErrorReply("InternalError", "database busy")]
    csms.responders["StartTransaction"] = lambda payload: (
        answers.pop(0) if answers else csms.default_reply("StartTransaction", payload)
    )
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "RETRY")
    first = await csms.wait_for_message("StartTransaction", since=mark)
    await agent.wait_log("attempt 1, retrying in 3600 s")
    change = {"key": "TransactionMessageRetryInterval", "value": "1"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    # The retry waits 1 s from the refusal, not the hour set when it began to wait.
    again = await csms.wait_for_message("StartTransaction", since=first.index + 1)
    assert again.unique_id == first.unique_id
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"]["id"] == 1)


async def test_a_message_the_csms_keeps_refusing_is_given_up_and_the_queue_moves_on(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={
            "TransactionMessageAttempts": 2,
            "TransactionMessageRetryInterval": 1,
            "MeterValueSampleInterval": 1,
        }
    )
    await agent.start()
    await booted(csms, 1)
    csms.responders["MeterValues"] = lambda _p: CallErrorReply("InternalError", "nope")
    start = await start_session(agent, csms, "REFUSED")
    mark = csms.mark()
    first = await csms.wait_for_message("MeterValues", since=mark)
    following = first
    while following.unique_id == first.unique_id:  # the queue moves on to the next sample
        following = await csms.wait_for_message("MeterValues", since=following.index + 1)
    tries = [m for m in csms.messages("MeterValues", since=mark) if m.unique_id == first.unique_id]
    assert len(tries) == 2  # TransactionMessageAttempts, then set aside, not deleted
    await agent.wait_status(lambda s: s["queue"]["failed"] >= 1)

    del csms.responders["MeterValues"]
    await agent.sim("tag", "REFUSED")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["meterStop"] >= start["meterStart"]


async def test_offline_session_for_a_tag_the_csms_later_refuses_is_deauthorized(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={"AllowOfflineTxForUnknownId": True, "StopTransactionOnInvalidId": True}
    )
    await agent.start()
    await booted(csms, 1)
    csms.id_tag_status["STRANGER"] = "Invalid"
    await agent.sim("network", "down")
    await agent.wait_status(lambda s: not s["csms"]["connected"])
    await agent.sim("plug", "1")
    await agent.sim("tag", "STRANGER")  # unknown offline: allowed by configuration
    await agent.wait_status(lambda s: s["connectors"][0]["status"] == "Charging")

    mark = csms.mark()
    await agent.sim("network", "up")
    start = await csms.wait_for_message("StartTransaction", since=mark)
    stop = await csms.wait_for("StopTransaction", since=mark)
    tx_id = next(
        tid for tid, p in csms.transactions.items() if p["timestamp"] == start.payload["timestamp"]
    )
    assert stop["reason"] == "DeAuthorized"
    assert stop["transactionId"] == tx_id
    state = await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    assert state["connectors"][0]["contactor_closed"] is False


async def test_a_refused_start_sets_its_whole_session_aside(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 1}
    )
    await agent.start()
    await booted(csms, 1)
    csms.responders["StartTransaction"] = lambda _p: CallErrorReply("InternalError", "no")
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "ASIDE")
    await agent.wait_status(lambda s: s["queue"]["failed"] == 1)
    await agent.sim("unplug", "1")  # ends the session: its StopTransaction has no id to carry
    state = await agent.wait_status(
        lambda s: s["queue"]["failed"] == 2 and s["queue"]["depth"] == 0
    )
    assert state["connectors"][0]["transaction"] is None
    assert len(csms.messages("StartTransaction", since=mark)) == 2
    assert csms.messages("StopTransaction", since=mark) == []

    del csms.responders["StartTransaction"]  # the next session goes through as usual
    start = await start_session(agent, csms, "NEXT")
    assert start["idTag"] == "NEXT"


async def test_a_corrupt_database_is_moved_aside_and_the_agent_starts(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory()
    agent.data_dir.mkdir(parents=True)
    (agent.data_dir / "cpagent.db").write_bytes(b"this is not a database" * 100)
    await agent.start()
    await booted(csms, 1)
    state = await agent.status()
    moved = state["store"]["recovered_from"]
    assert moved and "cpagent.db.corrupt-" in moved
    assert Path(moved).parent == agent.data_dir
    assert await asyncio.to_thread(Path(moved).exists)
    assert "moved aside" in agent.log()
    start = await start_session(agent, csms, "AFTER-CORRUPTION")
    assert start["meterStart"] >= 0
