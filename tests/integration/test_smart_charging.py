"""OCPP 1.6 Smart Charging end to end: the real ``cpagent run`` process against the loopback
CSMS, the simulated EV drawing what the pilot offers.

What the charger does with a profile is read where a CSMS reads it: the MeterValues of the
session (Current.Import per phase, Power.Active.Import, Current.Offered, sampled every
second) and its StatusNotifications; what it holds, from GetCompositeSchedule and the
answers to ClearChargingProfile. The simulated charger has 3 phases at 230 V, an EV and a
hardware maximum of 32 A. Waits are event-driven and bounded.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cpagent.store import Store
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, CsmsCallError, Received
from cpagent.timeutil import iso, parse_iso
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]
Payload = dict[str, Any]

PHASES = ("L1", "L2", "L3")
VOLTS = 230.0
W_PER_A = 3 * VOLTS  # a 3-phase connector: 690 W per ampere per phase
HARDWARE_MAX_A = 32.0
MEASURANDS = "Current.Import,Power.Active.Import,Current.Offered"
OCPP_J_ERROR_CODES = {
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
}
"""OCPP-J 1.6 §4.2.3: the only codes a CALLERROR may carry."""

TX = "TxProfile"
TX_DEFAULT = "TxDefaultProfile"
CP_MAX = "ChargePointMaxProfile"


# --------------------------------------------------------------------------- helpers


async def started(agent_factory: AgentFactory, csms: LoopbackCsms) -> AgentProcess:
    """An agent sampling the measurands every second, its EV able to draw 32 A."""
    agent = agent_factory(
        ocpp16={"MeterValueSampleInterval": 1, "MeterValuesSampledData": MEASURANDS},
        sim={"ev_max_current_a": HARDWARE_MAX_A},
    )
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return agent


def status_is(status: str) -> Callable[[Payload], bool]:
    return lambda p: p["connectorId"] == 1 and p["status"] == status


async def charging_session(agent: AgentProcess, csms: LoopbackCsms, tag: str) -> tuple[int, int]:
    """Plug in, show ``tag`` and wait until connector 1 charges with a confirmed
    transaction; return its transactionId and the cursor from before the plug-in."""
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", status_is("Preparing"), since=mark)
    await agent.sim("tag", tag)
    await csms.wait_for("StartTransaction", lambda p: p["idTag"] == tag, since=mark)
    await csms.wait_for("StatusNotification", status_is("Charging"), since=mark)
    state = await agent.wait_status(
        lambda s: (tx := s["connectors"][0]["transaction"]) is not None and tx["id"] is not None
    )
    tx_id: int = state["connectors"][0]["transaction"]["id"]
    return tx_id, mark


def profile(
    profile_id: int,
    purpose: str,
    periods: Iterable[tuple[int, float]],
    *,
    stack: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    start: datetime | None = None,
    duration: int | None = None,
    **extra: Any,
) -> Payload:
    """A csChargingProfiles object; ``periods`` as (startPeriod, limit) pairs."""
    schedule: Payload = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
    }
    if start is not None:
        schedule["startSchedule"] = iso(start)
    if duration is not None:
        schedule["duration"] = duration
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        **extra,
        "chargingSchedule": schedule,
    }


async def set_profile(csms: LoopbackCsms, connector_id: int, cs_profile: Payload) -> str:
    result = await csms.call(
        "SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": cs_profile}
    )
    assert set(result) == {"status"}, result
    status: str = result["status"]
    return status


async def clear(csms: LoopbackCsms, **criteria: Any) -> str:
    result = await csms.call("ClearChargingProfile", criteria)
    assert set(result) == {"status"}, result
    status: str = result["status"]
    return status


async def composite(
    csms: LoopbackCsms, connector_id: int, duration: int, unit: str | None = None
) -> Payload:
    request: Payload = {"connectorId": connector_id, "duration": duration}
    if unit is not None:
        request["chargingRateUnit"] = unit
    return await csms.call("GetCompositeSchedule", request)


def readings(payload: Payload) -> dict[tuple[str, str | None], float]:
    values = [v for mv in payload["meterValue"] for v in mv["sampledValue"]]
    return {
        (v.get("measurand", "Energy.Active.Import.Register"), v.get("phase")): float(v["value"])
        for v in values
    }


def drawn(payload: Payload) -> float:
    """The current the EV draws on L1 in a MeterValues."""
    return readings(payload)[("Current.Import", "L1")]


def sampled_at(payload: Payload) -> datetime:
    return parse_iso(payload["meterValue"][0]["timestamp"])


def check_sample(payload: Payload, amps: float) -> None:
    """The EV draws ``amps`` on every phase, which is what the pilot offers, and the power
    is 3 x 230 V x ``amps``."""
    r = readings(payload)
    for phase in PHASES:
        assert r[("Current.Import", phase)] == pytest.approx(amps), payload
    assert r[("Power.Active.Import", None)] == pytest.approx(W_PER_A * amps), payload
    assert r[("Current.Offered", None)] == pytest.approx(amps), payload


def draws(amps: float) -> Callable[[Payload], bool]:
    return lambda p: drawn(p) == pytest.approx(amps)


async def wait_drawing(
    csms: LoopbackCsms, amps: float, since: int, timeout: float = WAIT_S
) -> Received:
    """The first MeterValues from ``since`` on in which the EV draws ``amps``; checked in
    full (every phase, power, offered current)."""
    found = await csms.wait_for_message("MeterValues", draws(amps), since=since, timeout=timeout)
    check_sample(found.payload, amps)
    return found


def current_steps(csms: LoopbackCsms, since: int, tx_id: int) -> list[float]:
    """The drawn current of the session's MeterValues from ``since`` on, repeats collapsed;
    every sample is checked to be consistent (phases, power, offered current)."""
    steps: list[float] = []
    for payload in csms.payloads("MeterValues", since=since):
        assert payload["transactionId"] == tx_id, payload
        amps = drawn(payload)
        check_sample(payload, amps)
        if not steps or steps[-1] != amps:
            steps.append(amps)
    return steps


def status_steps(csms: LoopbackCsms, since: int) -> list[str]:
    """Connector 1's reported statuses from ``since`` on, repeats collapsed."""
    steps: list[str] = []
    for payload in csms.payloads("StatusNotification", since=since):
        if payload["connectorId"] == 1 and (not steps or steps[-1] != payload["status"]):
            steps.append(payload["status"])
    return steps


