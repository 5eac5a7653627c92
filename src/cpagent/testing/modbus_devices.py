"""Simulated Modbus devices and wires for tests and demos, built on pymodbus' simulator.

- meters: :func:`meter_device` serves a :class:`~cpagent.hal.base.MeterReading` the way
  a meter described by a :class:`~cpagent.hal.meter_maps.MeterMap` encodes it;
- EVSE controller boards: :class:`EvseDinBoard` and :class:`PhoenixBoard` model the
  registers the firmware exposes and react to writes as the firmware does;
- wires: :class:`NullModem` is a serial cable between two ptys (optionally as slow as a
  real line), :func:`rtu_server` and :func:`tcp_server` serve devices on it or on TCP.

The servers are started with ``ignore_missing_devices=True``, which is what lets a board
go silent (:attr:`EvseDinBoard.online`) like a device with its power cut.

Board models keep their registers in plain dicts (``holding``, ``coils``, ``inputs``);
the pymodbus ``action`` hook copies them into the server's datastore on every access, so
the dicts are the truth, a test can read them directly, and :meth:`EvseDinBoard.device`
builds a fresh :class:`SimDevice` that resumes where the last server left off. A write
whose function code is a *read* code (1-4) cannot come from the bus; it is the test's
own ``server.async_setValues`` and may set registers the bus may not (the vehicle state).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pty
import socket
import struct
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from cpagent.hal.base import MeterReading, PilotState
from cpagent.hal.meter_maps import MeterMap, Register
from cpagent.hal.modbus import plan_blocks

__all__ = [
    "EvseDinBoard",
    "NullModem",
    "PhoenixBoard",
    "SimServer",
    "encode",
    "free_port",
    "meter_device",
    "reading_words",
    "rtu_server",
    "set_value",
    "tcp_server",
]

SimServer = ModbusTcpServer | ModbusSerialServer
TracePdu = Callable[[bool, ModbusPDU], ModbusPDU]

_STRUCT = {"f32": ">f", "i32": ">i", "u32": ">I", "u64": ">Q", "i16": ">h", "u16": ">H"}
_HOST_FUNCTIONS = frozenset({1, 2, 3, 4})
_COIL_FUNCTIONS = frozenset({1, 5, 15})
_INPUT_FUNCTIONS = frozenset({4})


# --- meters ----------------------------------------------------------------------------------


def encode(reg: Register, value: float) -> list[int]:
    """The words a meter puts on the wire for ``value`` (the inverse of decoding)."""
    raw: float | int = value / reg.scale
    if reg.type != "f32":
        raw = round(raw)
    data = struct.pack(_STRUCT[reg.type], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words[::-1] if reg.word_order == "little" else words


def reading_words(meter_map: MeterMap, reading: MeterReading) -> dict[int, int]:
    """Address -> word for every register of ``meter_map`` holding ``reading``."""
    pairs: list[tuple[Register, float]] = [
        (meter_map.energy_import_wh, reading.energy_wh),
        (meter_map.power_w, reading.power_w),
        *zip(meter_map.power_phase_w, reading.power_phase_w, strict=True),
        *zip(meter_map.current_a, reading.current_a, strict=True),
        *zip(meter_map.voltage_v, reading.voltage_v, strict=True),
    ]
    if meter_map.frequency_hz is not None:
        if reading.frequency_hz is None:
            raise ValueError(f"{meter_map.name} has a frequency register; the reading has none")
        pairs.append((meter_map.frequency_hz, reading.frequency_hz))
    words: dict[int, int] = {}
    for reg, value in pairs:
        for i, word in enumerate(encode(reg, value)):
            words[reg.address + i] = word
    return words


def meter_device(
    device_id: int, meter_map: MeterMap, reading: MeterReading, *, fill_gaps: bool = True
) -> SimDevice:
    """A simulated meter. With ``fill_gaps`` every word inside a planned request exists
    (as on a real meter); without, only the map's own registers exist and a block read
    spanning a gap is answered with exception 2."""
    words = reading_words(meter_map, reading)
    if fill_gaps:
        for block in plan_blocks(meter_map):
            for address in range(block.address, block.address + block.count):
                words.setdefault(address, 0)
    runs: list[SimData] = []
    start = prev = -2
    values: list[int] = []
    for address in sorted(words):
        if address != prev + 1 and values:
            runs.append(SimData(start, values=values, datatype=DataType.REGISTERS))
            values = []
        if not values:
            start = address
        values.append(words[address])
        prev = address
    runs.append(SimData(start, values=values, datatype=DataType.REGISTERS))
    return SimDevice(id=device_id, simdata=runs)


async def set_value(server: SimServer, device_id: int, reg: Register, value: float) -> None:
    """Change one meter value live, encoded as the meter would."""
    await server.async_setValues(device_id, reg.function, reg.address, encode(reg, value))


# --- readings --------------------------------------------------------------------------------

SAMPLE_READINGS: dict[str, MeterReading] = {
    "sdm630": MeterReading(  # float32, high word first, kWh
        energy_wh=12345.5 * 1000,
        power_w=7245.5,
        voltage_v=(230.5, 231.5, 229.5),
        current_a=(10.5, 10.25, 10.75),
        power_phase_w=(2415.5, 2416.0, 2414.0),
        frequency_hz=50.0,
    ),
    "sdm120": MeterReading(  # one phase: the phase power is the total
        energy_wh=321.25 * 1000,
        power_w=3680.5,
        voltage_v=(230.0,),
        current_a=(16.0,),
        power_phase_w=(3680.5,),
        frequency_hz=49.75,
    ),
    "abb_b23": MeterReading(  # u64 energy above 2**32 counts; scaled integers
        energy_wh=12_345_678_901 * 10.0,
        power_w=7400.5,
        voltage_v=(230.1, 231.2, 229.3),
        current_a=(15.01, 15.02, 15.03),
        power_phase_w=(2466.5, 2467.0, 2467.0),
        frequency_hz=50.02,
    ),
    "em340": MeterReading(  # int32 low word first; scaled integers
        energy_wh=1_234_567 * 100.0,
        power_w=11040.3,
        voltage_v=(230.1, 230.2, 230.3),
        current_a=(16.01, 16.02, 16.03),
        power_phase_w=(3680.1, 3680.1, 3680.1),
        frequency_hz=50.1,
    ),
}
"""A reading per shipped map, exact both in the meter's own encoding and at the precision
OCPP carries values (Wh, 0.1 W, 0.01 A, 0.1 V, 0.01 Hz), so tests can compare for equality
end to end. ``sdm230`` shares the ``sdm120`` map."""
SAMPLE_READINGS["sdm230"] = SAMPLE_READINGS["sdm120"]


# --- wires and servers -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Direction:
    dst: int
    queue: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    free_at: float = 0.0
    timer: asyncio.TimerHandle | None = None


@dataclass
class NullModem:
    """Two ptys whose masters are cross-connected: a serial cable between two paths.

    The pump runs as reader callbacks on the event loop, so it needs no thread
    and no polling; ``bytes_a_to_b``/``bytes_b_to_a`` count the traffic. When
    ``device_ids`` is set, requests from B to other ids are dropped (each
    request arrives in one read: the client writes a frame at once). Answers
    from the devices in ``garble_ids`` get their last byte flipped, so they arrive
    with a bad CRC, as on a noisy line.

    With ``baudrate`` set, each direction is a wire of that speed (8N1: 10 bits a
    byte): a chunk is delivered when its last byte would have arrived, after what
    was sent before it, so a request/answer cycle takes at least its real wire
    time. ``None`` delivers at once. ``open()`` and ``close()`` run on the loop.
    """

    path_a: str = ""
    path_b: str = ""
    bytes_a_to_b: int = 0
    bytes_b_to_a: int = 0
    device_ids: set[int] | None = None
    baudrate: int | None = None
    garble_ids: set[int] = field(default_factory=set)
    _fds: list[int] = field(default_factory=list)
    _directions: list[_Direction] = field(default_factory=list)

    def open(self) -> None:
        if self.baudrate is not None and self.baudrate <= 0:
            raise ValueError(f"baudrate: must be positive, not {self.baudrate!r}")
        master_a, slave_a = pty.openpty()
        master_b, slave_b = pty.openpty()
        for fd in (master_a, slave_a, master_b, slave_b):
            tty.setraw(fd)
        for fd in (master_a, master_b):
            os.set_blocking(fd, False)
        self.path_a, self.path_b = os.ttyname(slave_a), os.ttyname(slave_b)
        # The slave fds stay open so a master never sees a hang-up between client sessions.
        self._fds = [master_a, master_b, slave_a, slave_b]
        to_b, to_a = _Direction(master_b), _Direction(master_a)
        self._directions = [to_b, to_a]
        loop = asyncio.get_running_loop()
        loop.add_reader(master_a, self._pump, master_a, to_b, True)
        loop.add_reader(master_b, self._pump, master_b, to_a, False)

    def _pump(self, src: int, direction: _Direction, a_to_b: bool) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(src)
            return
        if a_to_b:
            self.bytes_a_to_b += len(data)
            if data and data[0] in self.garble_ids:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
        else:
            self.bytes_b_to_a += len(data)
            if self.device_ids is not None and data and data[0] not in self.device_ids:
                return
        if self.baudrate is None:
            _write_all(direction.dst, data)
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), direction.free_at)
        direction.free_at = start + len(data) * 10 / self.baudrate
        direction.queue.append((direction.free_at, data))
        if direction.timer is None:
            direction.timer = loop.call_at(direction.free_at, self._deliver, direction)

    def _deliver(self, direction: _Direction) -> None:
        loop = asyncio.get_running_loop()
        direction.timer = None
        while direction.queue and direction.queue[0][0] <= loop.time():
            _write_all(direction.dst, direction.queue.popleft()[1])
        if direction.queue:
            direction.timer = loop.call_at(direction.queue[0][0], self._deliver, direction)

    async def __aenter__(self) -> NullModem:
        self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for direction in self._directions:
            if direction.timer is not None:
                direction.timer.cancel()
        self._directions = []
        for fd in self._fds[:2]:
            loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


@contextlib.asynccontextmanager
async def rtu_server(
    modem: NullModem,
    devices: list[SimDevice],
    *,
    timeout: float = 0.3,
    trace_pdu: TracePdu | None = None,
) -> AsyncIterator[ModbusSerialServer]:
    """An RS485 line with ``devices`` on end A of ``modem``; requests for other ids get no
    answer.

    pymodbus 3.16's simulator answers unknown ids with exception 4 even with
    ``ignore_missing_devices``, so the null-modem drops those requests, as the
    silent wire of a real bus would.
    """
    modem.device_ids = {dev.id for dev in devices}
    server = ModbusSerialServer(
        devices,
        port=modem.path_a,
        baudrate=modem.baudrate or 9600,
        timeout=timeout,
        ignore_missing_devices=True,
        trace_pdu=trace_pdu,
    )
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def tcp_server(
    devices: list[SimDevice],
    *,
    port: int | None = None,
    trace_pdu: TracePdu | None = None,
) -> AsyncIterator[tuple[ModbusTcpServer, int]]:
    """A Modbus TCP server for ``devices`` on 127.0.0.1, yielded with its port once it
    accepts connections; shut down on exit. Pass the ``port`` of a server that was shut
    down to bring a device back at the same address."""
    port = free_port() if port is None else port
    server = ModbusTcpServer(
        devices, address=("127.0.0.1", port), ignore_missing_devices=True, trace_pdu=trace_pdu
    )
    await server.serve_forever(background=True)
    try:
        async with asyncio.timeout(5):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.01)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield server, port
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


# --- EVSE controller boards --------------------------------------------------------------


class _Board:
    """What both board models share: the dicts, the online switch and the action hook."""

    WRITE_FUNCTIONS: frozenset[int] = frozenset({5, 6, 15, 16})

    def __init__(self, device_id: int, write_functions: frozenset[int] | None = None) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id: must be 1..247, not {device_id!r}")
        self.device_id = device_id
        self.online = True
        """False: the board ignores the bus (requests time out) until set True again."""
        self.write_functions = self.WRITE_FUNCTIONS if write_functions is None else write_functions
        """The write function codes the firmware implements; others get exception 1."""
        self.holding: dict[int, int] = {}
        self.coils: dict[int, bool] = {}
        self.inputs: dict[int, int] = {}
        self.bus_writes: list[tuple[int, int]] = []
        """(address, value) of every write the bus made and the board accepted, in order."""
        self.write_codes: list[int] = []
        """The function code of each entry of ``bus_writes``."""
        self.rejected: list[tuple[int, int, int]] = []
        """(function code, address, exception code) of every bus write the board refused."""

    async def set_register(self, server: SimServer, address: int, value: int) -> None:
        """Set a holding register as the board itself would (read-only ones too)."""
        await server.async_setValues(self.device_id, 3, address, [value])

    def power_on(self) -> None:
        """Come back on the bus as after a power cut: volatile registers hold their power-on
        values again (see the subclass), retentive ones what they held."""
        self.online = True
        self._refresh()

    def _accept(self, address: int, value: int) -> ExcCodes | None:
        """Check a bus write of one register or coil; None accepts it."""
        raise NotImplementedError

    def _model(self, function: int) -> dict[int, int] | dict[int, bool]:
        if function in _COIL_FUNCTIONS:
            return self.coils
        return self.inputs if function in _INPUT_FUNCTIONS else self.holding

    def _store(self, function: int, address: int, value: int) -> None:
        """Take one accepted write into the model."""
        if function in _COIL_FUNCTIONS:
            self.coils[address] = bool(value)
        else:
            cast(dict[int, int], self._model(function))[address] = value

    def _refresh(self) -> None:
        """Recompute the registers the firmware derives from the others."""

    def _check_write(self, function: int, address: int, values: list[int]) -> ExcCodes | None:
        if function not in self.write_functions:
            return ExcCodes.ILLEGAL_FUNCTION
        for i, value in enumerate(values):
            if (rejected := self._accept(address + i, value)) is not None:
                return rejected
        return None

    async def _action(
        self,
        function: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        host = function in _HOST_FUNCTIONS
        if not self.online and not (host and values is not None):
            raise NoSuchIdException(f"board {self.device_id} is offline")
        model = self._model(function)
        if values is not None:
            if not host:
                words = [int(v) for v in values]
                if (rejected := self._check_write(function, address, words)) is not None:
                    self.rejected.append((function, address, int(rejected)))
                    return rejected
            for i, value in enumerate(values):
                self._store(function, address + i, int(value))
                if not host:
                    self.bus_writes.append((address + i, int(value)))
                    self.write_codes.append(function)
            self._refresh()
            # pymodbus stores ``values`` after this hook: make them what the firmware keeps.
            cast(list[int | bool], values)[:] = [model[address + i] for i in range(len(values))]
        self._sync(function, start, registers)
        return None

    def _sync(self, function: int, start: int, registers: list[int]) -> None:
        """Copy the model into the datastore block the request touches."""
        if function in _COIL_FUNCTIONS:
            for address, on in self.coils.items():
                word, bit = address // 16 - start, address % 16
                registers[word] = (
                    registers[word] | (1 << bit) if on else registers[word] & ~(1 << bit)
                )
            return
        for address, value in self._model(function).items():
            if 0 <= address - start < len(registers):
                registers[address - start] = value


class EvseDinBoard(_Board):
    """An EVSE-DIN / SimpleEVSE-WB board, as its datasheet and the openWB and evcc drivers
    describe it: holding registers read with FC03, written with FC06 or FC16.

    ========  ===================================================================
    1000      set current: 0 (no PWM) or 6-80 A; anything else is exception 3.
              Volatile: after power-on it holds register 2000. In 0.01 A mode
              (2005 bit 7) the unit is 0.01 A: 0 or 600-8000
    1001      current actually signalled: min(1000, 1003) when PWM is on, else 0
              (in 1000's unit)
    1002      vehicle state: 1 A, 2 B, 3 C, 4 D, 5 failure
    1003      cable (PP) limit, A (0: no limit applied)
    1004      control bits; bit 0 "turn off now" stops the PWM (1006 = 3); 0 after power-on
    1005      firmware version
    1006      1 steady 12 V, 2 PWM, 3 off
    2000      current after power-on, A (EEPROM; factory 32): 0 or ``power_on_min_a``-80
    2001-     further EEPROM settings, any value; 2005 bit 7 selects the 0.01 A mode
    2007      (firmware >= 17 only)
    ========  ===================================================================

    1000, 1004 and 2000-2007 are writable from the bus; writing another register is
    answered with exception 2, as is any address outside 1000-1006 and 2000-2007. A new
    board is as after power-on: it offers its register-2000 current until told
    otherwise. ``write_functions`` are the write codes the firmware implements ({16} for
    a board that answers FC06 with exception 1). ``pinned_current``, when set, is the raw
    value 1000 keeps whatever is written (a board whose current comes from its button or
    analog input): the write is acknowledged, the read-back disagrees.
    """

    SET_CURRENT = 1000
    SIGNALLED_CURRENT = 1001
    VEHICLE_STATE = 1002
    CABLE_LIMIT = 1003
    CONTROL = 1004
    FIRMWARE = 1005
    PWM_STATUS = 1006
    POWER_ON_CURRENT = 2000
    OPTIONS = 2005
    PRECISE_BIT = 1 << 7
    SETTINGS = range(2000, 2008)
    STATES: dict[str, int] = {"A": 1, "B": 2, "C": 3, "D": 4, "failure": 5}
    WRITE_FUNCTIONS = frozenset({6, 16})

    def __init__(
        self,
        device_id: int = 1,
        *,
        firmware: int = 17,
        cable_limit_a: int = 32,
        power_on_current_a: int = 32,
        power_on_min_a: int = 0,
        precise: bool = False,
        write_functions: frozenset[int] | None = None,
    ) -> None:
        super().__init__(device_id, write_functions)
        if precise and firmware < 17:
            raise ValueError("the 0.01 A mode needs firmware 17 or later")
        self.power_on_min_a = power_on_min_a
        self.pinned_current: int | None = None
        self.holding = {
            self.SET_CURRENT: 0,
            self.SIGNALLED_CURRENT: 0,
            self.VEHICLE_STATE: self.STATES["A"],
            self.CABLE_LIMIT: cable_limit_a,
            self.CONTROL: 0,
            self.FIRMWARE: firmware,
            self.PWM_STATUS: 1,
        }
        self.holding.update(dict.fromkeys(self.SETTINGS, 0))
        self.holding[self.POWER_ON_CURRENT] = power_on_current_a
        self.holding[2001] = 1  # Modbus on
        self.holding[2002] = 6  # minimum current
        if precise:
            self.holding[self.OPTIONS] |= self.PRECISE_BIT
        self.power_on()

    @property
    def unit(self) -> int:
        """Register 1000 counts in 1/``unit`` A: 100 in the 0.01 A mode, else 1."""
        precise = self.holding[self.FIRMWARE] >= 17 and self.holding[self.OPTIONS] & (
            self.PRECISE_BIT
        )
        return 100 if precise else 1

    @property
    def signalled_a(self) -> float:
        """The current the pilot PWM offers now, in A (0 without PWM)."""
        return self.holding[self.SIGNALLED_CURRENT] / self.unit

    def power_on(self) -> None:
        h = self.holding
        h[self.SET_CURRENT] = h[self.POWER_ON_CURRENT] * self.unit
        h[self.CONTROL] = 0
        super().power_on()

    def device(self) -> SimDevice:
        """A fresh pymodbus device for a server, holding the model's current registers."""

        def run(first: int, last: int) -> SimData:
            values = [self.holding[a] for a in range(first, last + 1)]
            return SimData(first, values=values, datatype=DataType.REGISTERS)

        return SimDevice(
            id=self.device_id,
            simdata=[
                run(self.SET_CURRENT, self.PWM_STATUS),
                run(self.SETTINGS.start, self.SETTINGS.stop - 1),
            ],
            action=self._action,
        )

    async def set_vehicle_state(self, server: SimServer, state: PilotState | str) -> None:
        """Plug, charge or unplug the simulated vehicle: ``state`` is A-D or "failure"."""
        if state not in self.STATES:
            raise ValueError(f"EVSE-DIN vehicle state must be one of {list(self.STATES)}")
        await self.set_register(server, self.VEHICLE_STATE, self.STATES[state])

    def _accept(self, address: int, value: int) -> ExcCodes | None:
        if address == self.SET_CURRENT:
            unit = self.unit
            return None if value == 0 or 6 * unit <= value <= 80 * unit else ExcCodes.ILLEGAL_VALUE
        if address == self.POWER_ON_CURRENT:
            ok = self.power_on_min_a <= value <= 80
            return None if ok else ExcCodes.ILLEGAL_VALUE
        ok = address == self.CONTROL or address in self.SETTINGS
        return None if ok else ExcCodes.ILLEGAL_ADDRESS

    def _refresh(self) -> None:
        h = self.holding
        if self.pinned_current is not None:
            h[self.SET_CURRENT] = self.pinned_current
        unit = self.unit
        current, limit = h[self.SET_CURRENT], h[self.CABLE_LIMIT] * unit
        if h[self.CONTROL] & 1:
            h[self.SIGNALLED_CURRENT], h[self.PWM_STATUS] = 0, 3
        elif current >= 6 * unit:
            h[self.SIGNALLED_CURRENT] = min(current, limit) if limit else current
            h[self.PWM_STATUS] = 2
        else:
            h[self.SIGNALLED_CURRENT], h[self.PWM_STATUS] = 0, 1


class PhoenixBoard(_Board):
    """A Phoenix Contact EV Charge Control (Basic, Modbus/RTU), as its manual
    (106377_en_04, table 9-2) lays out the registers:

    ==============  =======  =============================================================
    coil 20000      FC01/05  enable charging (PWM on); only with HR 4000 = 3
    coil 20001      FC01/05  0 forces state F; only with HR 4001 = 2
    HR 4000         FC03/06  enable source: 0 always, 1 input EN (default), 2 EN pulse,
                             3 coil 20000. EN is modelled open, so 1 and 2 never enable.
    HR 4001         FC03/06  availability source: 0 always available, 2 coil 20001
    HR 22000        FC03/06  maximum current 6-63 A (others: exception 3)
    HR 24000        FC03     state, two ASCII chars: letter A-F, then 1 (no PWM) or 2
                             (PWM) for A-D, 0 for E and F; e.g. "B2" = 0x4232
    HR 24001        FC03     cable (PP) capacity, A (0: no limit applied)
    HR 24002        FC03     PWM duty, %
    HR 24003        FC03     advertised current, A (0 without PWM)
    HR 24025        FC03     error bits (0: none)
    IR 1031-1033    FC04     firmware: letter << 8 | major, version, minor
    ==============  =======  =============================================================

    The status registers are *holding* registers on this board (read with FC03), not
    input registers. Bus writes to anything but 4000, 4001, 22000 and the two coils are
    answered with exception 2. The coils and 22000 are volatile: after power-on charging
    is disabled and 22000 holds ``max_current_a`` again; 4000 and 4001 are retentive.
    """

    ENABLE = 20000
    AVAILABLE = 20001
    ENABLE_MODE = 4000
    AVAILABILITY_MODE = 4001
    MAX_CURRENT = 22000
    STATUS = 24000
    CABLE_CAPACITY = 24001
    DUTY = 24002
    ADVERTISED = 24003
    ERRORS = 24025
    FIRMWARE = 1031

    def __init__(
        self,
        device_id: int = 1,
        *,
        mode: int = 1,
        max_current_a: int = 16,
        cable_a: int = 32,
        firmware: tuple[str, int, int, int] = ("V", 1, 4, 2),
    ) -> None:
        super().__init__(device_id)
        letter, major, version, minor = firmware
        self.power_on_current_a = max_current_a
        self.vehicle = "A"
        self.coils = {self.ENABLE: False, self.AVAILABLE: True}
        self.holding = {
            self.ENABLE_MODE: mode,
            self.AVAILABILITY_MODE: 0,
            self.MAX_CURRENT: max_current_a,
            self.STATUS: 0,
            self.CABLE_CAPACITY: cable_a,
            self.DUTY: 0,
            self.ADVERTISED: 0,
            24004: 0,
            24005: 0,
            self.ERRORS: 0,
        }
        self.inputs = {1031: ord(letter) << 8 | major, 1032: version, 1033: minor}
        self._refresh()

    @property
    def status(self) -> str:
        """Register 24000 as its two characters, e.g. "B2"."""
        word = self.holding[self.STATUS]
        return chr(word >> 8) + chr(word & 0xFF)

    def device(self) -> SimDevice:
        """A fresh pymodbus device for a server, holding the model's current values."""

        def run(model: dict[int, int], first: int, last: int) -> SimData:
            values = [model[a] for a in range(first, last + 1)]
            return SimData(first, values=values, datatype=DataType.REGISTERS)

        coils = [self.coils[self.ENABLE], self.coils[self.AVAILABLE]]
        return SimDevice(
            id=self.device_id,
            simdata=(
                [SimData(self.ENABLE, values=coils, datatype=DataType.BITS)],
                # pymodbus needs every block non-empty; the board has no discrete inputs.
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [
                    run(self.holding, self.ENABLE_MODE, self.AVAILABILITY_MODE),
                    run(self.holding, self.MAX_CURRENT, self.MAX_CURRENT),
                    run(self.holding, self.STATUS, 24005),
                    run(self.holding, self.ERRORS, self.ERRORS),
                ],
                [run(self.inputs, 1031, 1033)],
            ),
            action=self._action,
        )

    def power_on(self) -> None:
        self.coils = {self.ENABLE: False, self.AVAILABLE: True}
        self.holding[self.MAX_CURRENT] = self.power_on_current_a
        self.holding[self.ERRORS] = 0
        super().power_on()

    async def set_vehicle_state(self, server: SimServer, state: PilotState | str) -> None:
        """Change the state the board measures: a letter A-F."""
        if state not in tuple("ABCDEF"):
            raise ValueError("Phoenix state must be a letter A-F")
        await self.set_register(server, self.STATUS, ord(state) << 8 | ord("1"))

    async def set_error_bits(self, server: SimServer, bits: int) -> None:
        """Set register 24025 (0 clears every error)."""
        await self.set_register(server, self.ERRORS, bits)

    def _accept(self, address: int, value: int) -> ExcCodes | None:
        limits = {
            self.ENABLE_MODE: (0, 3),
            self.AVAILABILITY_MODE: (0, 2),
            self.MAX_CURRENT: (6, 63),
        }
        if address in (self.ENABLE, self.AVAILABLE):
            return None
        if address not in limits:
            return ExcCodes.ILLEGAL_ADDRESS
        low, high = limits[address]
        return None if low <= value <= high else ExcCodes.ILLEGAL_VALUE

    def _store(self, function: int, address: int, value: int) -> None:
        if function not in _COIL_FUNCTIONS | _INPUT_FUNCTIONS and address == self.STATUS:
            self.vehicle = chr(value >> 8)
        super()._store(function, address, value)

    def _refresh(self) -> None:
        h = self.holding
        forced_f = h[self.AVAILABILITY_MODE] == 2 and not self.coils[self.AVAILABLE]
        state = "F" if forced_f else self.vehicle
        mode = h[self.ENABLE_MODE]
        enabled = mode == 0 or (mode == 3 and self.coils[self.ENABLE])
        pwm = enabled and state in ("A", "B", "C", "D")
        cable = h[self.CABLE_CAPACITY]
        current = min(h[self.MAX_CURRENT], cable) if cable else h[self.MAX_CURRENT]
        suffix = "0" if state in ("E", "F") else "2" if pwm else "1"
        h[self.STATUS] = (ord(state) & 0xFF) << 8 | ord(suffix)
        h[self.ADVERTISED] = current if pwm else 0
        h[self.DUTY] = (
            (round(current / 0.6) if current <= 51 else round(current / 2.5 + 64)) if pwm else 0
        )
