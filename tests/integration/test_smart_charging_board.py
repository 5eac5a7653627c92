"""OCPP 1.6 Smart Charging end to end on ``hal.backend = "hardware"``.

The real ``cpagent run`` process drives a simulated EVSE board over Modbus TCP (the
board and an SDM630 meter are pymodbus servers in this test's event loop). The charging
profiles the CSMS installs must reach the board's current register: at once when a
profile is set or cleared, at a schedule's period boundary without any further request,
and as "no PWM" (SuspendedEVSE) while the limit is below the 6 A a pilot can signal.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cpagent.hal.meter_maps import MAPS
from cpagent.testing import LoopbackCsms
from cpagent.testing.modbus_devices import (
    EvseDinBoard,
    PhoenixBoard,
    SimServer,
    meter_device,
    tcp_server,
)
from tests.integration.conftest import AgentProcess
from tests.integration.test_hardware_backend import (
    BOARD_ID,
    METER_ID,
    READINGS,
    hardware_agent,
    status_of,
)
from tests.integration.test_session import AgentFactory, eventually
from tests.integration.test_smart_charging import Payload, profile, set_profile

CONNECTOR_MAX_A = 32
"""The connector's ``max_current_a``: above every profile limit used here, so each limit
shows on the board as a change."""

PERIOD_S = 3
"""When the second period of the scheduled profile starts."""


@contextlib.asynccontextmanager
async def board_on_tcp(board: EvseDinBoard | PhoenixBoard) -> AsyncIterator[tuple[SimServer, int]]:
    """``board`` and an SDM630 meter on one Modbus TCP server."""
    meter = meter_device(METER_ID, MAPS["sdm630"], READINGS["sdm630"])
    async with tcp_server([meter, board.device()]) as (server, port):
        yield server, port


def board_agent(
    make: AgentFactory, port: int, board: str, max_current_a: int = CONNECTOR_MAX_A
) -> AgentProcess:
    """An agent with one connector of ``max_current_a`` behind ``board``; no card reader
    (sessions are started remotely). The connector is polled only every minute, so within
    a test only the station's own reactions change the current: to a CSMS request, to a
    board state change, or at a profile's period boundary."""
    return hardware_agent(
        make,
        {"host": "127.0.0.1", "port": port},
        tables={
            "hal.connectors.1": {"max_current_a": max_current_a, "poll_interval_s": 60},
            "hal.connectors.1.pilot": {
                "board": board,
                "bus": "line",
                "device_id": BOARD_ID,
                "state_poll_s": 0.1,
            },
        },
    )


def absolute(profile_id: int, purpose: str, periods: list[tuple[int, float]], **kw: Any) -> Payload:
    """A ``csChargingProfiles`` object in amps: Absolute, from ``start`` if given."""
    return profile(profile_id, purpose, periods, kind="Absolute", **kw)


async def accepted(csms: LoopbackCsms, connector_id: int, cs_profile: Payload) -> None:
    assert await set_profile(csms, connector_id, cs_profile) == "Accepted", cs_profile


async def remote_session(
    csms: LoopbackCsms,
    vehicle: Callable[[str], Awaitable[None]],
    offering: Callable[[], int],
    id_tag: str = "CAFE0001",
    max_current_a: int = CONNECTOR_MAX_A,
) -> int:
    """Plug (B), RemoteStartTransaction, wait until the board offers the connector's
    current, the EV asks for energy (C): Charging. Returns the CSMS transactionId, which
    the station knows by then (the Charging notification is sent after the
    StartTransaction answer arrived)."""
    mark = csms.mark()
    await vehicle("B")
    await status_of(csms, 1, "Preparing", mark)
    reply = await csms.call("RemoteStartTransaction", {"idTag": id_tag, "connectorId": 1})
    assert reply == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == id_tag
    await eventually(lambda: offering() == max_current_a, "the board offers the connector max")
    await vehicle("C")
    await status_of(csms, 1, "Charging", mark)
    (transaction_id,) = csms.transactions
    return transaction_id


