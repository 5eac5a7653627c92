"""EVSE board pilots against simulated boards over TCP and a pty RTU null-modem.

The board models (:mod:`cpagent.testing.modbus_devices`) keep their registers in dicts
that the tests read directly, so every check sees what the board was told. Waiting is
event-driven: a notify callback sets an Event, and ``Served`` lets a test wait until the
server has answered a number of requests (to show that nothing happened meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymodbus.pdu import ModbusPDU

from cpagent.exc import BoardFault
from cpagent.hal.base import PilotState
from cpagent.hal.evse_board import EvseDinPilot, ModbusBoardPilot, PhoenixPilot
from cpagent.hal.meter_maps import MAPS
from cpagent.hal.modbus import (
    ModbusBus,
    ModbusDeviceError,
    ModbusMeter,
    ModbusTransportError,
)
from cpagent.testing.modbus_devices import (
    SAMPLE_READINGS,
    EvseDinBoard,
    NullModem,
    PhoenixBoard,
    SimServer,
    free_port,
    meter_device,
    rtu_server,
    tcp_server,
)

TIMEOUT = 0.3
WAIT = 30.0
"""Upper bound for any event a test waits for; reaching it fails the test."""

SDM630_READING = SAMPLE_READINGS["sdm630"]


# --- infrastructure ------------------------------------------------------------------------


class Served:
    """Counts the answers a server sends; ``wait(n)`` returns once n more went out."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            self.count += 1
            for target, event in self._waiters:
                if self.count >= target:
                    event.set()
        return pdu

    async def wait(self, more: int) -> None:
        event = asyncio.Event()
        waiter = (self.count + more, event)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(WAIT):
                await event.wait()
        finally:
            self._waiters.remove(waiter)


class Watched:
    """Runs ``pilot.watch`` and records what the pilot reported at each notify."""

    def __init__(self, pilot: ModbusBoardPilot) -> None:
        self.pilot = pilot
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    def notify(self) -> None:
        outcome = self.pilot.last_state or self.pilot.last_fault
        assert outcome is not None
        self.seen.append(outcome)
        self._changed.set()

    async def next(self) -> str:
        async with asyncio.timeout(WAIT):
            await self._changed.wait()
        self._changed.clear()
        return self.seen[-1]

    @contextlib.asynccontextmanager
    async def running(self, interval_s: float = 0.01) -> AsyncIterator[Watched]:
        task = asyncio.create_task(self.pilot.watch(self.notify, interval_s))
        try:
            yield self
            if task.done():
                task.result()  # the watch must run until cancelled; surface why it ended
                raise AssertionError("watch() returned")
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=WAIT)
            assert task.done(), "watch() ignored its cancellation"
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def fault_of(call: Callable[[], Awaitable[object]]) -> BoardFault:
    with pytest.raises(BoardFault) as info:
        await call()
    return info.value


# --- the bus: single writes ------------------------------------------------------------------


