"""The whole agent in-process on the real-hardware backend, only the devices simulated.

The GPIO devices sit on gpiozero's ``MockFactory``; the SDM630 meter and the EVSE-DIN
board are pymodbus simulators on a Modbus TCP server in the same event loop; the CSMS is
the loopback one. The tests check what a user sees: OCPP messages on the wire, levels on
the pins and the current the EVSE board was told to offer.

The feedback contacts of the contactor (GPIO17 -> GPIO27) and the cable lock
(GPIO5 -> GPIO6) follow their outputs like working hardware, through
``MockConnectedPin``; a test breaks that wire (``Rig.unwire``) to weld a contactor or jam a
lock. Waits are bounded and event-driven: CSMS messages through ``csms.wait_for``, pins
and board registers through ``Rig.until``, which wakes on every pin change and every Modbus
request and answer (with a short poll as a backstop for in-process state that has no event).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer

from cpagent.agent import Agent
from cpagent.config import parse_config
from cpagent.hal.hardware import RealHardware
from cpagent.hal.meter_maps import MAPS
from cpagent.station import station as station_module
from cpagent.testing import LoopbackCsms
from cpagent.testing.modbus_devices import (
    SAMPLE_READINGS,
    EvseDinBoard,
    meter_device,
    set_value,
    tcp_server,
)

WAIT = 30.0
"""Upper bound for any event a test waits for; reaching it fails the test."""
STOP_S = 30.0
"""The agent's shutdown is bounded by 5 s for sessions plus 2 s for the queue (and a busy
machine)."""
WATCHED_S = WAIT
"""Bound for what the board watcher (every 0.1 s) must bring about."""
POLL_S = 0.05
"""Backstop re-check of a condition that no pin change or Modbus answer signals."""

CONTACTOR, CONTACTOR_FB = "GPIO17", "GPIO27"
LOCK, LOCK_FB = "GPIO5", "GPIO6"
LED = "GPIO22"
METER_ID, BOARD_ID = 1, 2
MAX_CURRENT_A = 16
SDM630 = MAPS["sdm630"]
START_WH = 1_234_500.0  # 1234.5 kWh: exact in the meter's float32 kWh register
STOP_WH = 1_240_250.0  # 1240.25 kWh
READING = replace(SAMPLE_READINGS["sdm630"], energy_wh=START_WH)
TAG = "TAG-GPIO-1"

Payload = dict[str, Any]


# --- the rig -------------------------------------------------------------------------------


class PinLog:
    """Every level change of every mock pin, in order, from whichever thread made it (the
    LED blinks from a gpiozero thread); each change wakes ``Rig.until`` on the loop."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []
        self.wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._guard = threading.Lock()

    def record(self, pin: str, level: bool) -> None:
        with self._guard:
            self.changes.append((pin, level))
        with contextlib.suppress(RuntimeError):  # the loop closed under a blink thread
            self._loop.call_soon_threadsafe(self.wake.set)

    def since(self, mark: int, pin: str | None = None) -> list[tuple[str, bool]]:
        with self._guard:
            return [c for c in self.changes[mark:] if pin is None or c[0] == pin]

    def mark(self) -> int:
        with self._guard:
            return len(self.changes)