def changes(values: list[int]) -> list[int]:
    """``values`` without consecutive repeats (a rewrite of the same current is no change)."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


async def test_profiles_drive_the_evse_din_current_register(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """Register 1000 follows the profiles: a TxProfile's 16 A; a scheduled profile's first
    period, then its second at the boundary with no request in between; 0 (no PWM,
    SuspendedEVSE) under a 4 A ChargePointMaxProfile; the TxProfile's limit when that one
    is cleared; the connector's maximum once every profile is cleared."""
    board = EvseDinBoard(BOARD_ID)
    async with board_on_tcp(board) as (server, port):
        agent = board_agent(agent_factory, port, "evse-din")
        await agent.start()
        await status_of(csms, 1, "Available", 0)

        def offering() -> int:
            return board.holding[EvseDinBoard.SET_CURRENT]

        def csms_requests() -> list[str]:
            calls = [f.message for f in csms.frames if f.direction == "out"]
            return [str(m[2]) for m in calls if m and m[0] == 2]

        async def vehicle(state: str) -> None:
            await board.set_vehicle_state(server, state)

        tx_id = await remote_session(csms, vehicle, offering)
        assert board.holding[EvseDinBoard.PWM_STATUS] == 2

        # A TxProfile for the running transaction: 16 A at once.
        await accepted(csms, 1, absolute(1, "TxProfile", [(0, 16)], transactionId=tx_id))
        await eventually(lambda: offering() == 16, "register 1000 takes the TxProfile's 16 A")
        assert board.holding[EvseDinBoard.SIGNALLED_CURRENT] == 16

        # A higher TxProfile whose second period starts PERIOD_S after it was set.
        writes_before = len(board.bus_writes)
        requests_before = len(csms_requests())
        begin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        boundary = begin + timedelta(seconds=PERIOD_S)
        scheduled = absolute(2, "TxProfile", [(0, 12), (PERIOD_S, 10)], stack=1, start=begin)
        await accepted(csms, 1, scheduled)
        await eventually(lambda: offering() == 12, "register 1000 takes the first period's 12 A")
        await eventually(lambda: offering() == 10, "register 1000 takes the second period's 10 A")
        seen_at = datetime.now(UTC)
        assert seen_at >= boundary, f"10 A offered at {seen_at}, before the boundary {boundary}"
        # On its own, not at the next poll (60 s after the profile came): however busy.
        assert seen_at < boundary + timedelta(seconds=30), (seen_at, boundary)
        current_writes = [
            v for a, v in board.bus_writes[writes_before:] if a == EvseDinBoard.SET_CURRENT
        ]
        assert current_writes == [12, 10], board.bus_writes[writes_before:]
        # The CSMS asked nothing more: the station changed the current on its own.
        assert csms_requests()[requests_before:] == ["SetChargingProfile"]
        state = await agent.status()
        assert state["connectors"][0]["status"] == "Charging"

        # Below 6 A: no PWM at all, and the connector is SuspendedEVSE.
        mark = csms.mark()
        await accepted(csms, 0, absolute(3, "ChargePointMaxProfile", [(0, 4)]))
        suspended = await status_of(csms, 1, "SuspendedEVSE", mark)
        assert suspended["errorCode"] == "NoError"
        await eventually(lambda: offering() == 0, "register 1000 goes to 0 (no PWM)")
        assert board.holding[EvseDinBoard.PWM_STATUS] == 1
        assert board.holding[EvseDinBoard.SIGNALLED_CURRENT] == 0
        assert not csms.payloads("StopTransaction"), "a suspension is no stop"

        # The 4 A profile gone, the TxProfile's period in force applies again.
        mark = csms.mark()
        assert await csms.call("ClearChargingProfile", {"id": 3}) == {"status": "Accepted"}
        await status_of(csms, 1, "Charging", mark)
        await eventually(lambda: offering() == 10, "register 1000 back to the TxProfile's 10 A")

        # Every profile gone: the connector's max_current_a.
        assert await csms.call("ClearChargingProfile", {}) == {"status": "Accepted"}
        await eventually(
            lambda: offering() == CONNECTOR_MAX_A, "register 1000 back to the connector max"
        )
        assert await csms.call("ClearChargingProfile", {}) == {"status": "Unknown"}

        mark = csms.mark()
        await vehicle("A")
        stop = await csms.wait_for("StopTransaction", since=mark)
        assert stop["transactionId"] == tx_id
        await eventually(lambda: offering() == 0, "the board stops offering current")
        assert await agent.stop() == 0
        # At start the power-on current became 0 and the board's own 32 A was taken back;
        # then nothing but register 1000 was written, and these are the currents, in order.
        assert board.bus_writes[:2] == [(EvseDinBoard.POWER_ON_CURRENT, 0), (1000, 0)]
        since_start = board.bus_writes[2:]
        assert {a for a, _ in since_start} == {EvseDinBoard.SET_CURRENT}
        assert changes([v for _, v in since_start]) == [
            CONNECTOR_MAX_A,
            16,
            12,
            10,
            0,
            10,
            CONNECTOR_MAX_A,
            0,
        ], board.bus_writes


