"""Fault injection: the transaction ledger survives kill -9, outages, dropped sockets, restarts
with a full queue and a CSMS that does not answer.

Every test ends by checking what the CSMS received against the delivery guarantee with
:mod:`tests.integration.ledger`: each transaction message exactly once (a re-send of the one
in flight at an interruption, under the same unique id, excepted), in order, under the
transactionId the CSMS gave, with a meter that never goes back, and one StopTransaction per
session. The seeded kill -9 plans also run against a 2.0.1 agent, checked with
:mod:`tests.integration.ledger201` (seqNo contiguous per transaction). The only sleeps are
the injected faults (outage lengths, seeded kill points).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from cpagent.store import Store
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, Received
from tests.integration import crash_scenario
from tests.integration.conftest import AgentProcess
from tests.integration.ledger import (
    DUPLICATE,
    LOST,
    METER,
    REORDERED,
    TRANSACTION_ID,
    TransactionIds,
    analyse_ledger,
    check_ledger,
    is_transaction_message,
)
from tests.integration.test_session import AgentFactory, booted, connector, eventually

CRASH_ITERATIONS = int(os.environ.get("CPAGENT_CRASH_ITERATIONS", "5"))
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


def tx_messages(csms: LoopbackCsms, since: int = 0) -> list[Received]:
    return [r for r in csms.messages(since=since) if is_transaction_message(r)]


def no_transaction_and_empty_queue(state: dict[str, Any]) -> bool:
    return connector(state, 1)["transaction"] is None and state["queue"]["depth"] == 0


# ------------------------------------------------------------------ the checker itself


T0, T5, T6, T9 = (f"2026-01-01T00:00:0{s}Z" for s in (0, 5, 6, 9))


def _r(index: int, uid: str, action: str, payload: dict[str, Any]) -> Received:
    return Received(index, "CP", uid, action, payload)


def _mv(tx: int, stamp: str, wh: int) -> dict[str, Any]:
    sv = {"value": str(wh), "context": "Sample.Periodic", "unit": "Wh"}
    mv = {"timestamp": stamp, "sampledValue": [sv]}
    return {"connectorId": 1, "transactionId": tx, "meterValue": [mv]}


def _session(tx: int = 7, *, wh: tuple[int, int, int] = (10, 20, 30)) -> list[Received]:
    start = {"connectorId": 1, "idTag": "A", "meterStart": wh[0], "timestamp": T0}
    meter = _mv(tx, T5, wh[1])
    stop = {"transactionId": tx, "meterStop": wh[2], "timestamp": T9, "reason": "Local"}
    stop["transactionData"] = meter["meterValue"]
    return [
        _r(0, "s", "StartTransaction", start),
        _r(1, "m", "MeterValues", meter),
        _r(2, "e", "StopTransaction", stop),
    ]


def _kinds(stream: list[Received], assigned: int = 7) -> set[str]:
    return {p.kind for p in analyse_ledger(stream, {"s": assigned}).problems}


def test_ledger_accepts_a_clean_session_and_one_in_flight_resend() -> None:
    start, meter, stop = _session()
    report = check_ledger([start, meter, meter, stop], {"s": 7})
    assert report.summary()["sessions"] == 1
    assert (report.messages, report.received, len(report.duplicates)) == (3, 4, 1)
    # Without the CSMS's assignments the ids are bound to the open session.
    assert check_ledger([start, meter, stop]).sessions[0].transaction_id == 7


@pytest.mark.parametrize(
    ("stream", "assigned", "kinds"),
    [
        pytest.param("s e", 7, {LOST}, id="meter-values-in-transaction-data-never-sent"),
        pytest.param("s m", 7, {LOST}, id="no-stop"),
        pytest.param("s e m", 7, {REORDERED, LOST, METER}, id="meter-values-after-stop"),
        pytest.param("s m e m", 7, {REORDERED}, id="resent-after-newer"),
        pytest.param("s m m m e", 7, {DUPLICATE}, id="three-copies"),
        pytest.param("s m e", 8, {TRANSACTION_ID, LOST}, id="not-the-csms-id"),
    ],
)
def test_ledger_catches(stream: str, assigned: int, kinds: set[str]) -> None:
    parts = dict(zip("sme", _session(), strict=True))
    assert _kinds([parts[p] for p in stream.split()], assigned) == kinds


def test_ledger_catches_a_falling_meter_and_a_changed_resend() -> None:
    assert _kinds(_session(wh=(10, 40, 30))) == {METER}
    start, meter, stop = _session()
    changed = _r(3, "m", "MeterValues", _mv(7, T6, 21))
    assert _kinds([start, meter, changed, stop]) == {DUPLICATE}


# ------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("seed", range(1, CRASH_ITERATIONS + 1))
async def test_kill9_at_a_seeded_random_point(
    agent_factory: AgentFactory, csms: LoopbackCsms, seed: int
) -> None:
    agent: AgentProcess = agent_factory(**crash_scenario.agent_options(f"CRASH{seed}"))
    result = await crash_scenario.run_iteration(seed, csms, agent)
    assert result.report.sessions, result.plan.describe()
    result.report.assert_clean(result.plan.describe())


@pytest.mark.parametrize("seed", range(1, CRASH_ITERATIONS + 1))
async def test_kill9_at_a_seeded_random_point_ocpp201(
    agent_factory: AgentFactory, csms: LoopbackCsms, seed: int
) -> None:
    """The same seeded plans against a 2.0.1 agent: its TransactionEvents arrive once each
    (an in-flight re-send excepted), seqNo contiguous per transaction, and the store agrees."""
    options = crash_scenario.agent_options(f"CRASH{seed}", crash_scenario.V201)
    agent: AgentProcess = agent_factory(**options)
    result = await crash_scenario.run_iteration(seed, csms, agent, crash_scenario.V201)
    assert result.report.sessions, result.plan.describe()
    assert csms.version(agent.cp_id) == "2.0.1"
    result.report.assert_clean(result.plan.describe())


# ----------------------------------------------------------------------- outages


@pytest.mark.parametrize("outage_s", [0.5, 2.0, 5.0])
async def test_outages_during_start_charging_and_stop(
    agent_factory: AgentFactory, csms: LoopbackCsms, outage_s: float
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={"MeterValueSampleInterval": 1, "AllowOfflineTxForUnknownId": True}
    )
    ids = TransactionIds(csms).install()
    await agent.start()
    await booted(csms, 1)

    async def network_down() -> tuple[int, int]:
        """Cut the network; return the CSMS's message mark and frame count once it is cut."""
        await agent.sim("network", "down")
        await csms.wait_disconnected(agent.cp_id)
        return csms.mark(), len(csms.frames)

    async def outage(during: str, frames_at_cut: int) -> None:
        """The network is down; hold the outage, check nothing got through, restore."""
        await asyncio.sleep(outage_s)  # the injected outage
        leaked = [f.raw for f in csms.frames[frames_at_cut:] if f.direction == "in"]
        assert not leaked, f"frames while the network was down ({during}): {leaked}"
        await agent.sim("network", "up")

    # During start: the card is shown with the back-end unreachable; the StartTransaction is
    # made and queued, and goes out when the network is back.
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: connector(s, 1)["status"] == "Preparing")
    down_at, cut = await network_down()
    await agent.sim("tag", "OUTAGE")
    await agent.wait_status(lambda s: s["queue"]["depth"] >= 1)
    await outage("start", cut)
    start = await csms.wait_for_message("StartTransaction", since=down_at)
    await csms.wait_for("MeterValues", since=start.index)

    # During charging: samples pile up offline and follow in order.
    _, cut = await network_down()
    await outage("charging", cut)
    await csms.wait_connected(agent.cp_id)
    live = csms.mark()
    await csms.wait_for("MeterValues", since=live)

    # During stop: the card ends the session offline; the StopTransaction waits for the network.
    down_at, cut = await network_down()
    await agent.sim("tag", "OUTAGE")
    await agent.wait_status(
        lambda s: connector(s, 1)["transaction"] is None and s["queue"]["depth"] >= 1
    )
    await outage("stop", cut)
    stop = await csms.wait_for_message("StopTransaction", since=down_at)
    await agent.wait_status(no_transaction_and_empty_queue)

    report = check_ledger(csms.received, ids.assigned, max_duplicates=3)
    (session,) = report.sessions
    assert session.stop is stop
    assert stop.payload["reason"] == "Local"
    assert stop.payload["transactionId"] == ids.assigned[start.unique_id][-1]
    assert session.transaction_id == ids.assigned[start.unique_id][-1]
    assert len(session.meter_values) >= 2


