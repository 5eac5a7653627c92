"""Charging sessions end to end: the real ``cpagent run`` process against the loopback CSMS.

Every test drives the simulated charger with ``cpagent sim``, reads what a user sees with
``cpagent status --json`` and asserts what went over the wire. Waits are event-driven
(``csms.wait_for``, ``agent.wait_status``) and bounded; intervals are 1 s so the file runs
in well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpagent import __version__
from cpagent.testing import CallErrorReply, LoopbackCsms
from cpagent.testing.csms import WAIT_S
from tests.integration.conftest import AgentProcess, run_cli
from tests.integration.test_local_list import go_offline

AgentFactory = Callable[..., AgentProcess]
State = dict[str, Any]

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DURABLE = ("StartTransaction", "MeterValues", "StopTransaction")


# ---------------------------------------------------------------------------- helpers


def timestamps(obj: Any) -> Iterator[str]:
    """Every value of a ``timestamp`` field anywhere in a payload."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "timestamp":
                yield value
            else:
                yield from timestamps(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from timestamps(item)


def assert_rfc3339_timestamps(csms: LoopbackCsms) -> int:
    """Every timestamp the charge point sent is RFC 3339 UTC with ``Z``; returns how many."""
    count = 0
    for received in csms.received:
        for stamp in timestamps(received.payload):
            assert isinstance(stamp, str) and RFC3339_UTC.match(stamp), (
                received.action,
                stamp,
            )
            count += 1
    return count


def call_times(csms: LoopbackCsms, action: str) -> list[float]:
    """When each CALL of ``action`` arrived (monotonic seconds)."""
    out: list[float] = []
    for frame in csms.frames:
        message = frame.message
        if frame.direction == "in" and message and message[0] == 2 and message[2] == action:
            out.append(frame.at)
    return out


def actions(csms: LoopbackCsms, since: int = 0) -> list[str]:
    return [r.action for r in csms.messages(since=since)]


def connector(state: State, cid: int) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in state["connectors"] if c["id"] == cid)
    return found


def sampled(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """All sampled values of a MeterValues payload."""
    return [sv for mv in payload["meterValue"] for sv in mv["sampledValue"]]


def energy_of(values: list[dict[str, Any]]) -> float:
    (energy,) = [v for v in values if v.get("measurand") == "Energy.Active.Import.Register"]
    assert energy["unit"] == "Wh", energy
    return float(energy["value"])


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll an in-process condition the CSMS has no event for (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def booted(csms: LoopbackCsms, cid: int, since: int = 0) -> None:
    """Wait until the agent reported connector ``cid`` after an accepted boot."""
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == cid, since=since)


async def start_session(
    agent: AgentProcess, csms: LoopbackCsms, id_tag: str, cid: int = 1
) -> dict[str, Any]:
    """Plug, present a card and wait for the StartTransaction and Charging."""
    mark = csms.mark()
    await agent.sim("plug", str(cid))
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == cid and p["status"] == "Preparing",
        since=mark,
    )
    await agent.sim("tag", id_tag)
    start = await csms.wait_for("StartTransaction", lambda p: p["idTag"] == id_tag, since=mark)
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == cid and p["status"] == "Charging",
        since=mark,
    )
    return start


def status_is(cid: int, status: str) -> Callable[[State], bool]:
    return lambda s: connector(s, cid)["status"] == status


# ------------------------------------------------------------------------------- boot


