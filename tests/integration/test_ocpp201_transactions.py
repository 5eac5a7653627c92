"""OCPP 2.0.1 blocks C, D, E, F, G and J end to end: the real ``cpagent run`` process
speaking 2.0.1 to the loopback CSMS, driven with ``cpagent sim``.

C (authorization: Authorize, the cache and the offline rules of AuthCtrlr, group id tokens),
D (the local list), E (TransactionEvent while offline, refused id tokens, refused messages,
kill -9, GetTransactionStatus), F (remote start and stop, unlock, TriggerMessage), G
(statuses and ChangeAvailability) and J (aligned and sampled meter values). Every frame
both ways passes the 2.0.1 schemas (the ``csms`` fixture fails the test otherwise). Waits
are event-driven and bounded; where a test shows that nothing happened, it waits for the
agent's own record of the decision (a log line, a status) instead of for time to pass.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from cpagent.testing import CallErrorReply, LoopbackCsms
from cpagent.testing.csms import Received
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]
Payload = dict[str, Any]

QUIET = {
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
    "AlignedDataCtrlr": {"Interval": 0},
}
"""No periodic or aligned meter values: the events of a session are its own steps."""


def tables(**components: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:data:`QUIET` with ``components`` merged in (``[ocpp201]`` tables)."""
    out = {name: dict(values) for name, values in QUIET.items()}
    for name, values in components.items():
        out.setdefault(name, {}).update(values)
    return out