# ---------------------------------------------------------------- dropped socket


@pytest.mark.parametrize("action", TX_ACTIONS)
async def test_socket_dropped_with_a_call_in_flight_is_resent_with_the_same_id(
    agent_factory: AgentFactory, csms: LoopbackCsms, action: str
) -> None:
    agent: AgentProcess = agent_factory(ocpp16={"MeterValueSampleInterval": 1})
    dropped: list[dict[str, Any]] = []

    async def drop_first(payload: dict[str, Any]) -> dict[str, Any] | None:
        if not dropped:
            dropped.append(payload)
            await csms.disconnect()  # the back-end goes away holding the CALL
            return None
        return csms.default_reply(action, payload)

    if action == "StartTransaction":
        ids = TransactionIds(csms, drop_first).install()
    else:
        ids = TransactionIds(csms).install()
        csms.responders[action] = drop_first
    await agent.start()
    await booted(csms, 1)

    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "DROP")
    first = await csms.wait_for_message("MeterValues", since=mark)
    await csms.wait_for("MeterValues", since=first.index + 1)
    await agent.sim("tag", "DROP")
    await csms.wait_for("StopTransaction", since=mark)
    await agent.wait_status(no_transaction_and_empty_queue)

    report = check_ledger(csms.received, ids.assigned, max_duplicates=1)
    assert len(dropped) == 1
    (resent,) = report.duplicates
    original = next(r for r in tx_messages(csms) if r.payload is dropped[0])
    assert resent.action == action and resent.unique_id == original.unique_id
    assert resent.payload == original.payload
    # Re-sent first thing on the new connection: nothing newer in between.
    between = tx_messages(csms)
    assert between[between.index(original) + 1] is resent
    assert len(csms.subprotocols) == 2
    (session,) = report.sessions
    assert session.reason == "Local"


