"""``cpagent run`` with ``hal.backend = "hardware"`` against simulated devices.

The agent is the real process; its meter and EVSE board are pymodbus servers in this
test's event loop, reached over Modbus TCP or over RTU on a pseudo-terminal null-modem,
and its card reader is a pty the test writes UIDs into. Every figure the CSMS receives
must be exactly what the simulated meter holds, encoded the way that meter model
encodes it (float32, LSW-first integers, scaled integers, 64-bit registers).
"""

from __future__ import annotations

import contextlib
import os
import pty
import tty
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from cpagent.hal.base import MeterReading
from cpagent.hal.meter_maps import MAPS, MeterMap
from cpagent.testing import LoopbackCsms
from cpagent.testing.modbus_devices import (
    SAMPLE_READINGS,
    EvseDinBoard,
    NullModem,
    meter_device,
    reading_words,
    rtu_server,
    tcp_server,
)
from tests.integration.conftest import AgentProcess, run_cli
from tests.integration.test_session import AgentFactory, eventually, sampled

MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Frequency"
MAX_CURRENT_A = 16
METER_ID, BOARD_ID = 1, 2

READINGS = SAMPLE_READINGS


def later(reading: MeterReading, wh: float = 2000.0) -> MeterReading:
    """The same meter a little later: more energy, other instantaneous values (all still
    exact in every map's encoding: energy in whole 100 Wh, power in whole 10 W)."""
    phases = len(reading.power_phase_w)
    return replace(
        reading,
        energy_wh=reading.energy_wh + wh,
        power_w=reading.power_w - 90.0,
        power_phase_w=tuple(w - 90.0 / phases for w in reading.power_phase_w),
        current_a=tuple(a - 0.5 for a in reading.current_a),
    )


# --- the bench ---------------------------------------------------------------------------


@dataclass
class Bench:
    """The simulated devices of one connector and the wire they are on."""

    server: ModbusTcpServer | ModbusSerialServer
    meter_map: MeterMap
    board: EvseDinBoard
    reader_fd: int
    meter_id: int = METER_ID

    async def show_reading(self, reading: MeterReading) -> None:
        """Write every register, the energy register last (readers key on it)."""
        words = reading_words(self.meter_map, reading)
        energy = self.meter_map.energy_import_wh
        energy_words = range(energy.address, energy.address + energy.words)
        for address in sorted(set(words) - set(energy_words)) + list(energy_words):
            await self.server.async_setValues(
                self.meter_id, energy.function, address, [words[address]]
            )

    async def vehicle(self, state: str) -> None:
        await self.board.set_vehicle_state(self.server, state)

    def card(self, uid: str) -> None:
        os.write(self.reader_fd, uid.encode() + b"\r\n")