async def started_agent(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    ocpp201: dict[str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> AgentProcess:
    agent = agent_factory(ocpp201=tables() if ocpp201 is None else ocpp201, **kwargs)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    return agent


def token(id_token: str, kind: str = "ISO14443") -> Payload:
    return {"idToken": id_token, "type": kind}


def tx_id_of(event: Payload) -> str:
    tx_id: str = event["transactionInfo"]["transactionId"]
    return tx_id


async def set_variables(csms: LoopbackCsms, component: str, **values: Any) -> None:
    """SetVariables of ``component``'s variables, each of which must be Accepted."""

    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    data = [
        {
            "attributeValue": text(value),
            "component": {"name": component},
            "variable": {"name": name},
        }
        for name, value in values.items()
    ]
    answer = await csms.call("SetVariables", {"setVariableData": data})
    statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
    assert statuses == ["Accepted"] * len(data), answer


async def go_offline(agent: AgentProcess) -> None:
    await agent.sim("network", "down")
    await agent.wait_status(lambda s: not s["csms"]["connected"])


async def go_online(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """Network up, and wait until the agent has booted on the new connection (its statuses
    are sent again then)."""
    mark = csms.mark()
    await agent.sim("network", "up")
    await csms.wait_for("StatusNotification", since=mark)


async def plug_and_tag(
    agent: AgentProcess, csms: LoopbackCsms, id_token: str, *, evse: int = 1
) -> Payload:
    """Plug an EV into ``evse``, present ``id_token``; the Started event (online)."""
    mark = csms.mark()
    await agent.sim("plug", str(evse))
    await agent.sim("tag", id_token)
    return await csms.wait_for(
        "TransactionEvent",
        lambda p: p["eventType"] == "Started" and p["idToken"]["idToken"] == id_token,
        since=mark,
    )


async def ended(csms: LoopbackCsms, tx_id: str, *, since: int = 0) -> Payload:
    return await csms.wait_for(
        "TransactionEvent",
        lambda p: p["eventType"] == "Ended" and tx_id_of(p) == tx_id,
        since=since,
    )


async def transaction_running(agent: AgentProcess, evse: int = 1) -> dict[str, Any]:
    state = await agent.wait_status(lambda s: s["connectors"][evse - 1]["transaction"] is not None)
    running: dict[str, Any] = state["connectors"][evse - 1]["transaction"]
    return running


async def idle(agent: AgentProcess) -> None:
    await agent.wait_status(
        lambda s: (
            all(c["transaction"] is None for c in s["connectors"]) and s["queue"]["depth"] == 0
        )
    )


def assert_contiguous(events: list[Payload]) -> None:
    """One transaction's events: seqNo 0, 1, 2, ... in arrival order, Started first and
    Ended last, Updated between."""
    assert [e["seqNo"] for e in events] == list(range(len(events))), [
        (e["seqNo"], e["eventType"], e["triggerReason"]) for e in events
    ]
    assert events[0]["eventType"] == "Started" and events[-1]["eventType"] == "Ended"
    assert {e["eventType"] for e in events[1:-1]} <= {"Updated"}


def once_each(csms: LoopbackCsms, tx_id: str) -> list[Payload]:
    """The transaction's events in arrival order, each once: an event cut in flight by an
    interruption (network down, kill -9) comes again, and must then be the same message
    (same message id, same payload)."""
    first: dict[int, Received] = {}
    out = []
    for m in csms.messages("TransactionEvent"):
        if tx_id_of(m.payload) != tx_id:
            continue
        seen = first.setdefault(m.payload["seqNo"], m)
        if seen is m:
            out.append(m.payload)
        else:
            assert (m.unique_id, m.payload) == (seen.unique_id, seen.payload)
    return out


# ------------------------------------------------------------------ C: authorization


async def test_c_a_card_the_csms_accepts_is_cached_and_the_offline_rules_apply(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    # C01: Authorize on the wire, then the session; the answer is cached (C10).
    mark = csms.mark()
    started = await plug_and_tag(agent, csms, "CACHED")
    (authorize,) = csms.payloads("Authorize", since=mark)
    assert authorize["idToken"] == token("CACHED")
    assert started["triggerReason"] == "Authorized"
    await agent.sim("unplug", "1")
    await ended(csms, tx_id_of(started), since=mark)
    await idle(agent)

    # C12: offline, the cached card charges while LocalAuthorizeOffline (the default).
    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "CACHED")
    running = await transaction_running(agent)
    assert running["id_tag"] == "CACHED"
    await agent.sim("unplug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    # C15: an unknown card offline is refused while OfflineTxForUnknownIdEnabled is false.
    await agent.sim("plug", "1")
    await agent.sim("tag", "STRANGER")
    await agent.wait_log("card STRANGER not authorized")
    await agent.sim("unplug", "1")
    await go_online(agent, csms)
    await idle(agent)

    # LocalAuthorizeOffline false: the cached card is refused offline; an unknown one is
    # taken once OfflineTxForUnknownIdEnabled is true.
    await set_variables(
        csms, "AuthCtrlr", LocalAuthorizeOffline=False, OfflineTxForUnknownIdEnabled=True
    )
    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "CACHED")
    await agent.wait_log("card CACHED not authorized")
    assert (await agent.status())["connectors"][0]["transaction"] is None
    await agent.sim("tag", "NEWCOMER")
    assert (await transaction_running(agent))["id_tag"] == "NEWCOMER"
    await agent.sim("unplug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    mark = csms.mark()
    await go_online(agent, csms)
    late = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert once_each(csms, tx_id_of(late))[0]["idToken"] == token("NEWCOMER")
    await idle(agent)

    # C12 LocalPreAuthorize: a cached card starts at once, without an Authorize.
    await set_variables(
        csms, "AuthCtrlr", LocalPreAuthorize=True, OfflineTxForUnknownIdEnabled=False
    )
    mark = csms.mark()
    started = await plug_and_tag(agent, csms, "CACHED")
    assert csms.payloads("Authorize", since=mark) == []
    assert started["idToken"] == token("CACHED")
    await agent.sim("unplug", "1")
    await ended(csms, tx_id_of(started), since=mark)
    await idle(agent)

    # C11 ClearCache: the card is unknown again, so offline it is refused even with
    # LocalAuthorizeOffline back on.
    await set_variables(csms, "AuthCtrlr", LocalAuthorizeOffline=True)
    assert await csms.call("ClearCache", {}) == {"status": "Accepted"}
    await go_offline(agent)
    before = agent.log().count("card CACHED not authorized")
    await agent.sim("plug", "1")
    await agent.sim("tag", "CACHED")
    await wait_count(agent, "card CACHED not authorized", before + 1)
    assert (await agent.status())["connectors"][0]["transaction"] is None


async def wait_count(agent: AgentProcess, text: str, count: int) -> None:
    """Until the agent's log holds ``text`` ``count`` times (bounded polling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while agent.log().count(text) < count:
        assert loop.time() < deadline, f"never logged {count} times: {text}"
        await asyncio.sleep(0.05)


async def test_c10_without_the_cache_nothing_is_kept_and_clear_cache_is_rejected(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, tables(AuthCacheCtrlr={"Enabled": False}))
    started = await plug_and_tag(agent, csms, "FORGOTTEN")
    await agent.sim("unplug", "1")
    await ended(csms, tx_id_of(started))
    await idle(agent)
    assert await csms.call("ClearCache", {}) == {"status": "Rejected"}
    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "FORGOTTEN")  # never cached: unknown offline
    await agent.wait_log("card FORGOTTEN not authorized")
    assert (await agent.status())["connectors"][0]["transaction"] is None


async def test_c_a_card_the_csms_refuses_starts_nothing(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    csms.id_tag_status["REFUSED"] = "Invalid"
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "REFUSED")
    assert (await csms.wait_for("Authorize", since=mark))["idToken"] == token("REFUSED")
    await agent.wait_log("card REFUSED not authorized")
    state = await agent.status()
    assert state["connectors"][0]["transaction"] is None
    assert state["ocpp201"]["transactions"] == []
    assert csms.payloads("TransactionEvent", since=mark) == []


async def test_c09_a_card_of_the_same_group_ends_the_session(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    group = {"idToken": "FLEET-7", "type": "Central"}
    csms.responders["Authorize"] = lambda p: {
        "idTokenInfo": {"status": "Accepted", "groupIdToken": group}
    }
    started = await plug_and_tag(agent, csms, "DRIVER-A")
    mark = csms.mark()
    await agent.sim("tag", "DRIVER-B")
    end = await ended(csms, tx_id_of(started), since=mark)
    assert end["triggerReason"] == "StopAuthorized"
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    assert end["idToken"] == token("DRIVER-B")
    assert_contiguous(once_each(csms, tx_id_of(started)))


# ------------------------------------------------------------------- D: local list


async def test_d_local_list_full_then_differential_and_offline(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 0}
    accepted = {"status": "Accepted"}
    full = {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idToken": token("LIST-A"), "idTokenInfo": accepted},
            {"idToken": token("LIST-B"), "idTokenInfo": {"status": "Blocked"}},
        ],
    }
    assert await csms.call("SendLocalList", full) == {"status": "Accepted"}
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 3}
    differential = {
        "versionNumber": 4,
        "updateType": "Differential",
        "localAuthorizationList": [
            {"idToken": token("LIST-C"), "idTokenInfo": accepted},
            {"idToken": token("LIST-A")},  # without idTokenInfo: removed
        ],
    }
    assert await csms.call("SendLocalList", differential) == {"status": "Accepted"}
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 4}
    for old in (4, 2):
        stale = {**differential, "versionNumber": old}
        assert await csms.call("SendLocalList", stale) == {"status": "VersionMismatch"}
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 4}
    assert await list_entries(csms) == "2"  # LIST-B and LIST-C
    twice = {
        "versionNumber": 9,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idToken": token("TWIN"), "idTokenInfo": accepted},
            {"idToken": token("TWIN"), "idTokenInfo": {"status": "Blocked"}},
        ],
    }
    assert (await csms.call("SendLocalList", twice))["status"] == "Failed"
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 4}
    assert await list_entries(csms) == "2"

    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "LIST-A")  # removed from the list, never cached: unknown
    await agent.wait_log("card LIST-A not authorized")
    await agent.sim("tag", "LIST-B")  # listed Blocked
    await agent.wait_log("card LIST-B not authorized")
    await agent.sim("tag", "LIST-C")  # listed Accepted: charges offline
    assert (await transaction_running(agent))["id_tag"] == "LIST-C"
    await agent.sim("unplug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    mark = csms.mark()
    await go_online(agent, csms)
    end = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    events = once_each(csms, tx_id_of(end))
    assert_contiguous(events)
    assert events[0]["idToken"] == token("LIST-C")
    assert all(e.get("offline") is True for e in events)


async def list_entries(csms: LoopbackCsms) -> str:
    """LocalAuthListCtrlr.Entries: how many ids the list holds now."""
    item = {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}
    answer = await csms.call("GetVariables", {"getVariableData": [item]})
    (result,) = answer["getVariableResult"]
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


# --------------------------------------------------------------- E: transactions


async def test_e04_e12_events_raised_offline_arrive_in_order_marked_offline(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    started = await plug_and_tag(agent, csms, "ROAMER")
    tx_id = tx_id_of(started)
    await csms.wait_for(
        "TransactionEvent",
        lambda p: p["transactionInfo"].get("chargingState") == "Charging",
    )
    online_count = len(once_each(csms, tx_id))
    await go_offline(agent)
    await agent.sim("unplug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    assert (await agent.status())["queue"]["depth"] >= 1
    mark = csms.mark()
    await go_online(agent, csms)
    await ended(csms, tx_id, since=mark)
    events = once_each(csms, tx_id)
    assert_contiguous(events)
    assert all("offline" not in e for e in events[:online_count])
    assert [e.get("offline") for e in events[online_count:]] == [True] * (
        len(events) - online_count
    )
    assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    await idle(agent)

    # E04: a session started and ended while offline (the card is cached by now).
    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "ROAMER")
    await transaction_running(agent)
    await agent.sim("unplug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    mark = csms.mark()
    await go_online(agent, csms)
    offline_end = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark
    )
    second = once_each(csms, tx_id_of(offline_end))
    assert tx_id_of(offline_end) != tx_id
    assert_contiguous(second)
    assert all(e.get("offline") is True for e in second)
    assert second[0]["idToken"] == token("ROAMER")
    await idle(agent)


async def test_e05_a_started_event_answered_invalid_deauthorizes_the_session(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, tables(TxCtrlr={"StopTxOnInvalidId": True}))

    def transaction_event(payload: Payload) -> Any:
        if payload["eventType"] == "Started":
            return {"idTokenInfo": {"status": "Invalid"}}
        return csms.default_reply("TransactionEvent", payload)

    csms.responders["TransactionEvent"] = transaction_event
    started = await plug_and_tag(agent, csms, "REVOKED")
    end = await ended(csms, tx_id_of(started))
    assert end["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert end["triggerReason"] == "Deauthorized"
    assert_contiguous(once_each(csms, tx_id_of(started)))
    state = await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    assert state["connectors"][0]["contactor_closed"] is False


async def test_e05_without_stop_on_invalid_id_the_session_stays_but_energy_stops(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    tx = {"StopTxOnInvalidId": False, "MaxEnergyOnInvalidId": 0}
    agent = await started_agent(agent_factory, csms, tables(TxCtrlr=tx))

    def transaction_event(payload: Payload) -> Any:
        if payload["eventType"] == "Started":
            return {"idTokenInfo": {"status": "Invalid"}}
        return csms.default_reply("TransactionEvent", payload)

    csms.responders["TransactionEvent"] = transaction_event
    started = await plug_and_tag(agent, csms, "CAPPED")
    tx_id = tx_id_of(started)
    suspended = await csms.wait_for(
        "TransactionEvent",
        lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE",
    )
    assert tx_id_of(suspended) == tx_id and suspended["eventType"] == "Updated"
    state = await agent.wait_status(lambda s: s["connectors"][0]["contactor_closed"] is False)
    assert state["connectors"][0]["transaction"] is not None
    assert [e["eventType"] for e in once_each(csms, tx_id)][-1] == "Updated"


async def test_e05_an_offline_session_whose_token_the_csms_refuses_is_deauthorized(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory, csms, tables(AuthCtrlr={"OfflineTxForUnknownIdEnabled": True})
    )
    csms.id_tag_status["STRANGER"] = "Invalid"
    await go_offline(agent)
    await agent.sim("plug", "1")
    await agent.sim("tag", "STRANGER")  # unknown offline: allowed by configuration
    await transaction_running(agent)
    mark = csms.mark()
    await go_online(agent, csms)
    end = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert end["triggerReason"] == "Deauthorized"
    assert "offline" not in end  # raised once the CSMS had answered
    events = once_each(csms, tx_id_of(end))
    assert_contiguous(events)
    assert events[0]["offline"] is True and events[0]["idToken"] == token("STRANGER")
    state = await agent.wait_status(lambda s: s["connectors"][0]["transaction"] is None)
    assert state["connectors"][0]["contactor_closed"] is False


async def test_e11_e13_a_refused_event_is_retried_then_kept_as_failed(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    comm = {"MessageAttempts:TransactionEvent": 3, "MessageAttemptInterval:TransactionEvent": 1}
    agent = await started_agent(agent_factory, csms, tables(OCPPCommCtrlr=comm))

    def transaction_event(payload: Payload) -> Any:
        if payload["eventType"] == "Started":
            return CallErrorReply("InternalError", "database busy")
        return csms.default_reply("TransactionEvent", payload)

    csms.responders["TransactionEvent"] = transaction_event
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "STUBBORN")
    # E14 while the refused event waits for its next attempt: in the queue, ongoing.
    first = await csms.wait_for_message("TransactionEvent", since=mark)
    tx_id = tx_id_of(first.payload)
    status = await csms.call("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"messagesInQueue": True, "ongoingIndicator": True}
    state = await agent.wait_status(lambda s: s["queue"]["failed"] == 1)
    tries = [m for m in csms.messages("TransactionEvent", since=mark) if m.payload["seqNo"] == 0]
    assert len(tries) == 3
    assert {m.unique_id for m in tries} == {first.unique_id}  # one message, sent 3 times
    gaps = [b.at - a.at for a, b in itertools.pairwise(in_frames(csms, tries))]
    assert all(g >= 0.9 for g in gaps), gaps
    assert state["connectors"][0]["transaction"] is not None  # the session goes on

    # The queue moves on; the refused event is kept in the store, never dropped.
    await agent.sim("unplug", "1")
    end = await ended(csms, tx_id, since=mark)
    assert end["seqNo"] > 0
    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert state["queue"]["failed"] == 1
    assert await csms.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": False,
        "ongoingIndicator": False,
    }
    assert await csms.call("GetTransactionStatus", {}) == {"messagesInQueue": False}


def in_frames(csms: LoopbackCsms, sent: list[Any]) -> list[Any]:
    """The incoming websocket frames carrying the messages ``sent``, in order."""
    ids = {m.unique_id for m in sent}
    frames = []
    for frame in csms.frames:
        message = frame.message
        if frame.direction == "in" and message and message[0] == 2 and message[1] in ids:
            frames.append(frame)
    return frames


async def test_e14_transaction_status_while_events_wait_for_an_answer(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    started = await plug_and_tag(agent, csms, "QUEUED")
    tx_id = tx_id_of(started)
    # The charging-state events follow the Started one; once charging, nothing more comes
    # (no periodic values), so an empty queue stays empty.
    await csms.wait_for(
        "TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging"
    )
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert await csms.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": False,
        "ongoingIndicator": True,
    }
    release = asyncio.Event()

    async def slow(payload: Payload) -> Any:
        if payload["eventType"] == "Ended":
            await release.wait()
        return csms.default_reply("TransactionEvent", payload, "2.0.1")

    csms.responders["TransactionEvent"] = slow
    mark = csms.mark()
    await agent.sim("unplug", "1")
    await ended(csms, tx_id, since=mark)
    answer = await csms.call("GetTransactionStatus", {"transactionId": tx_id})
    assert answer == {"messagesInQueue": True, "ongoingIndicator": False}
    assert await csms.call("GetTransactionStatus", {}) == {"messagesInQueue": True}
    assert await csms.call("GetTransactionStatus", {"transactionId": "no-such-tx"}) == {
        "messagesInQueue": False,
        "ongoingIndicator": False,
    }
    release.set()
    await idle(agent)
    assert await csms.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": False,
        "ongoingIndicator": False,
    }


async def test_e_kill9_mid_session_ends_it_as_power_loss_with_every_event_delivered(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory, csms, tables(SampledDataCtrlr={"TxUpdatedInterval": 1})
    )
    started = await plug_and_tag(agent, csms, "CRASH")
    tx_id = tx_id_of(started)
    await csms.wait_for(
        "TransactionEvent",
        lambda p: tx_id_of(p) == tx_id and p["triggerReason"] == "MeterValuePeriodic",
    )
    await agent.kill9()
    mark = csms.mark()
    await agent.start()
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    events = once_each(csms, tx_id)
    # Each event arrived at least once (one cut in flight may come twice, by the same
    # message id); taken once per seqNo they are contiguous and in order.
    calls = [m for m in csms.messages("TransactionEvent") if tx_id_of(m.payload) == tx_id]
    by_seq: dict[int, set[str]] = {}
    for m in calls:
        by_seq.setdefault(m.payload["seqNo"], set()).add(m.unique_id)
    assert all(len(ids) == 1 for ids in by_seq.values()), by_seq
    assert sorted(by_seq) == list(range(len(by_seq)))
    seqs = [e["seqNo"] for e in events]
    assert seqs == sorted(seqs)
    assert events[-1]["eventType"] == "Ended" and end["seqNo"] == max(by_seq)
    await idle(agent)

    # A new session after the restart is a new transaction id.
    await agent.sim("unplug", "1")
    again = await plug_and_tag(agent, csms, "CRASH")
    assert tx_id_of(again) != tx_id
    assert again["seqNo"] == 0


async def test_e_kill9_while_offline_loses_none_of_the_queued_events(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory, csms, tables(SampledDataCtrlr={"TxUpdatedInterval": 1})
    )
    started = await plug_and_tag(agent, csms, "DARK")
    tx_id = tx_id_of(started)
    await go_offline(agent)
    # Periodic samples pile up in the store while the CSMS is out of reach.
    await agent.wait_status(lambda s: s["queue"]["depth"] >= 3)
    await agent.kill9()
    mark = csms.mark()
    await agent.start()  # a new process: its network is up
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    events = once_each(csms, tx_id)
    assert_contiguous(events)
    offline = [e for e in events if e.get("offline")]
    assert len(offline) >= 3
    # The Ended event too: the restarted agent closes the session before it connects.
    assert offline[-1] is events[-1]
    assert {e["triggerReason"] for e in offline[:-1]} == {"MeterValuePeriodic"}
    await idle(agent)


async def test_e_kill9_with_an_event_in_flight_resends_it_with_the_same_message_id(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory, csms, tables(SampledDataCtrlr={"TxUpdatedInterval": 1})
    )
    held: list[Received] = []
    never = asyncio.Event()

    async def hold_first_periodic(payload: Payload) -> Any:
        if payload["triggerReason"] == "MeterValuePeriodic" and not held:
            held.append(csms.messages("TransactionEvent")[-1])
            await never.wait()  # no answer: the agent dies waiting for it
        return csms.default_reply("TransactionEvent", payload, "2.0.1")

    csms.responders["TransactionEvent"] = hold_first_periodic
    started = await plug_and_tag(agent, csms, "INFLIGHT")
    tx_id = tx_id_of(started)
    await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    await agent.kill9()
    (cut,) = held
    mark = csms.mark()
    await agent.start()
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    resent = csms.messages("TransactionEvent", since=mark)[0]
    assert (resent.unique_id, resent.payload) == (cut.unique_id, cut.payload)
    by_id = {
        m.unique_id: m.payload["seqNo"]
        for m in csms.messages("TransactionEvent")
        if tx_id_of(m.payload) == tx_id
    }
    assert sorted(by_id.values()) == list(range(len(by_id)))  # one id per seqNo, no gap
    await idle(agent)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_e_kill9_at_a_seeded_moment_of_a_session(
    agent_factory: AgentFactory, csms: LoopbackCsms, seed: int
) -> None:
    rng = random.Random(seed)
    agent = await started_agent(
        agent_factory, csms, tables(SampledDataCtrlr={"TxUpdatedInterval": 1})
    )

    async def late(payload: Payload) -> Any:
        await asyncio.sleep(rng.uniform(0, 0.3))  # so that the kill finds one in flight
        return csms.default_reply("TransactionEvent", payload, "2.0.1")

    csms.responders["TransactionEvent"] = late
    started = await plug_and_tag(agent, csms, f"SEED-{seed}")
    tx_id = tx_id_of(started)
    if rng.random() < 0.5:
        await go_offline(agent)
    await asyncio.sleep(rng.uniform(0, 2.5))  # the seeded moment of the kill
    await agent.kill9()
    await agent.start()
    end = await ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    await idle(agent)
    assert_contiguous(once_each(csms, tx_id))


# ------------------------------------------------------------ F: remote control


async def test_f01_f02_remote_start_with_and_without_an_evse_then_remote_stop(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, connectors=2)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
    request = {"idToken": token("APP-USER", "Central"), "remoteStartId": 41, "evseId": 2}
    mark = csms.mark()
    assert await csms.call("RequestStartTransaction", request) == {"status": "Accepted"}
    # AuthorizeRemoteStart (true by default): the request's token is put to the CSMS.
    authorize = await csms.wait_for("Authorize", since=mark)
    assert authorize["idToken"] == token("APP-USER", "Central")
    mark = csms.mark()
    await agent.sim("plug", "2")
    started = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
    )
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 41
    assert started["idToken"] == token("APP-USER", "Central")
    assert started["evse"] == {"id": 2, "connectorId": 1}
    tx_id = tx_id_of(started)

    # The EVSE is occupied by that transaction: a second request for it is rejected.
    busy = {"idToken": token("OTHER", "Central"), "remoteStartId": 42, "evseId": 2}
    assert (await csms.call("RequestStartTransaction", busy))["status"] == "Rejected"

    nowhere = {"idToken": token("OTHER", "Central"), "remoteStartId": 44, "evseId": 9}
    assert (await csms.call("RequestStartTransaction", nowhere))["status"] == "Rejected"

    # F02 without evseId: the free EVSE takes it.
    anywhere = {"idToken": token("APP-TWO", "Central"), "remoteStartId": 43}
    assert await csms.call("RequestStartTransaction", anywhere) == {"status": "Accepted"}
    mark = csms.mark()
    await agent.sim("plug", "1")
    second = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
    )
    assert second["triggerReason"] == "RemoteStart"
    assert second["transactionInfo"]["remoteStartId"] == 43
    assert second["idToken"] == token("APP-TWO", "Central")
    assert second["evse"] == {"id": 1, "connectorId": 1}

    # F03/F04: stop by transactionId; an unknown one is rejected.
    unknown = {"transactionId": "not-a-transaction"}
    assert await csms.call("RequestStopTransaction", unknown) == {"status": "Rejected"}
    mark = csms.mark()
    stop = {"transactionId": tx_id}
    assert await csms.call("RequestStopTransaction", stop) == {"status": "Accepted"}
    end = await ended(csms, tx_id, since=mark)
    assert end["transactionInfo"]["stoppedReason"] == "Remote"
    assert end["triggerReason"] == "RemoteStop"
    assert_contiguous(once_each(csms, tx_id))
    assert await csms.call("RequestStopTransaction", stop) == {"status": "Rejected"}
    state = await agent.wait_status(lambda s: s["connectors"][1]["transaction"] is None)
    assert state["connectors"][0]["transaction"]["id_tag"] == "APP-TWO"


async def test_f01_a_no_authorization_remote_start_is_not_put_to_the_csms(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    free = {"idToken": {"idToken": "", "type": "NoAuthorization"}, "remoteStartId": 9}
    mark = csms.mark()
    assert await csms.call("RequestStartTransaction", free) == {"status": "Accepted"}
    await agent.sim("plug", "1")
    started = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
    )
    assert started["idToken"] == {"idToken": "", "type": "NoAuthorization"}
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 9
    assert csms.payloads("Authorize", since=mark) == []


async def test_f05_unlock_connector(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    agent = await started_agent(agent_factory, csms)
    # The simulated lock always releases (hal/sim.py SimLock).
    unlock = {"evseId": 1, "connectorId": 1}
    assert await csms.call("UnlockConnector", unlock) == {"status": "Unlocked"}
    for where in ({"evseId": 9, "connectorId": 1}, {"evseId": 1, "connectorId": 2}):
        assert await csms.call("UnlockConnector", where) == {"status": "UnknownConnector"}
    started = await plug_and_tag(agent, csms, "LOCKED-IN")
    answer = await csms.call("UnlockConnector", unlock)
    assert answer == {"status": "OngoingAuthorizedTransaction"}
    state = await agent.status()
    assert state["connectors"][0]["transaction"] is not None  # F05.FR.02: not ended
    assert [e["eventType"] for e in once_each(csms, tx_id_of(started))][-1] != "Ended"


async def test_f06_trigger_message(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    aligned = {"Interval": 0, "Measurands": "Energy.Active.Import.Register,Voltage"}
    agent = await started_agent(agent_factory, csms, tables(AlignedDataCtrlr=aligned), connectors=2)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
    accepted = {"status": "Accepted"}

    mark = csms.mark()
    one = {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}}
    assert await csms.call("TriggerMessage", one) == accepted
    status = await csms.wait_for("StatusNotification", since=mark)
    assert (status["evseId"], status["connectorStatus"]) == (2, "Available")

    mark = csms.mark()
    assert await csms.call("TriggerMessage", {"requestedMessage": "StatusNotification"}) == (
        accepted
    )
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, since=mark)

    mark = csms.mark()
    assert await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == accepted
    await csms.wait_for("Heartbeat", since=mark)

    mark = csms.mark()
    meter = {"requestedMessage": "MeterValues", "evse": {"id": 1}}
    assert await csms.call("TriggerMessage", meter) == accepted
    values = await csms.wait_for("MeterValues", since=mark)
    assert values["evseId"] == 1
    (sample,) = values["meterValue"]
    assert {v.get("context") for v in sample["sampledValue"]} == {"Trigger"}
    assert measurands(sample) == {"Energy.Active.Import.Register", "Voltage"}
    assert [m["evseId"] for m in csms.payloads("MeterValues", since=mark)] == [1]

    # No transaction runs: a TransactionEvent is refused, for one EVSE or all.
    for where in ({"evse": {"id": 1}}, {}):
        event = {"requestedMessage": "TransactionEvent", **where}
        assert (await csms.call("TriggerMessage", event))["status"] == "Rejected"

    nowhere = {"requestedMessage": "StatusNotification", "evse": {"id": 7}}
    assert (await csms.call("TriggerMessage", nowhere))["status"] == "Rejected"

    started = await plug_and_tag(agent, csms, "TRIGGERED")
    mark = csms.mark()
    elsewhere = {"requestedMessage": "TransactionEvent", "evse": {"id": 2}}
    assert (await csms.call("TriggerMessage", elsewhere))["status"] == "Rejected"
    event = {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    assert await csms.call("TriggerMessage", event) == accepted
    update = await csms.wait_for(
        "TransactionEvent", lambda p: p["triggerReason"] == "Trigger", since=mark
    )
    assert update["eventType"] == "Updated"
    assert tx_id_of(update) == tx_id_of(started)
    (sample,) = update["meterValue"]
    assert {v["context"] for v in sample["sampledValue"]} == {"Trigger"}
    assert measurands(sample) == {"Energy.Active.Import.Register", "Power.Active.Import"}

    # MeterValues during the transaction: still a MeterValues message, not an event.
    mark = csms.mark()
    assert await csms.call("TriggerMessage", meter) == accepted
    values = await csms.wait_for("MeterValues", since=mark)
    (sample,) = values["meterValue"]
    assert values["evseId"] == 1
    assert measurands(sample) == {"Energy.Active.Import.Register", "Voltage"}
    triggered = [
        p for p in csms.payloads("TransactionEvent", since=mark) if p["triggerReason"] == "Trigger"
    ]
    assert triggered == []


def measurands(meter_value: Payload) -> set[str]:
    return {
        v.get("measurand", "Energy.Active.Import.Register") for v in meter_value["sampledValue"]
    }


# ------------------------------------------------------------------ G: availability


async def test_g01_statuses_follow_plug_unplug_and_faults(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)

    async def status_after(*command: str) -> str:
        mark = csms.mark()
        await agent.sim(*command)
        found = await csms.wait_for("StatusNotification", since=mark)
        assert (found["evseId"], found["connectorId"]) == (1, 1)
        status: str = found["connectorStatus"]
        return status

    assert await status_after("plug", "1") == "Occupied"
    assert await status_after("unplug", "1") == "Available"
    assert await status_after("fault", "meter", "1", "on") == "Faulted"
    assert await status_after("fault", "meter", "1", "off") == "Available"


async def test_g03_g04_change_availability_scheduled_and_persisted(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, connectors=2)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)

    def evse_status(evse: int, status: str, since: int) -> Any:
        return csms.wait_for(
            "StatusNotification",
            lambda p: p["evseId"] == evse and p["connectorStatus"] == status,
            since=since,
        )

    # One idle EVSE: at once.
    mark = csms.mark()
    one = {"operationalStatus": "Inoperative", "evse": {"id": 2}}
    assert await csms.call("ChangeAvailability", one) == {"status": "Accepted"}
    await evse_status(2, "Unavailable", mark)
    mark = csms.mark()
    back = {"operationalStatus": "Operative", "evse": {"id": 2}}
    assert await csms.call("ChangeAvailability", back) == {"status": "Accepted"}
    await evse_status(2, "Available", mark)

    # An EVSE that charges: Scheduled, Unavailable once its session ends.
    started = await plug_and_tag(agent, csms, "BUSY")
    mark = csms.mark()
    busy = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    assert await csms.call("ChangeAvailability", busy) == {"status": "Scheduled"}
    assert (await agent.status())["connectors"][0]["transaction"] is not None
    assert [p for p in csms.payloads("StatusNotification", since=mark) if p["evseId"] == 1] == []
    await agent.sim("unplug", "1")
    await ended(csms, tx_id_of(started), since=mark)
    await evse_status(1, "Unavailable", mark)
    mark = csms.mark()
    assert await csms.call("ChangeAvailability", {**busy, "operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    await evse_status(1, "Available", mark)

    nowhere = {"operationalStatus": "Inoperative", "evse": {"id": 9}}
    assert (await csms.call("ChangeAvailability", nowhere))["status"] == "Rejected"

    # The whole station while EVSE 1 charges: Scheduled; EVSE 2 at once, EVSE 1 after.
    started = await plug_and_tag(agent, csms, "BUSY")
    mark = csms.mark()
    station = {"operationalStatus": "Inoperative"}
    assert await csms.call("ChangeAvailability", station) == {"status": "Scheduled"}
    await evse_status(2, "Unavailable", mark)
    await agent.sim("unplug", "1")
    await ended(csms, tx_id_of(started), since=mark)
    await evse_status(1, "Unavailable", mark)
    mark = csms.mark()
    assert await csms.call("ChangeAvailability", {"operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    await evse_status(1, "Available", mark)
    await evse_status(2, "Available", mark)

    # The whole station, idle: every EVSE goes Unavailable; kept across a restart.
    mark = csms.mark()
    assert await csms.call("ChangeAvailability", station) == {"status": "Accepted"}
    await evse_status(1, "Unavailable", mark)
    await evse_status(2, "Unavailable", mark)
    assert await agent.stop() == 0
    mark = csms.mark()
    await agent.start()
    await evse_status(1, "Unavailable", mark)
    await evse_status(2, "Unavailable", mark)
    firsts: dict[int, str] = {}
    for p in csms.payloads("StatusNotification", since=mark):
        firsts.setdefault(p["evseId"], p["connectorStatus"])
    assert firsts == {1: "Unavailable", 2: "Unavailable"}
    # An Inoperative station starts nothing.
    await agent.sim("plug", "1")
    await agent.sim("tag", "AFTER")
    await agent.wait_log("no connector is free for it")
    request = {"idToken": token("APP", "Central"), "remoteStartId": 1}
    assert (await csms.call("RequestStartTransaction", request))["status"] == "Rejected"
    mark = csms.mark()
    assert await csms.call("ChangeAvailability", {"operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    await evse_status(2, "Available", mark)


async def test_g04_an_inoperative_evse_stays_so_after_a_restart(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms, connectors=2)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
    one = {"operationalStatus": "Inoperative", "evse": {"id": 2}}
    assert await csms.call("ChangeAvailability", one) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Unavailable")
    assert await agent.stop() == 0
    mark = csms.mark()
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, since=mark)
    firsts: dict[int, str] = {}
    for p in csms.payloads("StatusNotification", since=mark):
        firsts.setdefault(p["evseId"], p["connectorStatus"])
    assert firsts == {1: "Available", 2: "Unavailable"}


# ------------------------------------------------------------------ J: meter values


async def test_j01_j02_aligned_values_in_and_out_of_a_transaction_per_phase(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    ended_measurands = "Energy.Active.Import.Register,Current.Import"
    agent = await started_agent(
        agent_factory,
        csms,
        {
            "SampledDataCtrlr": {"TxUpdatedInterval": 0, "TxEndedMeasurands": ended_measurands},
            "AlignedDataCtrlr": {
                "Interval": 2,
                "Measurands": "Energy.Active.Import.Register,Voltage",
            },
        },
        sim={"phases": 3},
    )
    # J01: outside a transaction, clock-aligned readings come in MeterValues.
    aligned = await csms.wait_for("MeterValues")
    assert aligned["evseId"] == 1
    values = aligned["meterValue"][0]["sampledValue"]
    assert {v.get("context") for v in values} == {"Sample.Clock"}
    assert {v.get("measurand") for v in values} == {"Energy.Active.Import.Register", "Voltage"}
    assert sorted(v.get("phase") for v in values if v.get("measurand") == "Voltage") == [
        "L1-N",
        "L2-N",
        "L3-N",
    ]

    # J02: during one, in TransactionEvent Updated with MeterValueClock.
    started = await plug_and_tag(agent, csms, "METERED")
    tx_id = tx_id_of(started)
    clock = await csms.wait_for(
        "TransactionEvent",
        lambda p: tx_id_of(p) == tx_id and p["triggerReason"] == "MeterValueClock",
    )
    assert clock["eventType"] == "Updated"
    assert {v["context"] for v in clock["meterValue"][0]["sampledValue"]} == {"Sample.Clock"}
    mark = csms.mark()
    await csms.wait_for(
        "TransactionEvent",
        lambda p: tx_id_of(p) == tx_id and p["transactionInfo"].get("chargingState") == "Charging",
    )
    await agent.sim("unplug", "1")
    end = await ended(csms, tx_id, since=mark)
    final = [
        v
        for mv in end["meterValue"]
        for v in mv["sampledValue"]
        if v.get("context") == "Transaction.End"
    ]
    assert {v.get("measurand", "Energy.Active.Import.Register") for v in final} == {
        "Energy.Active.Import.Register",
        "Current.Import",
    }
    assert sorted(v.get("phase") for v in final if v.get("measurand") == "Current.Import") == [
        "L1",
        "L2",
        "L3",
    ]
    assert_contiguous(once_each(csms, tx_id))


async def test_f01_a_rejected_remote_start_leaves_no_mark_on_a_later_card_session(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    first = await plug_and_tag(agent, csms, "OWNER")
    request = {"idToken": token("SAME-CARD"), "remoteStartId": 77, "evseId": 1}
    assert (await csms.call("RequestStartTransaction", request))["status"] == "Rejected"
    await agent.sim("tag", "OWNER")
    await ended(csms, tx_id_of(first))
    await agent.sim("unplug", "1")
    await idle(agent)
    # The same token later, at the station: a card session like any other.
    started = await plug_and_tag(agent, csms, "SAME-CARD")
    assert started["triggerReason"] == "Authorized"
    assert "remoteStartId" not in started["transactionInfo"]


async def test_f01_remote_start_with_the_ev_already_plugged_starts_at_once(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory, csms, tables(AuthCtrlr={"AuthorizeRemoteStart": False})
    )
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for(
        "StatusNotification", lambda p: p["connectorStatus"] == "Occupied", since=mark
    )
    request = {"idToken": token("EMAID-1", "eMAID"), "remoteStartId": 5}
    assert await csms.call("RequestStartTransaction", request) == {"status": "Accepted"}
    started = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
    )
    assert csms.payloads("Authorize", since=mark) == []
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 5
    assert started["idToken"] == token("EMAID-1", "eMAID")
    # Ended by the same token shown at the station? No: by the CSMS.
    mark = csms.mark()
    stop = {"transactionId": tx_id_of(started)}
    assert await csms.call("RequestStopTransaction", stop) == {"status": "Accepted"}
    end = await ended(csms, tx_id_of(started), since=mark)
    assert end["transactionInfo"]["chargingState"] == "EVConnected"
    assert_contiguous(once_each(csms, tx_id_of(started)))


async def test_j_aligned_send_during_idle_keeps_aligned_values_out_of_transactions(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory,
        csms,
        tables(
            SampledDataCtrlr={"TxUpdatedInterval": 1},
            AlignedDataCtrlr={"Interval": 1, "SendDuringIdle": True},
        ),
    )
    await csms.wait_for("MeterValues")  # idle: aligned values are sent
    started = await plug_and_tag(agent, csms, "IDLE-ONLY")
    tx_id = tx_id_of(started)
    mark = csms.mark()
    # Three periodic samples take at least two aligned boundaries of 1 s.
    for n in range(3):
        await csms.wait_for(
            "TransactionEvent",
            lambda p: tx_id_of(p) == tx_id and p["triggerReason"] == "MeterValuePeriodic",
            since=csms.mark() if n else mark,
        )
    triggers = [e["triggerReason"] for e in once_each(csms, tx_id)]
    assert "MeterValueClock" not in triggers
    assert [p for p in csms.payloads("MeterValues", since=mark)] == []


async def test_j02_the_ended_event_keeps_readings_every_tx_ended_interval(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(
        agent_factory,
        csms,
        tables(SampledDataCtrlr={"TxUpdatedInterval": 1, "TxEndedInterval": 2}),
    )
    started = await plug_and_tag(agent, csms, "KEPT")
    tx_id = tx_id_of(started)
    for _ in range(5):
        await csms.wait_for(
            "TransactionEvent",
            lambda p: tx_id_of(p) == tx_id and p["triggerReason"] == "MeterValuePeriodic",
            since=csms.mark(),
        )
    await agent.sim("unplug", "1")
    end = await ended(csms, tx_id)
    contexts = [mv["sampledValue"][0]["context"] for mv in end["meterValue"]]
    periodic = [
        datetime.fromisoformat(mv["timestamp"])
        for mv in end["meterValue"]
        if mv["sampledValue"][0]["context"] == "Sample.Periodic"
    ]
    assert contexts[-1] == "Transaction.End"
    assert set(contexts[:-1]) == {"Sample.Periodic"}
    updates = [e for e in once_each(csms, tx_id) if e["triggerReason"] == "MeterValuePeriodic"]
    assert 2 <= len(periodic) <= len(updates) // 2 + 1, (len(periodic), len(updates))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(periodic)]
    assert all(g >= 1.4 for g in gaps), gaps


async def test_j02_started_and_ended_carry_their_own_measurands(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    sampled = {
        "TxUpdatedInterval": 0,
        "TxStartedMeasurands": "Energy.Active.Import.Register,Voltage",
        "TxEndedMeasurands": "Energy.Active.Import.Register,Power.Active.Import",
    }
    agent = await started_agent(agent_factory, csms, tables(SampledDataCtrlr=sampled))
    started = await plug_and_tag(agent, csms, "MEASURED")
    (begin,) = started["meterValue"]
    assert {v["context"] for v in begin["sampledValue"]} == {"Transaction.Begin"}
    assert sorted(v.get("measurand", "") for v in begin["sampledValue"]) == [
        "Energy.Active.Import.Register",
        "Voltage",
        "Voltage",
        "Voltage",
    ]
    await csms.wait_for(
        "TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging"
    )
    await agent.sim("unplug", "1")
    (end_value,) = (await ended(csms, tx_id_of(started)))["meterValue"]
    assert {v["context"] for v in end_value["sampledValue"]} == {"Transaction.End"}
    assert {v.get("measurand") for v in end_value["sampledValue"]} == {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
    }