async def test_card_shown_as_the_network_drops_is_decided_offline_at_once(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """An Authorize in flight when the connection goes fails at once (the card is decided
    offline), not after response_timeout_s; the session it starts is delivered later."""
    agent: AgentProcess = agent_factory(
        csms={"response_timeout_s": 3600},  # far beyond the waits' bound
        ocpp16={"MeterValueSampleInterval": 1, "AllowOfflineTxForUnknownId": True},
    )
    ids = TransactionIds(csms).install()
    csms.responders["Authorize"] = lambda _p: None  # never answered
    await agent.start()
    await booted(csms, 1)
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: connector(s, 1)["status"] == "Preparing")
    mark = csms.mark()
    await agent.sim("tag", "IN-FLIGHT")
    await csms.wait_for("Authorize", since=mark)
    await agent.sim("network", "down")
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"] is not None)
    assert connector(state, 1)["transaction"]["id_tag"] == "IN-FLIGHT"

    await agent.sim("network", "up")
    await csms.wait_for("MeterValues", lambda p: "transactionId" in p, since=mark)
    await agent.sim("tag", "IN-FLIGHT")
    await csms.wait_for("StopTransaction", since=mark)
    await agent.wait_status(no_transaction_and_empty_queue)
    (session,) = check_ledger(csms.received, ids.assigned, max_duplicates=1).sessions
    assert session.reason == "Local"


