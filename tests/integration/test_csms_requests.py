"""Every CSMS-initiated OCPP 1.6 Core message against the real ``cpagent run`` process.

Each test drives the agent over the loopback CSMS and asserts what a CSMS sees: the exact
answer to its CALL and the traffic that follows it (frame order included where the spec
cares), plus what ``cpagent status`` shows. Absence of traffic is only asserted behind an
event that proves the agent already handled the input (a later reply, a log line).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpagent import __version__
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, CsmsCallError, Received
from cpagent.timeutil import iso
from tests.integration.conftest import AgentProcess, run_cli, write_config
from tests.integration.test_smart_charging import profile as cs_profile

CP_ID = "CP001"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


# --------------------------------------------------------------------------- helpers


async def started(agent_factory: Any, csms: LoopbackCsms, **kwargs: Any) -> AgentProcess:
    """Start an agent made with ``kwargs`` and wait until it reported connector 1."""
    agent: AgentProcess = agent_factory(**kwargs)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return agent


def status_of(state: dict[str, Any], connector_id: int = 1) -> str:
    status: str = state["connectors"][connector_id - 1]["status"]
    return status


def tx_of(state: dict[str, Any], connector_id: int = 1) -> dict[str, Any] | None:
    tx: dict[str, Any] | None = state["connectors"][connector_id - 1]["transaction"]
    return tx


async def wait_confirmed_tx(agent: AgentProcess, connector_id: int = 1) -> int:
    """Wait until the connector's session has the CSMS transaction id; return it."""
    state = await agent.wait_status(
        lambda s: (tx := tx_of(s, connector_id)) is not None and tx["id"] is not None
    )
    tx = tx_of(state, connector_id)
    assert tx is not None
    tx_id: int = tx["id"]
    return tx_id


async def card_session(agent: AgentProcess, csms: LoopbackCsms, tag: str = "TAG-1") -> int:
    """Plug an EV, show a card, wait for the confirmed session; return its transactionId."""
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    await agent.sim("tag", tag)
    start = await csms.wait_for("StartTransaction", lambda p: p["idTag"] == tag, since=mark)
    assert start["connectorId"] == 1
    return await wait_confirmed_tx(agent)


def on_connector(connector_id: int) -> Callable[[dict[str, Any]], bool]:
    """A StatusNotification filter: any status of ``connector_id``."""
    return lambda p: p["connectorId"] == connector_id


def reports(connector_id: int, status: str) -> Callable[[dict[str, Any]], bool]:
    """A StatusNotification filter: ``connector_id`` reports ``status``."""
    return lambda p: p["connectorId"] == connector_id and p["status"] == status


def frame_index(csms: LoopbackCsms, kind: int, unique_id: str, direction: str = "in") -> int:
    """Index in ``csms.frames`` of the frame ``[kind, unique_id, ...]``."""
    for i, frame in enumerate(csms.frames):
        msg = frame.message
        if frame.direction == direction and msg and msg[0] == kind and msg[1:2] == [unique_id]:
            return i
    raise AssertionError(f"no {direction} frame [{kind}, {unique_id!r}, ...] in {csms.frames}")


def last_call_id(csms: LoopbackCsms, action: str) -> str:
    """The unique id of the last CALL of ``action`` the CSMS sent."""
    for frame in reversed(csms.frames):
        msg = frame.message
        if frame.direction == "out" and msg and msg[0] == 2 and msg[2] == action:
            unique_id: str = msg[1]
            return unique_id
    raise AssertionError(f"the CSMS never sent {action}")


def result_index(csms: LoopbackCsms, action: str) -> int:
    """Index of the charge point's CALLRESULT to the last ``action`` the CSMS sent."""
    return frame_index(csms, 3, last_call_id(csms, action))


async def wait_call_after_result(
    csms: LoopbackCsms, action: str, request: str, since: int, where: Any = None
) -> dict[str, Any]:
    """Wait for the charge point's ``action`` CALL; assert it came after the CALLRESULT to
    the CSMS's last ``request``. Returns its payload."""
    received = await csms.wait_for_message(action, where, since=since)
    answered_at = result_index(csms, request)
    sent_at = frame_index(csms, 2, received.unique_id)
    assert answered_at < sent_at, f"{action} (frame {sent_at}) before the {request} result"
    return received.payload


async def reply_to(csms: LoopbackCsms, unique_id: str, after: int) -> list[Any]:
    """Wait for the charge point's CALLRESULT/CALLERROR to ``unique_id`` (frames >= after)."""
    deadline = time.monotonic() + WAIT_S
    index = after
    while True:
        frame = await csms.next_frame(after=index, timeout=max(0.01, deadline - time.monotonic()))
        index = next(i for i in range(index, len(csms.frames)) if csms.frames[i] is frame) + 1
        msg = frame.message
        if msg and msg[0] in (3, 4) and msg[1] == unique_id:
            return msg


def replies_since(csms: LoopbackCsms, after: int) -> list[list[Any]]:
    """CALLRESULT/CALLERROR frames the charge point sent at frame index ``after`` or later."""
    return [
        msg
        for f in csms.frames[after:]
        if f.direction == "in" and (msg := f.message) is not None and msg[0] in (3, 4)
    ]


async def configuration(csms: LoopbackCsms, *keys: str) -> dict[str, dict[str, Any]]:
    payload = {"key": list(keys)} if keys else {}
    result = await csms.call("GetConfiguration", payload)
    return {entry["key"]: entry for entry in result.get("configurationKey", [])}


async def restart(agent: AgentProcess, csms: LoopbackCsms) -> int:
    """Stop the agent cleanly and start it again on the same data_dir; return the mark."""
    assert await agent.stop() == 0
    await csms.wait_disconnected(agent.cp_id)
    mark = csms.mark()
    await agent.start()
    await csms.wait_for("BootNotification", since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)
    return mark


# ------------------------------------------------------------ RemoteStartTransaction


async def test_remote_start_with_ev_plugged(agent: AgentProcess, csms: LoopbackCsms) -> None:
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)

    answer = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE-1"})
    assert answer == {"status": "Accepted"}
    start = await wait_call_after_result(csms, "StartTransaction", "RemoteStartTransaction", mark)
    assert start["connectorId"] == 1 and start["idTag"] == "REMOTE-1"
    # AuthorizeRemoteTxRequests is false by default: no Authorize for a remote start.
    assert csms.payloads("Authorize", since=mark) == []
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)
    assert await wait_confirmed_tx(agent) == 1

    # The connector is busy now: a second remote start for it is refused.
    busy = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE-2"})
    assert busy == {"status": "Rejected"}


