"""Modbus polling: the time one poll cycle takes on an RS-485 line, and what polling costs.

1. Poll cycle time, in this process. An SDM630 (id 1) and an EVSE-DIN board (id 2)
   share a simulated RTU line (``NullModem``, which delivers each byte at wire speed).
   One cycle is what the agent does per connector per poll while charging: the meter
   read set (``ModbusMeter.read()``: 2 requests), and with the board its vehicle state
   (``EvseDinPilot.state()``: 1 request) first. Each cycle starts on an idle line, as in
   the agent (a short pause between cycles, not timed). Rows: 9600 baud, 9600 baud with
   ``gap_s = 0.1`` (what config/pi-sdm630-evse-din.toml sets for the EVSE-DIN), 38400
   baud, and unpaced ptys. "wire" is the bytes' time at 8N1 (10 bits a byte), which is
   what the modem simulates; "+3.5T" adds the 3.5-character silence that ends each RTU
   frame on a real line (the modem does not model it).

2. Polling CPU cost of the real agent. ``cpagent run`` with ``hal.backend = "hardware"``
   polls both devices on a Modbus TCP server in this process (poll_interval_s = 1.0,
   state_poll_s = 1.0), against a loopback CSMS (MeterValueSampleInterval 60). Its CPU
   time (utime + stime from /proc/PID/stat) is taken over a window with the connector
   idle (vehicle state A), then over a window while a session charges (state B, a
   RemoteStartTransaction, state C). Requests are counted on the server (``trace_pdu``).

    python benchmarks/modbus_poll.py [--seconds 30] [--cycles 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchconfig import CPAGENT
from pymodbus.pdu import ModbusPDU

from cpagent.hal.evse_board import EvseDinPilot
from cpagent.hal.meter_maps import MAPS
from cpagent.hal.modbus import ModbusBus, ModbusMeter
from cpagent.testing import LoopbackCsms
from cpagent.testing.modbus_devices import (
    SAMPLE_READINGS,
    EvseDinBoard,
    NullModem,
    meter_device,
    rtu_server,
    tcp_server,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
METER_ID, BOARD_ID = 1, 2
BOARD_GAP_S = 0.1
"""The pause between requests config/pi-sdm630-evse-din.toml sets for the EVSE-DIN."""
IDLE_PAUSE_S = 0.05
"""Untimed pause between cycles, so each cycle starts on an idle line."""

READING = SAMPLE_READINGS["sdm630"]


def cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the fields after "(comm)"
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


# --- 1. poll cycle time over simulated RTU --------------------------------------------------


@dataclass
class CycleResult:
    label: str
    times_ms: list[float]
    bytes_out: float
    bytes_in: float
    frames: int
    baudrate: int | None

    def row(self) -> str:
        times = self.times_ms
        p95 = statistics.quantiles(times, n=20, method="inclusive")[-1]
        if self.baudrate is None:
            wire = plus_silence = "-"
        else:
            char_ms = 10 / self.baudrate * 1000
            wire_ms = (self.bytes_out + self.bytes_in) * char_ms
            wire = f"{wire_ms:.1f}"
            plus_silence = f"{wire_ms + 3.5 * self.frames * char_ms:.1f}"
        return (
            f"{self.label:<38} {statistics.median(times):7.1f} {p95:7.1f} {max(times):7.1f}"
            f"  {self.bytes_out:4.0f} {self.bytes_in:4.0f}  {wire:>6} {plus_silence:>6}"
        )


CYCLE_HEADER = (
    f"{'cycle':<38} {'median':>7} {'p95':>7} {'max':>7}  {'B out':>4} {'B in':>4}"
    f"  {'wire':>6} {'+3.5T':>6}\n"
    f"{'':<38} {'ms':>7} {'ms':>7} {'ms':>7}  {'':>4} {'':>4}  {'ms':>6} {'ms':>6}"
)


async def time_cycles(
    label: str,
    modem: NullModem,
    meter: ModbusMeter,
    pilot: EvseDinPilot | None,
    cycles: int,
) -> CycleResult:
    async def cycle() -> None:
        if pilot is not None:
            await pilot.state()
        await meter.read()

    for _ in range(3):  # opens the port; first reads are not representative
        await cycle()
        await asyncio.sleep(IDLE_PAUSE_S)
    out0, in0 = modem.bytes_b_to_a, modem.bytes_a_to_b
    requests0 = meter.bus.requests
    times: list[float] = []
    for _ in range(cycles):
        await asyncio.sleep(max(IDLE_PAUSE_S, meter.bus.gap_s))
        start = time.perf_counter()
        await cycle()
        times.append((time.perf_counter() - start) * 1000)
    requests = (meter.bus.requests - requests0) // cycles
    return CycleResult(
        label,
        times,
        (modem.bytes_b_to_a - out0) / cycles,
        (modem.bytes_a_to_b - in0) / cycles,
        2 * requests,
        modem.baudrate,
    )


async def rtu_cycles(baudrate: int | None, cycles: int) -> list[CycleResult]:
    speed = f"{baudrate} Bd" if baudrate else "unpaced"
    modem = NullModem(baudrate=baudrate)
    modem.open()
    bus = ModbusBus.serial(modem.path_b, baudrate=baudrate or 9600, timeout=1.0)
    meter = ModbusMeter(MAPS["sdm630"], bus, METER_ID)
    pilot = EvseDinPilot(bus, BOARD_ID)
    devices = [meter_device(METER_ID, MAPS["sdm630"], READING), EvseDinBoard(BOARD_ID).device()]
    results: list[CycleResult] = []
    try:
        async with rtu_server(modem, devices):
            results.append(await time_cycles(f"meter, {speed}", modem, meter, None, cycles))
            results.append(
                await time_cycles(f"meter + EVSE-DIN, {speed}", modem, meter, pilot, cycles)
            )
            if baudrate == 9600:
                bus.gap_s = BOARD_GAP_S
                results.append(
                    await time_cycles(
                        f"meter + EVSE-DIN, {speed}, gap {BOARD_GAP_S:g} s",
                        modem,
                        meter,
                        pilot,
                        cycles,
                    )
                )
            await bus.close()
    finally:
        modem.close()
    return results


# --- 2. the agent's CPU while polling -------------------------------------------------------


def write_hardware_config(workdir: Path, csms_url: str, modbus_port: int) -> Path:
    """A one-connector agent on the hardware backend, its devices on a Modbus TCP server."""
    tables: dict[str, dict[str, Any]] = {
        "charge_point": {"id": "POLL1", "vendor": "Bench", "model": "Bench", "connectors": 1},
        "csms": {"url": csms_url},
        "storage": {"data_dir": str(workdir / "data")},
        "control": {"socket": str(workdir / "control.sock")},
        "hal": {"backend": "hardware"},
        "hal.buses.line": {
            "host": "127.0.0.1",
            "port": modbus_port,
            "timeout_s": 0.5,
            "gap_s": BOARD_GAP_S,
        },
        "hal.connectors.1": {"max_current_a": 32, "poll_interval_s": 1.0},
        "hal.connectors.1.meter": {"bus": "line", "model": "sdm630", "device_id": METER_ID},
        "hal.connectors.1.pilot": {
            "board": "evse-din",
            "bus": "line",
            "device_id": BOARD_ID,
            "state_poll_s": 1.0,
        },
        "logging": {"level": "INFO"},
        "ocpp16": {"MeterValueSampleInterval": 60},
    }
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    path = workdir / "cpagent.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class CpuResult:
    label: str
    window_s: float
    cpu_s: float
    requests: collections.Counter[tuple[int, int]]

    def row(self) -> str:
        per_hour = self.cpu_s / self.window_s * 3600
        percent = self.cpu_s / self.window_s * 100
        total = sum(self.requests.values())
        mix = ", ".join(
            f"id{dev} FC{fc:02d} {n / self.window_s:.2f}/s"
            for (dev, fc), n in sorted(self.requests.items())
        )
        return (
            f"{self.label:<22} {self.window_s:6.1f} {self.cpu_s:6.2f} {per_hour:8.1f}"
            f" {percent:6.2f} {total / self.window_s:6.2f}   {mix}"
        )


CPU_HEADER = (
    f"{'connector':<22} {'window':>6} {'CPU':>6} {'CPU s/h':>8} {'% core':>6} {'req/s':>6}"
    "   requests per second by device and function\n"
    f"{'':<22} {'s':>6} {'s':>6}"
)


class Agent:
    """One ``cpagent run`` and the bus traffic it causes."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.requests: collections.Counter[tuple[int, int]] = collections.Counter()

    def trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests[(pdu.dev_id, pdu.function_code)] += 1
        return pdu

    def fail(self, why: str) -> SystemExit:
        return SystemExit(f"{why}:\n{self.log_path.read_text(errors='replace')[-20000:]}")

    async def measure(self, label: str, seconds: float) -> CpuResult:
        pid = self.proc.pid
        before = collections.Counter(self.requests)
        cpu_start, t_start = cpu_s(pid), time.monotonic()
        deadline = t_start + seconds
        while (now := time.monotonic()) < deadline:
            if self.proc.returncode is not None:
                raise self.fail(f"agent exited with {self.proc.returncode}")
            await asyncio.sleep(min(1.0, deadline - now))
        cpu_end, t_end = cpu_s(pid), time.monotonic()
        return CpuResult(label, t_end - t_start, cpu_end - cpu_start, self.requests - before)