async def test_bus_writes_a_register_and_a_coil_and_maps_rejections() -> None:
    board = PhoenixBoard(3)
    async with (
        tcp_server([board.device()]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        await bus.write_register(3, PhoenixBoard.MAX_CURRENT, 20)
        await bus.write_coil(3, PhoenixBoard.ENABLE, True)
        await bus.write_register(3, PhoenixBoard.ENABLE_MODE, 3)
        assert await server.async_getValues(3, 3, PhoenixBoard.MAX_CURRENT, 1) == [20]
        assert (await server.async_getValues(3, 1, PhoenixBoard.ENABLE, 2))[:2] == [True, True]
        assert board.status == "A2"
        assert await bus.read_registers(3, 3, PhoenixBoard.ADVERTISED, 1) == [20]
        await bus.write_coil(3, PhoenixBoard.ENABLE, False)
        assert board.coils[PhoenixBoard.ENABLE] is False and board.status == "A1"

        with pytest.raises(ModbusDeviceError) as rejected:
            await bus.write_register(3, PhoenixBoard.STATUS, 0x4232)  # read-only
        assert rejected.value.code == 2 and rejected.value.vendor_error_code == "ModbusException2"
        with pytest.raises(ModbusDeviceError) as rejected:
            await bus.write_register(3, PhoenixBoard.MAX_CURRENT, 64)
        assert rejected.value.code == 3
        assert "FC06 0x55f0 = 64" in str(rejected.value)
        with pytest.raises(ModbusDeviceError) as rejected:
            await bus.write_coil(3, 30000, True)
        assert rejected.value.code == 2 and "FC05 0x7530 = 1" in str(rejected.value)
        with pytest.raises(ValueError):
            await bus.write_register(3, PhoenixBoard.MAX_CURRENT, 0x10000)
        assert bus.requests == 8
    assert board.bus_writes == [(22000, 20), (20000, 1), (4000, 3), (20000, 0)]


async def test_bus_write_without_a_device_is_a_transport_error() -> None:
    async with ModbusBus.tcp("127.0.0.1", free_port(), timeout=TIMEOUT) as bus:
        with pytest.raises(ModbusTransportError):
            await bus.write_register(1, 1000, 6)
        with pytest.raises(ModbusTransportError):
            await bus.write_coil(1, 20000, True)
        assert bus.requests == 2


# --- EVSE-DIN ----------------------------------------------------------------------------------


async def test_evse_din_offers_current_and_the_board_signals_it() -> None:
    board = EvseDinBoard(2, cable_limit_a=20)
    async with (
        tcp_server([board.device()]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = EvseDinPilot(bus, 2, max_current_a=32)
        await pilot.start()
        assert pilot.firmware == "17"
        assert pilot.offered_current == 0

        await pilot.set_offered_current(16)
        assert await server.async_getValues(2, 3, 1000, 7) == [16, 16, 1, 20, 0, 17, 2]
        assert pilot.offered_current == 16

        await pilot.set_offered_current(40)  # capped by max_current_a; the cable caps 1001
        assert await server.async_getValues(2, 3, 1000, 2) == [32, 20]
        assert pilot.offered_current == 32

        await pilot.set_offered_current(12.7)
        assert board.holding[1000] == 12 and pilot.offered_current == 12

        await pilot.set_offered_current(5.9)
        assert await server.async_getValues(2, 3, 1000, 7) == [0, 0, 1, 20, 0, 17, 1]
        assert pilot.offered_current == 0

        before = bus.requests
        for bad in (-1.0, math.nan):
            with pytest.raises(ValueError):
                await pilot.set_offered_current(bad)
        assert bus.requests == before
    assert board.bus_writes == [(2000, 0), (1000, 0), (1000, 16), (1000, 32), (1000, 12), (1000, 0)]


async def test_evse_din_vehicle_states_read_as_pilot_states() -> None:
    board = EvseDinBoard(2)
    async with (
        tcp_server([board.device()]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = EvseDinPilot(bus, 2)
        assert pilot.last_state is None
        for letter in ("A", "B", "C", "D", "B", "A"):
            await board.set_vehicle_state(server, letter)
            assert await pilot.state() == PilotState(letter)
        assert pilot.last_state is PilotState.A
        await pilot.set_offered_current(10)
        assert pilot.describe() == {
            "kind": "evse-din",
            "device_id": 2,
            "bus": f"127.0.0.1:{port}",
            "firmware": "17",
            "state": "A",
            "fault": None,
            "offered_a": 10.0,
        }


async def test_evse_din_failure_and_unknown_state_are_board_faults() -> None:
    board = EvseDinBoard(2)
    async with (
        tcp_server([board.device()]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = EvseDinPilot(bus, 2)
        await board.set_vehicle_state(server, "failure")
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardFailure"
        assert fault.error_code == "OtherError"
        assert f"EVSE-DIN board 2 on 127.0.0.1:{port}" in str(fault)
        assert pilot.last_state is None and pilot.last_fault == "EvseBoardFailure"

        await board.set_register(server, EvseDinBoard.VEHICLE_STATE, 9)
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardBadState" and "state 9" in str(fault)

        await board.set_vehicle_state(server, "C")
        assert await pilot.state() is PilotState.C
        assert pilot.last_fault is None


async def test_evse_din_exception_replies_are_board_faults() -> None:
    board = EvseDinBoard(2)
    meter = meter_device(1, MAPS["sdm630"], SDM630_READING)
    async with (
        tcp_server([meter, board.device()]) as (_, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        wrong = EvseDinPilot(bus, 1)  # the meter has no register 1002
        fault = await fault_of(wrong.state)
        assert fault.vendor_error_code == "ModbusException2"
        assert bus.requests == 1  # rejections are not retried

        pilot = EvseDinPilot(bus, 2, max_current_a=90)
        await pilot.set_offered_current(16)
        fault = await fault_of(lambda: pilot.set_offered_current(90))
        assert fault.vendor_error_code == "EvseBoardWriteFailed"
        assert str(fault).startswith(f"EVSE-DIN board 2 on 127.0.0.1:{port}: cannot write 90 A")
        assert "FC16 0x03e8 = 90: device answered exception code 3" in str(fault)
        assert pilot.offered_current == 16 and board.holding[1000] == 16


async def test_evse_din_without_answer_is_a_timeout_fault_and_start_tolerates_it() -> None:
    async with ModbusBus.tcp("127.0.0.1", free_port(), timeout=TIMEOUT) as bus:
        pilot = EvseDinPilot(bus, 4, retries=1)
        await pilot.start()
        assert pilot.firmware is None
        assert bus.requests == 2
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardTimeout"
        assert "board 4 on 127.0.0.1" in str(fault) and "after 2 attempts" in str(fault)
        fault = await fault_of(lambda: pilot.set_offered_current(16))
        assert fault.vendor_error_code == "EvseBoardTimeout"
        assert pilot.offered_current == 0
        assert bus.requests == 6


def test_pilot_arguments_are_checked() -> None:
    bus = ModbusBus.tcp("127.0.0.1")
    for cls in (EvseDinPilot, PhoenixPilot):
        with pytest.raises(ValueError):
            cls(bus, 0)
        with pytest.raises(ValueError):
            cls(bus, 1, retries=-1)
        with pytest.raises(ValueError):
            cls(bus, 1, max_current_a=5)


# --- watching ----------------------------------------------------------------------------------


async def test_watch_notifies_on_state_change_fault_and_recovery() -> None:
    board = EvseDinBoard(2)
    served = Served()
    async with (
        tcp_server([board.device()], trace_pdu=served.trace) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = EvseDinPilot(bus, 2, retries=0)
        assert await pilot.state() is PilotState.A
        async with Watched(pilot).running() as watched:
            await served.wait(3)
            assert watched.seen == []  # unchanged: no notify

            await board.set_vehicle_state(server, "B")
            assert await watched.next() == "B"
            await served.wait(3)
            assert watched.seen == ["B"]

            board.online = False
            assert await watched.next() == "EvseBoardTimeout"
            await board.set_vehicle_state(server, "C")
            board.online = True
            assert await watched.next() == "C"

            await board.set_vehicle_state(server, "failure")
            assert await watched.next() == "EvseBoardFailure"
            await board.set_vehicle_state(server, "A")
            assert await watched.next() == "A"
            await served.wait(3)
        assert watched.seen == ["B", "EvseBoardTimeout", "C", "EvseBoardFailure", "A"]


async def test_watch_reports_a_first_state_and_survives_a_server_restart() -> None:
    board = EvseDinBoard(2)
    port = free_port()
    async with ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus:
        pilot = EvseDinPilot(bus, 2, retries=0)
        watched = Watched(pilot)
        async with tcp_server([board.device()], port=port) as (server, _):
            await board.set_vehicle_state(server, "B")
            await pilot.set_offered_current(16)
            async with watched.running():
                assert await watched.next() == "B"  # the first read is news
                await server.shutdown()  # type: ignore[no-untyped-call]
                assert await watched.next() == "EvseBoardTimeout"
                async with tcp_server([board.device()], port=port):
                    assert await watched.next() == "B"
                    assert await bus.read_registers(2, 3, 1000, 2) == [16, 16]
    assert watched.seen == ["B", "EvseBoardTimeout", "B"]


# --- Phoenix -----------------------------------------------------------------------------------


async def test_phoenix_start_enables_modbus_control_once_and_reads_firmware() -> None:
    board = PhoenixBoard(5, mode=1)
    async with (
        tcp_server([board.device()]) as (_, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = PhoenixPilot(bus, 5)
        await pilot.start()
        assert board.holding[4000] == 3 and pilot.firmware == "V1.4.2"
        await PhoenixPilot(bus, 5).start()  # already 3: the retentive register is not rewritten
    assert board.bus_writes == [(4000, 3)]


async def test_phoenix_offers_current_and_disables_below_6_a() -> None:
    board = PhoenixBoard(5, mode=1, cable_a=32)
    async with (
        tcp_server([board.device()]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = PhoenixPilot(bus, 5, max_current_a=32)
        await board.set_vehicle_state(server, "B")
        await pilot.set_offered_current(16)  # without start(): sets mode 3 first
        assert await server.async_getValues(5, 3, 22000, 1) == [16]
        assert board.coils[PhoenixBoard.ENABLE] is True
        assert board.status == "B2" and board.holding[PhoenixBoard.ADVERTISED] == 16
        assert await pilot.state() is PilotState.B
        assert pilot.offered_current == 16

        await pilot.set_offered_current(80)
        assert board.holding[22000] == 32 and pilot.offered_current == 32

        await pilot.set_offered_current(3)
        assert board.coils[PhoenixBoard.ENABLE] is False
        assert board.status == "B1" and board.holding[PhoenixBoard.ADVERTISED] == 0
        assert pilot.offered_current == 0
        assert pilot.describe()["kind"] == "phoenix"
    assert board.bus_writes == [
        (4000, 3),
        (22000, 16),
        (20000, 1),
        (22000, 32),
        (20000, 1),
        (20000, 0),
    ]


async def test_phoenix_caps_at_the_board_maximum() -> None:
    board = PhoenixBoard(5, mode=3, cable_a=0)
    async with (
        tcp_server([board.device()]) as (_, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = PhoenixPilot(bus, 5, max_current_a=80)
        await pilot.start()
        await pilot.set_offered_current(70)
        assert board.holding[22000] == 63 and board.holding[PhoenixBoard.ADVERTISED] == 63
        assert pilot.offered_current == 63


async def test_phoenix_states_errors_and_exception_replies() -> None:
    board = PhoenixBoard(5)
    din = EvseDinBoard(6)
    served = Served()
    async with (
        tcp_server([board.device(), din.device()], trace_pdu=served.trace) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        pilot = PhoenixPilot(bus, 5, retries=0)
        for letter in "ABCDEFA":
            await board.set_vehicle_state(server, letter)
            assert await pilot.state() is PilotState(letter)

        await board.set_register(server, PhoenixBoard.STATUS, ord("X") << 8 | ord("1"))
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardBadState" and "0x5831" in str(fault)
        await board.set_vehicle_state(server, "B")

        async with Watched(pilot).running() as watched:
            assert await watched.next() == "B"
            await board.set_error_bits(server, 1 << 4)
            assert await watched.next() == "PhoenixError0x0010"
            fault = await fault_of(pilot.state)
            assert "invalid CP value" in str(fault) and "Phoenix EV Charge Control board 5" in str(
                fault
            )
            await served.wait(3)
            await board.set_error_bits(server, 0)
            assert await watched.next() == "B"
            board.online = False
            assert await watched.next() == "EvseBoardTimeout"
            board.online = True
            assert await watched.next() == "B"
        assert watched.seen == ["B", "PhoenixError0x0010", "B", "EvseBoardTimeout", "B"]

        wrong = PhoenixPilot(bus, 6)  # an EVSE-DIN board has no register 24025
        fault = await fault_of(wrong.state)
        assert fault.vendor_error_code == "ModbusException2"


# --- one RTU line, a meter and a board ---------------------------------------------------------


async def test_meter_and_board_share_one_rtu_line(null_modem: NullModem) -> None:
    sdm630 = MAPS["sdm630"]
    gap_s = 0.005
    events: list[tuple[float, bool, int]] = []

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        events.append((time.monotonic(), sending, pdu.dev_id))
        return pdu

    board = EvseDinBoard(2, power_on_current_a=0)
    async with (
        rtu_server(
            null_modem, [meter_device(1, sdm630, SDM630_READING), board.device()], trace_pdu=trace
        ) as server,
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT, gap_s=gap_s) as bus,
    ):
        meter = ModbusMeter(sdm630, bus, 1)
        pilot = EvseDinPilot(bus, 2)
        await board.set_vehicle_state(server, "C")
        currents = [6.0, 10.0, 16.0, 0.0, 32.0, 13.0]
        results = await asyncio.gather(
            *(meter.read() for _ in range(4)),
            *(pilot.state() for _ in range(6)),
            *(pilot.set_offered_current(amps) for amps in currents),
        )
    assert results[:4] == [SDM630_READING] * 4
    assert results[4:10] == [PilotState.C] * 6
    assert board.bus_writes == [(1000, int(amps)) for amps in currents]
    assert board.holding[1001] == 13 and pilot.offered_current == 13

    assert bus.requests == 4 * len(meter.blocks) + 6 + 6 + 2  # + firmware and 2005 (unit)
    assert [sending for _, sending, _ in events] == [False, True] * bus.requests
    pairs = list(zip(events[::2], events[1::2], strict=True))
    assert all(request[2] == answer[2] for request, answer in pairs)
    assert {request[2] for request, _ in pairs} == {1, 2}
    silences = [nxt[0][0] - prev[1][0] for prev, nxt in itertools.pairwise(pairs)]
    assert min(silences) >= gap_s, min(silences)


# --- the current setting: power-on, restarts, read-back ------------------------------------


@contextlib.asynccontextmanager
async def alone_on_tcp(
    board: EvseDinBoard | PhoenixBoard, trace_pdu: Any = None
) -> AsyncIterator[tuple[SimServer, ModbusBus]]:
    """``board`` alone on a Modbus TCP server, and the bus to it."""
    async with (
        tcp_server([board.device()], trace_pdu=trace_pdu) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        yield server, bus


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The board driver's log messages containing ``text``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cpagent.hal.evse_board" and text in r.getMessage()
    ]


def current_writes(board: EvseDinBoard, since: int = 0) -> list[int]:
    return [v for a, v in board.bus_writes[since:] if a == EvseDinBoard.SET_CURRENT]


async def test_evse_din_start_stops_the_power_on_current_and_sets_none_for_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A board fresh from power-on offers its register-2000 current (32 A from the
    factory) to whatever is plugged in. Started, the agent takes that back (1000 = 0) and
    makes 0 the power-on current, so a board that restarts later offers nothing until
    told; register 2000 is EEPROM, so it is written only when it differs."""
    board = EvseDinBoard(2)
    assert board.holding[1000] == 32 and board.holding[1006] == 2  # PWM at 32 A
    async with alone_on_tcp(board) as (_, bus):
        caplog.set_level("INFO", "cpagent.hal.evse_board")
        await EvseDinPilot(bus, 2).start()
        assert board.holding[2000] == 0
        assert board.holding[1000] == 0 and board.holding[1006] == 1
        assert logged(caplog, "register 2000")
        await EvseDinPilot(bus, 2).start()
        assert board.bus_writes == [(2000, 0), (1000, 0)]

        board.online = False
        board.power_on()
        assert board.holding[1000] == 0 and board.holding[1006] == 1


async def test_evse_din_restart_is_brought_back_to_the_current_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A board that refuses 0 as its power-on current (some firmware wants 6-80 A) comes
    back from a restart offering 32 A. The watch's first read after the board answers
    again writes the current set (10 A), and says so."""
    board = EvseDinBoard(2, power_on_min_a=6)
    served = Served()
    async with alone_on_tcp(board, served.trace) as (server, bus):
        caplog.set_level("INFO", "cpagent.hal.evse_board")
        pilot = EvseDinPilot(bus, 2, retries=0)
        await pilot.start()
        assert board.holding[2000] == 32  # refused: it still powers on at 32 A
        assert logged(caplog, "32 A after a restart")
        await board.set_vehicle_state(server, "C")
        await pilot.set_offered_current(10)
        async with Watched(pilot).running() as watched:
            assert await watched.next() == "C"
            board.online = False
            assert await watched.next() == "EvseBoardTimeout"
            board.power_on()
            assert board.holding[1000] == 32
            since = len(board.bus_writes)
            assert await watched.next() == "C"
            assert board.holding[1000] == 10 and board.signalled_a == 10
            await served.wait(3)
        assert current_writes(board, since) == [10]
        assert pilot.offered_current == 10
        assert logged(caplog, "reads 32 A instead of 10 A")


async def test_evse_din_re_asserts_the_latest_decision_after_a_restart() -> None:
    """Lowered to 6 A while the board did not answer, the board that comes back is set to
    6 A, never to the 10 A it had before."""
    board = EvseDinBoard(2, power_on_min_a=6)
    async with alone_on_tcp(board) as (_, bus):
        pilot = EvseDinPilot(bus, 2, retries=0)
        await pilot.set_offered_current(10)
        board.online = False
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardTimeout"
        fault = await fault_of(lambda: pilot.set_offered_current(6))
        assert fault.vendor_error_code == "EvseBoardTimeout"
        board.power_on()
        since = len(board.bus_writes)
        assert await pilot.state() is PilotState.A
        assert board.holding[1000] == 6 and pilot.offered_current == 6
        assert current_writes(board, since) == [6]


async def test_evse_din_read_back_corrects_a_setting_changed_behind_its_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = EvseDinBoard(2)
    async with alone_on_tcp(board) as (server, bus):
        pilot = EvseDinPilot(bus, 2)
        await pilot.start()
        await pilot.set_offered_current(10)
        await board.set_register(server, EvseDinBoard.SET_CURRENT, 20)  # another master
        assert await pilot.state() is PilotState.A
        assert board.holding[1000] == 10 and pilot.offered_current == 10
        assert logged(caplog, "reads 20 A instead of 10 A")
        before = len(board.bus_writes)
        assert await pilot.state() is PilotState.A
        assert board.bus_writes[before:] == []  # agreeing: nothing written


async def test_evse_din_whose_setting_keeps_disagreeing_is_a_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A board that acknowledges every write but keeps its own current (here from its
    button) is corrected three times, then reported: EvseBoardSettingMismatch from every
    read, no current offered on request, and no more writes than an attempt to switch
    the PWM off. A restart of the board clears it."""
    board = EvseDinBoard(2)
    async with alone_on_tcp(board) as (server, bus):
        pilot = EvseDinPilot(bus, 2)
        await pilot.start()
        await pilot.set_offered_current(10)
        board.pinned_current = 16
        await board.set_register(server, EvseDinBoard.CONTROL, 0)  # the firmware applies it
        since = len(board.bus_writes)
        for _ in range(3):
            assert await pilot.state() is PilotState.A
            await pilot.set_offered_current(10)  # the same decision again counts on
        assert current_writes(board, since) == [10] * 6
        fault = await fault_of(pilot.state)
        assert fault.vendor_error_code == "EvseBoardSettingMismatch"
        assert "16 A" in str(fault) and "10 A" in str(fault)
        assert current_writes(board, since) == [10] * 6 + [0]  # supply off, tried once
        assert pilot.offered_current == 16  # what the board really offers
        assert logged(caplog, "(EvseBoardSettingMismatch); PWM switched off")

        for _ in range(3):
            assert (await fault_of(pilot.state)).vendor_error_code == "EvseBoardSettingMismatch"
        fault = await fault_of(lambda: pilot.set_offered_current(12))
        assert fault.vendor_error_code == "EvseBoardSettingMismatch"
        assert current_writes(board, since) == [10] * 6 + [0]

        board.online = False
        assert (await fault_of(pilot.state)).vendor_error_code == "EvseBoardTimeout"
        board.pinned_current = None
        board.power_on()
        assert await pilot.state() is PilotState.A
        assert board.holding[1000] == 12  # the station's latest decision
        await pilot.set_offered_current(8)
        assert board.holding[1000] == 8


# --- write function codes --------------------------------------------------------------------


async def test_evse_din_writes_with_fc16_as_evcc_and_openwb_do() -> None:
    """A board that implements only Write Multiple Registers (FC16) takes the current."""
    board = EvseDinBoard(2, write_functions=frozenset({16}))
    async with alone_on_tcp(board) as (_, bus):
        pilot = EvseDinPilot(bus, 2)
        await pilot.start()
        await pilot.set_offered_current(16)
        assert board.holding[1000] == 16 and board.signalled_a == 16
        assert pilot.offered_current == 16
    assert board.rejected == []
    assert set(board.write_codes) == {16}


async def test_evse_din_falls_back_to_the_other_write_code_on_exception_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Configured (or defaulting) to one write code, a board that answers it with
    exception 1 (illegal function) is written with the other one, from then on."""
    for board_codes, configured, other in (({6}, 16, 6), ({16}, 6, 16)):
        caplog.clear()
        board = EvseDinBoard(2, write_functions=frozenset(board_codes))
        async with alone_on_tcp(board) as (_, bus):
            pilot = EvseDinPilot(bus, 2, write_function=configured)
            await pilot.set_offered_current(16)
            await pilot.set_offered_current(10)
            assert board.holding[1000] == 10
        assert board.rejected == [(configured, 1000, 1)]
        assert set(board.write_codes) == {other}
        assert len(logged(caplog, f"writing with FC{other:02d}")) == 1


async def test_evse_din_write_that_keeps_failing_ends_in_a_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A board that refuses every write: EvseBoardWriteFailed at once, the current set is
    retried by the next reads, and after three failed writes in a row the fault is lasting
    and the board is written no more."""
    board = EvseDinBoard(2, power_on_current_a=0, write_functions=frozenset())
    async with alone_on_tcp(board) as (server, bus):
        pilot = EvseDinPilot(bus, 2)
        await pilot.start()
        await board.set_vehicle_state(server, "B")
        fault = await fault_of(lambda: pilot.set_offered_current(16))
        assert fault.vendor_error_code == "EvseBoardWriteFailed"
        assert "cannot write 16 A: register 1000 = 16: FC16 and FC06 both answered" in str(fault)
        assert board.rejected == [(16, 1000, 1), (6, 1000, 1)]
        for _ in range(2):  # two more tries by the reads, then it is lasting
            assert (await fault_of(pilot.state)).vendor_error_code == "EvseBoardWriteFailed"
        assert logged(
            caplog, "(3 times in a row) (EvseBoardWriteFailed); cannot switch the PWM off"
        )
        assert len(board.rejected) == 3 * 2 + 2  # and one attempt at 0 A
        for _ in range(5):
            fault = await fault_of(pilot.state)
            assert fault.vendor_error_code == "EvseBoardWriteFailed"
            assert "3 times in a row" in str(fault)
        fault = await fault_of(lambda: pilot.set_offered_current(16))
        assert fault.vendor_error_code == "EvseBoardWriteFailed"
        assert len(board.rejected) == 3 * 2 + 2
        assert board.holding[1000] == 0


# --- the 0.01 A mode ---------------------------------------------------------------------------


async def test_evse_din_in_0_01_a_mode_gets_the_current_in_hundredths() -> None:
    """A board with register 2005 bit 7 set (as openWB sets it) counts register 1000 in
    0.01 A: the current is scaled, and the fraction of an amp is no longer dropped."""
    board = EvseDinBoard(2, precise=True)
    async with alone_on_tcp(board) as (_, bus):
        pilot = EvseDinPilot(bus, 2, max_current_a=32)
        await pilot.start()
        await pilot.set_offered_current(16)
        assert board.holding[1000] == 1600 and board.signalled_a == 16
        assert pilot.offered_current == 16
        await pilot.set_offered_current(12.75)
        assert board.holding[1000] == 1275 and pilot.offered_current == 12.75
        await pilot.set_offered_current(40)
        assert board.holding[1000] == 3200 and pilot.offered_current == 32
        await pilot.set_offered_current(5.99)
        assert board.holding[1000] == 0 and pilot.offered_current == 0
        assert await pilot.state() is PilotState.A
        assert pilot.describe()["offered_a"] == 0

        fresh = EvseDinPilot(bus, 2)  # not started: it reads the mode before writing
        await fresh.set_offered_current(12.75)
        assert board.holding[1000] == 1275 and fresh.offered_current == 12.75
        before = len(board.bus_writes)
        assert await fresh.state() is PilotState.A
        assert board.bus_writes[before:] == []


# --- Phoenix: restart and read-back -------------------------------------------------------------


async def test_phoenix_restart_is_enabled_again_at_the_current_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After power-on a Phoenix board has charging disabled (coil 20000 off) and its own
    maximum current in 22000: the first read after it answers again restores both, and a
    22000 changed behind the driver's back is corrected by the next read."""
    board = PhoenixBoard(5, mode=3, max_current_a=32)
    async with alone_on_tcp(board) as (server, bus):
        pilot = PhoenixPilot(bus, 5, retries=0)
        await pilot.start()
        await board.set_vehicle_state(server, "C")
        await pilot.set_offered_current(10)
        assert board.status == "C2" and board.holding[PhoenixBoard.ADVERTISED] == 10
        board.online = False
        assert (await fault_of(pilot.state)).vendor_error_code == "EvseBoardTimeout"
        board.power_on()
        assert board.status == "C1" and board.holding[22000] == 32
        assert await pilot.state() is PilotState.C
        assert board.coils[PhoenixBoard.ENABLE] is True and board.holding[22000] == 10
        assert board.status == "C2" and board.holding[PhoenixBoard.ADVERTISED] == 10

        await board.set_register(server, PhoenixBoard.MAX_CURRENT, 25)
        assert await pilot.state() is PilotState.C
        assert board.holding[22000] == 10
        assert logged(caplog, "reads 25 A instead of 10 A")
