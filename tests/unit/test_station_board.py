"""The station against hardware that is slow or that fails to take a current: how it
paces its polls, and how a pilot write failure is reported and handled.

Built on the station rig of ``test_station`` (SimHardware, in-memory ports); the devices
under test wrap the simulated ones.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from cpagent.exc import BoardFault
from cpagent.hal.base import Meter, MeterReading, Pilot, PilotState
from cpagent.station import pacing
from cpagent.station import station as station_module
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    ConnectorStatus,
    StatusChanged,
    TransactionStopped,
)
from cpagent.station.pacing import Pacer
from tests.unit.fakes import FakeClock
from tests.unit.test_station import WAIT_S, RigFactory
from tests.unit.test_station import make_rig as make_rig  # the fixture, used by name
from tests.unit.test_station_smart_charging import TX_DEFAULT, profile

# --- pacing ------------------------------------------------------------------------------------


def test_pacer_waits_out_the_interval_after_a_short_cycle() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer("job", clock=clock)
    assert pacer.wait_s(1.0) == 1.0  # nothing ran yet
    pacer.started()
    clock.advance(0.25)
    assert pacer.wait_s(1.0) == 0.75


def test_pacer_starts_the_next_cycle_at_once_after_a_long_one_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(100.0)
    pacer = Pacer("connector 1: one poll", clock=clock)
    for took in (1.52, 3.0, 1.1):
        pacer.started()
        clock.advance(took)
        assert pacer.wait_s(1.0) == 0.0
    pacer.started()
    clock.advance(0.5)
    assert pacer.wait_s(1.0) == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "connector 1: one poll took 1.52 s, longer than its 1 s interval; from now on the"
        " next one starts as soon as one ends"
    ]


class CountedReads:
    """A device wrapper that counts the station's reads of it, so a test can await a number
    of polls."""

    def __init__(self) -> None:
        self.reads = 0
        self._read = asyncio.Event()

    def _counted(self) -> None:
        self.reads += 1
        self._read.set()

    async def wait_reads(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while self.reads < count:
                self._read.clear()
                await self._read.wait()


class SlowMeter(CountedReads, Meter):
    """The connector's meter, on a bus so slow that each read takes ``read_s`` on ``clock``
    (as an SDM630 read value by value at 9600 baud takes about 1.5 s)."""

    def __init__(self, inner: Meter, clock: FakeClock, read_s: float) -> None:
        super().__init__()
        self.inner, self.clock, self.read_s = inner, clock, read_s

    async def read(self) -> MeterReading:
        self.clock.advance(self.read_s)
        self._counted()
        return await self.inner.read()


async def test_polls_longer_than_the_interval_run_back_to_back_and_are_reported_once(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Charging with a 30 s poll interval, each poll takes 45 s: the station does not wait
    30 s more after each one (the polls follow each other at once), and says once, with
    the time measured, that it cannot keep the interval."""
    mono = FakeClock()
    monkeypatch.setattr(pacing, "monotonic", mono)
    monkeypatch.setattr(station_module, "POLL_IDLE_S", 30.0)
    caplog.set_level(logging.WARNING, "cpagent.station.pacing")
    rig = await make_rig(run=False)
    rig.settings.meter_value_sample_interval_s = 0
    hw = rig.hw.connectors[1]
    hw.poll_interval_s = 30.0
    meter = SlowMeter(hw.meter, mono, 45.0)
    hw.meter = meter
    await rig.run()
    await rig.start_session()
    reads = meter.reads
    await meter.wait_reads(reads + 4)
    overruns = [
        r.getMessage() for r in caplog.records if "longer than its 30 s interval" in r.getMessage()
    ]
    assert len(overruns) == 1, overruns
    assert re.fullmatch(
        r"connector 1: one poll of its meter and board took \d+\.\d\d s, longer than its 30 s"
        r" interval; from now on the next one starts as soon as one ends",
        overruns[0],
    ), overruns