async def test_remote_start_rejected_for_unknown_connector_and_zero(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    await agent.sim("plug", "1")
    for connector_id in (2, 0):
        answer = await csms.call(
            "RemoteStartTransaction", {"connectorId": connector_id, "idTag": "REMOTE-1"}
        )
        assert answer == {"status": "Rejected"}, connector_id
    # The refused requests left nothing behind: a later card on the plugged EV starts
    # the session (a leftover remote authorization would have started it first).
    await agent.sim("tag", "CARD-9")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "CARD-9"


async def test_remote_start_authorizes_first_when_configured(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms, ocpp16={"AuthorizeRemoteTxRequests": True})
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    answer = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE-A"})
    assert answer == {"status": "Accepted"}
    auth = await csms.wait_for_message("Authorize", since=mark)
    start = await csms.wait_for_message("StartTransaction", since=mark)
    assert auth.payload == {"idTag": "REMOTE-A"}
    assert start.payload["idTag"] == "REMOTE-A"
    assert auth.index < start.index


async def test_remote_start_before_the_ev_is_plugged(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    answer = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE-1"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    state = await agent.status()
    assert tx_of(state) is None and status_of(state) == "Preparing"

    await agent.sim("plug", "1")  # well within ConnectionTimeOut (60 s)
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["connectorId"] == 1 and start["idTag"] == "REMOTE-1"
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)


async def test_remote_start_expires_without_ev(agent_factory: Any, csms: LoopbackCsms) -> None:
    agent = await started(agent_factory, csms, ocpp16={"ConnectionTimeOut": 1})
    mark = csms.mark()
    answer = await csms.call("RemoteStartTransaction", {"idTag": "REMOTE-1"})
    assert answer == {"status": "Accepted"}
    preparing = await csms.wait_for_message(
        "StatusNotification", lambda p: p["status"] == "Preparing", since=mark
    )
    await csms.wait_for(
        "StatusNotification",
        reports(1, "Available"),
        since=preparing.index,
    )
    state = await agent.status()
    assert tx_of(state) is None and status_of(state) == "Available"
    assert csms.payloads("StartTransaction", since=mark) == []


# ------------------------------------------------------------- RemoteStopTransaction


async def test_remote_stop(agent: AgentProcess, csms: LoopbackCsms) -> None:
    tx_id = await card_session(agent, csms)
    unknown = await csms.call("RemoteStopTransaction", {"transactionId": tx_id + 100})
    assert unknown == {"status": "Rejected"}
    assert tx_of(await agent.status()) is not None  # untouched

    mark = csms.mark()
    answer = await csms.call("RemoteStopTransaction", {"transactionId": tx_id})
    assert answer == {"status": "Accepted"}
    stop = await wait_call_after_result(csms, "StopTransaction", "RemoteStopTransaction", mark)
    assert stop["transactionId"] == tx_id and stop["reason"] == "Remote"
    state = await agent.wait_status(lambda s: tx_of(s) is None)
    assert status_of(state) == "Finishing"  # the EV is still plugged


async def test_remote_start_and_stop_refused_while_registration_is_pending(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    """OCPP 1.6 §4.2: in the pending state RemoteStartTransaction and RemoteStopTransaction
    are not allowed (Rejected); everything else is answered as usual."""
    csms.boot_status, csms.boot_interval = "Pending", 300
    agent: AgentProcess = agent_factory(ocpp16={"MeterValueSampleInterval": 60})
    await agent.start()
    await csms.wait_for("BootNotification")
    await agent.wait_status(lambda s: s["csms"]["registration"] == "Pending")
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: status_of(s) == "Preparing")

    remote = {"connectorId": 1, "idTag": "REMOTE-P"}
    assert await csms.call("RemoteStartTransaction", remote) == {"status": "Rejected"}
    assert await csms.call("RemoteStopTransaction", {"transactionId": 1}) == {"status": "Rejected"}
    # Configuration can be read and changed while pending.
    assert (await configuration(csms, "MeterValueSampleInterval"))["MeterValueSampleInterval"][
        "value"
    ] == "60"
    change = {"key": "MeterValueSampleInterval", "value": "30"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    # The CSMS accepts the charge point through a triggered BootNotification: the remote
    # start is taken now, and nothing of the refused one was left behind.
    csms.boot_status = "Accepted"
    mark = csms.mark()
    trigger = {"requestedMessage": "BootNotification"}
    assert await csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", reports(1, "Preparing"), since=mark)
    assert await csms.call("RemoteStartTransaction", remote) == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "REMOTE-P"
    assert [p["idTag"] for p in csms.payloads("StartTransaction")] == ["REMOTE-P"]
    tx_id = await wait_confirmed_tx(agent)

    # A triggered BootNotification the CSMS answers Pending puts the charge point back in
    # the pending state: its session cannot be stopped remotely until accepted again.
    csms.boot_status = "Pending"
    assert await csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
    await agent.wait_status(lambda s: s["csms"]["registration"] == "Pending")
    stop = {"transactionId": tx_id}
    assert await csms.call("RemoteStopTransaction", stop) == {"status": "Rejected"}
    assert tx_of(await agent.status()) is not None
    csms.boot_status = "Accepted"
    assert await csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
    await agent.wait_status(lambda s: s["csms"]["registration"] == "Accepted")
    assert await csms.call("RemoteStopTransaction", stop) == {"status": "Accepted"}
    stopped = await csms.wait_for("StopTransaction", since=mark)
    assert stopped["transactionId"] == tx_id and stopped["reason"] == "Remote"


async def held_start(agent: AgentProcess, csms: LoopbackCsms, tag: str) -> Received:
    """Plug an EV and show ``tag``; the CSMS keeps its answer to the StartTransaction that
    follows (the test sends it with :func:`answer_and_send`). Returns that CALL."""
    csms.responders["StartTransaction"] = lambda _p: None
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", tag)
    return await csms.wait_for_message("StartTransaction", since=mark)


async def answer_and_send(csms: LoopbackCsms, held: Received, tx_id: int, raw: str) -> None:
    """Answer the held StartTransaction with ``tx_id`` and send ``raw`` right behind it:
    back to back, with nothing awaited in between that waits for the agent."""
    result = [3, held.unique_id, {"transactionId": tx_id, "idTagInfo": {"status": "Accepted"}}]
    await csms.send_raw(json.dumps(result))
    await csms.send_raw(raw)


async def test_remote_stop_right_behind_the_start_transaction_answer(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """OCPP 1.6 §5.12: a transaction is ongoing from the moment its id reaches the charge
    point, so a RemoteStopTransaction the CSMS sends in the same breath as that id stops it."""
    held = await held_start(agent, csms, "QUICK")
    after = len(csms.frames)
    mark = csms.mark()
    await answer_and_send(
        csms, held, 4711, '[2,"stop-4711","RemoteStopTransaction",{"transactionId":4711}]'
    )
    assert await reply_to(csms, "stop-4711", after) == [3, "stop-4711", {"status": "Accepted"}]
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == 4711 and stop["reason"] == "Remote"
    assert len(csms.messages("StartTransaction")) == 1
    state = await agent.wait_status(lambda s: tx_of(s) is None and s["queue"]["depth"] == 0)
    assert status_of(state) == "Finishing"


# ----------------------------------------------------------------------------- Reset


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
async def test_reset_during_transaction(kind: str, agent: AgentProcess, csms: LoopbackCsms) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    tx_id = await card_session(agent, csms)
    connections = len(csms.subprotocols)

    mark = csms.mark()
    assert await csms.call("Reset", {"type": kind}) == {"status": "Accepted"}
    stop = await csms.wait_for_message("StopTransaction", since=mark)
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["reason"] == f"{kind}Reset"
    boot = await csms.wait_for_message("BootNotification", since=mark)
    assert stop.index < boot.index  # the stop is delivered before the restart
    assert result_index(csms, "Reset") < frame_index(csms, 2, stop.unique_id)
    statuses = {}
    for cid in (0, 1):
        reported = await csms.wait_for("StatusNotification", on_connector(cid), since=boot.index)
        statuses[cid] = reported["status"]
    assert statuses[0] == "Available"
    if kind == "Soft":  # the hardware (and the plugged EV) survives a soft reset
        assert statuses[1] == "Finishing"
    assert len(csms.subprotocols) == connections + 1  # it reconnected
    # RFC 6455 §7.4.1: the old connection was closed as "going away", not as an error.
    assert await csms.wait_closed(connections) == [1001] * connections
    assert agent.proc.returncode is None and agent.proc.pid == pid  # restarted in-process
    state = await agent.status()
    assert state["csms"]["registration"] == "Accepted" and state["csms"]["connected"]
    assert tx_of(state) is None and state["queue"]["depth"] == 0
    # No second StopTransaction for the same session after the restart.
    assert [p["transactionId"] for p in csms.payloads("StopTransaction")] == [tx_id]
    assert "stopped unexpectedly" not in agent.log()


# ---------------------------------------------------------------- ChangeAvailability


async def test_change_availability_idle(agent: AgentProcess, csms: LoopbackCsms) -> None:
    mark = csms.mark()
    answer = await csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for(
        "StatusNotification",
        reports(1, "Unavailable"),
        since=mark,
    )
    state = await agent.status()
    assert status_of(state) == "Unavailable" and not state["connectors"][0]["operative"]

    # An unavailable connector refuses a remote start.
    refused = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "R"})
    assert refused == {"status": "Rejected"}

    mark = csms.mark()
    answer = await csms.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for(
        "StatusNotification",
        reports(1, "Available"),
        since=mark,
    )

    unknown = await csms.call("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    assert unknown == {"status": "Rejected"}
    assert status_of(await agent.status()) == "Available"


async def test_change_availability_scheduled_during_transaction(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    tx_id = await card_session(agent, csms)
    await agent.wait_status(lambda s: status_of(s) == "Charging")
    mark = csms.mark()
    answer = await csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Scheduled"}
    state = await agent.status()
    assert status_of(state) == "Charging" and tx_of(state) is not None  # the session goes on

    await agent.sim("tag", "TAG-1")  # the driver ends the session
    stop = await csms.wait_for_message("StopTransaction", since=mark)
    assert stop.payload["transactionId"] == tx_id
    unavailable = await csms.wait_for_message(
        "StatusNotification",
        reports(1, "Unavailable"),
        since=mark,
    )
    assert stop.index < unavailable.index
    assert [
        p["status"]
        for p in csms.payloads("StatusNotification", since=mark)
        if p["connectorId"] == 1
    ][-1] == "Unavailable"


async def test_change_availability_connector_zero_affects_all(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms, connectors=2)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
    for kind, status in (("Inoperative", "Unavailable"), ("Operative", "Available")):
        mark = csms.mark()
        answer = await csms.call("ChangeAvailability", {"connectorId": 0, "type": kind})
        assert answer == {"status": "Accepted"}, kind
        for cid in (0, 1, 2):
            await csms.wait_for("StatusNotification", reports(cid, status), since=mark)
        state = await agent.status()
        assert [c["status"] for c in state["connectors"]] == [status, status]
        assert state["charger"]["status"] == status


async def test_change_availability_persists_across_restart(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    answer = await csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Unavailable", since=mark)

    mark = await restart(agent, csms)
    first = await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)
    assert first["status"] == "Unavailable"
    state = await agent.status()
    assert status_of(state) == "Unavailable" and not state["connectors"][0]["operative"]


# ------------------------------------------------------------------ GetConfiguration


async def test_get_configuration_all_keys(agent_factory: Any, csms: LoopbackCsms) -> None:
    await started(agent_factory, csms, ocpp16={"ConnectionTimeOut": 45})
    result = await csms.call("GetConfiguration", {})
    assert "unknownKey" not in result
    keys = {entry["key"]: entry for entry in result["configurationKey"]}
    assert keys["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "1",
    }
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["HeartbeatInterval"]["value"] == "300"  # the BootNotification interval
    profiles = keys["SupportedFeatureProfiles"]
    assert profiles["readonly"] is True and "Core" in profiles["value"].split(",")
    # the [ocpp16] table's initial value
    assert keys["ConnectionTimeOut"] == {
        "key": "ConnectionTimeOut",
        "readonly": False,
        "value": "45",
    }
    assert keys["MeterValueSampleInterval"]["value"] == "0"


async def test_get_configuration_specific_and_unknown_keys(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    result = await csms.call(
        "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey", "NumberOfConnectors"]}
    )
    assert sorted(e["key"] for e in result["configurationKey"]) == [
        "HeartbeatInterval",
        "NumberOfConnectors",
    ]
    assert result["unknownKey"] == ["NoSuchKey"]

    # Key names are CiString50Type: any case finds the key, the answer spells it as the spec
    # does; an unknown name comes back as it was asked.
    any_case = await csms.call("GetConfiguration", {"key": ["heartbeatinterval", "noSUCHkey"]})
    assert any_case["configurationKey"] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    ]
    assert any_case["unknownKey"] == ["noSUCHkey"]


async def test_get_configuration_lists_unset_keys_without_a_value(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """AuthorizationKey and CpoName have no value until the CSMS sets one: listed without
    a value, never as unknown; SupportedFileTransferProtocols (§9.3) names the agent's."""
    every = await csms.call("GetConfiguration", {})
    keys = {entry["key"]: entry for entry in every["configurationKey"]}
    assert keys["AuthorizationKey"] == {"key": "AuthorizationKey", "readonly": False}
    assert keys["CpoName"] == {"key": "CpoName", "readonly": False}
    assert keys["SupportedFileTransferProtocols"] == {
        "key": "SupportedFileTransferProtocols",
        "readonly": True,
        "value": "FTP,HTTP,HTTPS",
    }
    asked = await csms.call("GetConfiguration", {"key": ["AuthorizationKey", "CpoName"]})
    assert asked == {
        "configurationKey": [
            {"key": "AuthorizationKey", "readonly": False},
            {"key": "CpoName", "readonly": False},
        ]
    }
    answer = await csms.call("ChangeConfiguration", {"key": "CpoName", "value": "Example CPO"})
    assert answer == {"status": "Accepted"}
    assert (await configuration(csms, "CpoName"))["CpoName"]["value"] == "Example CPO"


async def test_a_key_list_from_another_charger_configures_the_agent(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    """[ocpp16] with the read-only keys a charger reports: the agent's values and lower
    limits start the agent, which reports and enforces them; a vendor key is a warning in
    check-config and in the log; a value the agent cannot have stops check-config, naming
    the key and the agent's value."""
    agent: AgentProcess = agent_factory(
        ocpp16={
            "NumberOfConnectors": 1,
            "SupportedFeatureProfiles": [
                "SmartCharging",
                "Core",
                "FirmwareManagement",
                "LocalAuthListManagement",
                "RemoteTrigger",
                "Reservation",
            ],
            "SupportedFileTransferProtocols": "FTP,HTTP,HTTPS",
            "ConnectorSwitch3to1PhaseSupported": "false",
            "ReserveConnectorZeroSupported": True,
            "ChargeProfileMaxStackLevel": "10",
            "GetConfigurationMaxKeys": 2,
            "MeterValuesSampledDataMaxLength": 2,
            "VendorEcoMode": True,
        }
    )
    config = str(agent.config_path)
    checked = await run_cli("check-config", "--config", config)
    assert checked.returncode == 0, checked
    warning = "ocpp16.VendorEcoMode: not an OCPP 1.6 configuration key cpagent knows; ignored"
    assert f"warning: {warning}" in checked.stderr.splitlines(), checked.stderr

    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    await agent.wait_log(f"config: {warning}")
    keys = await configuration(csms, "GetConfigurationMaxKeys", "MeterValuesSampledDataMaxLength")
    assert keys["GetConfigurationMaxKeys"]["value"] == "2"
    assert keys["MeterValuesSampledDataMaxLength"]["value"] == "2"
    with pytest.raises(CsmsCallError) as refused:
        await configuration(csms, "HeartbeatInterval", "CpoName", "BlinkRepeat")
    assert refused.value.code == "OccurenceConstraintViolation"
    too_many = {"key": "MeterValuesSampledData", "value": "Voltage,SoC,Frequency"}
    assert await csms.call("ChangeConfiguration", too_many) == {"status": "Rejected"}
    two = {"key": "MeterValuesSampledData", "value": "Voltage,SoC"}
    assert await csms.call("ChangeConfiguration", two) == {"status": "Accepted"}
    expiry = iso(datetime.now(UTC) + timedelta(minutes=10))
    zero = {"connectorId": 0, "expiryDate": expiry, "idTag": "T", "reservationId": 1}
    assert await csms.call("ReserveNow", zero) == {"status": "Accepted"}

    agent.tables["ocpp16"]["NumberOfConnectors"] = 2
    agent.tables["ocpp16"]["LocalAuthListMaxLength"] = 5000
    agent.write()
    checked = await run_cli("check-config", "--config", config)
    assert checked.returncode == 2, checked
    assert checked.stderr.splitlines() == [
        "ocpp16.NumberOfConnectors: the agent's value is 1; only that value can be set",
        "ocpp16.LocalAuthListMaxLength: the agent supports at most 1000",
    ]


# --------------------------------------------------------------- ChangeConfiguration


async def test_change_configuration_answers(agent: AgentProcess, csms: LoopbackCsms) -> None:
    async def change(key: str, value: str) -> str:
        status: str = (await csms.call("ChangeConfiguration", {"key": key, "value": value}))[
            "status"
        ]
        return status

    assert await change("ConnectionTimeOut", "30") == "Accepted"
    assert (await configuration(csms, "ConnectionTimeOut"))["ConnectionTimeOut"]["value"] == "30"

    assert await change("NumberOfConnectors", "2") == "Rejected"
    assert await change("HeartbeatInterval", "abc") == "Rejected"
    assert (
        await change("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature")
        == "Rejected"
    )
    assert await change("NoSuchKey", "1") == "NotSupported"

    keys = await configuration(
        csms, "NumberOfConnectors", "HeartbeatInterval", "MeterValuesSampledData"
    )
    assert keys["NumberOfConnectors"]["value"] == "1"
    assert keys["HeartbeatInterval"]["value"] == "300"
    assert keys["MeterValuesSampledData"]["value"] == "Energy.Active.Import.Register"


async def test_change_configuration_matches_keys_in_any_case(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """ChangeConfiguration's key is a CiString50: ConnectionTimeout changes ConnectionTimeOut,
    which is what GetConfiguration and the log call it; an unknown key stays NotSupported."""
    answer = await csms.call("ChangeConfiguration", {"key": "ConnectionTimeout", "value": "33"})
    assert answer == {"status": "Accepted"}
    assert (await configuration(csms, "CONNECTIONTIMEOUT"))["ConnectionTimeOut"]["value"] == "33"
    await agent.wait_log("configuration ConnectionTimeOut changed to '33' by the CSMS")
    read_only = {"key": "numberofconnectors", "value": "2"}
    assert await csms.call("ChangeConfiguration", read_only) == {"status": "Rejected"}
    unknown = {"key": "NoSuchKey", "value": "1"}
    assert await csms.call("ChangeConfiguration", unknown) == {"status": "NotSupported"}


async def test_change_heartbeat_interval_takes_effect(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    answer = await csms.call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1"})
    assert answer == {"status": "Accepted"}
    # Heartbeats within the waits' bound, far below the 300 s before: the new interval.
    beats = [await csms.wait_for_message("Heartbeat", since=mark)]
    for _ in range(3):
        beats.append(await csms.wait_for_message("Heartbeat", since=beats[-1].index + 1))
    arrived = [csms.frames[frame_index(csms, 2, beat.unique_id)].at for beat in beats]
    assert arrived[-1] - arrived[0] >= 3 * 0.5, arrived  # not faster than every second


async def test_change_meter_value_sample_interval_mid_transaction(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms, ocpp16={"MeterValueSampleInterval": 3600})
    tx_id = await card_session(agent, csms)
    mark = csms.mark()
    answer = await csms.call(
        "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "1"}
    )
    assert answer == {"status": "Accepted"}
    samples: list[Received] = []
    for _ in range(2):
        received = await csms.wait_for_message(
            "MeterValues",
            lambda p: p.get("transactionId") == tx_id,
            since=samples[-1].index + 1 if samples else mark,
        )
        samples.append(received)
    for received in samples:
        values = received.payload["meterValue"][0]["sampledValue"]
        assert {v.get("context") for v in values} == {"Sample.Periodic"}


async def test_change_clock_aligned_data_interval_takes_effect_at_once(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    # A day-long interval: the agent waits for midnight UTC for its next aligned sample.
    await started(agent_factory, csms, ocpp16={"ClockAlignedDataInterval": 86400})
    mark = csms.mark()
    change = {"key": "ClockAlignedDataInterval", "value": "2"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    # The next aligned samples come at the boundaries of the new interval, not after the
    # wait begun under the old one.
    first = await csms.wait_for_message("MeterValues", since=mark)
    second = await csms.wait_for_message("MeterValues", since=first.index + 1)
    for received in (first, second):
        assert received.payload["connectorId"] == 1
        values = received.payload["meterValue"][0]["sampledValue"]
        assert {v.get("context") for v in values} == {"Sample.Clock"}


async def test_change_connection_timeout_applies_to_a_waiting_authorization(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    remote = {"connectorId": 1, "idTag": "REMOTE-T"}
    assert await csms.call("RemoteStartTransaction", remote) == {"status": "Accepted"}
    preparing = await csms.wait_for_message(
        "StatusNotification", reports(1, "Preparing"), since=mark
    )
    # ConnectionTimeOut was 60 s when the id tag began to wait for an EV; now it is 1 s,
    # which has passed: the authorization ends now rather than a minute later.
    change = {"key": "ConnectionTimeOut", "value": "1"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", reports(1, "Available"), since=preparing.index)
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", reports(1, "Preparing"), since=preparing.index + 1)
    assert csms.payloads("StartTransaction", since=mark) == []


async def test_change_websocket_ping_interval_applies_to_the_open_connection(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    await started(agent_factory, csms, ocpp16={"WebSocketPingInterval": 3600})
    change = {"key": "WebSocketPingInterval", "value": "1"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    # Pings every second from now on, on the connection that was open: no reconnect needed.
    await csms.wait_pings(2)
    assert len(csms.subprotocols) == 1 and csms.close_codes == []


async def test_change_configuration_survives_restart(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms, ocpp16={"ConnectionTimeOut": 45})
    answer = await csms.call("ChangeConfiguration", {"key": "ConnectionTimeOut", "value": "33"})
    assert answer == {"status": "Accepted"}
    await restart(agent, csms)
    keys = await configuration(csms, "ConnectionTimeOut")
    assert keys["ConnectionTimeOut"]["value"] == "33"  # the CSMS's value beats the config


# ------------------------------------------------------------------- UnlockConnector


async def test_unlock_connector(agent: AgentProcess, csms: LoopbackCsms) -> None:
    assert await csms.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert await csms.call("UnlockConnector", {"connectorId": 2}) == {"status": "NotSupported"}

    tx_id = await card_session(agent, csms)
    mark = csms.mark()
    assert await csms.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == tx_id and stop["reason"] == "UnlockCommand"
    await agent.wait_status(lambda s: tx_of(s) is None)


# -------------------------------------------------------------------- TriggerMessage


async def test_trigger_message(agent: AgentProcess, csms: LoopbackCsms) -> None:
    async def trigger(message: str, connector_id: int | None = None) -> int:
        payload: dict[str, Any] = {"requestedMessage": message}
        if connector_id is not None:
            payload["connectorId"] = connector_id
        mark = csms.mark()
        assert await csms.call("TriggerMessage", payload) == {"status": "Accepted"}, payload
        return mark

    mark = await trigger("BootNotification")
    boot = await wait_call_after_result(csms, "BootNotification", "TriggerMessage", mark)
    assert boot["chargePointVendor"] == "TestVendor"

    mark = await trigger("Heartbeat")
    assert await wait_call_after_result(csms, "Heartbeat", "TriggerMessage", mark) == {}

    mark = await trigger("StatusNotification", 1)
    status = await wait_call_after_result(csms, "StatusNotification", "TriggerMessage", mark)
    assert status["connectorId"] == 1 and status["status"] == "Available"

    mark = await trigger("StatusNotification")
    for cid in (0, 1):
        status = await wait_call_after_result(
            csms,
            "StatusNotification",
            "TriggerMessage",
            mark,
            on_connector(cid),
        )
        assert status["status"] == "Available"

    mark = await trigger("MeterValues", 1)
    meter = await wait_call_after_result(csms, "MeterValues", "TriggerMessage", mark)
    assert meter["connectorId"] == 1 and "transactionId" not in meter
    values = meter["meterValue"][0]["sampledValue"]
    assert {v.get("context") for v in values} == {"Trigger"}
    assert any(
        v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        for v in values
    )

    for message in ("FirmwareStatusNotification", "DiagnosticsStatusNotification"):
        mark = await trigger(message)
        assert await wait_call_after_result(csms, message, "TriggerMessage", mark) == {
            "status": "Idle"
        }

    rejected = await csms.call(
        "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 5}
    )
    assert rejected == {"status": "Rejected"}

    # connectorId is ignored where it has no meaning.
    mark = await trigger("Heartbeat", 1)
    assert await wait_call_after_result(csms, "Heartbeat", "TriggerMessage", mark) == {}
    # MeterValues without a connector: every connector.
    mark = await trigger("MeterValues")
    meter = await wait_call_after_result(csms, "MeterValues", "TriggerMessage", mark)
    assert meter["connectorId"] == 1
    mark = await trigger("StatusNotification", 0)
    status = await wait_call_after_result(csms, "StatusNotification", "TriggerMessage", mark)
    assert status["connectorId"] == 0


async def test_extended_trigger_message(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """The security extension's ExtendedTriggerMessage: the TriggerMessage targets,
    FirmwareStatus as SignedFirmwareStatusNotification, LogStatusNotification and
    SignChargePointCertificate (a SignCertificate with a CSR)."""

    async def trigger(message: str, connector_id: int | None = None) -> tuple[str, int]:
        payload: dict[str, Any] = {"requestedMessage": message}
        if connector_id is not None:
            payload["connectorId"] = connector_id
        mark = csms.mark()
        answer = await csms.call("ExtendedTriggerMessage", payload)
        return answer["status"], mark

    status, mark = await trigger("StatusNotification", 1)
    assert status == "Accepted"
    sent = await wait_call_after_result(csms, "StatusNotification", "ExtendedTriggerMessage", mark)
    assert sent["connectorId"] == 1 and sent["status"] == "Available"

    status, mark = await trigger("FirmwareStatusNotification")
    assert status == "Accepted"
    assert await wait_call_after_result(
        csms, "SignedFirmwareStatusNotification", "ExtendedTriggerMessage", mark
    ) == {"status": "Idle"}

    status, mark = await trigger("Heartbeat")
    assert status == "Accepted"
    assert await wait_call_after_result(csms, "Heartbeat", "ExtendedTriggerMessage", mark) == {}

    status, mark = await trigger("LogStatusNotification")
    assert status == "Accepted"
    assert await wait_call_after_result(
        csms, "LogStatusNotification", "ExtendedTriggerMessage", mark
    ) == {"status": "Idle"}

    status, mark = await trigger("SignChargePointCertificate")
    assert status == "Accepted"
    sign = await wait_call_after_result(csms, "SignCertificate", "ExtendedTriggerMessage", mark)
    assert sign["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert (await trigger("MeterValues", 7))[0] == "Rejected"
    assert csms.schema_errors == []


# ------------------------------------------------------------ connector ids out of range


@pytest.mark.parametrize("connector_id", [2, 99, -1])
async def test_out_of_range_connector_ids_are_refused(
    connector_id: int, agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """Every request that names a connector refuses one the charger lacks (the one-connector
    sim), with the status the spec gives, and the charger carries on."""
    cid = connector_id
    profile = cs_profile(1, "TxDefaultProfile", [(0, 16)], kind="Absolute")
    expiry = iso(datetime.now(UTC) + timedelta(hours=1))
    requests: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("RemoteStartTransaction", {"idTag": "T", "connectorId": cid}, {"status": "Rejected"}),
        ("ChangeAvailability", {"connectorId": cid, "type": "Inoperative"}, {"status": "Rejected"}),
        ("UnlockConnector", {"connectorId": cid}, {"status": "NotSupported"}),
        (
            "ReserveNow",
            {"connectorId": cid, "expiryDate": expiry, "idTag": "T", "reservationId": 1},
            {"status": "Rejected"},
        ),
        (
            "TriggerMessage",
            {"requestedMessage": "MeterValues", "connectorId": cid},
            {"status": "Rejected"},
        ),
        (
            "SetChargingProfile",
            {"connectorId": cid, "csChargingProfiles": profile},
            {"status": "Rejected"},
        ),
        ("ClearChargingProfile", {"connectorId": cid}, {"status": "Unknown"}),
        ("GetCompositeSchedule", {"connectorId": cid, "duration": 60}, {"status": "Rejected"}),
    ]
    for action, payload, answer in requests:
        assert await csms.call(action, payload) == answer, action
    mark = csms.mark()
    assert await csms.call("TriggerMessage", {"requestedMessage": "StatusNotification"}) == {
        "status": "Accepted"
    }
    status = await csms.wait_for("StatusNotification", on_connector(1), since=mark)
    assert status["status"] == "Available"
    assert csms.schema_errors == []


# ---------------------------------------------------------------------- DataTransfer


async def test_data_transfer(agent: AgentProcess, csms: LoopbackCsms) -> None:
    assert await csms.call("DataTransfer", {"vendorId": "com.example"}) == {
        "status": "UnknownVendorId"
    }
    version = await csms.call("DataTransfer", {"vendorId": "cpagent", "messageId": "Version"})
    assert version == {"status": "Accepted", "data": __version__}
    assert await csms.call("DataTransfer", {"vendorId": "cpagent", "messageId": "Nope"}) == {
        "status": "UnknownMessageId"
    }
    # Both are CiStrings: compared case-insensitively.
    version = await csms.call("DataTransfer", {"vendorId": "CPAgent", "messageId": "VERSION"})
    assert version == {"status": "Accepted", "data": __version__}


# ------------------------------------------------------------------------ log safety


async def test_text_from_the_csms_cannot_forge_log_lines(
    agent_factory: Any, csms: LoopbackCsms
) -> None:
    """An idTag, a vendorId and a whole frame from the CSMS with line breaks, NUL and other
    control characters: the log file gets each as one line with visible escapes."""
    agent: AgentProcess = agent_factory()
    log_file = agent.workdir / "cpagent.log"
    agent.tables["logging"]["file"] = str(log_file)
    agent.write()
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)

    id_tag = "T1\n2026-01 FORGED\x00"
    vendor = "acme\r\n2026-01-01 FORGED-VENDOR\x00\u2028\x85\x7f"
    assert await csms.call("RemoteStartTransaction", {"idTag": id_tag}) == {"status": "Accepted"}
    assert (await csms.wait_for("StartTransaction", since=mark))["idTag"] == id_tag
    assert await csms.call("DataTransfer", {"vendorId": vendor}) == {"status": "UnknownVendorId"}
    with pytest.raises(CsmsCallError) as err:  # no Unicode text (a lone surrogate): refused
        await csms.call("DataTransfer", {"vendorId": vendor + "\udc80"})
    assert err.value.code == "PropertyConstraintViolation"
    await csms.send_raw("not json\n2026-01-01 00:00:00,000 INFO    cpagent: FORGED-FRAME\x00")
    # Each record reaches stderr first, then the file: wait for the file itself.
    await agent.wait_log("FORGED-FRAME", path=log_file)
    await agent.wait_log("UnknownVendorId", path=log_file)

    data = log_file.read_bytes()
    assert b"\x00" not in data
    lines = data.decode().splitlines()  # strict UTF-8: a lone surrogate was not written raw
    for line in lines:
        assert RECORD_START.match(line) and line.isprintable(), repr(line)
        assert "FORGED" not in line or "\\n" in line.partition("FORGED")[0], line
    text = "\n".join(lines)
    assert "started for T1\\n2026-01 FORGED\\x00 at" in text
    assert "acme\\r\\n2026-01-01 FORGED-VENDOR\\x00\\u2028\\x85\\x7f" in text
    assert "<- not json\\n2026-01-01 00:00:00,000 INFO    cpagent: FORGED-FRAME\\x00" in text


# ------------------------------------------------------------------------ ClearCache

OFFLINE_CACHE = {
    "AllowOfflineTxForUnknownId": False,
    "LocalAuthorizeOffline": True,
    "ConnectionTimeOut": 1,
}


async def cache_card_online(agent: AgentProcess, csms: LoopbackCsms, tag: str) -> None:
    """Show ``tag`` with no EV: the CSMS accepts it (so it is cached); let it expire."""
    mark = csms.mark()
    await agent.sim("tag", tag)
    assert (await csms.wait_for("Authorize", since=mark))["idTag"] == tag
    preparing = await csms.wait_for_message(
        "StatusNotification", lambda p: p["status"] == "Preparing", since=mark
    )
    await csms.wait_for(
        "StatusNotification",
        reports(1, "Available"),
        since=preparing.index,
    )


async def go_offline(agent: AgentProcess, csms: LoopbackCsms) -> None:
    await agent.sim("network", "down")
    await csms.wait_disconnected(agent.cp_id)
    await agent.wait_status(lambda s: not s["csms"]["connected"])


async def test_clear_cache_forgets_cached_cards(agent_factory: Any, csms: LoopbackCsms) -> None:
    agent = await started(agent_factory, csms, ocpp16=OFFLINE_CACHE)
    await cache_card_online(agent, csms, "CARD-1")
    assert await csms.call("ClearCache", {}) == {"status": "Accepted"}

    await go_offline(agent, csms)
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: status_of(s) == "Preparing")
    await agent.sim("tag", "CARD-1")
    await agent.wait_log("card CARD-1 not authorized")
    state = await agent.status()
    assert tx_of(state) is None and state["queue"]["depth"] == 0

    mark = csms.mark()
    await agent.sim("network", "up")
    await csms.wait_connected(agent.cp_id)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)
    assert csms.payloads("StartTransaction") == []


async def test_cached_card_starts_offline(agent_factory: Any, csms: LoopbackCsms) -> None:
    agent = await started(agent_factory, csms, ocpp16=OFFLINE_CACHE)
    await cache_card_online(agent, csms, "CARD-1")

    await go_offline(agent, csms)
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: status_of(s) == "Preparing")
    await agent.sim("tag", "CARD-1")
    state = await agent.wait_status(lambda s: tx_of(s) is not None)
    tx = tx_of(state)
    assert tx is not None and tx["id_tag"] == "CARD-1" and tx["id"] is None
    assert state["queue"]["depth"] >= 1

    mark = csms.mark()
    await agent.sim("network", "up")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "CARD-1" and start["connectorId"] == 1
    assert await wait_confirmed_tx(agent) == 1


# ------------------------------------------------------------------------- Bad input


async def test_bad_input_is_answered_or_ignored_and_harmless(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    tx_id = await card_session(agent, csms)
    connections = len(csms.subprotocols)

    async def quiet(raw: str) -> None:
        """Send ``raw``; the agent must not answer it (checked behind a later answer)."""
        after = len(csms.frames)
        await csms.send_raw(raw)
        version = await csms.call("DataTransfer", {"vendorId": "cpagent", "messageId": "Version"})
        assert version["status"] == "Accepted"
        answered = [m[1] for m in replies_since(csms, after)]
        assert answered == [last_call_id(csms, "DataTransfer")], (raw, answered)

    async def error_for(raw: str, unique_id: str) -> list[Any]:
        after = len(csms.frames)
        await csms.send_raw(raw)
        reply = await reply_to(csms, unique_id, after)
        assert reply[0] == 4, (raw, reply)
        assert len(reply) == 5 and isinstance(reply[3], str) and isinstance(reply[4], dict)
        return reply

    await quiet("this is not json")
    await quiet('{"not": "a list"}')

    bogus = await error_for('[2,"id1","Reset",{"type":"Bogus"}]', "id1")
    assert bogus[2] in (
        "FormationViolation",
        "PropertyConstraintViolation",
        "TypeConstraintViolation",
        "ProtocolError",
    )
    assert bogus[2] == "FormationViolation"  # what the agent sends today for a bad enum value

    unknown = await error_for('[2,"id2","NoSuchAction",{}]', "id2")
    assert unknown[2] in ("NotImplemented", "NotSupported")
    assert unknown[2] == "NotImplemented"  # OCPP-J 1.6: "Requested Action is not known"
    # A real OCPP 1.6 action, but one a charge point sends, not answers.
    wrong_way = await error_for(
        '[2,"id4","StartTransaction",{"connectorId":1,"idTag":"TAG","meterStart":0,'
        '"timestamp":"2026-11-26T00:00:00Z"}]',
        "id4",
    )
    assert wrong_way[2] == "NotSupported"  # "Requested Action is recognized but not supported"

    missing = await error_for('[2,"id3","Reset",{}]', "id3")
    assert missing[2] in (
        "FormationViolation",
        "ProtocolError",
        "OccurenceConstraintViolation",
    )
    assert missing[2] == "ProtocolError"  # OCPP-J 1.6: "Payload for Action is incomplete"

    await quiet('[3,"unknown-id",{}]')
    await quiet("[2, 5]")

    # Nothing of that reset the agent or dropped the connection or the session.
    assert len(csms.payloads("BootNotification")) == 1
    assert len(csms.subprotocols) == connections
    state = await agent.status()
    tx = tx_of(state)
    assert tx is not None and tx["id"] == tx_id

    mark = csms.mark()
    await agent.sim("tag", "TAG-1")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == tx_id and stop["reason"] == "Local"
    await agent.wait_status(lambda s: tx_of(s) is None and s["queue"]["depth"] == 0)

    # And a complete new session still works.
    await agent.sim("unplug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available", since=mark)
    assert await card_session(agent, csms, "TAG-2") == tx_id + 1
    assert agent.proc.returncode is None and agent.proc.pid == pid
    log = agent.log()
    assert "stopped unexpectedly" not in log and "Traceback" not in log


async def test_a_frame_of_any_depth_or_size_keeps_the_connection_and_the_pending_answer(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """A frame nested or sized beyond what the agent parses is answered FormationViolation
    when its CALL id can be read, else ignored; either way the connection stays, and the
    answer to the agent's own CALL that came just before it is taken (not sent again)."""
    nested = "[" * 980 + "]" * 980
    held = await held_start(agent, csms, "DEEP")
    after = len(csms.frames)
    await answer_and_send(csms, held, 77, f'[2,"deep-1","ClearCache",{{"x":{nested}}}]')
    deep = await reply_to(csms, "deep-1", after)
    assert deep[:3] == [4, "deep-1", "FormationViolation"], deep
    assert await wait_confirmed_tx(agent) == 77
    assert len(csms.messages("StartTransaction")) == 1

    huge = '[2,"huge-1","DataTransfer",{"vendorId":"x","data":"' + "a" * 2**21 + '"}]'
    after = len(csms.frames)
    await csms.send_raw(huge)
    reply = await reply_to(csms, "huge-1", after)
    assert reply[:3] == [4, "huge-1", "FormationViolation"], reply
    assert len(json.dumps(reply)) < 1000  # the refusal does not echo the frame

    # Without a readable CALL id there is nobody to answer: ignored, with a log line.
    after = len(csms.frames)
    await csms.send_raw(f"[2,{nested}]")
    await csms.send_raw(f'[3,"{held.unique_id}",{{"x":{nested}}}]')
    version = await csms.call("DataTransfer", {"vendorId": "cpagent", "messageId": "Version"})
    assert version["status"] == "Accepted"
    assert [m[1] for m in replies_since(csms, after)] == [last_call_id(csms, "DataTransfer")]

    assert len(csms.subprotocols) == 1 and len(csms.payloads("BootNotification")) == 1
    log = agent.log()
    assert "Traceback" not in log and "RecursionError" not in log
    assert log.count("ignoring a frame") >= 2, log[-3000:]


async def test_a_frame_beyond_the_websocket_limit_keeps_the_answer_before_it(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """A frame larger than the websocket takes at all (4 MiB) ends the connection (1009,
    RFC 6455 §7.4.1), but the answer that came before it is still taken: the StartTransaction
    is recorded as delivered, with its transactionId, and not sent again after the
    reconnect."""
    held = await held_start(agent, csms, "BIG")
    huge = '[2,"huge-2","DataTransfer",{"vendorId":"x","data":"' + "a" * (5 * 2**20) + '"}]'
    await answer_and_send(csms, held, 78, huge)
    await csms.wait_connections(2, timeout=30)
    state = await agent.wait_status(
        lambda s: s["csms"]["connected"] and s["queue"]["depth"] == 0, timeout=30
    )
    assert tx_of(state) is not None and tx_of(state)["id"] == 78
    assert len(csms.messages("StartTransaction")) == 1
    assert csms.close_codes[0] == 1009, csms.close_codes


async def test_a_call_without_a_string_message_id_is_not_executed(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """OCPP-J 1.6 §4.1.3: the message id is a string of at most 36 characters. A CALL with
    any other id is not executed: ignored with a log line when its id is no string (there is
    nothing to answer it with), refused FormationViolation when the string is too long."""
    change = '"ChangeConfiguration",{"key":"HeartbeatInterval","value":"123"}]'
    after = len(csms.frames)
    for unique_id in ("null", "123", '["x"]', '{"a":"b"}'):
        await csms.send_raw(f"[2,{unique_id},{change}")
    long_id = "x" * 37
    await csms.send_raw(f'[2,"{long_id}",{change}')
    refused = await reply_to(csms, long_id, after)
    assert refused[:3] == [4, long_id, "FormationViolation"], refused
    assert [m[1] for m in replies_since(csms, after)] == [long_id]
    assert (await configuration(csms, "HeartbeatInterval"))["HeartbeatInterval"]["value"] == "300"

    # A CALLRESULT whose id is no string is nobody's answer either, nor is it taken as one.
    await csms.send_raw('[3,null,{"currentTime":"2026-01-01T00:00:00Z"}]')
    mark = csms.mark()
    await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert (await configuration(csms, "HeartbeatInterval"))["HeartbeatInterval"]["value"] == "300"
    log = agent.log()
    assert log.count("no usable message id") == 5, log[-3000:]
    assert "ignoring a response for unknown message id" not in log
    assert len(csms.subprotocols) == 1


async def test_requests_a_handler_could_not_use_are_refused_with_the_right_code(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """Each request is checked against its schema, then for values the charge point could
    not act on (OCPP-J 1.6 §4.2.3 codes), before any handler runs: one log line each, no
    traceback, and the charger carries on."""

    def limit(value: float) -> dict[str, Any]:
        profile = cs_profile(5, "TxDefaultProfile", [(0, value)], kind="Absolute")
        return {"connectorId": 1, "csChargingProfiles": profile}

    pem = "-----BEGIN CERTIFICATE-----\nMII\ud800B\n-----END CERTIFICATE-----\n"
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("GetDiagnostics", {"location": "ftp://127.0.0.1:9/", "stopTime": 5}, "TypeConstraint"),
        ("SetChargingProfile", limit(1e308), "PropertyConstraint"),
        ("SetChargingProfile", limit(-1e308), "PropertyConstraint"),
        ("GetCompositeSchedule", {"connectorId": 1, "duration": 2**64}, "PropertyConstraint"),
        (
            "InstallCertificate",
            {"certificateType": "CentralSystemRootCertificate", "certificate": pem},
            "PropertyConstraint",
        ),
        ("CertificateSigned", {"certificateChain": pem}, "PropertyConstraint"),
        (  # a date-time, but after the last one UTC holds
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": "9999-12-31T23:59:59-01:00",
                "idTag": "T",
                "reservationId": 1,
            },
            "PropertyConstraint",
        ),
    ]
    for action, payload, code in refused:
        with pytest.raises(CsmsCallError) as err:
            await csms.call(action, payload)
        assert err.value.code == f"{code}Violation", (action, payload, err.value)
    # NaN is no JSON number: the frame is malformed.
    after = len(csms.frames)
    raw = json.dumps([2, "nan-1", "SetChargingProfile", limit(float("nan"))])
    assert "NaN" in raw
    await csms.send_raw(raw)
    assert (await reply_to(csms, "nan-1", after))[2] == "FormationViolation"

    log = agent.log()
    assert log.count(" refused: ") == len(refused) + 1, log[-3000:]
    assert "Traceback" not in log
    assert "status" in await csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 60})
    state = await agent.status()
    assert state["csms"]["connected"] and status_of(state) == "Available"
    assert len(csms.subprotocols) == 1


# ------------------------------------------------------------------------------- CLI


def cli_config(workdir: Path, **charge_point: Any) -> Path:
    path = workdir / "cli.toml"
    write_config(
        path,
        {
            "charge_point": {
                "id": "CP9",
                "vendor": "V",
                "model": "M",
                "connectors": 1,
                **charge_point,
            },
            "csms": {"url": "ws://127.0.0.1:9/ocpp"},
            "storage": {"data_dir": str(workdir / "cli-data")},
            "control": {"socket": str(workdir / "cli.sock")},
            "hal": {"backend": "sim"},
        },
    )
    return path


async def test_cli_check_config(workdir: Path) -> None:
    good = cli_config(workdir)
    result = await run_cli("check-config", "--config", str(good))
    assert result.returncode == 0, result
    assert "CP9" in result.stdout

    bad = workdir / "bad.toml"
    bad.write_text(
        good.read_text()
        .replace('"ws://127.0.0.1:9/ocpp"', '"http://127.0.0.1:9/ocpp"')
        .replace("connectors = 1", 'connectors = 0\ncolour = "red"')
    )
    result = await run_cli("check-config", "--config", str(bad))
    assert result.returncode == 2, result
    for key in ("csms.url", "charge_point.colour", "charge_point.connectors"):
        assert key in result.stderr, (key, result.stderr)
    assert "Traceback" not in result.stderr


async def test_cli_without_agent(workdir: Path) -> None:
    config = str(cli_config(workdir))
    status = await run_cli("status", "--config", config)
    assert status.returncode == 1, status
    assert "no agent answers" in status.stderr and "Traceback" not in status.stderr
    plug = await run_cli("sim", "plug", "1", "--config", config)
    assert plug.returncode == 1, plug
    assert "no agent answers" in plug.stderr and "Traceback" not in plug.stderr
    usage = await run_cli("sim", "ev", "1", "Z", "--config", config)
    assert usage.returncode == 2, usage
    assert "usage:" in usage.stderr
    version = await run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"cpagent {__version__}"


async def test_cli_status_human_output(agent: AgentProcess, csms: LoopbackCsms) -> None:
    result = await run_cli("status", "--config", str(agent.config_path))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    connector = next(line for line in lines if line.startswith("connector 1"))
    assert "Available" in connector
    assert any("registration Accepted" in line and "connected" in line for line in lines)
    as_json = await run_cli("status", "--json", "--config", str(agent.config_path))
    assert json.loads(as_json.stdout)["connectors"][0]["status"] == "Available"