class RigPin(MockConnectedPin):  # type: ignore[misc]
    """A mock pin that reports its changes to the factory's ``PinLog``; as an output with
    ``input_pin`` set it drives that input, like a relay's auxiliary contact."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self.factory.log.record(self.info.name, bool(value))
        return changed


class RigFactory(MockFactory):  # type: ignore[misc]
    def __init__(self, log: PinLog) -> None:
        super().__init__(pin_class=RigPin)
        self.log = log


@dataclass
class Rig:
    agent: Agent
    hw: RealHardware
    csms: LoopbackCsms
    server: ModbusTcpServer
    board: EvseDinBoard
    factory: RigFactory
    log: PinLog
    state_reads: int = 0
    """Reads of the board's current setting and vehicle state (registers 1000-1002) the board
    got: the board watcher polls every 0.1 s."""
    meter_reads: int = 0
    """Meter requests (the station reads the meter on every re-evaluation)."""

    def trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:  # a request: the one before it from the same poller has finished
            if pdu.dev_id == BOARD_ID and pdu.function_code == 3 and pdu.address == 1000:
                self.state_reads += 1
            elif pdu.dev_id == METER_ID:
                self.meter_reads += 1
        self.log.wake.set()
        return pdu

    def pin(self, name: str) -> Any:
        return self.factory.pin(name)

    def level(self, name: str) -> bool:
        return bool(self.pin(name).state)

    def unwire(self, output: str) -> None:
        """The feedback of ``output`` stops following it (welded or jammed contact)."""
        self.pin(output).input_pin = None

    def rewire(self, output: str, feedback: str) -> None:
        self.pin(output).input_pin = self.pin(feedback)

    @property
    def offered_a(self) -> int:
        """What the board was told to offer (register 1000; 0 = no PWM)."""
        return self.board.holding[EvseDinBoard.SET_CURRENT]

    @property
    def led(self) -> str:
        return self.hw.leds[1].pattern

    async def vehicle(self, state: str) -> None:
        await self.board.set_vehicle_state(self.server, state)

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.log.wake.clear()
                    if predicate():
                        return
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            await self.log.wake.wait()
        except TimeoutError:
            station = self.agent.station
            raise AssertionError(
                f"{what}: not within {timeout} s; last pin changes {self.log.since(0)[-12:]},"
                f" board current {self.offered_a} A,"
                f" station {station.snapshot() if station else None}"
            ) from None

    async def quiet_cycles(self, cycles: int = 3, *, station: bool = True) -> None:
        """Let the agent run ``cycles`` more board polls (and, with ``station``, as many station
        meter reads, each one made by a re-evaluation after it read the pilot), to show that
        something did *not* happen. An idle station reads the meter only every 10 s (or on a
        change): pass ``station=False`` then."""
        states, meters = self.state_reads + cycles, self.meter_reads + (cycles if station else 0)
        await self.until(
            lambda: self.state_reads >= states and self.meter_reads >= meters,
            f"{cycles} more poll cycles",
        )

    async def status(
        self,
        status: str,
        *,
        since: int,
        error_code: str = "NoError",
        timeout: float = WAIT,
        **fields: str,
    ) -> Payload:
        """The first StatusNotification of connector 1 with ``status`` after ``since``."""

        def match(p: Payload) -> bool:
            return (
                p["connectorId"] == 1
                and p["status"] == status
                and p["errorCode"] == error_code
                and all(p.get(k) == v for k, v in fields.items())
            )

        return await self.csms.wait_for("StatusNotification", match, since=since, timeout=timeout)

    async def remote_start(self) -> Payload:
        mark = self.csms.mark()
        answer = await self.csms.call(
            "RemoteStartTransaction", {"connectorId": 1, "idTag": TAG}, timeout=WAIT
        )
        assert answer == {"status": "Accepted"}
        return await self.csms.wait_for(
            "StartTransaction", lambda p: p["idTag"] == TAG, since=mark, timeout=WAIT
        )

    async def transaction_id(self) -> int:
        """The CSMS's id for the running session, once the agent has its answer."""
        station = self.agent.station
        assert station is not None
        c = station.connectors[1]
        await self.until(
            lambda: c.transaction is not None and c.transaction.transaction_id is not None,
            "the agent learns the transaction id",
        )
        assert c.transaction is not None and c.transaction.transaction_id is not None
        return c.transaction.transaction_id

    async def charging(self) -> Payload:
        """A live session: the EV plugs in and asks for energy at once (state C), then the
        CSMS starts it, so the contactor closes on the start command itself. (Going to C
        after the start relies on the board watcher: the full-session test covers that.)"""
        mark = self.csms.mark()
        await self.vehicle("B")
        await self.status("Preparing", since=mark)
        await self.vehicle("C")
        station = self.agent.station
        assert station is not None
        await self.until(lambda: station.connectors[1].pilot == "C", "the station sees state C")
        assert not self.level(CONTACTOR), "live before the session started"
        start = await self.remote_start()
        await self.status("Charging", since=mark)
        assert self.level(CONTACTOR) and self.level(CONTACTOR_FB)
        return start