async def test_idle_connectors_are_polled_at_their_hardware_s_idle_interval(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle, a simulated connector (whose devices report each change) is polled every
    60 s and one whose hardware says nothing every 10 s (the station's default); once the
    contactor closes, at the connector's poll interval."""
    asked: dict[str, list[float]] = {}
    polled = asyncio.Event()
    wait_s = Pacer.wait_s

    def spy(self: Pacer, interval_s: float) -> float:
        asked.setdefault(self.what, []).append(interval_s)
        polled.set()
        return wait_s(self, interval_s)

    monkeypatch.setattr(Pacer, "wait_s", spy)
    rig = await make_rig(2, run=False)
    rig.hw.connectors[2].idle_poll_s = None
    rig.hw.connectors[1].poll_interval_s = 2.5
    await rig.run()
    first, second = (f"connector {cid}: one poll of its meter and board" for cid in (1, 2))
    async with asyncio.timeout(WAIT_S):
        while first not in asked or second not in asked:
            polled.clear()
            await polled.wait()
    assert asked == {first: [60.0], second: [10.0]}
    await rig.start_session()
    async with asyncio.timeout(WAIT_S):
        while asked[first][-1] != 2.5:
            polled.clear()
            await polled.wait()
    assert set(asked[second]) == {10.0}


# --- a pilot that does not take the current ------------------------------------------------


class RefusingPilot(Pilot):
    """The simulated pilot behind a board that refuses current writes while ``refuse`` is
    set; like the Modbus boards it reports the failed write from every read until a write
    succeeds."""

    def __init__(self, inner: Pilot) -> None:
        self.inner = inner
        self.refuse = True
        self.failure: BoardFault | None = None

    async def set_offered_current(self, amps: float) -> None:
        if self.refuse:
            self.failure = BoardFault("board refuses the write", vendor_error_code="Refused")
            raise self.failure
        self.failure = None
        await self.inner.set_offered_current(amps)

    @property
    def offered_current(self) -> float:
        return self.inner.offered_current

    async def state(self) -> PilotState:
        if self.failure is not None:
            raise self.failure
        return await self.inner.state()


async def test_a_failed_pilot_write_is_a_pilot_fault_and_the_contactor_still_opens(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(run=False)
    hw = rig.hw.connectors[1]
    pilot = RefusingPilot(hw.pilot)
    hw.pilot = pilot
    await rig.run()
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "OtherError", since=mark)
    faulted = [
        e for e in rig.out.of(StatusChanged, since=mark) if e.status == ConnectorStatus.FAULTED
    ]
    assert faulted[0].vendor_error_code == "Refused"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("connector 1: pilot fault: board refuses") for m in messages)
    assert not any("relay fault" in m for m in messages), messages
    assert hw.contactor.closed  # the session allowed the supply; the pilot offers nothing

    tx = rig.station.connectors[1].transaction
    assert tx is not None
    rig.station.transaction_confirmed(tx.local_id, 7, AuthDecision(AuthStatus.ACCEPTED))
    mark = rig.out.mark()
    assert await rig.station.remote_stop(7)
    await rig.out.wait_for(TransactionStopped, since=mark)
    assert not hw.contactor.closed


# --- a pilot that holds the current in its own steps -------------------------------------------


class WholeAmpPilot(CountedReads, Pilot):
    """The simulated pilot behind a board that holds the current in whole amps (EVSE-DIN in
    its default mode): 12.7 A asked is 12 A held."""

    def __init__(self, inner: Pilot) -> None:
        super().__init__()
        self.inner = inner
        self.writes: list[float] = []

    async def set_offered_current(self, amps: float) -> None:
        self.writes.append(amps)
        await self.inner.set_offered_current(float(int(amps)))

    @property
    def offered_current(self) -> float:
        return self.inner.offered_current

    async def state(self) -> PilotState:
        self._counted()
        return await self.inner.state()


async def test_a_limit_the_board_rounds_is_offered_once_not_at_every_poll(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A 12.7 A profile limit on a board that holds whole amps: the board holds 12 A, which
    is what it can do; the station does not take that for a change behind its back and
    offer 12.7 A again at every poll (a write and a log line a second, for hours)."""
    caplog.set_level(logging.INFO, "cpagent.station")
    rig = await make_rig(run=False)
    hw = rig.hw.connectors[1]
    hw.poll_interval_s = 0.01
    pilot = WholeAmpPilot(hw.pilot)
    hw.pilot = pilot
    await rig.run()
    assert await rig.station.set_charging_profile(0, profile(1, TX_DEFAULT, 12.7)) is None
    await rig.start_session()
    assert pilot.writes[-1] == 12.7 and pilot.offered_current == 12.0
    writes = len(pilot.writes)
    await pilot.wait_reads(pilot.reads + 20)  # twenty polls and more
    assert pilot.writes[writes:] == []
    offers = [r.getMessage() for r in caplog.records if "instead of" in r.getMessage()]
    assert offers == []
