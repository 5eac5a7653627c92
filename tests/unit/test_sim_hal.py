"""The simulated hardware: EV physics, faults, notifications and the persisted register."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cpagent.exc import ContactorFault, HalError, MeterFault
from cpagent.hal.base import ConnectorHardware, PilotState
from cpagent.hal.sim import SimContactor, SimHardware, SimLock, SimMeter, SimPilot
from tests.unit.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hw(clock: FakeClock) -> SimHardware:
    return SimHardware(2, clock=clock)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def start_charging(hw: SimHardware, connector_id: int = 1, amps: float = 16.0) -> None:
    hw.plug(connector_id)
    await hw.pilot(connector_id).set_offered_current(amps)
    await hw.contactor(connector_id).set_closed(True)


def test_builds_connector_hardware_from_arguments(clock: FakeClock) -> None:
    hw = SimHardware(2, phases=1, max_current_a=16.0, clock=clock)
    assert sorted(hw.connectors) == [1, 2]
    conn = hw.connectors[2]
    assert isinstance(conn, ConnectorHardware)
    assert conn.connector_id == 2
    assert conn.phases == 1
    assert conn.max_current_a == 16.0
    assert isinstance(conn.meter, SimMeter)
    assert isinstance(conn.contactor, SimContactor)
    assert isinstance(conn.pilot, SimPilot)
    assert isinstance(conn.lock, SimLock)
    assert hw.card_reader is not None


async def test_empty_connector_is_state_a_and_idle(hw: SimHardware) -> None:
    assert await hw.pilot(1).state() is PilotState.A
    reading = await hw.meter(1).read()
    assert reading.power_w == 0.0
    assert reading.energy_wh == 0.0
    assert reading.current_a == (0.0, 0.0, 0.0)
    assert reading.voltage_v == (230.0, 230.0, 230.0)
    assert reading.frequency_hz == 50.0
    assert reading.soc_percent is None


async def test_plug_gives_state_b(hw: SimHardware) -> None:
    hw.plug(1)
    assert await hw.pilot(1).state() is PilotState.B
    assert await hw.pilot(2).state() is PilotState.A
    assert (await hw.meter(1).read()).soc_percent == 20.0


async def test_pwm_alone_or_contactor_alone_does_not_charge(hw: SimHardware) -> None:
    hw.plug(1)
    await hw.pilot(1).set_offered_current(16.0)
    assert await hw.pilot(1).state() is PilotState.B
    await hw.pilot(1).set_offered_current(0.0)
    await hw.contactor(1).set_closed(True)
    assert await hw.pilot(1).state() is PilotState.B
    assert (await hw.meter(1).read()).power_w == 0.0


async def test_offer_below_6_amps_is_no_pwm(hw: SimHardware) -> None:
    await start_charging(hw, amps=5.9)
    assert hw.pilot(1).offered_current == 0.0
    assert await hw.pilot(1).state() is PilotState.B


async def test_allowed_ev_goes_to_c_and_draws_power(hw: SimHardware) -> None:
    await start_charging(hw, amps=16.0)
    assert await hw.pilot(1).state() is PilotState.C
    reading = await hw.meter(1).read()
    assert reading.power_w == 3 * 230.0 * 16.0 == 11040.0
    assert reading.current_a == (16.0, 16.0, 16.0)
    assert reading.power_phase_w == (3680.0, 3680.0, 3680.0)


async def test_current_is_limited_by_ev_and_connector(clock: FakeClock) -> None:
    hw = SimHardware(1, ev_max_current_a=10.0, max_current_a=32.0, clock=clock)
    await start_charging(hw, amps=16.0)
    assert (await hw.meter(1).read()).power_w == 3 * 230.0 * 10.0
    hw2 = SimHardware(1, phases=1, ev_max_current_a=32.0, max_current_a=13.0, clock=clock)
    await start_charging(hw2, amps=16.0)
    reading = await hw2.meter(1).read()
    assert reading.power_w == 230.0 * 13.0
    assert reading.current_a == (13.0,)


async def test_energy_integrates_power_over_time(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw, amps=16.0)
    clock.advance(3600.0)
    reading = await hw.meter(1).read()
    assert reading.energy_wh == pytest.approx(11040.0)
    assert reading.soc_percent == pytest.approx(20.0 + 11040.0 / 60000.0 * 100.0)


async def test_energy_uses_the_state_before_each_change(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw, amps=16.0)
    clock.advance(1800.0)
    await hw.pilot(1).set_offered_current(8.0)
    clock.advance(1800.0)
    reading = await hw.meter(1).read()
    assert reading.energy_wh == pytest.approx(11040.0 / 2 + 3 * 230.0 * 8.0 / 2)


async def test_register_never_decreases(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw)
    seen = []
    for step in range(5):
        clock.advance(60.0)
        seen.append((await hw.meter(1).read()).energy_wh)
        if step == 2:
            await hw.contactor(1).set_closed(False)
    clock.now -= 500.0
    seen.append((await hw.meter(1).read()).energy_wh)
    hw.unplug(1)
    seen.append((await hw.meter(1).read()).energy_wh)
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(11040.0 * 180.0 / 3600.0)


async def test_forced_b_stops_power_until_plug_resets(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw)
    hw.force_ev_state(1, PilotState.B)
    assert await hw.pilot(1).state() is PilotState.B
    clock.advance(600.0)
    reading = await hw.meter(1).read()
    assert reading.power_w == 0.0
    assert reading.energy_wh == 0.0
    hw.plug(1)
    assert await hw.pilot(1).state() is PilotState.C
    assert hw.snapshot()["connectors"] == {
        "1": {
            "plugged": True,
            "ev_state": "C",
            "forced": None,
            "contactor_closed": True,
            "offered_current_a": 16.0,
            "current_a": 16.0,
            "power_w": 11040.0,
            "phases": 3,
            "energy_wh": 0.0,
            "soc_percent": 20.0,
            "faults": [],
        },
        "2": {
            "plugged": False,
            "ev_state": "A",
            "forced": None,
            "contactor_closed": False,
            "offered_current_a": 0.0,
            "current_a": 0.0,
            "power_w": 0.0,
            "phases": 3,
            "energy_wh": 0.0,
            "soc_percent": None,
            "faults": [],
        },
    }


async def test_forced_state_sticks_and_accepts_strings(hw: SimHardware) -> None:
    hw.force_ev_state(2, "c")
    assert await hw.pilot(2).state() is PilotState.C
    await hw.contactor(2).set_closed(True)
    await hw.pilot(2).set_offered_current(32.0)
    assert (await hw.meter(2).read()).power_w == 3 * 230.0 * 32.0
    hw.force_ev_state(2, "D")
    assert await hw.pilot(2).state() is PilotState.D
    assert (await hw.meter(2).read()).power_w == 3 * 230.0 * 32.0
    hw.force_ev_state(2, PilotState.A)
    assert await hw.pilot(2).state() is PilotState.A
    assert hw.snapshot()["connectors"]["2"]["forced"] is None  # type: ignore[index]


async def test_unplug_goes_to_a_and_stops_power(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw)
    hw.force_ev_state(1, "C")
    hw.unplug(1)
    assert await hw.pilot(1).state() is PilotState.A
    clock.advance(3600.0)
    reading = await hw.meter(1).read()
    assert reading.power_w == 0.0
    assert reading.energy_wh == 0.0
    assert reading.soc_percent is None


async def test_full_battery_moves_ev_to_b(clock: FakeClock) -> None:
    hw = SimHardware(1, ev_battery_wh=1000.0, ev_initial_soc=50.0, clock=clock)
    seen: list[int] = []
    await start_charging(hw)
    hw.subscribe(seen.append)
    clock.advance(3600.0)
    reading = await hw.meter(1).read()
    assert reading.energy_wh == pytest.approx(500.0)
    assert reading.soc_percent == 100.0
    assert reading.power_w == 0.0
    assert await hw.pilot(1).state() is PilotState.B
    assert seen == [1]
    hw.unplug(1)
    hw.plug(1)
    assert (await hw.meter(1).read()).soc_percent == 50.0


async def test_meter_fault_raises_and_recovers(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw)
    hw.set_fault("meter", 1, True)
    clock.advance(3600.0)
    with pytest.raises(MeterFault) as caught:
        await hw.meter(1).read()
    assert caught.value.error_code == "PowerMeterFailure"
    assert caught.value.vendor_error_code == "SimMeterTimeout"
    assert "connector 1" in str(caught.value)
    assert (await hw.meter(2).read()).energy_wh == 0.0
    hw.set_fault("meter", 1, False)
    assert (await hw.meter(1).read()).energy_wh == pytest.approx(11040.0)


async def test_welded_relay_refuses_to_open(hw: SimHardware, clock: FakeClock) -> None:
    contactor = hw.contactor(1)
    await contactor.set_closed(True)
    clock.advance(10.0)
    await contactor.set_closed(True)
    hw.set_fault("relay", 1, True)
    clock.advance(5.0)
    with pytest.raises(ContactorFault) as caught:
        await contactor.set_closed(False)
    assert caught.value.error_code == "PowerSwitchFailure"
    assert caught.value.vendor_error_code == "SimRelayWelded"
    assert contactor.closed
    hw.set_fault("relay", 1, False)
    clock.advance(5.0)
    await contactor.set_closed(False)
    assert not contactor.closed
    assert contactor.history == [(1000.0, True), (1020.0, False)]


async def test_welded_open_relay_still_closes(hw: SimHardware) -> None:
    hw.set_fault("relay", 1, True)
    await hw.contactor(1).set_closed(True)
    assert hw.contactor(1).closed


async def test_pilot_fault_reads_e_and_stops_power(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw)
    hw.set_fault("pilot", 1, True)
    assert await hw.pilot(1).state() is PilotState.E
    clock.advance(3600.0)
    assert (await hw.meter(1).read()).energy_wh == 0.0
    hw.set_fault("pilot", 1, False)
    assert await hw.pilot(1).state() is PilotState.C
    assert hw.snapshot()["connectors"]["1"]["faults"] == []  # type: ignore[index]


async def test_listeners_hear_every_visible_change(hw: SimHardware) -> None:
    seen: list[int] = []
    hw.subscribe(seen.append)
    hw.plug(1)
    assert seen == [1]
    await hw.pilot(1).set_offered_current(16.0)
    assert seen == [1], "offer alone does not change the pilot state"
    await hw.contactor(1).set_closed(True)
    assert seen == [1, 1], "B -> C"
    await hw.contactor(1).set_closed(True)
    assert seen == [1, 1]
    await hw.pilot(1).set_offered_current(0.0)
    assert seen == [1, 1, 1], "C -> B"
    hw.force_ev_state(2, "C")
    hw.set_fault("meter", 2, True)
    hw.set_fault("meter", 2, False)
    hw.present_card("04A2B3C4")
    hw.unplug(2)
    assert seen == [1, 1, 1, 2, 2, 2, 0, 2]


async def test_card_reader_delivers_presented_uids(hw: SimHardware) -> None:
    reader = hw.card_reader
    assert reader is not None
    hw.present_card("04A2B3C4")
    hw.present_card(" tag-2 ")
    assert hw.snapshot()["cards_waiting"] == 2
    assert await reader.read_card() == "04A2B3C4"
    assert await reader.read_card() == "tag-2"


async def test_lock_unlocks(hw: SimHardware) -> None:
    assert await hw.lock(1).unlock() is True
    assert hw.lock(1).unlocks == 1


async def test_state_file_persists_and_reloads(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "sim-state.json"
    hw = SimHardware(2, state_file=state, clock=clock)
    await start_charging(hw)
    clock.advance(0.1)
    await hw.meter(1).read()
    assert not state.exists(), "less than 1 Wh moved: no write"
    clock.advance(1800.0)
    await hw.meter(1).read()
    on_disk = json.loads(state.read_text())
    assert on_disk["connectors"]["1"]["energy_wh"] == pytest.approx(11040.0 * 1800.1 / 3600.0)
    assert on_disk["connectors"]["2"]["energy_wh"] == 0.0
    clock.advance(1799.9)
    await hw.close()
    assert json.loads(state.read_text())["connectors"]["1"]["energy_wh"] == pytest.approx(11040.0)
    assert files_in(tmp_path) == ["sim-state.json"], "no temporary file left behind"

    again = SimHardware(2, state_file=state, clock=clock)
    assert (await again.meter(1).read()).energy_wh == pytest.approx(11040.0)
    await start_charging(again)
    clock.advance(3600.0)
    assert (await again.meter(1).read()).energy_wh == pytest.approx(22080.0)


async def test_persist_without_state_file_is_a_noop(hw: SimHardware) -> None:
    await hw.persist()
    await hw.close()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"connectors": []}',
        b'{"connectors": {"1": {"energy_wh": -5}}}',
        b'{"connectors": {"1": {"energy_wh": "12"}}}',
        b'{"connectors": {"one": {"energy_wh": 12}}}',
    ],
)
async def test_corrupt_state_file_is_ignored(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    state = tmp_path / "sim-state.json"
    state.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="cpagent.hal.sim"):
        hw = SimHardware(1, state_file=state, clock=clock)
    assert "corrupt simulator state file" in caplog.text
    assert (await hw.meter(1).read()).energy_wh == 0.0
    await hw.close()
    assert json.loads(state.read_text()) == {"connectors": {"1": {"energy_wh": 0.0}}}


async def test_unwritable_state_file_does_not_break_reads(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "missing-dir" / "sim-state.json"
    hw = SimHardware(1, state_file=state, clock=clock)
    await start_charging(hw)
    with caplog.at_level(logging.WARNING, logger="cpagent.hal.sim"):
        for _ in range(3):
            clock.advance(60.0)
            assert (await hw.meter(1).read()).energy_wh > 0
    assert caplog.text.count("cannot write simulator state file") == 1
    with pytest.raises(OSError):
        await hw.persist()


async def test_raise_energy_floor(hw: SimHardware) -> None:
    hw.raise_energy_floor(1, 5000.0)
    assert (await hw.meter(1).read()).energy_wh == 5000.0
    hw.raise_energy_floor(1, 100.0)
    assert (await hw.meter(1).read()).energy_wh == 5000.0
    assert (await hw.meter(2).read()).energy_wh == 0.0


async def test_close_opens_contactors_and_stops_pwm(hw: SimHardware, clock: FakeClock) -> None:
    await start_charging(hw, 1)
    await start_charging(hw, 2)
    hw.set_fault("relay", 2, True)
    clock.advance(1.0)
    await hw.close()
    await hw.close()
    assert hw.pilot(1).offered_current == 0.0
    assert hw.pilot(2).offered_current == 0.0
    assert not hw.contactor(1).closed
    assert hw.contactor(1).history == [(1000.0, True), (1001.0, False)]
    assert hw.contactor(2).closed, "a welded relay stays closed; close() still reaches the rest"
    assert (await hw.meter(2).read()).power_w == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda hw: hw.plug(3), "unknown connector 3"),
        (lambda hw: hw.unplug(0), "unknown connector 0"),
        (lambda hw: hw.plug("1"), "unknown connector '1'"),
        (lambda hw: hw.force_ev_state(1, "X"), "unknown pilot state 'X'"),
        (lambda hw: hw.force_ev_state(9, "B"), "unknown connector 9"),
        (lambda hw: hw.set_fault("lock", 1, True), "unknown device 'lock'"),
        (lambda hw: hw.set_fault("meter", 5, True), "unknown connector 5"),
        (lambda hw: hw.present_card("  "), "card UID"),
        (lambda hw: hw.raise_energy_floor(1, float("nan")), "energy floor"),
        (lambda hw: hw.meter(7), "unknown connector 7"),
    ],
)
def test_bad_instrument_input_raises_value_error(
    hw: SimHardware, call: object, message: str
) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call(hw)


async def test_negative_offer_is_rejected(hw: SimHardware) -> None:
    with pytest.raises(ValueError, match="offered current"):
        await hw.pilot(1).set_offered_current(-1.0)
    with pytest.raises(ValueError, match="offered current"):
        await hw.pilot(1).set_offered_current(float("nan"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connectors": 0}, "connectors"),
        ({"connectors": 1, "phases": 4}, "phases"),
        ({"connectors": 1, "voltage_v": 0.0}, "voltage_v"),
        ({"connectors": 1, "ev_battery_wh": -1.0}, "ev_battery_wh"),
        ({"connectors": 1, "ev_initial_soc": 101.0}, "ev_initial_soc"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimHardware(**kwargs)  # type: ignore[arg-type]


async def test_phase_switch_moves_the_ev_to_one_phase_only_while_open() -> None:
    clock = FakeClock()
    hw = SimHardware(1, clock=clock, phase_switch=True)
    switch = hw.connectors[1].phase_switch
    assert switch is not None and switch.phases == 3
    await start_charging(hw)
    with pytest.raises(HalError, match="while the contactor is closed"):
        await switch.set_phases(1)
    assert (await hw.meter(1).read()).power_w == 3 * 230 * 16
    await hw.contactor(1).set_closed(False)
    await switch.set_phases(1)
    await hw.contactor(1).set_closed(True)
    clock.advance(3600.0)
    reading = await hw.meter(1).read()
    assert (switch.phases, reading.power_w, reading.current_a) == (1, 230 * 16, (16.0,))
    assert reading.energy_wh == pytest.approx(230 * 16)
    with pytest.raises(ValueError, match="1 or 3"):
        await switch.set_phases(2)
    assert SimHardware(1).connectors[1].phase_switch is None
    with pytest.raises(ValueError, match="needs 3 wired phases"):
        SimHardware(1, phases=1, phase_switch=True)