# -------------------------------------------------------------- restart with a queue


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
async def test_restart_with_messages_queued_delivers_all_in_order(
    agent_factory: AgentFactory, csms: LoopbackCsms, how: str
) -> None:
    agent: AgentProcess = agent_factory(
        ocpp16={"MeterValueSampleInterval": 1, "AllowOfflineTxForUnknownId": True}
    )
    ids = TransactionIds(csms).install()
    await agent.start()
    await booted(csms, 1)
    await agent.sim("network", "down")
    await csms.wait_disconnected(agent.cp_id)
    mark = csms.mark()

    # One complete session and one still running, all offline.
    await agent.sim("tag", "Q-1")
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: s["queue"]["depth"] >= 3)
    await agent.sim("unplug", "1")
    state = await agent.wait_status(
        lambda s: connector(s, 1)["status"] == "Available" and s["queue"]["depth"] >= 4
    )
    await agent.sim("plug", "1")
    await agent.sim("tag", "Q-2")
    await agent.wait_status(lambda s: s["queue"]["depth"] >= state["queue"]["depth"] + 3)

    if how == "kill9":
        await agent.kill9()
    else:
        assert await agent.stop() == 0
    # The back-end stays unreachable (it refuses the handshake) until the queue is loaded.
    csms.password = "closed-for-now"
    await agent.start()
    await eventually(lambda: len(csms.auth_failures) >= 2, "refused reconnects")
    state = await agent.status()
    queued = state["queue"]["depth"]
    assert queued >= 8 and connector(state, 1)["transaction"] is None
    assert csms.mark() == mark
    csms.password = None

    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])
    reason = "PowerLoss" if how == "kill9" else "Reboot"
    report = check_ledger(
        csms.received,
        ids.assigned,
        max_duplicates=0,
        stop_reasons={"EVDisconnected", reason},
    )
    assert [(s.start.payload["idTag"], s.reason) for s in report.sessions] == [
        ("Q-1", "EVDisconnected"),
        ("Q-2", reason),
    ]
    # The queue came out first, exactly as it was, in one piece.
    delivered = tx_messages(csms, since=mark)
    # Besides them the queue held this start's security events: the start-up, and the CSMS
    # refusing the charger's credentials (once for the whole streak of refusals).
    events = csms.messages("SecurityEventNotification", since=mark)
    assert sorted(r.payload["type"] for r in events) == [
        "FailedToAuthenticateAtCentralSystem",
        "StartupOfTheDevice",
    ]
    assert len(delivered) == report.messages == queued - len(events)
    assert all(r.index > max(d.index for d in delivered) for r in events)
    assert [r.action for r in delivered[:1]] == ["StartTransaction"]
    boot = next(r.index for r in csms.messages("BootNotification", since=mark))
    assert all(r.index > boot for r in delivered)