async def test_boot_notification_fields_subprotocol_and_url(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(cp_id="CP-BOOT-7")
    agent.tables["charge_point"]["firmware_version"] = "4.5.6-test"
    agent.write()
    await agent.start()
    await booted(csms, 1)

    boot = csms.payloads("BootNotification")[0]
    assert boot["chargePointVendor"] == "TestVendor"
    assert boot["chargePointModel"] == "TestModel"
    assert boot["chargePointSerialNumber"] == "SN-0001"
    assert boot["chargeBoxSerialNumber"] == "SN-0001"
    assert boot["firmwareVersion"] == "4.5.6-test"
    assert csms.received[0].action == "BootNotification"
    assert csms.subprotocols == ["ocpp1.6"]
    ws = csms.connections["CP-BOOT-7"]
    assert ws.request is not None
    assert ws.request.path == "/ocpp/CP-BOOT-7"

    state = await agent.status()
    assert state["charge_point_id"] == "CP-BOOT-7"
    assert state["csms"]["connected"] is True
    assert state["csms"]["registration"] == "Accepted"
    assert state["csms"]["url"] == f"{csms.url}/CP-BOOT-7"


async def test_boot_firmware_version_defaults_to_cpagent_version(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert csms.payloads("BootNotification")[0]["firmwareVersion"] == __version__


@pytest.mark.parametrize("refusal", ["Pending", "Rejected"])
async def test_boot_retried_until_accepted(
    agent_factory: AgentFactory, csms: LoopbackCsms, refusal: str
) -> None:
    csms.boot_status = refusal
    csms.boot_interval = 1
    replies: list[str] = []

    def boot(payload: dict[str, Any]) -> dict[str, Any]:
        reply = csms.default_reply("BootNotification", payload)
        replies.append(reply["status"])
        return reply

    csms.responders["BootNotification"] = boot
    agent = agent_factory()
    await agent.start()

    await csms.wait_for("BootNotification")
    await agent.wait_status(
        lambda s: s["csms"]["registration"] == refusal and s["csms"]["connected"]
    )
    # Retried after the interval the CSMS gave, not faster.
    await csms.wait_for("BootNotification", since=1)
    csms.boot_status = "Accepted"
    accepted_at = await csms.wait_for_message("StatusNotification", lambda p: p["connectorId"] == 1)
    await booted(csms, 0)

    assert replies[0] == refusal
    first_accepted = replies.index("Accepted")
    assert first_accepted >= 1
    boots = call_times(csms, "BootNotification")
    gaps = [b - a for a, b in itertools.pairwise(boots[: first_accepted + 1])]
    assert gaps and all(gap >= 0.8 for gap in gaps), gaps
    # Nothing but BootNotification before the CSMS accepted one.
    seen = actions(csms)
    boot_indices = [i for i, action in enumerate(seen) if action == "BootNotification"]
    accepted_index = boot_indices[first_accepted]
    assert seen[: accepted_index + 1] == ["BootNotification"] * (accepted_index + 1)
    assert accepted_at.index > accepted_index
    assert len(boot_indices) == first_accepted + 1, seen
    state = await agent.status()
    assert state["csms"]["registration"] == "Accepted"
    assert connector(state, 1)["status"] == "Available"


async def test_boot_refused_with_callerror_is_retried_on_the_same_connection(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    refusals = 3
    replies: list[str] = []

    def boot(payload: dict[str, Any]) -> dict[str, Any] | CallErrorReply:
        if len(replies) < refusals:
            replies.append("CALLERROR")
            return CallErrorReply("InternalError", "registration database down")
        replies.append("Accepted")
        return csms.default_reply("BootNotification", payload)

    csms.responders["BootNotification"] = boot
    agent = agent_factory()  # boot_retry_s = 1
    await agent.start()
    await booted(csms, 1)

    # Each CALLERROR was followed, after boot_retry_s, by another BootNotification on the
    # same connection: no reconnect, nothing closed.
    assert replies == ["CALLERROR"] * refusals + ["Accepted"]
    assert len(csms.subprotocols) == 1 and csms.close_codes == []
    boots = call_times(csms, "BootNotification")
    assert len(boots) == refusals + 1
    gaps = [b - a for a, b in itertools.pairwise(boots)]
    assert all(gap >= 0.8 for gap in gaps), gaps
    seen = actions(csms)
    assert seen[: refusals + 1] == ["BootNotification"] * (refusals + 1), seen
    state = await agent.status()
    assert state["csms"]["registration"] == "Accepted" and state["csms"]["connected"]


# -------------------------------------------------------------------------- heartbeat


async def test_heartbeat_at_the_interval_the_csms_gave(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    csms.heartbeat_interval = 1
    agent = agent_factory()
    await agent.start()
    await booted(csms, 1)
    # Heartbeats within the waits' bound, far below the default 300 s: the CSMS's interval.
    beat = await csms.wait_for_message("Heartbeat")
    for _ in range(3):
        beat = await csms.wait_for_message("Heartbeat", since=beat.index + 1)

    assert all(p == {} for p in csms.payloads("Heartbeat"))
    times = call_times(csms, "Heartbeat")
    assert times[3] - times[0] >= 3 * 0.7, times  # not faster than every second
    reply = await csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert reply["configurationKey"][0]["value"] == "1"


# ------------------------------------------------------------------- status + timestamps


async def test_status_for_every_connector_and_utc_timestamps(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(
        connectors=2,
        ocpp16={
            "MeterValueSampleInterval": 1,
            "StopTxnSampledData": ["Energy.Active.Import.Register"],
        },
    )
    await agent.start()
    for cid in (0, 1, 2):
        await booted(csms, cid)
    statuses = {p["connectorId"]: p for p in csms.payloads("StatusNotification")}
    assert sorted(statuses) == [0, 1, 2]
    for payload in statuses.values():
        assert payload["status"] == "Available" and payload["errorCode"] == "NoError", payload
    state = await agent.status()
    assert [c["status"] for c in state["connectors"]] == ["Available", "Available"]
    assert state["charger"]["status"] == "Available"

    # A session on connector 2 makes every kind of timestamped message.
    mark = csms.mark()
    start = await start_session(agent, csms, "TS-TAG", cid=2)
    assert start["connectorId"] == 2
    await csms.wait_for("MeterValues", since=mark)
    await agent.sim("tag", "TS-TAG")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionData"]

    checked = assert_rfc3339_timestamps(csms)
    # StatusNotification x>=5, StartTransaction, MeterValues, StopTransaction + its data
    assert checked >= 10


# ------------------------------------------------------------------------ authorization


async def test_rejected_card_starts_nothing(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    csms.heartbeat_interval = 1
    csms.id_tag_status["BAD"] = "Invalid"
    agent = agent_factory()
    await agent.start()
    await booted(csms, 1)

    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    await agent.sim("tag", "BAD")
    authorize = await csms.wait_for_message("Authorize", since=mark)
    assert authorize.payload == {"idTag": "BAD"}
    # A heartbeat comes only after a second with nothing else to send: a StartTransaction
    # for BAD would have gone out right after the Authorize answer.
    await csms.wait_for("Heartbeat", since=authorize.index + 1)
    assert csms.payloads("StartTransaction") == []
    state = await agent.status()
    assert connector(state, 1)["status"] == "Preparing"
    assert connector(state, 1)["transaction"] is None
    assert connector(state, 1)["contactor_closed"] is False
    assert [p["status"] for p in csms.payloads("StatusNotification", since=mark)] == ["Preparing"]

    # The card reader still works: a good card shown after the bad one starts the session.
    await agent.sim("tag", "GOOD")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "GOOD"
    assert [p["idTag"] for p in csms.payloads("StartTransaction")] == ["GOOD"]


# ----------------------------------------------------------------------------- sessions


async def test_plug_then_card_suspend_resume_and_unplug(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    start = await start_session(agent, csms, "PLUG-FIRST")
    assert start["connectorId"] == 1 and start["meterStart"] == 0
    assert (await csms.wait_for("Authorize", since=mark)) == {"idTag": "PLUG-FIRST"}
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] is not None)
    tx_id = connector(state, 1)["transaction"]["id"]
    assert connector(state, 1)["contactor_closed"] is True

    m = csms.mark()
    await agent.sim("ev", "1", "B")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "SuspendedEV", since=m)
    state = await agent.wait_status(status_is(1, "SuspendedEV"))
    assert connector(state, 1)["transaction"]["id"] == tx_id
    assert csms.payloads("StopTransaction") == []

    m = csms.mark()
    await agent.sim("ev", "1", "C")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=m)
    await agent.wait_status(
        lambda s: status_is(1, "Charging")(s) and connector(s, 1)["power_w"] > 0
    )

    m = csms.mark()
    await agent.sim("unplug", "1")
    stop = await csms.wait_for_message("StopTransaction", since=m)
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["reason"] == "EVDisconnected"
    assert "idTag" not in stop.payload
    assert stop.payload["meterStop"] >= start["meterStart"]
    available = await csms.wait_for_message(
        "StatusNotification", lambda p: p["status"] == "Available", since=m
    )
    assert available.index > stop.index
    assert [p["status"] for p in csms.payloads("StatusNotification", since=m)] == ["Available"]
    state = await agent.wait_status(status_is(1, "Available"))
    assert connector(state, 1)["transaction"] is None
    assert connector(state, 1)["contactor_closed"] is False
    assert len(csms.payloads("StartTransaction")) == 1
    assert len(csms.payloads("StopTransaction")) == 1


async def test_card_then_plug_starts_a_session(agent: AgentProcess, csms: LoopbackCsms) -> None:
    mark = csms.mark()
    await agent.sim("tag", "CARD-FIRST")
    assert (await csms.wait_for("Authorize", since=mark)) == {"idTag": "CARD-FIRST"}
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    state = await agent.wait_status(status_is(1, "Preparing"))
    assert connector(state, 1)["transaction"] is None
    assert csms.payloads("StartTransaction") == []

    await agent.sim("plug", "1")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "CARD-FIRST" and start["connectorId"] == 1
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)
    state = await agent.wait_status(lambda s: connector(s, 1)["energy_wh"] > 0)
    tx_id = connector(state, 1)["transaction"]["id"]
    assert tx_id is not None

    await agent.sim("tag", "CARD-FIRST")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == tx_id and stop["reason"] == "Local"
    assert stop["idTag"] == "CARD-FIRST"
    assert stop["meterStop"] > start["meterStart"]
    # The card stops the session, the cable is still in: Finishing, not Available.
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Finishing", since=mark)


def in_group(group: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An Authorize answer: Accepted, in ``group`` (its parentIdTag)."""
    return lambda p: {"idTagInfo": {"status": "Accepted", "parentIdTag": group}}


async def group_stops_the_session(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """CARD-A starts a session, CARD-B of the same group stops it: the CSMS tells the group
    in Authorize.conf only, its StartTransaction.conf and StopTransaction.conf name none."""
    csms.responders["Authorize"] = in_group("GROUP")
    start = await start_session(agent, csms, "CARD-A")
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] is not None)
    tx_id = connector(state, 1)["transaction"]["id"]
    mark = csms.mark()
    await agent.sim("tag", "CARD-B")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert (stop["transactionId"], stop["idTag"], stop["reason"]) == (tx_id, "CARD-B", "Local")
    assert [p["idTag"] for p in csms.payloads("Authorize", since=mark)] == ["CARD-B"]
    assert start["idTag"] == "CARD-A"
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Finishing", since=mark)


async def test_a_card_of_the_same_group_stops_the_session(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """1.6 §3.5.3, §5.11: an idTag whose parentIdTag is that of the session's idTag may stop
    it. A StartTransaction.conf without parentIdTag does not make the group forgotten."""
    await group_stops_the_session(agent, csms)


async def test_the_group_learnt_online_stops_a_session_offline(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    """The authorization cache keeps the parentIdTag a card is known by when a later answer
    about it (StartTransaction.conf, StopTransaction.conf) names none: offline
    (LocalAuthorizeOffline), the cached group still lets CARD-B stop CARD-A's session."""
    await group_stops_the_session(agent, csms)
    await go_offline(agent, csms)
    await agent.sim("tag", "CARD-A")
    await agent.wait_status(
        lambda s: (tx := connector(s, 1)["transaction"]) and tx["id_tag"] == "CARD-A"
    )
    await agent.sim("tag", "CARD-B")
    await agent.wait_status(lambda s: connector(s, 1)["transaction"] is None)

    mark = csms.mark()
    await agent.sim("network", "up")
    start = await csms.wait_for("StartTransaction", since=mark)
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert start["idTag"] == "CARD-A"
    assert (stop["idTag"], stop["reason"]) == ("CARD-B", "Local")
    assert csms.payloads("Authorize", since=mark) == []


# ------------------------------------------------------------------------ meter values

ALL_MEASURANDS = [
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "SoC",
]


async def test_periodic_meter_values(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    agent = agent_factory(
        ocpp16={"MeterValueSampleInterval": 1, "MeterValuesSampledData": ALL_MEASURANDS}
    )
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    start = await start_session(agent, csms, "METER")
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] is not None)
    tx_id = connector(state, 1)["transaction"]["id"]
    since = mark
    for _ in range(3):  # about three seconds of charging
        since = (await csms.wait_for_message("MeterValues", since=since)).index + 1

    samples = csms.payloads("MeterValues", since=mark)
    assert len(samples) >= 3
    energies: list[float] = []
    for payload in samples:
        assert payload["connectorId"] == 1
        assert payload["transactionId"] == tx_id
        assert len(payload["meterValue"]) == 1
        values = sampled(payload)
        assert {v["context"] for v in values} == {"Sample.Periodic"}, values
        by_key = {(v["measurand"], v.get("phase")): v for v in values}
        assert set(by_key) == {
            ("Energy.Active.Import.Register", None),
            ("Power.Active.Import", None),
            ("Power.Active.Import", "L1"),
            ("Power.Active.Import", "L2"),
            ("Power.Active.Import", "L3"),
            ("Current.Import", "L1"),
            ("Current.Import", "L2"),
            ("Current.Import", "L3"),
            ("Voltage", "L1-N"),
            ("Voltage", "L2-N"),
            ("Voltage", "L3-N"),
            ("SoC", None),
        }, values
        assert len(values) == 12
        units = {m: v["unit"] for (m, _), v in by_key.items()}
        assert units == {
            "Energy.Active.Import.Register": "Wh",
            "Power.Active.Import": "W",
            "Current.Import": "A",
            "Voltage": "V",
            "SoC": "Percent",
        }
        assert by_key[("SoC", None)]["location"] == "EV"
        for phase in ("L1", "L2", "L3"):
            assert float(by_key[("Power.Active.Import", phase)]["value"]) == pytest.approx(230 * 16)
            assert float(by_key[("Current.Import", phase)]["value"]) == pytest.approx(16.0)
            assert float(by_key[("Voltage", f"{phase}-N")]["value"]) == pytest.approx(230.0)
        assert float(by_key[("Power.Active.Import", None)]["value"]) == pytest.approx(3 * 230 * 16)
        assert 20.0 <= float(by_key[("SoC", None)]["value"]) <= 100.0
        energies.append(energy_of(values))

    assert energies == sorted(energies), energies
    assert energies[-1] > start["meterStart"], energies
    assert energies[-1] > energies[0], energies
    times = call_times(csms, "MeterValues")
    assert all(0.5 <= b - a <= 2.5 for a, b in itertools.pairwise(times)), times


async def test_clock_aligned_values_and_stop_transaction_data(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(
        ocpp16={
            "ClockAlignedDataInterval": 1,
            "MeterValuesAlignedData": ["Energy.Active.Import.Register", "Power.Active.Import"],
            "StopTxnSampledData": ["Energy.Active.Import.Register", "Power.Active.Import"],
        }
    )
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    start = await start_session(agent, csms, "CLOCK")
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] is not None)
    tx_id = connector(state, 1)["transaction"]["id"]
    in_tx = await csms.wait_for_message(
        "MeterValues", lambda p: p.get("transactionId") == tx_id, since=mark
    )
    await csms.wait_for(
        "MeterValues", lambda p: p.get("transactionId") == tx_id, since=in_tx.index + 1
    )
    await agent.sim("tag", "CLOCK")
    stop = await csms.wait_for("StopTransaction", since=mark)

    clock = csms.payloads("MeterValues", since=mark)
    assert clock
    for payload in clock:
        values = sampled(payload)
        assert {v["context"] for v in values} == {"Sample.Clock"}, values
        assert {v["measurand"] for v in values} == {
            "Energy.Active.Import.Register",
            "Power.Active.Import",
        }
    in_tx_energy = [energy_of(sampled(p)) for p in clock if p.get("transactionId") == tx_id]
    assert in_tx_energy == sorted(in_tx_energy)
    assert all(start["meterStart"] <= e <= stop["meterStop"] for e in in_tx_energy)

    assert stop["transactionId"] == tx_id and stop["reason"] == "Local"
    data = stop["transactionData"]
    assert len(data) == 2, data
    begin, end = data
    assert {v["context"] for v in begin["sampledValue"]} == {"Transaction.Begin"}
    assert {v["context"] for v in end["sampledValue"]} == {"Transaction.End"}
    assert begin["timestamp"] == start["timestamp"]
    assert end["timestamp"] == stop["timestamp"]
    assert energy_of(begin["sampledValue"]) == start["meterStart"]
    assert energy_of(end["sampledValue"]) == stop["meterStop"]
    assert {v["measurand"] for v in end["sampledValue"]} == {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
    }
    assert_rfc3339_timestamps(csms)


async def test_stop_transaction_data_keeps_sampled_and_aligned_values_across_a_crash(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(
        ocpp16={
            "MeterValueSampleInterval": 1,
            "ClockAlignedDataInterval": 1,
            "MeterValuesSampledData": ["Power.Active.Import"],
            "MeterValuesAlignedData": ["Power.Active.Import"],
            "StopTxnSampledData": ["Energy.Active.Import.Register"],
            "StopTxnAlignedData": ["Energy.Active.Import.Register"],
        }
    )
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    start = await start_session(agent, csms, "DATA")
    for _ in range(3):  # a few periodic and clock-aligned samples
        await csms.wait_for_message("MeterValues", since=csms.mark())
    await agent.kill9()

    restart = csms.mark()
    await agent.start()
    stop = await csms.wait_for("StopTransaction", since=restart)
    assert stop["reason"] == "PowerLoss"
    data = stop["transactionData"]
    contexts = [v["context"] for entry in data for v in entry["sampledValue"]]
    assert contexts[0] == "Transaction.Begin"
    assert "Sample.Periodic" in contexts and "Sample.Clock" in contexts
    assert all(
        v["measurand"] == "Energy.Active.Import.Register"
        for entry in data
        for v in entry["sampledValue"]
    )
    energies = [energy_of(entry["sampledValue"]) for entry in data]
    assert energies == sorted(energies)
    assert energies[0] == start["meterStart"] and energies[-1] <= stop["meterStop"]
    stamps = [entry["timestamp"] for entry in data]
    assert stamps == sorted(stamps)
    assert len(csms.payloads("StartTransaction", since=mark)) == 1


# ------------------------------------------------------------------------- basic auth


async def test_basic_auth_with_the_right_password(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    csms.password = "secret"
    agent = agent_factory(csms={"password": "secret"})
    await agent.start()
    await booted(csms, 1)
    assert csms.auth_failures == []
    state = await agent.status()
    assert state["csms"]["connected"] is True
    assert state["csms"]["last_error"] is None
    assert "secret" not in agent.log()


async def test_basic_auth_with_a_wrong_password_keeps_retrying(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    csms.password = "secret"
    agent = agent_factory(csms={"password": "not-the-secret"})
    await agent.start()

    await eventually(lambda: len(csms.auth_failures) >= 3, "three refused attempts")
    assert set(csms.auth_failures) == {"CP001"}
    state = await agent.wait_status(lambda s: "401" in (s["csms"]["last_error"] or ""))
    assert state["csms"]["connected"] is False
    assert state["csms"]["registration"] is None
    assert csms.received == []
    text = await run_cli("status", "--config", str(agent.config_path))
    assert text.returncode == 0
    assert "disconnected" in text.stdout and "401" in text.stdout
    before = len(csms.auth_failures)
    await eventually(lambda: len(csms.auth_failures) > before, "still retrying")
    assert agent.proc is not None and agent.proc.returncode is None
    assert "not-the-secret" not in agent.log()


# -------------------------------------------------------------------------- reconnect


async def test_offline_session_is_delivered_after_network_returns(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    csms.responders["StartTransaction"] = lambda p: {
        "transactionId": 4242,
        "idTagInfo": {"status": "Accepted"},
    }
    agent = agent_factory(
        connectors=2,
        ocpp16={"AllowOfflineTxForUnknownId": True, "MeterValueSampleInterval": 1},
    )
    await agent.start()
    await booted(csms, 2)

    mark = csms.mark()
    await agent.sim("network", "down")
    await csms.wait_disconnected("CP001")
    state = await agent.wait_status(lambda s: not s["csms"]["connected"])
    assert state["csms"]["network"] == "down"
    text = await run_cli("status", "--config", str(agent.config_path))
    assert "network down" in text.stdout

    await agent.sim("tag", "OFFLINE-1")
    await agent.sim("plug", "1")
    state = await agent.wait_status(
        lambda s: status_is(1, "Charging")(s) and s["queue"]["depth"] >= 1
    )
    assert connector(state, 1)["transaction"]["id"] is None
    assert connector(state, 1)["transaction"]["id_tag"] == "OFFLINE-1"
    state = await agent.wait_status(lambda s: s["queue"]["depth"] >= 3)
    assert connector(state, 1)["energy_wh"] > 0  # really charging, offline
    queued_at_least = state["queue"]["depth"]
    assert csms.mark() == mark  # nothing got through while the network was down

    await agent.sim("network", "up")
    start_msg = await csms.wait_for_message("StartTransaction", since=mark)
    for cid in (0, 1, 2):
        await booted(csms, cid, since=mark)
    # The session learns the CSMS's id and keeps reporting under it.
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] == 4242)
    assert status_is(1, "Charging")(state)
    live = await csms.wait_for_message("MeterValues", since=csms.mark())
    assert live.payload["transactionId"] == 4242
    await agent.sim("unplug", "1")
    stop = await csms.wait_for_message("StopTransaction", since=mark)
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 1 and p["status"] == "Available",
        since=stop.index,
    )

    received = csms.messages(since=mark)
    seen = [r.action for r in received]
    assert "BootNotification" not in seen
    # What was queued offline goes first, StartTransaction at its head.
    assert start_msg.index == mark, seen
    queued = [r.action for r in received[:queued_at_least]]
    assert queued[0] == "StartTransaction" and set(queued[1:]) == {"MeterValues"}, seen
    start = start_msg.payload
    assert start["idTag"] == "OFFLINE-1" and start["connectorId"] == 1 and start["meterStart"] == 0
    # Every connector's status is reported again on the new connection.
    reported: dict[int, str] = {}
    for p in csms.payloads("StatusNotification", since=mark):
        reported.setdefault(p["connectorId"], p["status"])
    assert reported == {0: "Available", 1: "Charging", 2: "Available"}
    assert stop.payload["transactionId"] == 4242
    assert stop.payload["reason"] == "EVDisconnected"
    meter = csms.payloads("MeterValues", since=mark)
    assert len(meter) >= 3
    assert all(p["transactionId"] == 4242 for p in meter)
    energies = [energy_of(sampled(p)) for p in meter]
    assert energies == sorted(energies)
    assert stop.payload["meterStop"] >= energies[-1]
    stamps = [start["timestamp"], *(p["meterValue"][0]["timestamp"] for p in meter)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [r.action for r in received].count("StartTransaction") == 1
    assert [r.action for r in received].count("StopTransaction") == 1

    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert state["csms"]["connected"] is True and state["csms"]["network"] == "up"
    assert_rfc3339_timestamps(csms)


async def test_reconnects_after_the_csms_closes_the_socket(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    mark = csms.mark()
    await csms.disconnect()
    for cid in (0, 1):
        await booted(csms, cid, since=mark)
    assert "BootNotification" not in actions(csms, since=mark)
    assert len(csms.subprotocols) == 2
    state = await agent.wait_status(lambda s: s["csms"]["connected"])
    assert state["csms"]["registration"] == "Accepted"
    # And it is usable on the new connection.
    start = await start_session(agent, csms, "AFTER-RECONNECT")
    assert start["connectorId"] == 1


# ---------------------------------------------------------------------------- restart


async def test_changed_configuration_survives_restart(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(ocpp16={"MeterValueSampleInterval": 60})
    await agent.start()
    await booted(csms, 1)
    key = {"key": ["MeterValueSampleInterval"]}
    assert (await csms.call("GetConfiguration", key))["configurationKey"][0]["value"] == "60"
    reply = await csms.call(
        "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "7"}
    )
    assert reply == {"status": "Accepted"}
    assert (await csms.call("GetConfiguration", key))["configurationKey"][0]["value"] == "7"

    assert await agent.stop() == 0
    await csms.wait_disconnected("CP001")
    mark = csms.mark()
    await agent.start()
    await booted(csms, 1, since=mark)
    assert actions(csms, since=mark)[0] == "BootNotification"
    got = (await csms.call("GetConfiguration", key))["configurationKey"]
    assert got == [{"key": "MeterValueSampleInterval", "readonly": False, "value": "7"}]


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
async def test_queue_survives_restart_in_order_and_meter_continues(
    agent_factory: AgentFactory, csms: LoopbackCsms, how: str
) -> None:
    agent = agent_factory(
        ocpp16={"AllowOfflineTxForUnknownId": True, "MeterValueSampleInterval": 1}
    )
    await agent.start()
    await booted(csms, 1)
    mark = csms.mark()
    await agent.sim("network", "down")
    await agent.wait_status(lambda s: not s["csms"]["connected"])

    # Session 1, complete while offline.
    await agent.sim("tag", "OFF-1")
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: s["queue"]["depth"] >= 3)
    await agent.sim("unplug", "1")
    state = await agent.wait_status(
        lambda s: status_is(1, "Available")(s) and s["queue"]["depth"] >= 4
    )
    first_depth = state["queue"]["depth"]
    # Session 2, still open when the agent goes away.
    await agent.sim("plug", "1")
    await agent.wait_status(status_is(1, "Preparing"))
    await agent.sim("tag", "OFF-2")
    state = await agent.wait_status(lambda s: s["queue"]["depth"] >= first_depth + 3)
    assert connector(state, 1)["transaction"]["id_tag"] == "OFF-2"
    assert csms.mark() == mark

    if how == "kill9":
        await agent.kill9()
    else:
        assert await agent.stop() == 0
    await agent.start()
    stop2 = await csms.wait_for_message(
        "StopTransaction", lambda p: p["reason"] != "EVDisconnected", since=mark
    )
    await booted(csms, 1, since=stop2.index)

    received = csms.messages(since=mark)
    assert [r.action for r in received].count("BootNotification") == 1
    assert received[0].action == "BootNotification"
    durable = [r for r in received if r.action in DURABLE]
    kinds = [r.action for r in durable]
    assert kinds.count("StartTransaction") == 2 and kinds.count("StopTransaction") == 2, kinds
    s1, e1, s2, e2 = (
        i for i, k in enumerate(kinds) if k in ("StartTransaction", "StopTransaction")
    )
    assert (s1, e2) == (0, len(kinds) - 1), kinds
    assert kinds[s1] == "StartTransaction" and kinds[e1] == "StopTransaction"
    assert kinds[s2] == "StartTransaction" and kinds[e2] == "StopTransaction"
    assert s2 == e1 + 1 and e1 - s1 >= 3 and e2 - s2 >= 3, kinds

    start1, stop1 = durable[s1].payload, durable[e1].payload
    start2, stop2p = durable[s2].payload, durable[e2].payload
    assert start1["idTag"] == "OFF-1" and start2["idTag"] == "OFF-2"
    assert stop1["reason"] == "EVDisconnected"
    # A transaction still open when the agent died is closed at the next start; SIGTERM
    # gives the agent no way to tell a shutdown from a power cut, so it may say either.
    # kill -9 leaves the session open (closed at the next start: PowerLoss); SIGTERM ends it
    # before exiting, because shutdown opens the contactor (Reboot).
    assert stop2p["reason"] == ("PowerLoss" if how == "kill9" else "Reboot")
    tx1 = stop1["transactionId"]
    tx2 = stop2p["transactionId"]
    assert tx1 != tx2
    assert all(durable[i].payload["transactionId"] == tx1 for i in range(s1 + 1, e1 + 1))
    assert all(durable[i].payload["transactionId"] == tx2 for i in range(s2 + 1, e2 + 1))
    assert csms.transactions[tx1]["idTag"] == "OFF-1"
    assert csms.transactions[tx2]["idTag"] == "OFF-2"

    # Exactly once and in the order it happened: timestamps strictly increase.
    stamps = []
    for r in durable:
        p = r.payload
        stamps.append(p["timestamp"] if "timestamp" in p else p["meterValue"][0]["timestamp"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    readings = [start1["meterStart"]]
    readings += [energy_of(sampled(durable[i].payload)) for i in range(s1 + 1, e1)]
    readings += [stop1["meterStop"], start2["meterStart"]]
    readings += [energy_of(sampled(durable[i].payload)) for i in range(s2 + 1, e2)]
    readings += [stop2p["meterStop"]]
    assert readings == sorted(readings), readings
    assert stop2p["meterStop"] > start2["meterStart"] >= stop1["meterStop"] > 0

    # (c) The meter does not restart from 0: the next session starts where the last stopped.
    state = await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    # status shows the register to 0.1 Wh, OCPP meter readings are whole Wh
    assert connector(state, 1)["energy_wh"] >= stop2p["meterStop"] - 0.5
    await agent.sim("unplug", "1")
    await agent.wait_status(status_is(1, "Available"))
    m = csms.mark()
    start3 = await start_session(agent, csms, "ONLINE-3")
    assert start3["meterStart"] >= stop2p["meterStop"]
    assert len(csms.payloads("StartTransaction", since=m)) == 1


# ------------------------------------------------------------------- second instance


async def test_second_agent_on_the_same_data_dir_refuses(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert agent.proc is not None
    second = await run_cli("run", "--config", str(agent.config_path))
    assert second.returncode == 1, second
    assert str(agent.data_dir) in second.stderr, second.stderr
    assert str(agent.proc.pid) in second.stderr, second.stderr

    # The first agent is untouched: same connection, control socket, a full session.
    assert agent.proc.returncode is None
    assert len(csms.subprotocols) == 1
    state = await agent.status()
    assert state["csms"]["connected"] is True
    mark = csms.mark()
    start = await start_session(agent, csms, "STILL-HERE")
    await agent.sim("tag", "STILL-HERE")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["reason"] == "Local"
    assert stop["transactionId"] in csms.transactions
    assert start["idTag"] == "STILL-HERE"


# --------------------------------------------------------------------------- SIGTERM


async def test_sigterm_exits_cleanly(agent: AgentProcess, csms: LoopbackCsms) -> None:
    await start_session(agent, csms, "SIGTERM")
    state = await agent.wait_status(lambda s: connector(s, 1)["contactor_closed"])
    assert status_is(1, "Charging")(state)
    socket_path = Path(agent.tables["control"]["socket"])
    assert await asyncio.to_thread(socket_path.exists)

    mark = csms.mark()
    assert await agent.stop() == 0
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["reason"] == "Reboot"  # delivered before the exit
    assert not await asyncio.to_thread(socket_path.exists)
    await csms.wait_disconnected("CP001")
    assert csms.close_codes == [1001]  # RFC 6455 §7.4.1 "going away", not an error (1011)
    after = await run_cli("status", "--config", str(agent.config_path))
    assert after.returncode == 1
    assert "no agent answers" in after.stderr
    assert "Traceback" not in agent.log()
