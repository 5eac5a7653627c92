"""ModbusMeter against in-process pymodbus servers over TCP and a pty RTU null-modem.

Each shipped map is served with known values encoded the way the real meter
sends them (word order, type, scale), and the decoded reading must match
exactly. Fault paths use the same servers: no answer, an exception reply,
and implausible values, each followed by recovery.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import replace

import pytest
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer

from cpagent.exc import MeterFault
from cpagent.hal.base import MeterReading
from cpagent.hal.meter_maps import MAPS, MeterMap, Register, parse_map
from cpagent.hal.modbus import ModbusBus, ModbusMeter, plan_blocks
from cpagent.testing.modbus_devices import (
    SAMPLE_READINGS,
    NullModem,
    encode,
    free_port,
    meter_device,
    rtu_server,
    set_value,
    tcp_server,
)

TIMEOUT = 0.3

READINGS: dict[str, MeterReading] = {
    **SAMPLE_READINGS,
    # Power flowing back (a bidirectional meter): the signed registers must decode negative.
    "abb_b23": replace(
        SAMPLE_READINGS["abb_b23"], power_w=-1234.56, power_phase_w=(-411.52, -411.52, -411.52)
    ),
}


def assert_reading(got: MeterReading, want: MeterReading) -> None:
    def close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return len(a) == len(b) and all(
            math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a, b, strict=True)
        )

    assert close((got.energy_wh, got.power_w), (want.energy_wh, want.power_w)), got
    assert close(got.voltage_v, want.voltage_v), got
    assert close(got.current_a, want.current_a), got
    assert close(got.power_phase_w, want.power_phase_w), got
    assert got.frequency_hz is not None and want.frequency_hz is not None
    assert math.isclose(got.frequency_hz, want.frequency_hz, rel_tol=1e-9), got
    assert got.soc_percent is None


# --- infrastructure ------------------------------------------------------------------------


# --- decoding every shipped map --------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdm630", "sdm120", "abb_b23", "em340"])
async def test_shipped_map_over_tcp(name: str) -> None:
    meter_map = MAPS[name]
    async with (
        tcp_server([meter_device(7, meter_map, READINGS[name])]) as (_, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        reading = await ModbusMeter(meter_map, bus, 7).read()
    assert_reading(reading, READINGS[name])


@pytest.mark.parametrize("name", ["sdm630", "sdm120", "abb_b23", "em340"])
async def test_shipped_map_over_rtu(name: str, null_modem: NullModem) -> None:
    meter_map = MAPS[name]
    async with (
        rtu_server(null_modem, [meter_device(1, meter_map, READINGS[name])]),
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus,
    ):
        reading = await ModbusMeter(meter_map, bus, 1).read()
    assert_reading(reading, READINGS[name])


def test_word_order_and_scale_on_the_wire() -> None:
    em340 = MAPS["em340"]
    # 1234.5 kWh = 12345 * 0.1 kWh = 0x00003039: low word first.
    assert encode(em340.energy_import_wh, 1234.5 * 1000) == [0x3039, 0x0000]
    abb = MAPS["abb_b23"]
    assert encode(abb.energy_import_wh, 0x1_0000_0000 * 10) == [0, 1, 0, 0]
    assert MAPS["sdm230"] is MAPS["sdm120"]
    assert [(b.function, b.address, b.count) for b in plan_blocks(MAPS["sdm630"])] == [
        (4, 0x00, 0x12),
        (4, 0x34, 0x16),
    ]
    assert [(b.function, b.address, b.count) for b in plan_blocks(abb)] == [
        (3, 0x5000, 4),
        (3, 0x5B00, 0x1C),
        (3, 0x5B2C, 1),
    ]


def test_parse_map_builds_a_user_map_and_names_bad_fields() -> None:
    def reg(address: int, **extra: object) -> dict[str, object]:
        return {"function": 4, "address": address, "type": "f32", **extra}

    data: dict[str, object] = {
        "name": "custom",
        "phases": 1,
        "energy_import_wh": reg(0x48, scale=1000),
        "power_w": reg(0x0C),
        "current_a": [reg(0x06)],
        "voltage_v": [reg(0x00)],
        "frequency_hz": reg(0x46),
        "max_registers_per_read": 10,
    }
    meter_map = parse_map(data)
    assert meter_map.energy_import_wh == Register(4, 0x48, "f32", "big", 1000.0)
    assert meter_map.power_phase_w == (meter_map.power_w,)
    assert meter_map.max_registers_per_read == 10

    def error(**change: object) -> str:
        with pytest.raises(ValueError) as info:
            parse_map({**data, **change})
        return str(info.value)

    bad: Mapping[str, object] = {"function": 4, "address": 6, "type": "f64"}
    assert error(current_a=[bad]).startswith("current_a[0].type:")
    assert error(power_w=reg(0x0C, function=6)).startswith("power_w.function:")
    assert error(power_w=reg(0x0C, word_order="middle")).startswith("power_w.word_order:")
    assert error(voltage_v=[reg(0), reg(2)]).startswith("voltage_v:")
    assert error(phases=2).startswith("phases:")
    assert error(colour="red").startswith("colour: unknown key")
    assert error(energy_import_wh={"function": 4, "type": "f32"}).startswith(
        "energy_import_wh.address: missing"
    )


# --- the shared RTU bus ----------------------------------------------------------------------


async def test_two_meters_share_one_rtu_bus(null_modem: NullModem) -> None:
    sdm630, sdm120 = MAPS["sdm630"], MAPS["sdm120"]
    seen: list[int] = []

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            seen.append(pdu.dev_id)
        return pdu

    server = ModbusSerialServer(
        [meter_device(1, sdm630, READINGS["sdm630"]), meter_device(2, sdm120, READINGS["sdm120"])],
        port=null_modem.path_a,
        baudrate=9600,
        timeout=TIMEOUT,
        ignore_missing_devices=True,
        trace_pdu=trace,
    )
    await server.serve_forever(background=True)
    try:
        async with ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus:
            one, two = ModbusMeter(sdm630, bus, 1), ModbusMeter(sdm120, bus, 2)
            for _ in range(3):
                first, second = await asyncio.gather(one.read(), two.read())
                assert_reading(first, READINGS["sdm630"])
                assert_reading(second, READINGS["sdm120"])
            assert bus.requests == 3 * (len(one.blocks) + len(two.blocks))
    finally:
        await server.shutdown()
    assert sorted(set(seen)) == [1, 2]
    assert len(seen) == bus.requests


# --- faults and recovery -----------------------------------------------------------------------


async def test_no_server_is_a_timeout_fault() -> None:
    async with ModbusBus.tcp("127.0.0.1", free_port(), timeout=TIMEOUT) as bus:
        meter = ModbusMeter(MAPS["sdm630"], bus, 1, retries=1)
        with pytest.raises(MeterFault) as info:
            await meter.read()
    assert info.value.vendor_error_code == "ModbusTimeout"
    assert info.value.error_code == "PowerMeterFailure"
    assert "127.0.0.1" in str(info.value) and "device 1" in str(info.value)


async def test_wrong_device_id_is_a_timeout_then_the_right_one_reads(
    null_modem: NullModem,
) -> None:
    sdm120 = MAPS["sdm120"]
    async with (
        rtu_server(null_modem, [meter_device(1, sdm120, READINGS["sdm120"])]),
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus,
    ):
        with pytest.raises(MeterFault) as info:
            await ModbusMeter(sdm120, bus, 9, retries=1).read()
        assert info.value.vendor_error_code == "ModbusTimeout"
        assert "device 9" in str(info.value) and null_modem.path_b in str(info.value)
        assert bus.requests == 2  # one retry
        assert_reading(await ModbusMeter(sdm120, bus, 1).read(), READINGS["sdm120"])


async def test_exception_reply_is_a_device_fault() -> None:
    sdm630 = MAPS["sdm630"]
    moved = Register(4, 0x200, "f32")  # nothing is served there
    meter_map = MeterMap(**{**sdm630.__dict__, "frequency_hz": moved})
    async with (
        tcp_server([meter_device(1, sdm630, READINGS["sdm630"])]) as (_, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        with pytest.raises(MeterFault) as info:
            await ModbusMeter(meter_map, bus, 1).read()
    assert info.value.vendor_error_code == "ModbusException2"
    assert "0x0200" in str(info.value)


async def test_rejected_block_falls_back_to_per_value_reads_and_remembers(
    null_modem: NullModem,
) -> None:
    sdm630 = MAPS["sdm630"]
    sparse = meter_device(1, sdm630, READINGS["sdm630"], fill_gaps=False)
    async with (
        rtu_server(null_modem, [sparse]),
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus,
    ):
        meter = ModbusMeter(sdm630, bus, 1)
        assert_reading(await meter.read(), READINGS["sdm630"])
        # block 1 (0x00-0x11) is dense; block 2 (0x34-0x49) spans a gap: rejected, then 3 reads.
        assert bus.requests == 1 + 1 + 3
        assert_reading(await meter.read(), READINGS["sdm630"])
        assert bus.requests == 5 + 1 + 3


async def test_energy_going_backwards_is_implausible_and_recovers() -> None:
    sdm630 = MAPS["sdm630"]
    async with (
        tcp_server([meter_device(1, sdm630, READINGS["sdm630"])]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        meter = ModbusMeter(sdm630, bus, 1)
        assert (await meter.read()).energy_wh == 12_345_500
        await set_value(server, 1, sdm630.energy_import_wh, 12_000_000)
        with pytest.raises(MeterFault) as info:
            await meter.read()
        assert info.value.vendor_error_code == "ImplausibleEnergy"
        assert "12000000.0 Wh < last good 12345500.0 Wh" in str(info.value)
        assert meter.last_energy_wh == 12_345_500
        await set_value(server, 1, sdm630.energy_import_wh, 12_345_750)
        assert (await meter.read()).energy_wh == 12_345_750


async def test_frequency_out_of_range_is_implausible_and_recovers(null_modem: NullModem) -> None:
    em340 = MAPS["em340"]
    assert em340.frequency_hz is not None
    async with (
        rtu_server(null_modem, [meter_device(1, em340, READINGS["em340"])]) as server,
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus,
    ):
        meter = ModbusMeter(em340, bus, 1)
        await set_value(server, 1, em340.frequency_hz, 70.0)
        with pytest.raises(MeterFault) as info:
            await meter.read()
        assert info.value.vendor_error_code == "ImplausibleFrequency"
        assert "70 Hz" in str(info.value)
        await set_value(server, 1, em340.frequency_hz, 50.1)
        assert_reading(await meter.read(), READINGS["em340"])


async def test_not_a_number_is_implausible() -> None:
    sdm630 = MAPS["sdm630"]
    async with (
        tcp_server([meter_device(1, sdm630, READINGS["sdm630"])]) as (server, port),
        ModbusBus.tcp("127.0.0.1", port, timeout=TIMEOUT) as bus,
    ):
        await set_value(server, 1, sdm630.power_w, math.nan)
        with pytest.raises(MeterFault) as info:
            await ModbusMeter(sdm630, bus, 1).read()
    assert info.value.vendor_error_code == "ImplausibleValue"


# --- timing ----------------------------------------------------------------------------------


async def test_sdm630_read_time_over_rtu(null_modem: NullModem) -> None:
    sdm630 = MAPS["sdm630"]
    async with (
        rtu_server(null_modem, [meter_device(1, sdm630, READINGS["sdm630"])]),
        ModbusBus.serial(null_modem.path_b, timeout=TIMEOUT) as bus,
    ):
        meter = ModbusMeter(sdm630, bus, 1)
        await meter.read()  # opens the port
        sent, received = null_modem.bytes_b_to_a, null_modem.bytes_a_to_b
        rounds = 20
        start = time.perf_counter()
        for _ in range(rounds):
            await meter.read()
        elapsed = (time.perf_counter() - start) / rounds
        sent = (null_modem.bytes_b_to_a - sent) // rounds
        received = (null_modem.bytes_a_to_b - received) // rounds
    # RTU: request = id + fc + addr(2) + count(2) + crc(2); answer = id + fc + n + 2n data + crc(2)
    assert sent == 8 * len(meter.blocks)
    assert received == sum(5 + 2 * b.count for b in meter.blocks)
    frames = 2 * len(meter.blocks)
    bits = 10 * (sent + received) + 10 * 3.5 * frames  # 8N1 + 3.5-char silence per frame
    print(
        f"\nSDM630 full read over pty RTU: {elapsed * 1000:.2f} ms per read, "
        f"{len(meter.blocks)} requests, {sent} B out + {received} B in; "
        f"at 9600 baud on the wire: {bits / 9600 * 1000:.1f} ms (+ meter turnaround)"
    )


async def test_sdm630_read_at_9600_baud_takes_the_wire_time() -> None:
    sdm630 = MAPS["sdm630"]
    modem = NullModem(baudrate=9600)
    modem.open()
    try:
        async with (
            rtu_server(modem, [meter_device(1, sdm630, READINGS["sdm630"])]),
            ModbusBus.serial(modem.path_b, timeout=TIMEOUT) as bus,
        ):
            meter = ModbusMeter(sdm630, bus, 1)
            await meter.read()  # opens the port
            sent, received = modem.bytes_b_to_a, modem.bytes_a_to_b
            start = time.perf_counter()
            assert_reading(await meter.read(), READINGS["sdm630"])
            elapsed = time.perf_counter() - start
            sent, received = modem.bytes_b_to_a - sent, modem.bytes_a_to_b - received
    finally:
        modem.close()
    assert sent == 8 * len(meter.blocks)
    assert received == sum(5 + 2 * b.count for b in meter.blocks)
    wire_s = 10 * (sent + received) / 9600  # 106 bytes: 110 ms
    assert elapsed >= wire_s, (elapsed, wire_s)  # the wire is the floor; load only adds
