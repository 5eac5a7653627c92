"""OCPP 2.0.1 blocks B (provisioning) and P (DataTransfer), and the OCPP-J error handling,
against the real ``cpagent run`` process and the loopback CSMS.

B01-B03 BootNotification Accepted, Pending and Rejected, and the heartbeat interval the
answer gives; B05/B06 SetVariables and GetVariables, with the values the CSMS set surviving
a restart; B07/B08 GetBaseReport and GetReport answered by NotifyReport in parts within the
station's ItemsPerMessage and BytesPerMessage; B11/B12 Reset Immediate and OnIdle, of the
station and of one EVSE; P01 DataTransfer; and every bad CALL answered with the OCPP-J 2.0.1
error code that names its problem, the agent running on. Every frame both ways passes the
2.0.1 schemas (the ``csms`` fixture fails the test otherwise). Absence of traffic is only
asserted behind an event that proves the agent already handled the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, CsmsCallError
from cpagent.timeutil import now_iso, parse_iso
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]
Payload = dict[str, Any]

FAST = {
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
    "AlignedDataCtrlr": {"Interval": 0},
}
QUIET = {
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
    "AlignedDataCtrlr": {"Interval": 0},
}
"""No meter values in or out of transactions: the only traffic is what a test causes."""


# --------------------------------------------------------------------------- helpers


async def started_agent(
    agent_factory: AgentFactory, csms: LoopbackCsms, **kwargs: Any
) -> AgentProcess:
    """A 2.0.1 agent, started, whose EVSE 1 status reached the CSMS (so it is Accepted)."""
    agent = agent_factory(ocpp201=kwargs.pop("ocpp201", QUIET), **kwargs)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    return agent


def item(
    component: str,
    variable: str,
    *,
    instance: str | None = None,
    evse: int | None = None,
    attribute: str | None = None,
    value: str | None = None,
) -> Payload:
    """A GetVariableData (or, with ``value``, a SetVariableData)."""
    comp: Payload = {"name": component}
    if evse is not None:
        comp["evse"] = {"id": evse}
    var: Payload = {"name": variable}
    if instance is not None:
        var["instance"] = instance
    data: Payload = {"component": comp, "variable": var}
    if attribute is not None:
        data["attributeType"] = attribute
    if value is not None:
        data["attributeValue"] = value
    return data


async def get_variables(csms: LoopbackCsms, *items: Payload) -> list[Payload]:
    result = await csms.call("GetVariables", {"getVariableData": list(items)})
    results: list[Payload] = result["getVariableResult"]
    assert len(results) == len(items)
    return results


async def get_value(csms: LoopbackCsms, component: str, variable: str, **kw: Any) -> str:
    (result,) = await get_variables(csms, item(component, variable, **kw))
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


async def set_variables(csms: LoopbackCsms, *items: Payload) -> list[Payload]:
    result = await csms.call("SetVariables", {"setVariableData": list(items)})
    results: list[Payload] = result["setVariableResult"]
    assert len(results) == len(items)
    return results


def boot_answer(status: str, interval: int) -> Payload:
    return {"currentTime": now_iso(), "interval": interval, "status": status}


def key(data: Payload) -> tuple[str, int | None, str, str | None]:
    """A reportData's (or a result's) component and variable."""
    component, variable = data["component"], data["variable"]
    evse = component.get("evse", {}).get("id")
    return component["name"], evse, variable["name"], variable.get("instance")


def calls_since(csms: LoopbackCsms, mark: int) -> list[str]:
    return [r.action for r in csms.messages(since=mark)]


async def card_session(
    agent: AgentProcess, csms: LoopbackCsms, evse: int = 1, tag: str = "CARD-1"
) -> str:
    """Plug an EV into ``evse``, present ``tag``; the transactionId of the Started event."""
    mark = csms.mark()
    await agent.sim("plug", str(evse))
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["evseId"] == evse and p["connectorStatus"] == "Occupied",
        since=mark,
    )
    await agent.sim("tag", tag)
    started = await csms.wait_for(
        "TransactionEvent",
        lambda p: p["eventType"] == "Started" and p["evse"]["id"] == evse,
        since=mark,
    )
    tx_id: str = started["transactionInfo"]["transactionId"]
    return tx_id


def reply_frames(csms: LoopbackCsms, after: int) -> list[list[Any]]:
    """CALLRESULT/CALLERROR frames the agent sent at frame index ``after`` or later."""
    return [
        msg
        for f in csms.frames[after:]
        if f.direction == "in" and (msg := f.message) is not None and msg[0] in (3, 4)
    ]


async def reply_to(csms: LoopbackCsms, unique_id: str, after: int) -> list[Any]:
    """The agent's CALLRESULT or CALLERROR to ``unique_id`` (frames from ``after`` on)."""
    deadline = time.monotonic() + WAIT_S
    index = after
    while True:
        for i in range(index, len(csms.frames)):
            frame = csms.frames[i]
            msg = frame.message
            if frame.direction == "in" and msg and msg[0] in (3, 4) and msg[1] == unique_id:
                return msg
        index = len(csms.frames)
        await csms.next_frame(after=index, timeout=max(0.01, deadline - time.monotonic()))