async def test_profiles_drive_the_phoenix_current_register(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """On a Phoenix board the limit is holding register 22000 and "no PWM" is coil 20000
    off (22000 cannot be below 6 A there)."""
    board = PhoenixBoard(BOARD_ID)
    async with board_on_tcp(board) as (server, port):
        agent = board_agent(agent_factory, port, "phoenix")
        await agent.start()
        await status_of(csms, 1, "Available", 0)

        def offering() -> int:
            advertised = board.holding[PhoenixBoard.ADVERTISED]
            return board.holding[PhoenixBoard.MAX_CURRENT] if advertised else 0

        async def vehicle(state: str) -> None:
            await board.set_vehicle_state(server, state)

        await remote_session(csms, vehicle, offering)
        assert board.coils[PhoenixBoard.ENABLE] is True
        assert board.status == "C2"

        await accepted(csms, 1, absolute(1, "TxDefaultProfile", [(0, 16)]))
        await eventually(
            lambda: board.holding[PhoenixBoard.MAX_CURRENT] == 16,
            "register 22000 takes the TxDefaultProfile's 16 A",
        )
        await eventually(
            lambda: board.holding[PhoenixBoard.ADVERTISED] == 16, "the board advertises 16 A"
        )

        mark = csms.mark()
        await accepted(csms, 1, absolute(2, "TxDefaultProfile", [(0, 4)], stack=1))
        await status_of(csms, 1, "SuspendedEVSE", mark)
        await eventually(lambda: not board.coils[PhoenixBoard.ENABLE], "coil 20000 goes off")
        assert board.holding[PhoenixBoard.ADVERTISED] == 0
        assert board.status == "C1"

        mark = csms.mark()
        assert await csms.call("ClearChargingProfile", {"id": 2}) == {"status": "Accepted"}
        await status_of(csms, 1, "Charging", mark)
        await eventually(lambda: offering() == 16, "the board offers the 16 A limit again")
        assert board.coils[PhoenixBoard.ENABLE] is True

        # Stopped with a session running: the supply goes off on the board.
        mark = csms.mark()
        assert await agent.stop() == 0
        stop = await csms.wait_for("StopTransaction", since=mark)
        assert stop["reason"] == "Reboot"
        assert board.coils[PhoenixBoard.ENABLE] is False


async def test_a_restarted_evse_din_board_is_brought_back_to_the_profile_limit(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """Charging under a 10 A profile on a 16 A connector, the board loses power and comes
    back offering its power-on current, 32 A (this board refuses 0 there). The agent's
    next read of the board sets 10 A again and logs it; nothing above 10 A is written at
    any point, and the connector is Charging again."""
    board = EvseDinBoard(BOARD_ID, power_on_min_a=6)
    async with board_on_tcp(board) as (server, port):
        agent = board_agent(agent_factory, port, "evse-din", max_current_a=16)
        await agent.start()
        await status_of(csms, 1, "Available", 0)
        await agent.wait_log("refuses 0 as its power-on current")

        def offering() -> int:
            return board.holding[EvseDinBoard.SET_CURRENT]

        async def vehicle(state: str) -> None:
            await board.set_vehicle_state(server, state)

        tx_id = await remote_session(csms, vehicle, offering, max_current_a=16)
        await accepted(csms, 1, absolute(1, "TxProfile", [(0, 10)], transactionId=tx_id))
        await eventually(lambda: offering() == 10, "register 1000 takes the profile's 10 A")
        decided = len(board.bus_writes)

        mark = csms.mark()
        board.online = False
        await status_of(
            csms, 1, "Faulted", mark, errorCode="OtherError", vendorErrorCode="EvseBoardTimeout"
        )
        mark = csms.mark()
        board.power_on()
        assert offering() == 32 and board.signalled_a == 32
        await eventually(lambda: offering() == 10, "the board is set to 10 A again")
        assert board.signalled_a == 10
        await agent.wait_log("reads 32 A instead of 10 A; writing 10 A again")
        await status_of(csms, 1, "Charging", mark)
        written = [v for a, v in board.bus_writes[decided:] if a == EvseDinBoard.SET_CURRENT]
        assert written == [10], board.bus_writes[decided:]
        assert await agent.stop() == 0