@contextlib.asynccontextmanager
async def running_agent(workdir: Path) -> AsyncIterator[Agent]:
    log_path = workdir / "agent.log"
    log = log_path.open("wb")
    proc: asyncio.subprocess.Process | None = None
    try:
        config = workdir / "cpagent.toml"
        proc = await asyncio.create_subprocess_exec(
            CPAGENT, "run", "--config", str(config), stdout=log, stderr=log
        )
        yield Agent(proc, log_path)
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    finally:
        log.close()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()


async def agent_cpu(seconds: float, warmup: float) -> tuple[list[CpuResult], int]:
    workdir = Path(tempfile.mkdtemp(prefix="cpa-poll-", dir="/tmp"))
    board = EvseDinBoard(BOARD_ID)
    devices = [meter_device(METER_ID, MAPS["sdm630"], READING), board.device()]
    holder: list[Agent] = []

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return holder[0].trace(sending, pdu) if holder else pdu

    results: list[CpuResult] = []
    try:
        async with (
            LoopbackCsms() as csms,
            tcp_server(devices, trace_pdu=trace) as (server, port),
        ):
            write_hardware_config(workdir, csms.url, port)
            async with running_agent(workdir) as agent:
                holder.append(agent)
                try:
                    await csms.wait_for("BootNotification", timeout=30)
                    await csms.wait_for(
                        "StatusNotification",
                        lambda p: p["connectorId"] == 1 and p["status"] == "Available",
                        timeout=30,
                    )
                except AssertionError:
                    raise agent.fail("agent did not come up") from None
                print(f"agent pid {agent.proc.pid} up; warming up {warmup:g} s", flush=True)
                await asyncio.sleep(warmup)
                print(f"measuring idle for {seconds:g} s ...", flush=True)
                results.append(await agent.measure("idle (state A)", seconds))

                mark = csms.mark()
                await board.set_vehicle_state(server, "B")
                try:
                    await csms.wait_for(
                        "StatusNotification", lambda p: p["status"] == "Preparing", since=mark
                    )
                    answer = await csms.call(
                        "RemoteStartTransaction", {"connectorId": 1, "idTag": "BENCH"}
                    )
                    if answer.get("status") != "Accepted":
                        raise agent.fail(f"RemoteStartTransaction answered {answer}")
                    await csms.wait_for("StartTransaction", since=mark)
                    await board.set_vehicle_state(server, "C")
                    await csms.wait_for(
                        "StatusNotification", lambda p: p["status"] == "Charging", since=mark
                    )
                except AssertionError as err:
                    raise agent.fail(f"no charging session: {err}") from None
                print(f"charging; warming up {warmup:g} s", flush=True)
                await asyncio.sleep(warmup)
                print(f"measuring charging for {seconds:g} s ...", flush=True)
                results.append(await agent.measure("charging (state C)", seconds))
                meter_values = len(csms.messages("MeterValues", since=mark))
                if board.holding[EvseDinBoard.SIGNALLED_CURRENT] == 0:
                    raise agent.fail("the board offers no current during the session")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, meter_values


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="each CPU window")
    parser.add_argument("--cycles", type=int, default=50, help="timed poll cycles per row")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before a window")
    args = parser.parse_args()

    print(f"1. poll cycle time over simulated Modbus RTU, {args.cycles} cycles per row")
    cycles: list[CycleResult] = []
    for baudrate in (9600, 38400, None):
        cycles += await rtu_cycles(baudrate, args.cycles)

    print("2. agent CPU while polling (Modbus TCP on loopback)", flush=True)
    cpu, meter_values = await agent_cpu(args.seconds, args.warmup)

    print()
    print(
        "Poll cycle (SDM630 read set = 2 requests; + EVSE-DIN vehicle state = 3), "
        "timeout 1.0 s, gap 0 unless noted"
    )
    print(CYCLE_HEADER)
    for cycle in cycles:
        print(cycle.row())
    print()
    print(
        f"Agent CPU (cpagent run, SDM630 id {METER_ID} + EVSE-DIN id {BOARD_ID} on one TCP bus, "
        f"gap {BOARD_GAP_S:g} s; poll_interval_s 1.0, state_poll_s 1.0, "
        "MeterValueSampleInterval 60)"
    )
    print(CPU_HEADER)
    for window in cpu:
        print(window.row())
    print(
        f"{meter_values} MeterValues during the session; clock tick {1 / CLK_TCK:.3f} s; "
        f"{os.cpu_count()} CPU(s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