def csms_calls_since(csms: LoopbackCsms, frame_index: int) -> list[list[Any]]:
    """CALLs the CSMS sent from ``frame_index`` on (answers to the charge point excluded)."""
    return [
        msg
        for f in csms.frames[frame_index:]
        if f.direction == "out" and (msg := f.message) is not None and msg[0] == 2
    ]


def schedule_start(text: str) -> datetime:
    """Parse a scheduleStart and check it is an instant close to now, in milliseconds."""
    start = parse_iso(text)
    assert start.microsecond % 1000 == 0, text
    assert abs((datetime.now(UTC) - start).total_seconds()) < 10, text
    return start


def periods(*items: tuple[int, float]) -> list[Payload]:
    """Composite schedule periods on 3 phases."""
    return [{"startPeriod": s, "limit": lim, "numberPhases": 3} for s, lim in items]


async def assert_healthy(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """The agent runs, answers and acts: a triggered Heartbeat arrives."""
    assert agent.proc is not None and agent.proc.returncode is None
    mark = csms.mark()
    result = await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert result == {"status": "Accepted"}
    await csms.wait_for("Heartbeat", since=mark)


# --------------------------------------------------------------------- configuration


async def test_smart_charging_configuration_keys(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await started(agent_factory, csms)
    expected = {
        "ChargeProfileMaxStackLevel": "10",
        "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
        "ChargingScheduleMaxPeriods": "48",
        "MaxChargingProfilesInstalled": "20",
    }
    result = await csms.call("GetConfiguration", {"key": [*expected, "SupportedFeatureProfiles"]})
    assert "unknownKey" not in result, result
    keys = {e["key"]: e for e in result["configurationKey"]}
    for name, value in expected.items():
        assert keys[name] == {"key": name, "readonly": True, "value": value}
    assert "SmartCharging" in keys["SupportedFeatureProfiles"]["value"].split(",")
    assert keys["SupportedFeatureProfiles"]["readonly"] is True
    # Read-only: a CSMS cannot change them.
    change = await csms.call(
        "ChangeConfiguration", {"key": "ChargeProfileMaxStackLevel", "value": "3"}
    )
    assert change == {"status": "Rejected"}
    again = await csms.call("GetConfiguration", {"key": ["ChargeProfileMaxStackLevel"]})
    assert again["configurationKey"][0]["value"] == "10"


# -------------------------------------------------------------- limits on a session


async def test_tx_profile_limits_the_ev_and_its_next_period_applies_unasked(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """The issue's acceptance criterion: a profile whose limit changes mid-transaction
    changes the current the EV draws, visible in MeterValues, with no other request."""
    agent = await started(agent_factory, csms)
    tx_id, mark = await charging_session(agent, csms, "SC-TX")
    baseline = await wait_drawing(csms, HARDWARE_MAX_A, since=mark)  # 3 x 230 V x 32 A

    # A TxProfile for another transaction is not for this one.
    other = profile(1, TX, [(0, 16)], transactionId=tx_id + 100)
    assert await set_profile(csms, 1, other) == "Rejected"

    start = datetime.now(UTC)
    # 10 s: ample for the profile to arrive on a loaded machine before its second period.
    limited = profile(1, TX, [(0, 16), (10, 10)], kind="Absolute", start=start, transactionId=tx_id)
    assert await set_profile(csms, 1, limited) == "Accepted"
    after_set = csms.mark()
    frames_after_set = len(csms.frames)

    first16 = await wait_drawing(csms, 16.0, since=baseline.index + 1)  # 11040 W
    # At most the samples taken before the profile was acted on still show 32 A.
    assert first16.index <= after_set + 2, "the limit did not apply at once"
    first10 = await wait_drawing(csms, 10.0, since=first16.index + 1)  # 6900 W
    # Nothing but the clock changed the limit: the CSMS sent no CALL since the profile.
    assert csms_calls_since(csms, frames_after_set) == []
    next10 = await wait_drawing(csms, 10.0, since=first10.index + 1)
    assert next10.payload["transactionId"] == tx_id

    assert current_steps(csms, mark, tx_id) == [32.0, 16.0, 10.0]
    boundary = parse_iso(iso(start)) + timedelta(seconds=10)
    for payload in csms.payloads("MeterValues", since=first16.index):
        if drawn(payload) == 10.0:  # never before the boundary (load can only delay it)
            assert sampled_at(payload) >= boundary - timedelta(milliseconds=10)
    assert status_steps(csms, mark) == ["Preparing", "Charging"]
    state = await agent.status()
    assert state["connectors"][0]["limit_a"] == pytest.approx(10.0)
    assert state["connectors"][0]["offered_a"] == pytest.approx(10.0)


async def test_limit_in_watts_and_suspension_below_6_amps(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)
    tx_id, mark = await charging_session(agent, csms, "SC-W")
    since = (await wait_drawing(csms, HARDWARE_MAX_A, since=mark)).index + 1

    # 6900 W on 3 phases at 230 V is 10 A per phase; a TxDefaultProfile on connector 0
    # applies to connector 1.
    assert await set_profile(csms, 0, profile(31, TX_DEFAULT, [(0, 6900)], unit="W")) == (
        "Accepted"
    )
    since = (await wait_drawing(csms, 10.0, since=since)).index + 1

    # 4 A cannot be signalled: the supply is suspended; 10 s later 6 A, the minimum, is.
    suspend = csms.mark()
    start = datetime.now(UTC)
    low = profile(32, TX, [(0, 4), (10, 6)], kind="Absolute", start=start)
    assert await set_profile(csms, 1, low) == "Accepted"
    await csms.wait_for("StatusNotification", status_is("SuspendedEVSE"), since=suspend)
    since = (await wait_drawing(csms, 0.0, since=since)).index + 1
    resumed = await csms.wait_for_message(
        "StatusNotification", status_is("Charging"), since=suspend
    )
    assert parse_iso(resumed.payload["timestamp"]) >= parse_iso(iso(start)) + timedelta(
        seconds=10
    ) - timedelta(milliseconds=10)
    since = (await wait_drawing(csms, 6.0, since=max(since, resumed.index))).index + 1

    # A higher TxProfile in W below 6 A (4000 W = 5.8 A) suspends again; clearing it
    # brings the 6 A back.
    suspend = csms.mark()
    assert await set_profile(csms, 1, profile(33, TX, [(0, 4000)], stack=1, unit="W")) == (
        "Accepted"
    )
    await csms.wait_for("StatusNotification", status_is("SuspendedEVSE"), since=suspend)
    since = (await wait_drawing(csms, 0.0, since=since)).index + 1
    state = await agent.status()
    assert state["connectors"][0]["limit_a"] == pytest.approx(4000 / W_PER_A)
    assert state["connectors"][0]["transaction"]["id"] == tx_id  # suspended, not stopped
    assert await clear(csms, id=33) == "Accepted"
    await csms.wait_for("StatusNotification", status_is("Charging"), since=suspend)
    await wait_drawing(csms, 6.0, since=since)

    assert current_steps(csms, mark, tx_id) == [32.0, 10.0, 0.0, 6.0, 0.0, 6.0]
    assert status_steps(csms, mark) == [
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "Charging",
        "SuspendedEVSE",
        "Charging",
    ]
    assert csms.payloads("StopTransaction", since=mark) == []


async def test_clear_charging_profile_criteria(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)
    tx_id, mark = await charging_session(agent, csms, "SC-CLEAR")
    await wait_drawing(csms, HARDWARE_MAX_A, since=mark)

    async def limited_to(amps: float) -> None:
        """The pilot offers ``amps`` and the composite schedule says so."""
        await agent.wait_status(lambda s: s["connectors"][0]["offered_a"] == pytest.approx(amps))
        result = await composite(csms, 1, 60)
        assert result["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, amps))

    async def installed(connector_id: int, cs_profile: Payload, amps: float) -> None:
        assert await set_profile(csms, connector_id, cs_profile) == "Accepted"
        await limited_to(amps)

    async def cleared(amps: float, **criteria: Any) -> None:
        assert await clear(csms, **criteria) == "Accepted", criteria
        assert await clear(csms, **criteria) == "Unknown", criteria
        await limited_to(amps)

    await installed(0, profile(51, TX_DEFAULT, [(0, 6900)], unit="W"), 10.0)
    await installed(1, profile(52, TX_DEFAULT, [(0, 8)], stack=2), 8.0)
    await installed(0, profile(53, CP_MAX, [(0, 20)]), 8.0)
    await installed(1, profile(54, TX_DEFAULT, [(0, 14)], stack=5), 14.0)
    since = csms.mark()
    await installed(1, profile(55, TX, [(0, 16)]), 16.0)  # a TxProfile beats TxDefaultProfiles
    await wait_drawing(csms, 16.0, since=since)
    assert {p["id"] for p in (await agent.status())["charging_profiles"]} == {51, 52, 53, 54, 55}

    await cleared(14.0, id=55)
    await cleared(8.0, stackLevel=5)
    assert await clear(csms, id=54) == "Unknown"  # gone already
    assert await clear(csms, connectorId=0, chargingProfilePurpose=TX) == "Unknown"
    await cleared(10.0, connectorId=1, chargingProfilePurpose=TX_DEFAULT)
    assert {p["id"] for p in (await agent.status())["charging_profiles"]} == {51, 53}
    since = csms.mark()
    await cleared(HARDWARE_MAX_A)  # no criteria: everything
    assert (await agent.status())["charging_profiles"] == []
    await wait_drawing(csms, HARDWARE_MAX_A, since=since)

    steps = current_steps(csms, mark, tx_id)
    assert steps[0] == HARDWARE_MAX_A and steps[-1] == HARDWARE_MAX_A, steps
    assert 16.0 in steps and set(steps) <= {32.0, 16.0, 14.0, 10.0, 8.0}, steps


# ---------------------------------------------------------------- composite schedule


async def test_composite_schedule_of_connector_and_charger(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await started(agent_factory, csms)
    s = datetime.now(UTC).replace(microsecond=0)
    # Stack level 1 on connector 1 for 60 s: 16 A, then 8 A from 30 s; after it stack level
    # 0 on connector 0 (25 A) shows through, capped by the charger's 20 A, 12 A from 100 s.
    window = profile(71, TX_DEFAULT, [(0, 16), (30, 8)], stack=1, kind="Absolute", start=s)
    window["chargingSchedule"]["duration"] = 60
    assert await set_profile(csms, 1, window) == "Accepted"
    assert await set_profile(csms, 0, profile(72, TX_DEFAULT, [(0, 25)])) == "Accepted"
    charger = profile(73, CP_MAX, [(0, 20), (100, 12)], kind="Absolute", start=s)
    assert await set_profile(csms, 0, charger) == "Accepted"

    amps = await composite(csms, 1, 150)
    assert set(amps) == {"status", "connectorId", "scheduleStart", "chargingSchedule"}, amps
    assert amps["status"] == "Accepted" and amps["connectorId"] == 1
    d = int((schedule_start(amps["scheduleStart"]) - s).total_seconds())
    assert 0 <= d < 20, amps
    assert amps["chargingSchedule"] == {
        "duration": 150,
        "startSchedule": amps["scheduleStart"],
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": periods((0, 16), (30 - d, 8), (60 - d, 20), (100 - d, 12)),
    }

    watts = await composite(csms, 1, 150, "W")
    d = int((schedule_start(watts["scheduleStart"]) - s).total_seconds())
    assert watts["chargingSchedule"]["chargingRateUnit"] == "W"
    assert watts["chargingSchedule"]["chargingSchedulePeriod"] == periods(
        (0, 11040), (30 - d, 5520), (60 - d, 13800), (100 - d, 8280)
    )

    # Connector 0: the ChargePointMaxProfile alone.
    whole = await composite(csms, 0, 150, "A")
    assert whole["status"] == "Accepted" and whole["connectorId"] == 0
    d = int((schedule_start(whole["scheduleStart"]) - s).total_seconds())
    assert whole["chargingSchedule"]["duration"] == 150
    assert whole["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, 20), (100 - d, 12))
    whole_w = await composite(csms, 0, 150, "W")
    d = int((schedule_start(whole_w["scheduleStart"]) - s).total_seconds())
    assert whole_w["chargingSchedule"]["chargingSchedulePeriod"] == periods(
        (0, 13800), (100 - d, 8280)
    )

    # A window that ends before the schedule does: the duration cuts the periods.
    short = await composite(csms, 1, 20)
    assert short["chargingSchedule"]["duration"] == 20
    assert short["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, 16))

    assert await composite(csms, 9, 150) == {"status": "Rejected"}


async def test_composite_schedule_of_recurring_and_time_bounded_profiles(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await started(agent_factory, csms)
    s = datetime.now(UTC).replace(microsecond=0)
    # Daily since yesterday at this second: 10 A, 16 A from 40 s into each day.
    daily = profile(
        75,
        TX_DEFAULT,
        [(0, 10), (40, 16)],
        kind="Recurring",
        start=s - timedelta(days=1),
        recurrencyKind="Daily",
    )
    assert await set_profile(csms, 1, daily) == "Accepted"
    # Above it, 6 A valid only from 20 s to 30 s from now.
    window = profile(
        76,
        TX_DEFAULT,
        [(0, 6)],
        stack=1,
        validFrom=iso(s + timedelta(seconds=20)),
        validTo=iso(s + timedelta(seconds=30)),
    )
    assert await set_profile(csms, 1, window) == "Accepted"
    result = await composite(csms, 1, 100)
    d = int((schedule_start(result["scheduleStart"]) - s).total_seconds())
    assert 0 <= d < 20, result
    assert result["chargingSchedule"]["chargingSchedulePeriod"] == periods(
        (0, 10), (20 - d, 6), (30 - d, 10), (40 - d, 16)
    )


async def test_composite_schedule_starts_at_the_request_instant(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """A ChargePointMaxProfile that began within the current second caps the schedule from
    its first period: the schedule starts at the request instant, to the millisecond, and
    a change the profile makes between two whole seconds is reported at the later one."""
    await started(agent_factory, csms)
    # Let a second begin, so that the profile's start and the request fall within it: a
    # schedule counted from the start of that second would begin before the profile.
    now = datetime.now(UTC)
    await asyncio.sleep(1.005 - now.microsecond / 1e6)
    began = parse_iso(iso(datetime.now(UTC)))
    cap = profile(74, CP_MAX, [(0, 20), (30, 12)], kind="Absolute", start=began)
    assert await set_profile(csms, 0, cap) == "Accepted"

    result = await composite(csms, 1, 60)
    start = schedule_start(result["scheduleStart"])
    assert result["chargingSchedule"]["startSchedule"] == result["scheduleStart"]
    after = (start - began).total_seconds()
    assert result["chargingSchedule"]["chargingSchedulePeriod"] == periods(
        (0, 20), (math.ceil(30 - after), 12)
    )
    assert 0 <= after < 20, result


# ---------------------------------------------------------------------- remote start


async def test_remote_start_with_a_charging_profile(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", status_is("Preparing"), since=mark)

    # §5.11: only a TxProfile, and without a transactionId.
    bad = {"idTag": "RS-BAD", "connectorId": 1}
    default = profile(40, TX_DEFAULT, [(0, 12)])
    result = await csms.call("RemoteStartTransaction", {**bad, "chargingProfile": default})
    assert result == {"status": "Rejected"}
    with_tx = profile(40, TX, [(0, 12)], transactionId=1)
    result = await csms.call("RemoteStartTransaction", {**bad, "chargingProfile": with_tx})
    assert result == {"status": "Rejected"}

    # A Relative TxProfile counts from the start of the transaction: 12 A, 9 A after 10 s.
    remote = profile(41, TX, [(0, 12), (10, 9)], stack=1)
    result = await csms.call(
        "RemoteStartTransaction", {"idTag": "RS-OK", "connectorId": 1, "chargingProfile": remote}
    )
    assert result == {"status": "Accepted"}
    start = await csms.wait_for_message("StartTransaction", since=mark)
    assert start.payload["idTag"] == "RS-OK"
    await csms.wait_for("StatusNotification", status_is("Charging"), since=mark)
    first = await wait_drawing(csms, 12.0, since=start.index)
    first9 = await wait_drawing(csms, 9.0, since=first.index + 1)
    tx_id = first9.payload["transactionId"]
    assert current_steps(csms, start.index, tx_id) == [12.0, 9.0]  # never the 32 A
    began = parse_iso(start.payload["timestamp"])
    for payload in csms.payloads("MeterValues", since=start.index):
        if drawn(payload) == 9.0:
            assert sampled_at(payload) >= began + timedelta(seconds=10) - timedelta(milliseconds=10)
    state = await agent.status()
    assert state["charging_profiles"] == [
        {"connector_id": 1, "id": 41, "purpose": TX, "stack_level": 1}
    ]
    # The composite schedule counts from the request instant; a change between two whole
    # seconds of it is reported at the later one.
    result = await composite(csms, 1, 60)
    scheduled = schedule_start(result["scheduleStart"])
    change_s = (began + timedelta(seconds=10) - scheduled).total_seconds()
    expected = periods((0, 9)) if change_s <= 0 else periods((0, 12), (math.ceil(change_s), 9))
    assert result["chargingSchedule"]["chargingSchedulePeriod"] == expected

    # The TxProfile ends with its session (§3.13.2).
    stop_mark = csms.mark()
    await agent.sim("unplug", "1")
    stop = await csms.wait_for("StopTransaction", since=stop_mark)
    assert stop["transactionId"] == tx_id
    assert await clear(csms, id=41) == "Unknown"
    assert all(p["idTag"] != "RS-BAD" for p in csms.payloads("StartTransaction"))


# ------------------------------------------------------------------------- restart


async def test_profiles_survive_a_restart_but_tx_profiles_do_not(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)
    s = datetime.now(UTC).replace(microsecond=0)
    charger = profile(61, CP_MAX, [(0, 20)], kind="Absolute", start=s)
    assert await set_profile(csms, 0, charger) == "Accepted"
    default = profile(62, TX_DEFAULT, [(0, 12), (3600, 24)], kind="Absolute", start=s)
    assert await set_profile(csms, 1, default) == "Accepted"
    tx_id, mark = await charging_session(agent, csms, "SC-R1")
    since = (await wait_drawing(csms, 12.0, since=mark)).index + 1
    assert await set_profile(csms, 1, profile(63, TX, [(0, 8)])) == "Accepted"
    await wait_drawing(csms, 8.0, since=since)

    # A power cut: the TxProfile is still on disk, and must not come back.
    await agent.kill9()
    await csms.wait_disconnected(agent.cp_id)
    store = Store(agent.data_dir)
    store.open()
    try:
        saved = json.loads(store.get_state("charging_profiles") or "[]")
    finally:
        store.close()
    assert sorted(e["csChargingProfiles"]["chargingProfileId"] for e in saved) == [61, 62, 63]

    mark = csms.mark()
    await agent.start()
    await csms.wait_for("BootNotification", since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["transactionId"] == tx_id

    amps = await composite(csms, 1, 7200)
    assert amps["status"] == "Accepted"
    d = int((schedule_start(amps["scheduleStart"]) - s).total_seconds())
    assert amps["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, 12), (3600 - d, 20))
    whole = await composite(csms, 0, 7200)
    assert whole["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, 20))
    assert await clear(csms, id=63) == "Unknown"
    assert sorted(p["id"] for p in (await agent.status())["charging_profiles"]) == [61, 62]

    # A new session is held to the TxDefaultProfile from its first sample.
    tx2, mark = await charging_session(agent, csms, "SC-R2")
    await wait_drawing(csms, 12.0, since=mark)
    assert current_steps(csms, mark, tx2) == [12.0]


# ------------------------------------------------------------------ invalid requests


async def test_invalid_profiles_are_refused_and_the_agent_carries_on(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)

    def default(**kw: Any) -> Payload:
        return profile(80, TX_DEFAULT, [(0, 16)], **kw)

    many = [(60 * i, 16) for i in range(49)]
    rejected: list[tuple[str, int, Payload]] = [
        ("stack level above ChargeProfileMaxStackLevel", 1, default(stack=11)),
        ("49 periods", 1, profile(80, TX_DEFAULT, many)),
        ("ChargePointMaxProfile on a connector", 1, profile(80, CP_MAX, [(0, 16)])),
        ("TxProfile on connector 0", 0, profile(80, TX, [(0, 16)])),
        ("TxProfile without a session", 1, profile(80, TX, [(0, 16)])),
        ("no such connector", 5, default()),
        ("Recurring without recurrencyKind", 1, default(kind="Recurring", start=datetime.now(UTC))),
        ("negative limit", 1, profile(80, TX_DEFAULT, [(0, -6)])),
        ("first period not at 0", 1, profile(80, TX_DEFAULT, [(5, 16)])),
        ("periods not increasing", 1, profile(80, TX_DEFAULT, [(0, 16), (60, 8), (60, 10)])),
    ]
    for what, connector_id, cs_profile in rejected:
        assert await set_profile(csms, connector_id, cs_profile) == "Rejected", what

    def bad_unit() -> Payload:
        p = default()
        p["chargingSchedule"]["chargingRateUnit"] = "X"
        return p

    def no_schedule() -> Payload:
        p = default()
        del p["chargingSchedule"]
        return p

    def fine_limit() -> Payload:
        return profile(80, TX_DEFAULT, [(0, 10.25)])

    errors: list[tuple[str, Payload, str]] = [
        ("chargingRateUnit X (not in the enum)", bad_unit(), "FormationViolation"),
        ("validFrom not a date", default(validFrom="not-a-date"), "FormationViolation"),
        ("validTo yesterday", default(validTo="yesterday"), "FormationViolation"),
        ("missing chargingSchedule", no_schedule(), "ProtocolError"),
        ("limit not a multiple of 0.1", fine_limit(), "FormationViolation"),
        ("stackLevel a string", default(stackLevel="1"), "TypeConstraintViolation"),
    ]
    for what, cs_profile, code in errors:
        with pytest.raises(CsmsCallError) as err:
            await set_profile(csms, 1, cs_profile)
        assert err.value.code == code, (what, err.value.code, err.value.description)
        assert err.value.code in OCPP_J_ERROR_CODES

    # A RemoteStartTransaction's profile is checked the same way.
    request = {
        "idTag": "RS-BAD",
        "connectorId": 1,
        "chargingProfile": default(validFrom="yesterday"),
    }
    with pytest.raises(CsmsCallError) as err:
        await csms.call("RemoteStartTransaction", request)
    assert err.value.code == "FormationViolation", err.value.description

    # None of them was installed.
    assert await clear(csms) == "Unknown"
    assert (await agent.status())["charging_profiles"] == []

    # The limits themselves are accepted.
    assert await set_profile(csms, 1, default(stack=10)) == "Accepted"
    top = profile(81, TX_DEFAULT, [(60 * i, 16) for i in range(48)], stack=9)
    assert await set_profile(csms, 1, top) == "Accepted"
    assert await clear(csms) == "Accepted"
    assert "Traceback" not in agent.log()
    await assert_healthy(agent, csms)


async def test_max_charging_profiles_installed(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await started(agent_factory, csms)
    for level in range(11):  # stack levels 0..10 on connector 1 ...
        cs_profile = profile(100 + level, TX_DEFAULT, [(0, 16)], stack=level)
        assert await set_profile(csms, 1, cs_profile) == "Accepted"
    for level in range(9):  # ... and 0..8 on connector 0: 20 in all
        cs_profile = profile(120 + level, TX_DEFAULT, [(0, 16)], stack=level)
        assert await set_profile(csms, 0, cs_profile) == "Accepted"
    assert len((await agent.status())["charging_profiles"]) == 20

    assert await set_profile(csms, 0, profile(140, CP_MAX, [(0, 20)])) == "Rejected"
    # Replacing one (same id, or same stack level and purpose) keeps the count.
    assert await set_profile(csms, 1, profile(100, TX_DEFAULT, [(0, 10)])) == "Accepted"
    assert await set_profile(csms, 0, profile(141, TX_DEFAULT, [(0, 10)], stack=8)) == ("Accepted")
    assert len((await agent.status())["charging_profiles"]) == 20
    assert await clear(csms, id=141) == "Accepted"
    assert await set_profile(csms, 0, profile(140, CP_MAX, [(0, 20)])) == "Accepted"
    await assert_healthy(agent, csms)


# ------------------------------------------------------------------ decimal limits


async def test_decimal_limits_are_accepted(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    """The schema's limit is a decimal (multipleOf 0.1): 16.0 and 6.5 are valid limits."""
    agent = await started(agent_factory, csms)
    assert await set_profile(csms, 1, profile(90, TX_DEFAULT, [(0, 16.0)])) == "Accepted"
    result = await composite(csms, 1, 60)
    assert result["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, 16))

    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", status_is("Preparing"), since=mark)
    remote = profile(91, TX, [(0, 6.5)])
    result = await csms.call(
        "RemoteStartTransaction", {"idTag": "SC-DEC", "connectorId": 1, "chargingProfile": remote}
    )
    assert result == {"status": "Accepted"}
    start = await csms.wait_for_message("StartTransaction", since=mark)
    sample = await wait_drawing(csms, 6.5, since=start.index)  # 3 x 230 V x 6.5 A = 4485 W
    assert current_steps(csms, start.index, sample.payload["transactionId"]) == [6.5]


async def test_a_schedule_starting_at_the_end_of_time_charges_at_the_hardware_limit(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """A TxDefaultProfile whose schedule starts at the calendar's last second ("never") is
    accepted and limits nothing: a session charges at the hardware's current, the composite
    schedule says so, and the station is not restarted by an overflow on the way."""
    agent = await started(agent_factory, csms)
    never = profile(
        81,
        TX_DEFAULT,
        [(0, 10), (3600, 6)],
        kind="Absolute",
        start=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    )
    assert await set_profile(csms, 1, never) == "Accepted"
    await charging_session(agent, csms, "NEVER")
    state = await agent.wait_status(lambda s: s["connectors"][0]["offered_a"] > 0)
    assert state["connectors"][0]["offered_a"] == HARDWARE_MAX_A
    amps = await composite(csms, 1, 86400)
    assert amps["status"] == "Accepted"
    assert amps["chargingSchedule"]["chargingSchedulePeriod"] == periods((0, HARDWARE_MAX_A))
    assert "restarting" not in agent.log() and "Traceback" not in agent.log()