def config_data(workdir: Path, csms_url: str, modbus_port: int) -> dict[str, Any]:
    return {
        "charge_point": {"id": "CP-GPIO", "vendor": "TestVendor", "model": "PiBuild"},
        "csms": {"url": csms_url, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        "storage": {"data_dir": str(workdir / "data")},
        "control": {"socket": str(workdir / "control.sock")},
        "hal": {
            "backend": "hardware",
            "buses": {"lan": {"host": "127.0.0.1", "port": modbus_port, "timeout_s": 0.3}},
            "connectors": {
                "1": {
                    "max_current_a": MAX_CURRENT_A,
                    "poll_interval_s": 0.5,
                    "meter": {"bus": "lan", "model": "sdm630", "device_id": METER_ID},
                    "pilot": {
                        "board": "evse-din",
                        "bus": "lan",
                        "device_id": BOARD_ID,
                        "state_poll_s": 0.1,
                    },
                    "contactor": {
                        "pin": CONTACTOR,
                        "feedback_pin": CONTACTOR_FB,
                        "feedback_active_high": True,
                        "settle_s": 0.05,
                    },
                    "lock": {"pin": LOCK, "feedback_pin": LOCK_FB, "settle_s": 0.05},
                    "led": {"pin": LED},
                }
            },
        },
        "logging": {"level": "DEBUG"},
        "ocpp16": {"MeterValueSampleInterval": 0},
    }


async def stopped(task: asyncio.Task[str | None]) -> str | None:
    """The agent's result once it ended after ``stop()``; a failure naming what it is stuck
    in, rather than a hung test, when it does not end."""
    done, _ = await asyncio.wait({task}, timeout=STOP_S)
    if not done:
        stuck = [
            f"{t.get_name()} at {t.get_stack(limit=1)}"
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
        ]
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
        pytest.fail(f"the agent did not stop within {STOP_S} s; tasks: {stuck}")
    return task.result()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A booted agent on connector 1 reported Available, feedback contacts following."""
    workdir = Path(tempfile.mkdtemp(prefix="cpa-gpio-", dir="/tmp"))
    log = PinLog()
    factory = RigFactory(log)
    for output, feedback in ((CONTACTOR, CONTACTOR_FB), (LOCK, LOCK_FB)):
        factory.pin(output, input_pin=factory.pin(feedback))
    board = EvseDinBoard(BOARD_ID)
    box: list[Rig] = []

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return box[0].trace(sending, pdu) if box else pdu

    try:
        async with (
            tcp_server(
                [meter_device(METER_ID, SDM630, READING), board.device()], trace_pdu=trace
            ) as (server, port),
            LoopbackCsms() as csms,
        ):
            config = parse_config(config_data(workdir, csms.url, port))
            hw = RealHardware(config.hal.hardware, pin_factory=factory)
            agent = Agent(config, hardware=hw)
            rig = Rig(agent, hw, csms, server, board, factory, log)
            box.append(rig)
            task = asyncio.create_task(agent.run(), name="agent")
            try:
                await rig.status("Available", since=0)
                yield rig
            finally:
                agent.stop()
                assert await stopped(task) is None
            # Shutdown leaves every output in its safe state.
            assert not rig.level(CONTACTOR), "contactor left closed"
            assert not rig.level(LOCK), "cable lock left engaged"
            assert not rig.level(LED), "LED left on"
            assert rig.offered_a == 0, "the board still offers current"
        assert csms.schema_errors == [], csms.schema_errors
    finally:
        factory.reset()
        shutil.rmtree(workdir, ignore_errors=True)


# --- tests ---------------------------------------------------------------------------------


async def test_full_session_follows_the_vehicle_on_the_pins(rig: Rig) -> None:
    csms = rig.csms
    assert rig.led == "on" and rig.level(LED)
    assert not rig.level(CONTACTOR) and not rig.level(LOCK) and rig.offered_a == 0

    # Plugged in (state B): Preparing, and the socket is not live.
    mark, pins = csms.mark(), rig.log.mark()
    await rig.vehicle("B")
    await rig.status("Preparing", since=mark)
    assert not rig.level(CONTACTOR)
    assert rig.offered_a == 0

    # Remote start: the session begins, the cable is locked and current offered, but the EV
    # has not asked for energy yet, so the contactor stays open.
    start = await rig.remote_start()
    assert start["connectorId"] == 1
    assert start["meterStart"] == round(START_WH)
    await rig.status("SuspendedEV", since=mark)
    assert rig.level(LOCK) and rig.level(LOCK_FB)
    await rig.until(lambda: rig.offered_a == MAX_CURRENT_A, "board offers max_current_a")
    await rig.quiet_cycles(2)
    assert rig.log.since(pins, CONTACTOR) == [], "contactor moved while the EV is in state B"
    assert "Charging" not in [p["status"] for p in csms.payloads("StatusNotification", since=mark)]

    # The EV asks for energy (state C): the contactor closes, with the lock already engaged.
    mark, pins = csms.mark(), rig.log.mark()
    await rig.vehicle("C")
    await rig.until(lambda: rig.level(CONTACTOR), "contactor closes in state C", WATCHED_S)
    await rig.status("Charging", since=mark)
    assert rig.level(CONTACTOR_FB)
    assert rig.level(LOCK), "contactor closed without the cable locked"
    lock_changes = [c for c in rig.log.since(0) if c[0] in (LOCK, CONTACTOR)]
    assert lock_changes[:2] == [(LOCK, True), (CONTACTOR, True)], lock_changes

    # Energy flows; the EV pauses (back to B): the contactor opens, SuspendedEV.
    await set_value(rig.server, METER_ID, SDM630.energy_import_wh, STOP_WH)
    mark = csms.mark()
    await rig.vehicle("B")
    await rig.until(lambda: not rig.level(CONTACTOR), "contactor opens in state B", WATCHED_S)
    await rig.status("SuspendedEV", since=mark)
    assert rig.offered_a == MAX_CURRENT_A, "a pause keeps the PWM on"
    assert rig.level(LOCK)

    # Unplugged (state A): the session ends at the meter's reading, everything released.
    tx_id = await rig.transaction_id()
    mark = csms.mark()
    await rig.vehicle("A")
    stop = await csms.wait_for("StopTransaction", since=mark, timeout=WAIT)
    assert stop["transactionId"] == tx_id
    assert stop["meterStop"] == round(STOP_WH)
    assert stop["reason"] == "EVDisconnected"
    await rig.status("Available", since=mark)
    await rig.until(lambda: not rig.level(LOCK), "cable lock released")
    assert not rig.level(CONTACTOR) and not rig.level(CONTACTOR_FB)
    assert rig.offered_a == 0
    assert not rig.level(LOCK_FB)


async def test_welded_contactor_is_reported_and_the_ev_told_to_stop(rig: Rig) -> None:
    csms = rig.csms
    await rig.charging()
    tx_id = await rig.transaction_id()

    # The main contacts weld: the output may drop, the auxiliary contact stays closed.
    rig.unwire(CONTACTOR)
    rig.pin(CONTACTOR_FB).drive_high()
    mark = csms.mark()
    answer = await csms.call("RemoteStopTransaction", {"transactionId": tx_id}, timeout=WAIT)
    assert answer == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction", since=mark, timeout=WAIT)
    assert stop["transactionId"] == tx_id and stop["reason"] == "Remote"
    faulted = await rig.status(
        "Faulted",
        since=mark,
        error_code="PowerSwitchFailure",
        vendorErrorCode="ContactorWelded",
    )
    assert faulted["info"].startswith(f"contactor relay on {CONTACTOR}"), faulted
    assert not rig.level(CONTACTOR), "the relay must still be commanded open"
    assert rig.offered_a == 0, "the EV must be told to stop (no PWM)"
    assert rig.led == "fast"

    # Still welded a while later: nothing but the contact opening clears the fault.
    await rig.quiet_cycles(3, station=False)
    assert csms.payloads("StatusNotification", since=mark)[-1]["status"] == "Faulted"
    assert rig.led == "fast"

    # The contact opens after all: the connector leaves Faulted (EV still plugged: Finishing).
    mark = csms.mark()
    rig.pin(CONTACTOR_FB).drive_low()
    rig.rewire(CONTACTOR, CONTACTOR_FB)
    await rig.status("Finishing", since=mark)
    assert not rig.level(CONTACTOR) and rig.offered_a == 0

    mark = csms.mark()
    await rig.vehicle("A")
    await rig.status("Available", since=mark)
    await rig.until(lambda: not rig.level(LOCK), "cable lock released on unplug")


@pytest.fixture
def no_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The station's idle re-evaluation (every 10 s) never comes: what is reported was
    reported by an event. Request it before ``rig``, so the agent starts without it."""
    monkeypatch.setattr(station_module, "POLL_IDLE_S", 3600.0)


async def test_weld_while_idle_is_seen_between_commands(no_idle_poll: None, rig: Rig) -> None:
    csms = rig.csms
    # Let the relay's settle time after start-up pass: GpioContactor.verify ignores the
    # feedback for settle_s after the last command, and building the relay counts as one.
    await rig.quiet_cycles(2, station=False)
    mark = csms.mark()
    rig.unwire(CONTACTOR)
    rig.pin(CONTACTOR_FB).drive_high()
    # Without the idle poll, only the feedback listener can report this.
    await rig.status(
        "Faulted",
        since=mark,
        error_code="PowerSwitchFailure",
        vendorErrorCode="ContactorWelded",
    )
    assert not rig.level(CONTACTOR)

    # A faulted connector refuses a session.
    answer = await csms.call(
        "RemoteStartTransaction", {"connectorId": 1, "idTag": TAG}, timeout=WAIT
    )
    assert answer == {"status": "Rejected"}

    mark = csms.mark()
    rig.pin(CONTACTOR_FB).drive_low()
    rig.rewire(CONTACTOR, CONTACTOR_FB)
    await rig.status("Available", since=mark)
    assert csms.payloads("StartTransaction") == []


async def test_lock_that_does_not_engage_keeps_the_supply_off(rig: Rig) -> None:
    csms = rig.csms
    rig.unwire(LOCK)  # the actuator moves, the latch does not: its switch stays open
    mark = csms.mark()
    await rig.vehicle("B")
    await rig.status("Preparing", since=mark)
    await rig.remote_start()
    await rig.status(
        "Faulted",
        since=mark,
        error_code="ConnectorLockFailure",
        vendorErrorCode="LockNotEngaged",
    )
    assert not rig.level(LOCK_FB)

    # Even with the EV asking for energy, nothing is switched on.
    await rig.vehicle("C")
    station = rig.agent.station
    assert station is not None
    await rig.until(lambda: station.connectors[1].pilot == "C", "the station sees state C")
    await rig.quiet_cycles(2)
    assert rig.log.since(0, CONTACTOR) == [], "the contactor moved although the lock failed"
    offers = [w for w in rig.board.bus_writes if w[0] == EvseDinBoard.SET_CURRENT and w[1] != 0]
    assert offers == [], "the board was told to offer current"
    assert rig.offered_a == 0
    statuses = [p["status"] for p in csms.payloads("StatusNotification", since=mark)]
    assert "Charging" not in statuses and statuses[-1] == "Faulted", statuses


async def test_led_shows_the_connector_status(rig: Rig) -> None:
    csms = rig.csms
    assert rig.led == "on" and rig.level(LED)

    mark = csms.mark()
    await rig.vehicle("B")
    await rig.status("Preparing", since=mark)
    assert rig.led == "slow"

    await rig.vehicle("C")
    station = rig.agent.station
    assert station is not None
    await rig.until(lambda: station.connectors[1].pilot == "C", "the station sees state C")
    assert rig.led == "slow"
    await rig.remote_start()
    await rig.status("Charging", since=mark)
    assert rig.led == "charging"
    pins = rig.log.mark()
    # The LED blinks (its 0.5 s on / 0.5 s off is test_gpio's to check).
    await rig.until(lambda: len(rig.log.since(pins, LED)) >= 2, "charging blink")

    mark = csms.mark()
    await rig.vehicle("A")
    await rig.status("Available", since=mark)
    assert rig.led == "on" and rig.level(LED)

    # The board reports a failure of its own: Faulted, fast blink (0.1 s on / 0.1 s off).
    mark = csms.mark()
    await rig.vehicle("failure")
    await rig.status(
        "Faulted", since=mark, error_code="OtherError", vendorErrorCode="EvseBoardFailure"
    )
    assert rig.led == "fast"
    pins = rig.log.mark()
    await rig.until(lambda: len(rig.log.since(pins, LED)) >= 4, "fast blink")

    mark = csms.mark()
    await rig.vehicle("A")
    await rig.status("Available", since=mark)
    assert rig.led == "on"
    pins = rig.log.mark()
    await rig.quiet_cycles(6, station=False)  # 0.6 s: a blink left running would show
    assert rig.level(LED) and rig.log.since(pins, LED) == [], "steady on, no blink left"
