"""numberPhases on the wire: a charging profile that asks for one phase moves the session
to one phase on a connector with a 1p/3p switch, and on one without, a limit in W is shared
among all three phases. The real agent on the simulator, MeterValues as the evidence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cpagent.testing import LoopbackCsms
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]

MEASURANDS = {
    "MeterValuesSampledData": "Current.Import,Power.Active.Import",
    "MeterValueSampleInterval": 1,
}


def one_phase_limit(transaction_id: int, watts: float) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 5,
            "transactionId": transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": watts, "numberPhases": 1}],
            },
        },
    }


def values(payload: dict[str, Any], measurand: str) -> dict[str | None, float]:
    """The sampled values of ``measurand`` in a MeterValues, by phase (None: the total)."""
    return {
        v.get("phase"): float(v["value"])
        for mv in payload["meterValue"]
        for v in mv["sampledValue"]
        if v.get("measurand") == measurand
    }


async def charging(agent_factory: AgentFactory, csms: LoopbackCsms, **sim: Any) -> int:
    """A session drawing up to 32 A per phase; its transactionId."""
    agent = agent_factory(sim={"ev_max_current_a": 32.0, **sim}, ocpp16=MEASURANDS)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await agent.sim("tag", "TAG-1")
    await csms.wait_for("StartTransaction", since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", since=mark)
    return max(csms.transactions)  # the loopback CSMS numbers transactions from 1


async def test_one_phase_profile_switches_the_session_to_one_phase(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    tx_id = await charging(agent_factory, csms, phase_switch=True)
    keys = await csms.call("GetConfiguration", {"key": ["ConnectorSwitch3to1PhaseSupported"]})
    assert keys["configurationKey"][0]["value"] == "true"

    mark = csms.mark()
    answer = await csms.call("SetChargingProfile", one_phase_limit(tx_id, 7360))
    assert answer == {"status": "Accepted"}
    # 7360 W on one phase at 230 V: 32 A on L1 alone.
    sample = await csms.wait_for(
        "MeterValues",
        lambda p: values(p, "Power.Active.Import").get(None) == 7360.0,
        since=mark,
    )
    assert values(sample, "Current.Import") == {"L1": 32.0}
    assert "L2" not in values(sample, "Power.Active.Import")

    # Cleared: back to three phases at the EV's 32 A.
    mark = csms.mark()
    assert await csms.call("ClearChargingProfile", {"id": 5}) == {"status": "Accepted"}
    sample = await csms.wait_for(
        "MeterValues",
        lambda p: values(p, "Power.Active.Import").get(None) == 3 * 230 * 32.0,
        since=mark,
    )
    assert values(sample, "Current.Import") == {"L1": 32.0, "L2": 32.0, "L3": 32.0}
    statuses = [p["status"] for p in csms.payloads("StatusNotification", since=mark)]
    assert "Faulted" not in statuses


async def test_without_a_phase_switch_a_watt_limit_is_shared_by_all_phases(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    tx_id = await charging(agent_factory, csms)
    keys = await csms.call("GetConfiguration", {"key": ["ConnectorSwitch3to1PhaseSupported"]})
    assert keys["configurationKey"][0]["value"] == "false"

    mark = csms.mark()
    answer = await csms.call("SetChargingProfile", one_phase_limit(tx_id, 7360))
    assert answer == {"status": "Accepted"}
    # The car charges on the three phases it is wired to: 7360 W in all, 10.67 A each.
    sample = await csms.wait_for(
        "MeterValues",
        lambda p: abs(values(p, "Power.Active.Import").get(None, 0) - 7360.0) < 1,
        since=mark,
    )
    assert values(sample, "Current.Import") == {"L1": 10.67, "L2": 10.67, "L3": 10.67}