def result_frame_index(csms: LoopbackCsms, action: str) -> int:
    """Index in ``csms.frames`` of the agent's answer to the CSMS's last ``action`` CALL."""
    sent = next(
        f.message[1]
        for f in reversed(csms.frames)
        if f.direction == "out" and f.message and f.message[0] == 2 and f.message[2] == action
    )
    return next(
        i
        for i, f in enumerate(csms.frames)
        if f.direction == "in" and f.message and f.message[0] in (3, 4) and f.message[1] == sent
    )


def frame_index_of(csms: LoopbackCsms, unique_id: str) -> int:
    """Index in ``csms.frames`` of the agent's CALL ``unique_id``."""
    return next(
        i
        for i, f in enumerate(csms.frames)
        if f.direction == "in" and f.message and f.message[0] == 2 and f.message[1] == unique_id
    )


# ------------------------------------------------------------- B01-B03: boot, heartbeat


async def test_pending_boot_is_retried_and_the_csms_may_configure_and_trigger_meanwhile(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B02: while Pending the agent sends nothing but BootNotification (an EV plugged in
    makes no StatusNotification), repeats it after the answer's interval, answers
    GetVariables and SetVariables, and a TriggerMessage BootNotification is Accepted and
    followed by a BootNotification with reason Triggered; once that is Accepted, the
    statuses follow."""
    boots: list[tuple[float, Payload]] = []

    def answer(payload: Payload) -> Payload:
        boots.append((time.monotonic(), payload))
        if payload["reason"] == "Triggered":
            return boot_answer("Accepted", 300)
        return boot_answer("Pending", 1)

    csms.responders["BootNotification"] = answer
    agent = agent_factory(ocpp201=QUIET)
    await agent.start()
    first = await csms.wait_for_message("BootNotification")
    assert first.payload["reason"] == "PowerUp"
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["status"] == "Preparing")
    second = await csms.wait_for_message("BootNotification", since=first.index + 1)
    assert second.payload["reason"] == "PowerUp"
    assert boots[1][0] - boots[0][0] >= 0.9  # the interval of the Pending answer
    state = await agent.status()
    assert state["csms"]["registration"] == "Pending"

    # The CSMS may read and write variables while the station is Pending (B02.FR.05).
    assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    (written,) = await set_variables(csms, item("OCPPCommCtrlr", "OfflineThreshold", value="120"))
    assert written["attributeStatus"] == "Accepted"
    assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "120"
    assert set(calls_since(csms, 0)) == {"BootNotification"}
    # No transaction starts before the CSMS accepts the station (TxBeforeAcceptedEnabled).
    await agent.sim("tag", "EARLY-CARD")
    await agent.wait_log("id token EARLY-CARD refused: the CSMS has not accepted the station")
    assert (await agent.status())["connectors"][0]["transaction"] is None
    # A report the CSMS asks for comes while Pending: the CSMS may wait for it to accept.
    mark = csms.mark()
    report = {"requestId": 5, "reportBase": "SummaryInventory"}
    assert await csms.call("GetBaseReport", report) == {"status": "Accepted"}
    last = await csms.wait_for("NotifyReport", lambda p: not p["tbc"], since=mark, timeout=10)
    assert last["requestId"] == 5
    assert (await agent.status())["csms"]["registration"] == "Pending"

    mark = csms.mark()
    answer_to_trigger = await csms.call("TriggerMessage", {"requestedMessage": "BootNotification"})
    assert answer_to_trigger == {"status": "Accepted"}
    triggered = await csms.wait_for_message(
        "BootNotification", lambda p: p["reason"] == "Triggered", since=mark
    )
    assert result_frame_index(csms, "TriggerMessage") < frame_index_of(csms, triggered.unique_id)
    status = await csms.wait_for_message(
        "StatusNotification", lambda p: p["evseId"] == 1, since=mark
    )
    assert status.payload["connectorStatus"] == "Occupied"
    before_accepted = calls_since(csms, 0)[: triggered.index + 1]
    assert set(before_accepted) == {"BootNotification", "NotifyReport"}, before_accepted
    await agent.wait_status(lambda s: s["csms"]["registration"] == "Accepted")


async def test_rejected_boot_is_retried_after_the_interval_until_accepted(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B03: Rejected, the agent sends nothing else and tries again after the answer's
    interval; the first Accepted answer lets the statuses out."""
    boots: list[float] = []
    status = {"now": "Rejected"}

    def answer(payload: Payload) -> Payload:
        boots.append(time.monotonic())
        return boot_answer(status["now"], 1 if status["now"] != "Accepted" else 300)

    csms.responders["BootNotification"] = answer
    agent = agent_factory(ocpp201=QUIET)
    await agent.start()
    first = await csms.wait_for_message("BootNotification")
    second = await csms.wait_for_message("BootNotification", since=first.index + 1)
    assert boots[1] - boots[0] >= 0.9
    assert calls_since(csms, 0) == ["BootNotification", "BootNotification"]
    assert (await agent.status())["csms"]["registration"] == "Rejected"
    status["now"] = "Accepted"
    accepted = await csms.wait_for_message("BootNotification", since=second.index + 1)
    assert accepted.payload["reason"] == "PowerUp"
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    assert set(calls_since(csms, 0)[: accepted.index + 1]) == {"BootNotification"}
    await agent.wait_status(lambda s: s["csms"]["registration"] == "Accepted")


async def test_the_heartbeat_interval_of_the_boot_answer_is_used(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B01/G02: the interval of the Accepted answer becomes OCPPCommCtrlr.HeartbeatInterval
    (the config's 300 gives way), and a Heartbeat comes after that many seconds without
    other traffic."""
    csms.heartbeat_interval = 2
    await started_agent(
        agent_factory, csms, ocpp201={**QUIET, "OCPPCommCtrlr": {"HeartbeatInterval": 300}}
    )
    assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "2"
    beat = await csms.wait_for_message("Heartbeat", timeout=10)
    beat_frame = frame_index_of(csms, beat.unique_id)
    before = [
        f
        for f in csms.frames[:beat_frame]
        if f.direction == "in" and f.message and f.message[0] == 2
    ]
    quiet = csms.frames[beat_frame].at - before[-1].at
    assert quiet >= 1.9, quiet
    second = await csms.wait_for_message("Heartbeat", since=beat.index + 1, timeout=10)
    gap = csms.frames[frame_index_of(csms, second.unique_id)].at - csms.frames[beat_frame].at
    assert 1.9 <= gap < 6, gap

    # B05: a HeartbeatInterval the CSMS sets is in force from then on.
    (longer,) = await set_variables(csms, item("OCPPCommCtrlr", "HeartbeatInterval", value="4"))
    assert longer["attributeStatus"] == "Accepted"
    mark = csms.mark()
    third = await csms.wait_for_message("Heartbeat", since=mark, timeout=15)
    last_before = max(
        f.at
        for f in csms.frames[: frame_index_of(csms, third.unique_id)]
        if f.direction == "in" and f.message and f.message[0] == 2
    )
    assert csms.frames[frame_index_of(csms, third.unique_id)].at - last_before >= 3.9


# ------------------------------------------------------- B05/B06: Get- and SetVariables


async def test_get_variables_answers_each_item(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B06: each item gets its own status; a WriteOnly variable is never read back."""
    await started_agent(
        agent_factory, csms, ocpp201={**QUIET, "AuthCtrlr": {"LocalPreAuthorize": True}}
    )
    results = await get_variables(
        csms,
        item("OCPPCommCtrlr", "HeartbeatInterval"),
        item("AuthCtrlr", "LocalPreAuthorize"),
        item("DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"),
        item("EVSE", "Available", evse=1),
        item("ClockCtrlr", "DateTime"),
        item("NoSuchCtrlr", "HeartbeatInterval"),
        item("OCPPCommCtrlr", "NoSuchVariable"),
        item("OCPPCommCtrlr", "HeartbeatInterval", attribute="Target"),
        item("SecurityCtrlr", "BasicAuthPassword"),
        item("EVSE", "Available", evse=9),
    )
    statuses = [(r["attributeStatus"], r.get("attributeValue")) for r in results]
    assert statuses[:4] == [
        ("Accepted", "300"),
        ("Accepted", "true"),
        ("Accepted", "50"),
        ("Accepted", "true"),
    ]
    assert statuses[4][0] == "Accepted"
    clock = parse_iso(statuses[4][1])  # a date-time the station keeps, not a blank
    assert abs(clock.timestamp() - time.time()) < 60
    assert statuses[5:] == [
        ("UnknownComponent", None),
        ("UnknownVariable", None),
        ("NotSupportedAttributeType", None),
        ("Rejected", None),
        ("UnknownComponent", None),
    ]
    assert "attributeValue" not in results[8]
    assert [r["attributeType"] for r in results] == ["Actual"] * 7 + ["Target"] + ["Actual"] * 2
    assert [key(r) for r in results] == [
        ("OCPPCommCtrlr", None, "HeartbeatInterval", None),
        ("AuthCtrlr", None, "LocalPreAuthorize", None),
        ("DeviceDataCtrlr", None, "ItemsPerMessage", "GetVariables"),
        ("EVSE", 1, "Available", None),
        ("ClockCtrlr", None, "DateTime", None),
        ("NoSuchCtrlr", None, "HeartbeatInterval", None),
        ("OCPPCommCtrlr", None, "NoSuchVariable", None),
        ("OCPPCommCtrlr", None, "HeartbeatInterval", None),
        ("SecurityCtrlr", None, "BasicAuthPassword", None),
        ("EVSE", 9, "Available", None),
    ]


async def test_set_variables_accepts_refuses_and_says_why(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B05: ReadOnly, a value outside the variable's characteristics and a TxStartPoint
    the station has no facts for (no signed meter data) are Rejected with statusInfo; what
    is Accepted reads back."""
    await started_agent(agent_factory, csms)
    results = await set_variables(
        csms,
        item("OCPPCommCtrlr", "OfflineThreshold", value="90"),
        item("AuthCacheCtrlr", "Policy", value="FIFO"),
        item("DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport", value="3"),
        item("OCPPCommCtrlr", "HeartbeatInterval", value="0"),
        item("OCPPCommCtrlr", "HeartbeatInterval", value="often"),
        item("AuthCacheCtrlr", "Policy", value="RANDOM"),
        item("TxCtrlr", "TxStartPoint", value="DataSigned"),
        item("TxCtrlr", "TxStartPoint", value="PowerPathClosed"),
        item("NoSuchCtrlr", "Enabled", value="true"),
        item("AuthCtrlr", "NoSuchVariable", value="true"),
        item("OCPPCommCtrlr", "OfflineThreshold", attribute="MaxSet", value="5"),
    )
    assert [r["attributeStatus"] for r in results] == [
        "Accepted",
        "Accepted",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
    ]
    for rejected in results[2:7]:
        info = rejected["attributeStatusInfo"]
        assert info["reasonCode"] and info["additionalInfo"], rejected
    assert "ReadOnly" in results[2]["attributeStatusInfo"]["additionalInfo"]
    assert "DataSigned not among" in results[6]["attributeStatusInfo"]["additionalInfo"]
    now = await get_variables(
        csms,
        item("OCPPCommCtrlr", "OfflineThreshold"),
        item("AuthCacheCtrlr", "Policy"),
        item("DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"),
        item("OCPPCommCtrlr", "HeartbeatInterval"),
        item("TxCtrlr", "TxStartPoint"),
    )
    assert [r["attributeValue"] for r in now] == ["90", "FIFO", "50", "300", "PowerPathClosed"]


async def test_values_the_csms_set_survive_a_restart_and_win_over_the_config(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B05: SetVariables values are on disk: after SIGTERM and a start on the same data_dir
    GetVariables shows them, not the config's, and the agent acts on them."""
    agent = await started_agent(
        agent_factory,
        csms,
        ocpp201={**FAST, "AuthCacheCtrlr": {"Enabled": True}},
    )
    assert await csms.call("ClearCache", {}) == {"status": "Accepted"}
    results = await set_variables(
        csms,
        item("SampledDataCtrlr", "TxUpdatedInterval", value="3"),
        item("AuthCacheCtrlr", "Enabled", value="false"),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted", "Accepted"]
    assert await csms.call("ClearCache", {}) == {"status": "Rejected"}  # acted on at once

    assert await agent.stop() == 0
    mark = csms.mark()
    await agent.start()
    boot = await csms.wait_for("BootNotification", since=mark)
    assert boot["reason"] == "PowerUp"
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=mark)
    values = await get_variables(
        csms,
        item("SampledDataCtrlr", "TxUpdatedInterval"),
        item("AuthCacheCtrlr", "Enabled"),
    )
    assert [v["attributeValue"] for v in values] == ["3", "false"]
    assert await csms.call("ClearCache", {}) == {"status": "Rejected"}

    # The sampling interval in force is the CSMS's 3 s, not the config's 1 s.
    tx_id = await card_session(agent, csms)
    periodic = []
    while len(periodic) < 2:
        event = await csms.wait_for(
            "TransactionEvent",
            lambda p: (
                p["transactionInfo"]["transactionId"] == tx_id
                and p["triggerReason"] == "MeterValuePeriodic"
                and p["seqNo"] > (periodic[-1]["seqNo"] if periodic else 0)
            ),
            timeout=15,
        )
        periodic.append(event)
    gap = parse_iso(periodic[1]["timestamp"]) - parse_iso(periodic[0]["timestamp"])
    assert 2.5 <= gap.total_seconds() <= 4.5, gap


async def test_a_write_only_value_is_never_read_back_or_logged(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B05/B06: SecurityCtrlr.BasicAuthPassword is WriteOnly: the CSMS sets it, and no
    answer, report or log line (the DEBUG traffic log included) ever shows it."""
    agent = await started_agent(agent_factory, csms)
    short, secret = "Short-Secret-1", "Sup3r-Secret-Passw0rd-42"
    results = await set_variables(
        csms,
        item("SecurityCtrlr", "BasicAuthPassword", value=short),
        item("securityctrlr", "basicauthpassword", value=secret),
    )
    assert [r["attributeStatus"] for r in results] == ["Rejected", "Accepted"]
    assert "fewer than 16" in results[0]["attributeStatusInfo"]["additionalInfo"]
    await csms.wait_connections(2)  # A01: it reconnects with the new password at once
    (read,) = await get_variables(csms, item("SecurityCtrlr", "BasicAuthPassword"))
    assert read["attributeStatus"] == "Rejected" and "attributeValue" not in read
    mark = csms.mark()
    assert await csms.call("GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"}) == {
        "status": "Accepted"
    }
    await csms.wait_for("NotifyReport", lambda p: not p["tbc"], since=mark)
    answers = [f.raw for f in csms.frames if f.direction == "in"]
    assert not [raw for raw in answers if short in raw or secret in raw]
    await agent.wait_log('"SetVariables"')
    log = agent.log()
    assert short not in log and secret not in log


@pytest.mark.parametrize("action", ["GetVariables", "SetVariables"])
async def test_more_items_than_items_per_message_is_an_occurrence_violation(
    action: str, agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B05.FR.03/B06.FR.03 (edition 3 errata): more items than ItemsPerMessage allows is
    answered with CALLERROR OccurrenceConstraintViolation; as many is answered."""
    await started_agent(
        agent_factory,
        csms,
        ocpp201={**QUIET, "DeviceDataCtrlr": {f"ItemsPerMessage:{action}": 2}},
    )
    value = "100" if action == "SetVariables" else None
    items = [item("OCPPCommCtrlr", "OfflineThreshold", value=value)] * 3
    field = "getVariableData" if action == "GetVariables" else "setVariableData"
    with pytest.raises(CsmsCallError) as refused:
        await csms.call(action, {field: items})
    assert refused.value.code == "OccurrenceConstraintViolation"
    answered = await csms.call(action, {field: items[:2]})
    assert len(next(iter(answered.values()))) == 2


# ------------------------------------------------------- B07/B08: GetBaseReport, GetReport

ITEMS_PER_REPORT = 4
BYTES_PER_REPORT = 2000
REPORT_LIMITS = {
    "DeviceDataCtrlr": {
        "ItemsPerMessage:GetReport": ITEMS_PER_REPORT,
        "BytesPerMessage:GetReport": BYTES_PER_REPORT,
    }
}


async def collect_report(csms: LoopbackCsms, request_id: int, since: int) -> list[Payload]:
    """The NotifyReport parts of ``request_id`` up to the last (tbc false), checked as a
    sequence: seqNo 0..n-1, tbc on all but the last, each within the station's limits."""
    await csms.wait_for(
        "NotifyReport", lambda p: p["requestId"] == request_id and not p["tbc"], since=since
    )
    messages = [
        m
        for m in csms.messages("NotifyReport", since=since)
        if m.payload["requestId"] == request_id
    ]
    parts = [m.payload for m in messages]
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    for message in messages:
        assert 1 <= len(message.payload["reportData"]) <= ITEMS_PER_REPORT
        raw = csms.frames[frame_index_of(csms, message.unique_id)].raw
        assert len(raw.encode()) <= BYTES_PER_REPORT, len(raw)
    return [data for p in parts for data in p["reportData"]]


def attribute_values(report: list[Payload]) -> dict[tuple[Any, ...], str | None]:
    """Actual value by component-variable key (None where the report gives none)."""
    found: dict[tuple[Any, ...], str | None] = {}
    for data in report:
        actual = [a for a in data["variableAttribute"] if a.get("type", "Actual") == "Actual"]
        found[key(data)] = actual[0].get("value") if actual else None
    return found


async def test_base_reports_come_in_parts_within_the_limits(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B07: each base report is Accepted, then NotifyReport parts with its requestId,
    seqNo 0..n-1, tbc on all but the last, at most ItemsPerMessage:GetReport items and
    BytesPerMessage:GetReport bytes each; no WriteOnly value in any."""
    await started_agent(agent_factory, csms, ocpp201={**QUIET, **REPORT_LIMITS})
    reports: dict[str, list[Payload]] = {}
    for request_id, base in enumerate(
        ["FullInventory", "ConfigurationInventory", "SummaryInventory"], start=1
    ):
        mark = csms.mark()
        answer = await csms.call("GetBaseReport", {"requestId": request_id, "reportBase": base})
        assert answer == {"status": "Accepted"}
        reports[base] = await collect_report(csms, request_id, mark)
        first = csms.messages("NotifyReport", since=mark)[0]
        assert result_frame_index(csms, "GetBaseReport") < frame_index_of(csms, first.unique_id)

    full = attribute_values(reports["FullInventory"])
    configuration = attribute_values(reports["ConfigurationInventory"])
    summary = attribute_values(reports["SummaryInventory"])
    for report in reports.values():
        keys = [key(d) for d in report]
        assert len(keys) == len(set(keys))  # each variable once
    assert len(reports["FullInventory"]) > 2 * ITEMS_PER_REPORT
    heartbeat = ("OCPPCommCtrlr", None, "HeartbeatInterval", None)
    assert full[heartbeat] == "300" and configuration[heartbeat] == "300"
    assert heartbeat not in summary
    assert set(configuration) < set(full) and set(summary) < set(full)
    assert ("SecurityCtrlr", None, "SecurityProfile", None) not in configuration  # ReadOnly
    assert {k[2] for k in summary} <= {"AvailabilityState", "Available", "Problem"}
    # Run-time values the station fills in: none is left blank.
    assert summary[("EVSE", 1, "AvailabilityState", None)] == "Available"
    assert summary[("Connector", 1, "AvailabilityState", None)] == "Available"
    assert summary[("ChargingStation", None, "AvailabilityState", None)] == "Available"
    assert full[("ClockCtrlr", None, "DateTime", None)] is not None
    assert full[("SecurityCtrlr", None, "Identity", None)] == "CP001"
    password = ("SecurityCtrlr", None, "BasicAuthPassword", None)
    assert password in full and full[password] is None and configuration[password] is None
    for report in reports.values():
        for data in report:
            for attribute in data["variableAttribute"]:
                if attribute.get("mutability") == "WriteOnly":
                    assert "value" not in attribute, data
    # Every variable GetVariables knows is in the full report, with the same value.
    (offline,) = await get_variables(csms, item("OCPPCommCtrlr", "OfflineThreshold"))
    assert full[("OCPPCommCtrlr", None, "OfflineThreshold", None)] == offline["attributeValue"]


async def test_get_report_returns_only_what_the_criteria_select(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B08: componentVariable narrows the report to those variables (a component without a
    variable: all of its variables); nothing matching is EmptyResultSet and no NotifyReport."""
    await started_agent(agent_factory, csms, connectors=2, ocpp201={**QUIET, **REPORT_LIMITS})
    mark = csms.mark()
    answer = await csms.call(
        "GetReport",
        {
            "requestId": 101,
            "componentVariable": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {"component": {"name": "EVSE", "evse": {"id": 2}}},
            ],
        },
    )
    assert answer == {"status": "Accepted"}
    report = await collect_report(csms, 101, mark)
    keys = {key(d) for d in report}
    assert ("OCPPCommCtrlr", None, "HeartbeatInterval", None) in keys
    assert {k for k in keys if k[0] != "OCPPCommCtrlr"} == {
        k for k in keys if k[0] == "EVSE" and k[1] == 2
    }
    assert {k[0] for k in keys} == {"OCPPCommCtrlr", "EVSE"}
    assert [k for k in keys if k[0] == "OCPPCommCtrlr"] == [
        ("OCPPCommCtrlr", None, "HeartbeatInterval", None)
    ]
    assert ("EVSE", 2, "AvailabilityState", None) in keys

    mark = csms.mark()
    empty = await csms.call(
        "GetReport",
        {
            "requestId": 102,
            "componentVariable": [
                {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Enabled"}}
            ],
        },
    )
    assert empty == {"status": "EmptyResultSet"}
    # Ordered delivery: a later report's last part proves none of 102 was queued before it.
    assert await csms.call("GetReport", {"requestId": 103, "componentCriteria": ["Problem"]}) in (
        {"status": "Accepted"},
        {"status": "EmptyResultSet"},
    )
    await csms.call(
        "GetReport",
        {
            "requestId": 104,
            "componentVariable": [
                {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}}
            ],
        },
    )
    await collect_report(csms, 104, mark)
    assert [p for p in csms.payloads("NotifyReport", since=mark) if p["requestId"] == 102] == []

    # componentCriteria narrow further: SmartChargingCtrlr is not Enabled, AuthCtrlr is.
    mark = csms.mark()
    both = [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Enabled"}},
        {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}},
    ]
    enabled = {"requestId": 105, "componentCriteria": ["Enabled"], "componentVariable": both}
    assert await csms.call("GetReport", enabled) == {"status": "Accepted"}
    assert {key(d) for d in await collect_report(csms, 105, mark)} == {
        ("AuthCtrlr", None, "Enabled", None)
    }
    smart = {"requestId": 106, "componentCriteria": ["Enabled"], "componentVariable": both[:1]}
    assert await csms.call("GetReport", smart) == {"status": "EmptyResultSet"}
    # More componentVariables than ItemsPerMessage:GetReport allows.
    with pytest.raises(CsmsCallError) as refused:
        await csms.call(
            "GetReport", {"requestId": 107, "componentVariable": both * ITEMS_PER_REPORT}
        )
    assert refused.value.code == "OccurrenceConstraintViolation"


# ----------------------------------------------------------------------- B11/B12: Reset


async def test_reset_immediate_ends_the_transaction_and_restarts_in_process(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B11: Accepted; the transaction Ended (ImmediateReset, ResetCommand) before the new
    BootNotification, whose reason is RemoteReset, from the same process."""
    agent = await started_agent(agent_factory, csms)
    assert agent.proc is not None
    pid = agent.proc.pid
    tx_id = await card_session(agent, csms)
    mark = csms.mark()
    assert await csms.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    ended = await csms.wait_for_message(
        "TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark
    )
    assert ended.payload["transactionInfo"]["transactionId"] == tx_id
    assert ended.payload["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended.payload["triggerReason"] == "ResetCommand"
    boot = await csms.wait_for_message("BootNotification", since=mark)
    assert boot.payload["reason"] == "RemoteReset"
    assert ended.index < boot.index
    assert result_frame_index(csms, "Reset") < frame_index_of(csms, ended.unique_id)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=boot.index)
    assert agent.proc.returncode is None and agent.proc.pid == pid
    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert state["ocpp201"]["transactions"] == []
    events = csms.transaction_events(tx_id)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert [e["eventType"] for e in events].count("Ended") == 1
    assert "stopped unexpectedly" not in agent.log()


async def test_reset_on_idle_waits_for_the_transaction_to_end(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B11: OnIdle while charging is Scheduled; the station restarts only when the EV has
    left and the transaction Ended."""
    agent = await started_agent(agent_factory, csms, ocpp201=FAST)
    assert agent.proc is not None
    pid = agent.proc.pid
    tx_id = await card_session(agent, csms)
    mark = csms.mark()
    assert await csms.call("Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    # Still running: periodic meter values of the transaction keep coming, no boot.
    await csms.wait_for(
        "TransactionEvent",
        lambda p: p["triggerReason"] == "MeterValuePeriodic",
        since=mark,
    )
    assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "60"
    assert "BootNotification" not in calls_since(csms, mark)
    state = await agent.status()
    assert [t["transaction_id"] for t in state["ocpp201"]["transactions"]] == [tx_id]

    await agent.sim("unplug", "1")
    ended = await csms.wait_for_message(
        "TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark
    )
    assert ended.payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    boot = await csms.wait_for_message("BootNotification", since=mark)
    assert boot.payload["reason"] == "RemoteReset"
    assert ended.index < boot.index
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=boot.index)
    assert agent.proc.returncode is None and agent.proc.pid == pid


async def test_reset_on_idle_when_idle_restarts_at_once(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started_agent(agent_factory, csms)
    assert agent.proc is not None
    pid = agent.proc.pid
    mark = csms.mark()
    assert await csms.call("Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    boot = await csms.wait_for_message("BootNotification", since=mark)
    assert boot.payload["reason"] == "RemoteReset"
    assert result_frame_index(csms, "Reset") < frame_index_of(csms, boot.unique_id)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=boot.index)
    assert agent.proc.returncode is None and agent.proc.pid == pid


async def test_reset_of_one_evse_ends_only_its_transaction(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """B12: Reset Immediate with evseId ends that EVSE's transaction; the other EVSE's goes
    on and the station does not restart. An EVSE that does not exist is Rejected."""
    agent = await started_agent(agent_factory, csms, connectors=2)
    first = await card_session(agent, csms, evse=1, tag="CARD-1")
    second = await card_session(agent, csms, evse=2, tag="CARD-2")
    mark = csms.mark()
    rejected = await csms.call("Reset", {"type": "Immediate", "evseId": 7})
    assert rejected["status"] == "Rejected"
    assert await csms.call("Reset", {"type": "Immediate", "evseId": 1}) == {"status": "Accepted"}
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert ended["transactionInfo"]["transactionId"] == first
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["triggerReason"] == "ResetCommand"
    # The other transaction still runs: it answers a trigger with an Updated event.
    trigger = {"requestedMessage": "TransactionEvent", "evse": {"id": 2}}
    assert await csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
    updated = await csms.wait_for(
        "TransactionEvent", lambda p: p["triggerReason"] == "Trigger", since=mark
    )
    assert updated["transactionInfo"]["transactionId"] == second
    assert updated["eventType"] == "Updated"
    state = await agent.status()
    assert [t["transaction_id"] for t in state["ocpp201"]["transactions"]] == [second]
    assert "BootNotification" not in calls_since(csms, mark)
    assert [p for p in csms.transaction_events(second) if p["eventType"] == "Ended"] == []


# ------------------------------------------------------------------ P01: DataTransfer


async def test_data_transfer_to_an_unknown_vendor(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await started_agent(agent_factory, csms)
    unknown = await csms.call("DataTransfer", {"vendorId": "com.example", "messageId": "x"})
    assert unknown == {"status": "UnknownVendorId"}
    ours = await csms.call("DataTransfer", {"vendorId": "cpagent", "messageId": "NoSuch"})
    assert ours == {"status": "UnknownMessageId"}


# ---------------------------------------------------------------------------- Errors


async def test_bad_calls_get_the_ocpp_j_201_error_codes_and_the_agent_runs_on(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """OCPP-J 2.0.1 §4.3: each schema problem by its own code; an action 2.0.1 does not
    define is NotImplemented, one it defines but the agent does not implement NotSupported.
    Nothing refused is executed (no reset), and the agent answers the next request."""
    agent = await started_agent(agent_factory, csms)
    assert agent.proc is not None
    pid = agent.proc.pid
    cases: list[tuple[str, Payload, str]] = [
        ("Reset", {"type": 5}, "TypeConstraintViolation"),
        ("GetVariables", {"getVariableData": "all"}, "TypeConstraintViolation"),
        ("Reset", {}, "OccurrenceConstraintViolation"),
        ("GetVariables", {"getVariableData": []}, "OccurrenceConstraintViolation"),
        ("Reset", {"type": "Bogus"}, "PropertyConstraintViolation"),
        ("Reset", {"type": "Immediate", "evseId": 1, "when": "now"}, "FormatViolation"),
        ("ClearCache", {"everything": True}, "FormatViolation"),
        ("NoSuchAction", {}, "NotImplemented"),
        (
            "SetChargingProfile",
            {
                "evseId": 1,
                "chargingProfile": {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": [
                        {
                            "id": 1,
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}],
                        }
                    ],
                },
            },
            "NotSupported",
        ),
        (
            "SetDisplayMessage",
            {
                "message": {
                    "id": 1,
                    "priority": "NormalCycle",
                    "message": {"format": "ASCII", "content": "hi"},
                }
            },
            "NotSupported",
        ),
        # A station-to-CSMS action sent the wrong way: known to 2.0.1, not served here.
        ("Heartbeat", {}, "NotSupported"),
    ]
    for action, payload, code in cases:
        with pytest.raises(CsmsCallError) as refused:
            await csms.call(action, payload)
        assert refused.value.code == code, (action, payload, refused.value)
    assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 0}
    assert csms.payloads("BootNotification") and len(csms.payloads("BootNotification")) == 1
    assert agent.proc.returncode is None and agent.proc.pid == pid
    assert "Traceback" not in agent.log()


async def test_malformed_frames_are_answered_or_ignored_and_harmless(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """A frame that is not JSON but starts like a CALL with a readable id is answered
    FormatViolation; one that cannot be answered (no CALL, no string id) is ignored. The
    connection stays, the transaction runs on, and the next request is answered."""
    agent = await started_agent(agent_factory, csms)
    assert agent.proc is not None
    pid = agent.proc.pid
    tx_id = await card_session(agent, csms)
    connections = len(csms.subprotocols)

    async def ignored(raw: str) -> None:
        after = len(csms.frames)
        await csms.send_raw(raw)
        assert await csms.call("GetLocalListVersion", {}) == {"versionNumber": 0}
        answered = [m[1] for m in reply_frames(csms, after)]
        assert len(answered) == 1, (raw, answered)  # only the GetLocalListVersion

    async def refused(raw: str, unique_id: str) -> list[Any]:
        after = len(csms.frames)
        await csms.send_raw(raw)
        reply = await reply_to(csms, unique_id, after)
        assert reply[0] == 4 and len(reply) == 5, (raw, reply)
        assert isinstance(reply[3], str) and isinstance(reply[4], dict)
        return reply

    await ignored("this is not json")
    await ignored('{"not": "a list"}')
    await ignored("[]")
    await ignored("[2, 5]")
    await ignored('[3,"nobody-asked",{}]')
    await ignored('[4,"nobody-asked","GenericError","",{}]')
    truncated = await refused('[2,"bad-1","Reset",{"type":"Immediate"', "bad-1")
    assert truncated[2] == "FormatViolation"
    nan = await refused('[2,"bad-2","GetLocalListVersion",{"x":NaN}]', "bad-2")
    assert nan[2] == "FormatViolation"
    not_an_object = await refused('[2,"bad-3","Reset","Immediate"]', "bad-3")
    assert not_an_object[2] == "TypeConstraintViolation"
    # No payload: not a valid RPC request (OCPP-J 2.0.1 §4.3), whatever its action.
    short = await refused('[2,"bad-4","Reset"]', "bad-4")
    assert short[2] == "RpcFrameworkError"
    await ignored('[5,"bad-5","Reset",{"type":"Immediate"}]')  # no such message type

    # Nothing of that reset the agent, dropped the connection or ended the transaction.
    assert len(csms.subprotocols) == connections
    assert len(csms.payloads("BootNotification")) == 1
    state = await agent.status()
    assert [t["transaction_id"] for t in state["ocpp201"]["transactions"]] == [tx_id]
    mark = csms.mark()
    await agent.sim("unplug", "1")
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert agent.proc.returncode is None and agent.proc.pid == pid
    assert "Traceback" not in agent.log()
    assert [e[1] for e in csms.call_errors] == ["bad-1", "bad-2", "bad-3", "bad-4"]