def fill_offline_session(agent: AgentProcess, messages: int) -> None:
    """Leave in the agent's data_dir one finished offline session of ``messages`` queued
    transaction messages (StartTransaction, MeterValues 1.., StopTransaction), as an agent
    that charged offline for long leaves it."""

    def at(n: int) -> str:
        return f"2026-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"

    store = Store(agent.data_dir)
    store.open()
    try:
        start = {"connectorId": 1, "idTag": "LONG", "meterStart": 0, "timestamp": at(0)}
        tx, _ = store.start_transaction(
            connector_id=1,
            id_tag="LONG",
            meter_start_wh=0,
            started_at=at(0),
            message=("StartTransaction", start),
        )
        for n in range(1, messages - 1):
            sample = {"value": str(n), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
            payload = {
                "connectorId": 1,
                "meterValue": [{"timestamp": at(n), "sampledValue": [sample]}],
            }
            store.enqueue("MeterValues", payload, tx_local_id=tx.local_id)
        last = messages - 1
        stop = {"meterStop": last, "timestamp": at(last), "reason": "Local"}
        store.stop_transaction(
            tx.local_id,
            meter_stop_wh=last,
            stopped_at=at(last),
            reason="Local",
            stop_id_tag=None,
            message=("StopTransaction", stop),
        )
    finally:
        store.close()


async def test_kill9_in_the_middle_of_a_long_replay_resends_only_the_call_in_flight(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """Answered messages are deleted without a sync of their own (Store.remove_answered):
    a kill -9 must still cost no more than the one CALL in flight sent again."""
    agent: AgentProcess = agent_factory()
    messages = 1500
    await asyncio.to_thread(fill_offline_session, agent, messages)
    ids = TransactionIds(csms).install()
    await agent.start()
    await csms.wait_for(
        "MeterValues", lambda p: p["meterValue"][0]["sampledValue"][0]["value"] == "700"
    )
    await agent.kill9()
    assert len(tx_messages(csms)) < messages  # killed while replaying
    mark = csms.mark()
    await agent.start()
    await csms.wait_for("StopTransaction", since=mark)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])

    report = check_ledger(csms.received, ids.assigned, max_duplicates=1, stop_reasons={"Local"})
    assert report.messages == messages
    assert len(report.duplicates) <= 1


# ----------------------------------------------------------- a CSMS that goes silent


async def test_unanswered_start_transaction_is_retried_with_the_same_id_until_answered(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        csms={"response_timeout_s": 1},
        ocpp16={
            "MeterValueSampleInterval": 1,
            "TransactionMessageAttempts": 1,
            "TransactionMessageRetryInterval": 1,
        },
    )
    silent = 3  # more unanswered tries than TransactionMessageAttempts

    def start_transaction(payload: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal silent
        if silent:
            silent -= 1
            return None
        return csms.default_reply("StartTransaction", payload)

    ids = TransactionIds(csms, start_transaction).install()
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "SILENT")
    await agent.wait_status(
        lambda s: (connector(s, 1)["transaction"] or {}).get("id") is not None, timeout=30
    )
    await csms.wait_for("MeterValues", lambda p: "transactionId" in p, since=mark)
    await agent.sim("tag", "SILENT")
    await csms.wait_for("StopTransaction", since=mark)
    await agent.wait_status(no_transaction_and_empty_queue)

    tries = csms.messages("StartTransaction", since=mark)
    assert len(tries) == 4 and len({r.unique_id for r in tries}) == 1
    assert len(csms.subprotocols) == 1  # retried on the same connection
    report = check_ledger(csms.received, ids.assigned, max_copies=None)
    (session,) = report.sessions
    assert session.transaction_id == ids.assigned[tries[0].unique_id][-1]
    assert session.reason == "Local"


def gave_up_waiting(agent: AgentProcess, action: str) -> bool:
    """Whether the agent logged that ``action`` got no answer in time."""
    return any(
        f": {action} " in line and " not delivered (no answer)" in line
        for line in agent.log().splitlines()
    )


async def test_a_late_answer_is_taken_instead_of_sending_again(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent: AgentProcess = agent_factory(
        csms={"response_timeout_s": 1},
        ocpp16={"MeterValueSampleInterval": 1, "TransactionMessageRetryInterval": 3600},
    )
    answered = asyncio.Event()

    async def slow_start(payload: dict[str, Any]) -> dict[str, Any]:
        # After the agent's timeout, long before its next attempt.
        await eventually(lambda: gave_up_waiting(agent, "StartTransaction"), "the timeout")
        reply = csms.default_reply("StartTransaction", payload)
        answered.set()
        return reply

    csms.responders["StartTransaction"] = slow_start
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "SLOW")
    await asyncio.wait_for(answered.wait(), WAIT_S)
    values = await csms.wait_for("MeterValues", lambda p: "transactionId" in p, since=mark)
    assert values["transactionId"] == 1
    assert len(csms.messages("StartTransaction", since=mark)) == 1  # not sent again
    assert "answered late" in agent.log()