@pytest.fixture
def reader_pty() -> Iterator[tuple[int, str]]:
    """A serial card reader: the test writes to the master, the agent opens the path."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def hardware_agent(
    make: AgentFactory,
    bus: dict[str, Any],
    *,
    model: str = "sdm630",
    reader: str | None = None,
    connectors: int = 1,
    tables: dict[str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> AgentProcess:
    agent = make(
        connectors=connectors,
        ocpp16={
            "MeterValueSampleInterval": 1,
            "MeterValuesSampledData": MEASURANDS,
            "StopTxnSampledData": "Energy.Active.Import.Register",
        },
        **kwargs,
    )
    agent.tables.pop("hal.sim")
    agent.tables["hal"] = {"backend": "hardware"}
    agent.tables["hal.buses.line"] = {"timeout_s": 0.3, **bus}
    for cid in range(1, connectors + 1):
        agent.tables[f"hal.connectors.{cid}"] = {
            "max_current_a": MAX_CURRENT_A,
            "poll_interval_s": 0.5,
        }
        agent.tables[f"hal.connectors.{cid}.meter"] = {
            "bus": "line",
            "model": model,
            "device_id": METER_ID + 10 * (cid - 1),
            "retries": 1,
        }
        agent.tables[f"hal.connectors.{cid}.pilot"] = {
            "board": "evse-din",
            "bus": "line",
            "device_id": BOARD_ID + 10 * (cid - 1),
            "state_poll_s": 0.1,
        }
    if reader is not None:
        agent.tables["hal.card_reader"] = {"port": reader}
    agent.tables.update(tables or {})
    agent.write()
    return agent


def values_of(payload: dict[str, Any]) -> dict[tuple[str, str | None], float]:
    return {(v["measurand"], v.get("phase")): float(v["value"]) for v in sampled(payload)}


def expected_values(reading: MeterReading) -> dict[tuple[str, str | None], float]:
    """The reading at the precision OCPP carries it: Wh, 0.1 W, 0.01 A, 0.1 V, 0.01 Hz."""
    phases = ("L1", "L2", "L3")
    assert reading.frequency_hz is not None
    want: dict[tuple[str, str | None], float] = {
        ("Energy.Active.Import.Register", None): round(reading.energy_wh),
        ("Power.Active.Import", None): round(reading.power_w, 1),
        ("Frequency", None): round(reading.frequency_hz, 2),
    }
    if len(reading.power_phase_w) > 1:
        for phase, watts in zip(phases, reading.power_phase_w, strict=False):
            want["Power.Active.Import", phase] = round(watts, 1)
    for phase, amps in zip(phases, reading.current_a, strict=False):
        want["Current.Import", phase] = round(amps, 2)
    for phase, volts in zip(phases, reading.voltage_v, strict=False):
        want["Voltage", f"{phase}-N"] = round(volts, 1)
    return want


async def status_of(csms: LoopbackCsms, cid: int, status: str, since: int, **match: str) -> Any:
    return await csms.wait_for(
        "StatusNotification",
        lambda p: (
            p["connectorId"] == cid
            and p["status"] == status
            and all(p.get(k) == v for k, v in match.items())
        ),
        since=since,
    )


async def charge(bench: Bench, csms: LoopbackCsms, id_tag: str, cid: int = 1) -> dict[str, Any]:
    """Plug (board: B), show a card, EV requests energy (C): the StartTransaction."""
    mark = csms.mark()
    await bench.vehicle("B")
    await status_of(csms, cid, "Preparing", mark)
    bench.card(id_tag)
    await csms.wait_for("Authorize", lambda p: p["idTag"] == id_tag, since=mark)
    start = await csms.wait_for("StartTransaction", since=mark)
    await eventually(
        lambda: bench.board.holding[EvseDinBoard.SET_CURRENT] == MAX_CURRENT_A,
        "the board offers the connector's current",
    )
    await bench.vehicle("C")
    await status_of(csms, cid, "Charging", mark)
    return start


async def settled_sample(csms: LoopbackCsms, energy_wh: float, since: int) -> dict[str, Any]:
    """The second MeterValues showing ``energy_wh``: read entirely after the change."""
    first = await csms.wait_for_message(
        "MeterValues",
        lambda p: values_of(p)[("Energy.Active.Import.Register", None)] == round(energy_wh),
        since=since,
    )
    return await csms.wait_for("MeterValues", since=first.index + 1)


@contextlib.asynccontextmanager
async def tcp_bench(
    meter_map: MeterMap, reading: MeterReading, reader_fd: int, board: EvseDinBoard | None = None
) -> AsyncIterator[tuple[Bench, int]]:
    board = board or EvseDinBoard(BOARD_ID)
    async with tcp_server([meter_device(METER_ID, meter_map, reading), board.device()]) as (
        server,
        port,
    ):
        yield Bench(server, meter_map, board, reader_fd), port


# --- a full session per meter map ------------------------------------------------------------


@pytest.mark.parametrize("model", ["sdm630", "sdm120", "abb_b23", "em340"])
async def test_a_session_carries_the_meters_exact_readings(
    model: str,
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    reader_pty: tuple[int, str],
) -> None:
    master, reader_path = reader_pty
    meter_map, reading = MAPS[model], READINGS[model]
    async with tcp_bench(meter_map, reading, master) as (bench, port):
        agent = hardware_agent(
            agent_factory,
            {"host": "127.0.0.1", "port": port},
            model=model,
            reader=reader_path,
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)

        mark = csms.mark()
        start = await charge(bench, csms, "CAFE0001")
        assert start["meterStart"] == round(reading.energy_wh)
        assert start["idTag"] == "CAFE0001"
        sample = await settled_sample(csms, reading.energy_wh, mark)
        assert values_of(sample) == expected_values(reading)
        units = {v["measurand"]: v.get("unit") for v in sampled(sample)}
        assert units == {
            "Energy.Active.Import.Register": "Wh",
            "Power.Active.Import": "W",
            "Current.Import": "A",
            "Voltage": "V",
            "Frequency": None,
        }

        end = later(reading)
        await bench.show_reading(end)
        sample = await settled_sample(csms, end.energy_wh, mark)
        assert values_of(sample) == expected_values(end)

        stop_mark = csms.mark()
        await bench.vehicle("A")
        stop = await csms.wait_for("StopTransaction", since=stop_mark)
        assert stop["meterStop"] == round(end.energy_wh)
        assert stop["reason"] == "EVDisconnected"
        assert stop["transactionId"] == sample["transactionId"]
        await status_of(csms, 1, "Available", stop_mark)
        await eventually(
            lambda: bench.board.holding[EvseDinBoard.SET_CURRENT] == 0,
            "the board stops offering current",
        )
        state = await agent.status()
        assert state["hardware"]["connectors"]["1"]["board"]["state"] == "A"
        assert state["hardware"]["buses"]["line"]["requests"] > 0
        shown = await run_cli("status", "--config", str(agent.config_path))
        assert shown.returncode == 0, shown
        assert f"meter {model} id 1 on 127.0.0.1:{port}" in shown.stdout
        assert "board evse-din id 2 (state A, firmware 17)" in shown.stdout
        assert "pilot A  offering 0 A  contactor open" in shown.stdout


async def test_a_user_defined_map_reads_like_the_shipped_one(
    agent_factory: AgentFactory, csms: LoopbackCsms, reader_pty: tuple[int, str]
) -> None:
    """The EM340 written out in the config (as config/tcp-meter.toml does) gives the same
    figures as the shipped em340 map."""
    master, reader_path = reader_pty
    shipped = MAPS["em340"]

    def register(reg: Any) -> dict[str, Any]:
        return {
            "function": reg.function,
            "address": reg.address,
            "type": reg.type,
            "word_order": reg.word_order,
            "scale": reg.scale,
        }

    user_map = {
        "phases": 3,
        "energy_import_wh": register(shipped.energy_import_wh),
        "power_w": register(shipped.power_w),
        "power_phase_w": [register(r) for r in shipped.power_phase_w],
        "current_a": [register(r) for r in shipped.current_a],
        "voltage_v": [register(r) for r in shipped.voltage_v],
        "frequency_hz": register(shipped.frequency_hz),
    }
    reading = READINGS["em340"]
    async with tcp_bench(shipped, reading, master) as (bench, port):
        agent = hardware_agent(
            agent_factory,
            {"host": "127.0.0.1", "port": port},
            model="my_meter",
            reader=reader_path,
            tables={"hal.meter_maps.my_meter": user_map},
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)
        mark = csms.mark()
        start = await charge(bench, csms, "CAFE0002")
        assert start["meterStart"] == round(reading.energy_wh)
        sample = await settled_sample(csms, reading.energy_wh, mark)
        assert values_of(sample) == expected_values(reading)


# --- how the board is written -----------------------------------------------------------------


async def test_a_board_that_implements_only_fc16_gets_the_current(
    agent_factory: AgentFactory, csms: LoopbackCsms, reader_pty: tuple[int, str]
) -> None:
    """Some EVSE-DIN boards answer Write Single Register (FC06) with exception 1; evcc and
    openWB write with FC16, and so does the agent: the session gets its current."""
    master, reader_path = reader_pty
    board = EvseDinBoard(BOARD_ID, write_functions=frozenset({16}))
    async with tcp_bench(MAPS["sdm630"], READINGS["sdm630"], master, board) as (bench, port):
        agent = hardware_agent(
            agent_factory, {"host": "127.0.0.1", "port": port}, reader=reader_path
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)
        await charge(bench, csms, "CAFE0001")
        assert board.signalled_a == MAX_CURRENT_A
        assert board.rejected == []


async def test_a_board_that_refuses_every_write_is_faulted_and_left_alone(
    agent_factory: AgentFactory, csms: LoopbackCsms, reader_pty: tuple[int, str]
) -> None:
    """A board that takes neither write code: the session's start makes the connector
    Faulted (OtherError, EvseBoardWriteFailed), logged as a pilot fault; after three failed
    writes the fault is lasting and the board is not written any more, while it is still
    read and the session still metered."""
    master, reader_path = reader_pty
    board = EvseDinBoard(BOARD_ID, power_on_current_a=0, write_functions=frozenset())
    async with tcp_bench(MAPS["sdm630"], READINGS["sdm630"], master, board) as (bench, port):
        agent = hardware_agent(
            agent_factory, {"host": "127.0.0.1", "port": port}, reader=reader_path
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)
        mark = csms.mark()
        await bench.vehicle("B")
        await status_of(csms, 1, "Preparing", mark)
        bench.card("CAFE0001")
        await csms.wait_for("StartTransaction", since=mark)
        await status_of(
            csms, 1, "Faulted", mark, errorCode="OtherError", vendorErrorCode="EvseBoardWriteFailed"
        )
        await agent.wait_log("connector 1: pilot fault: EVSE-DIN board 2")
        await agent.wait_log("(3 times in a row) (EvseBoardWriteFailed); cannot switch the PWM off")
        refused = len(board.rejected)
        since = csms.mark()
        for _ in range(3):  # a few seconds of board reads (every 0.1 s) and station polls
            since = (await csms.wait_for_message("MeterValues", since=since)).index + 1
        assert len(board.rejected) == refused
        assert board.holding[EvseDinBoard.SET_CURRENT] == 0
        state = await agent.status()
        assert state["connectors"][0]["status"] == "Faulted"
        assert "relay fault" not in agent.log()


# --- RTU: two connectors on one line, and the faults ------------------------------------------


@contextlib.asynccontextmanager
async def rtu_bench(
    modem: NullModem, reader_fd: int, connectors: int = 1, **server: Any
) -> AsyncIterator[list[Bench]]:
    meter_map = MAPS["sdm630"]
    boards = [EvseDinBoard(BOARD_ID + 10 * i) for i in range(connectors)]
    readings = [later(READINGS["sdm630"], 100_000.0 * i) for i in range(connectors)]
    devices = []
    for i, board in enumerate(boards):
        devices += [meter_device(METER_ID + 10 * i, meter_map, readings[i]), board.device()]
    async with rtu_server(modem, devices, **server) as srv:
        yield [
            Bench(srv, meter_map, board, reader_fd, meter_id=METER_ID + 10 * i)
            for i, board in enumerate(boards)
        ]


async def test_two_connectors_share_one_rs485_line(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    null_modem: NullModem,
    reader_pty: tuple[int, str],
) -> None:
    master, reader_path = reader_pty
    async with rtu_bench(null_modem, master, connectors=2) as (one, two):
        agent = hardware_agent(
            agent_factory,
            {"port": null_modem.path_b, "baudrate": 9600},
            reader=reader_path,
            connectors=2,
        )
        await agent.start()
        await status_of(csms, 2, "Available", 0)
        mark = csms.mark()
        first = await charge(one, csms, "CAFE0001", cid=1)
        second = await charge(two, csms, "CAFE0002", cid=2)
        assert first["connectorId"] == 1 and second["connectorId"] == 2
        assert first["meterStart"] == round(READINGS["sdm630"].energy_wh)
        assert second["meterStart"] == round(READINGS["sdm630"].energy_wh + 100_000.0)

        for bench, cid, extra in ((one, 1, 500.0), (two, 2, 1000.0)):
            reading = later(READINGS["sdm630"], 100_000.0 * (cid - 1) + extra)
            await bench.show_reading(reading)
            sample = await csms.wait_for(
                "MeterValues",
                lambda p, cid=cid, r=reading: (
                    p["connectorId"] == cid
                    and values_of(p)[("Energy.Active.Import.Register", None)] == round(r.energy_wh)
                ),
                since=mark,
            )
            assert values_of(sample) == expected_values(reading)

        stop_mark = csms.mark()
        await two.vehicle("A")
        stop = await csms.wait_for("StopTransaction", since=stop_mark)
        assert stop["meterStop"] == round(READINGS["sdm630"].energy_wh + 101_000.0)
        state = await agent.status()
        assert [c["status"] for c in state["connectors"]] == ["Charging", "Available"]


class ExceptionInjector:
    """A ``trace_pdu`` hook that turns the meter's answers into exception replies."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self.code: int | None = None

    def __call__(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending and self.code is not None and pdu.dev_id == self.device_id:
            return ExceptionResponse(
                pdu.function_code, self.code, device_id=pdu.dev_id, transaction=pdu.transaction_id
            )
        return pdu


async def test_meter_faults_and_recovery_during_a_session(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    null_modem: NullModem,
    reader_pty: tuple[int, str],
) -> None:
    """Each meter fault makes the connector Faulted with PowerMeterFailure and a vendor code
    naming the cause; when the meter answers again the session carries on, its meter values
    resume, and the stop carries the meter's real reading."""
    master, reader_path = reader_pty
    inject = ExceptionInjector(METER_ID)
    async with rtu_bench(null_modem, master, trace_pdu=inject) as (bench,):
        agent = hardware_agent(
            agent_factory, {"port": null_modem.path_b, "baudrate": 9600}, reader=reader_path
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)
        start = await charge(bench, csms, "CAFE0001")
        reading = READINGS["sdm630"]

        async def fault_and_recover(vendor_code: str, cause: Any, cure: Any) -> None:
            mark = csms.mark()
            await cause()
            faulted = await status_of(
                csms, 1, "Faulted", mark, errorCode="PowerMeterFailure", vendorErrorCode=vendor_code
            )
            assert faulted.get("info"), faulted
            mark = csms.mark()
            await cure()
            await status_of(csms, 1, "Charging", mark)
            await csms.wait_for("MeterValues", since=mark)

        async def silence() -> None:
            null_modem.device_ids = {BOARD_ID}

        async def speak() -> None:
            null_modem.device_ids = {METER_ID, BOARD_ID}

        await fault_and_recover("ModbusTimeout", silence, speak)

        async def garble() -> None:
            null_modem.garble_ids = {METER_ID}

        async def clean() -> None:
            null_modem.garble_ids = set()

        # pymodbus drops a frame whose CRC does not match, so a garbled answer is no answer.
        await fault_and_recover("ModbusTimeout", garble, clean)

        async def refuse() -> None:
            inject.code = 4

        async def accept() -> None:
            inject.code = None

        await fault_and_recover("ModbusException4", refuse, accept)

        backwards = replace(reading, energy_wh=reading.energy_wh - 1000.0)
        forwards = later(reading, 2000.0)

        async def go_backwards() -> None:
            await bench.show_reading(backwards)

        async def go_forwards() -> None:
            await bench.show_reading(forwards)

        await fault_and_recover("ImplausibleEnergy", go_backwards, go_forwards)

        async def bad_frequency() -> None:
            await bench.show_reading(replace(forwards, frequency_hz=70.0))

        async def good_frequency() -> None:
            await bench.show_reading(forwards)

        await fault_and_recover("ImplausibleFrequency", bad_frequency, good_frequency)

        mark = csms.mark()
        await bench.vehicle("A")
        stop = await csms.wait_for("StopTransaction", since=mark)
        assert (
            stop["transactionId"] == (await csms.wait_for("MeterValues", since=0))["transactionId"]
        )
        assert stop["meterStop"] == round(forwards.energy_wh)
        assert len(csms.payloads("StartTransaction")) == 1
        assert start["meterStart"] == round(reading.energy_wh)


async def test_board_faults_and_state_changes_drive_the_connector(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    null_modem: NullModem,
    reader_pty: tuple[int, str],
) -> None:
    master, reader_path = reader_pty
    async with rtu_bench(null_modem, master) as (bench,):
        agent = hardware_agent(
            agent_factory, {"port": null_modem.path_b, "baudrate": 9600}, reader=reader_path
        )
        await agent.start()
        await status_of(csms, 1, "Available", 0)

        mark = csms.mark()
        await bench.vehicle("failure")
        await status_of(
            csms, 1, "Faulted", mark, errorCode="OtherError", vendorErrorCode="EvseBoardFailure"
        )
        await bench.vehicle("A")
        await status_of(csms, 1, "Available", mark)

        mark = csms.mark()
        bench.board.online = False
        await status_of(
            csms, 1, "Faulted", mark, errorCode="OtherError", vendorErrorCode="EvseBoardTimeout"
        )
        bench.board.online = True
        await status_of(csms, 1, "Available", mark)

        mark = csms.mark()
        await bench.vehicle("B")
        await status_of(csms, 1, "Preparing", mark)
        await bench.vehicle("A")
        await status_of(csms, 1, "Available", mark)


async def test_a_reader_that_goes_away_faults_the_charger(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path
) -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    link = workdir / "ttyRFID"
    link.symlink_to(os.ttyname(slave))
    board = EvseDinBoard(BOARD_ID)
    reading = READINGS["sdm630"]
    async with tcp_server([meter_device(METER_ID, MAPS["sdm630"], reading), board.device()]) as (
        _server,
        port,
    ):
        agent = hardware_agent(agent_factory, {"host": "127.0.0.1", "port": port}, reader=str(link))
        await agent.start()
        await status_of(csms, 0, "Available", 0)
        assert agent.proc is not None
        fds = Path(f"/proc/{agent.proc.pid}/fd")
        tty_path = os.ttyname(slave)
        await eventually(
            lambda: any(os.path.realpath(fd) == tty_path for fd in fds.iterdir()),
            "the agent opened the reader",
        )
        mark = csms.mark()
        os.close(master)
        os.close(slave)
        faulted = await status_of(csms, 0, "Faulted", mark, errorCode="ReaderFailure")
        assert faulted["vendorErrorCode"] == "ReaderDisconnected"
        await status_of(csms, 1, "Available", 0)  # the connectors themselves are fine
        refused = await agent.sim("plug", "1", check=False)
        assert refused.returncode == 1
        assert "real hardware" in refused.stderr
        assert await agent.stop() == 0
