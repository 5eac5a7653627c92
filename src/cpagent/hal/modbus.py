"""Modbus RTU/TCP energy meters, and the bus they share with EVSE boards.

One :class:`ModbusBus` exists per serial port or TCP endpoint and owns the
pymodbus client; every device on that wire (each :class:`ModbusMeter`, and the
EVSE boards of :mod:`cpagent.hal.evse_board`) shares it, because an RS485 line
carries one request at a time. A meter reads what its
:class:`~cpagent.hal.meter_maps.MeterMap` describes in as few requests as the
map allows and checks the values before the station sees them.

pymodbus reports failures two ways and both are handled: transport errors
(no answer, closed port, garbled frame) are raised as exceptions, while a
device's exception reply comes back as a response with ``isError()`` set.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from cpagent.exc import HalError, MeterFault
from cpagent.hal.base import Meter, MeterReading
from cpagent.hal.meter_maps import MeterMap, Register

log = logging.getLogger(__name__)

FREQUENCY_RANGE_HZ = (45.0, 65.0)
"""Mains frequency outside this range means a misread register, not a real grid."""

_Client = AsyncModbusSerialClient | AsyncModbusTcpClient

_STRUCT = {"f32": ">f", "i32": ">i", "u32": ">I", "u64": ">Q", "i16": ">h", "u16": ">H"}


class ModbusTransportError(HalError):
    """No usable answer reached us: timeout, closed port, refused connection, bad frame."""


class ModbusDeviceError(HalError):
    """The device answered with a Modbus exception; ``code`` is its exception code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, vendor_error_code=f"ModbusException{code}")
        self.code = code


class ModbusBus:
    """One serial line or TCP endpoint, shared by all devices on it.

    The client is created and connected on the first request, so building the
    hardware never blocks or fails on a missing adapter; a transport error that
    leaves the client disconnected drops it, and the next request reconnects.
    Requests are serialized by a lock, and ``gap_s`` keeps a minimum pause
    between the end of one request and the start of the next for devices that
    need it. The client never retries on its own: callers decide.
    """

    def __init__(
        self,
        *,
        port: str | None = None,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        host: str | None = None,
        tcp_port: int = 502,
        timeout: float = 1.0,
        gap_s: float = 0.0,
    ) -> None:
        if (port is None) == (host is None):
            raise ValueError("ModbusBus needs exactly one of port= (RTU) or host= (TCP)")
        if timeout <= 0:
            raise ValueError(f"timeout: must be positive, not {timeout!r}")
        if gap_s < 0:
            raise ValueError(f"gap_s: must not be negative, not {gap_s!r}")
        self._port = port
        self._serial = (baudrate, parity, stopbits, bytesize)
        self._host = host
        self._tcp_port = tcp_port
        self.timeout = timeout
        self.gap_s = gap_s
        self.name = port if port is not None else f"{host}:{tcp_port}"
        self.requests = 0
        self._client: _Client | None = None
        self._lock = asyncio.Lock()
        self._last_done = -math.inf

    @classmethod
    def serial(
        cls,
        port: str,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout: float = 1.0,
        gap_s: float = 0.0,
    ) -> ModbusBus:
        """A Modbus RTU line on a serial port (defaults: 9600 8N1, as most meters ship)."""
        return cls(
            port=port,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            timeout=timeout,
            gap_s=gap_s,
        )

    @classmethod
    def tcp(
        cls, host: str, port: int = 502, *, timeout: float = 1.0, gap_s: float = 0.0
    ) -> ModbusBus:
        """A Modbus TCP endpoint (a meter with Ethernet or an RTU gateway)."""
        return cls(host=host, tcp_port=port, timeout=timeout, gap_s=gap_s)

    def _new_client(self) -> _Client:
        if self._port is not None:
            baudrate, parity, stopbits, bytesize = self._serial
            return AsyncModbusSerialClient(
                self._port,
                baudrate=baudrate,
                parity=parity,
                stopbits=stopbits,
                bytesize=bytesize,
                timeout=self.timeout,
                retries=0,
                reconnect_delay=0,
            )
        assert self._host is not None
        return AsyncModbusTcpClient(
            self._host,
            port=self._tcp_port,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
        )

    async def read_registers(
        self, device_id: int, function: int, address: int, count: int
    ) -> list[int]:
        """Read ``count`` holding (FC03) or input (FC04) registers from one device.

        Raises :class:`ModbusTransportError` when no valid answer arrives and
        :class:`ModbusDeviceError` when the device answers with an exception.
        """
        if function not in (3, 4):
            raise ValueError(f"function code {function} is not a register read")
        what = f"device {device_id} on {self.name}: FC{function:02d} {address:#06x} x{count}"

        def send(client: _Client) -> Awaitable[ModbusPDU]:
            if function == 3:
                return client.read_holding_registers(address, count=count, device_id=device_id)
            return client.read_input_registers(address, count=count, device_id=device_id)

        rr = await self._exchange(what, send)
        registers = list(rr.registers)
        if len(registers) != count:
            raise ModbusTransportError(f"{what}: answer has {len(registers)} registers")
        return registers

    async def write_register(self, device_id: int, address: int, value: int) -> None:
        """Write one holding register (FC06); ``value`` is the raw 16-bit word.

        Errors as for :meth:`read_registers`; an answer that does not echo the
        request is a transport error, as the device may not have stored the value.
        """
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"register value must be 0..0xffff, not {value!r}")
        what = f"device {device_id} on {self.name}: FC06 {address:#06x} = {value}"
        rr = await self._exchange(
            what, lambda client: client.write_register(address, value, device_id=device_id)
        )
        if rr.address != address or list(rr.registers) != [value]:
            raise ModbusTransportError(f"{what}: answer does not echo the request")

    async def write_registers(self, device_id: int, address: int, values: Sequence[int]) -> None:
        """Write consecutive holding registers with FC16 (Write Multiple Registers), which
        some devices implement instead of FC06. Errors as for :meth:`write_register`; the
        answer must name the address and count written."""
        words = list(values)
        if not words or not all(0 <= v <= 0xFFFF for v in words):
            raise ValueError(f"register values must be 0..0xffff, not {values!r}")
        shown = ",".join(map(str, words))
        what = f"device {device_id} on {self.name}: FC16 {address:#06x} = {shown}"
        rr = await self._exchange(
            what, lambda client: client.write_registers(address, words, device_id=device_id)
        )
        if rr.address != address or rr.count != len(words):
            raise ModbusTransportError(f"{what}: answer does not echo the request")

    async def read_coils(self, device_id: int, address: int, count: int) -> list[bool]:
        """Read ``count`` coils (FC01). Errors as for :meth:`read_registers`."""
        what = f"device {device_id} on {self.name}: FC01 {address:#06x} x{count}"
        rr = await self._exchange(
            what, lambda client: client.read_coils(address, count=count, device_id=device_id)
        )
        bits = list(rr.bits)
        if len(bits) < count:
            raise ModbusTransportError(f"{what}: answer has {len(bits)} coils")
        return bits[:count]

    async def write_coil(self, device_id: int, address: int, value: bool) -> None:
        """Switch one coil (FC05). Errors as for :meth:`write_register`."""
        what = f"device {device_id} on {self.name}: FC05 {address:#06x} = {int(value)}"
        rr = await self._exchange(
            what, lambda client: client.write_coil(address, value, device_id=device_id)
        )
        if rr.address != address or not rr.bits or rr.bits[0] != value:
            raise ModbusTransportError(f"{what}: answer does not echo the request")

    async def _exchange(
        self, what: str, send: Callable[[_Client], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        """Run one request/answer on the line: wait for the lock and the gap, (re)connect,
        send, and map failures. Returns only answers that are not exception replies.

        pymodbus connects and awaits the answer with ``asyncio.wait_for``, which on Python
        3.11 can return a result (an answer, or a refused connection) and drop a
        cancellation that arrived with it; the caller's cancellation is raised here
        instead, whatever the outcome (a lost one hangs shutdown).
        """
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        async with self._lock:
            wait = self._last_done + self.gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                rr = await self._send(what, send)
            finally:
                self.requests += 1
                self._last_done = time.monotonic()
                if task is not None and task.cancelling() > cancels:
                    raise asyncio.CancelledError
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise ModbusDeviceError(f"{what}: device answered exception code {code}", code)
        return rr

    async def _send(self, what: str, send: Callable[[_Client], Awaitable[ModbusPDU]]) -> ModbusPDU:
        client = self._client
        try:
            if client is None:
                client = self._client = self._new_client()
            if not client.connected and not await client.connect():
                raise ModbusTransportError(f"{what}: cannot open {self.name}")
            return await send(client)
        except (ModbusException, OSError) as err:  # OSError covers TimeoutError
            if client is not None and not client.connected:
                client.close()
                self._client = None
            raise ModbusTransportError(f"{what}: no answer ({err})") from err

    async def close(self) -> None:
        """Close the port or connection. Idempotent; the next request reopens it."""
        async with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def __aenter__(self) -> ModbusBus:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class Block:
    """One request: ``count`` words from ``address`` with ``function``, covering ``registers``."""

    function: int
    address: int
    count: int
    registers: tuple[Register, ...]


def plan_blocks(meter_map: MeterMap) -> list[Block]:
    """Group the map's registers into as few requests as ``max_registers_per_read`` allows.

    Registers are merged per function code in address order; a request may span
    unmapped words between them (most meters answer those, and one that does
    not makes the meter fall back to per-value reads).
    """
    blocks: list[Block] = []
    limit = meter_map.max_registers_per_read
    for function in sorted({reg.function for reg in meter_map.registers()}):
        regs = sorted(
            (r for r in meter_map.registers() if r.function == function), key=lambda r: r.address
        )
        group: list[Register] = []
        start = end = 0
        for reg in regs:
            reg_end = reg.address + reg.words
            if group and max(end, reg_end) - start <= limit:
                group.append(reg)
                end = max(end, reg_end)
                continue
            if group:
                blocks.append(Block(function, start, end - start, tuple(group)))
            group, start, end = [reg], reg.address, reg_end
        if group:
            blocks.append(Block(function, start, end - start, tuple(group)))
    return blocks


def decode(reg: Register, words: Sequence[int]) -> float:
    """Turn a register's raw words into its scaled value.

    Unsigned integers with every bit set mean "not available" on ABB meters
    and are reported as :class:`ValueError`, like non-finite floats.
    """
    ordered = list(reversed(words)) if reg.word_order == "little" else list(words)
    raw_bytes = b"".join(w.to_bytes(2, "big") for w in ordered)
    raw = struct.unpack(_STRUCT[reg.type], raw_bytes)[0]
    if reg.type.startswith("u") and raw == (1 << (16 * reg.words)) - 1:
        raise ValueError("register reads all ones (not available)")
    value = float(raw) * reg.scale
    if not math.isfinite(value):
        raise ValueError(f"register reads {value}")
    return value


class ModbusMeter(Meter):
    """An energy meter on a :class:`ModbusBus`, described by a :class:`MeterMap`.

    ``read()`` raises :class:`MeterFault` with ``vendor_error_code``:

    - ``ModbusTimeout``: no usable answer after ``retries`` extra attempts;
    - ``ModbusException<code>``: the device rejected a request (not retried);
    - ``ImplausibleEnergy``: the import register went backwards; the last good
      value is kept as the reference, so a later correct read recovers;
    - ``ImplausibleFrequency``: mains frequency outside 45-65 Hz;
    - ``ImplausibleValue``: a non-finite float or a "not available" integer.

    When the device rejects a block read, the same registers are read one by
    one; if that works, the block is read per value from then on.
    """

    def __init__(
        self, meter_map: MeterMap, bus: ModbusBus, device_id: int = 1, *, retries: int = 2
    ) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id: must be 1..247, not {device_id!r}")
        if retries < 0:
            raise ValueError(f"retries: must not be negative, not {retries!r}")
        self.map = meter_map
        self.bus = bus
        self.device_id = device_id
        self.retries = retries
        self.blocks = plan_blocks(meter_map)
        self._per_value: set[Block] = set()
        self._last_energy_wh: float | None = None

    def __repr__(self) -> str:
        return f"ModbusMeter({self.map.name!r}, id {self.device_id} on {self.bus.name})"

    @property
    def last_energy_wh(self) -> float | None:
        """The last energy value that passed the checks (None before the first good read)."""
        return self._last_energy_wh

    async def read(self) -> MeterReading:
        words: dict[Register, list[int]] = {}
        for block in self.blocks:
            words.update(await self._read_block(block))
        values: dict[Register, float] = {}
        for reg, raw in words.items():
            try:
                values[reg] = decode(reg, raw)
            except ValueError as err:
                raise self._fault(
                    f"FC{reg.function:02d} {reg.address:#06x} ({reg.type}): {err}",
                    "ImplausibleValue",
                ) from None
        m = self.map
        frequency = None if m.frequency_hz is None else values[m.frequency_hz]
        low, high = FREQUENCY_RANGE_HZ
        if frequency is not None and not low <= frequency <= high:
            raise self._fault(
                f"frequency {frequency:g} Hz is outside {low:g}-{high:g} Hz", "ImplausibleFrequency"
            )
        energy = values[m.energy_import_wh]
        if self._last_energy_wh is not None and energy < self._last_energy_wh:
            raise self._fault(
                f"energy register went backwards: {energy:.1f} Wh < last good "
                f"{self._last_energy_wh:.1f} Wh",
                "ImplausibleEnergy",
            )
        self._last_energy_wh = energy
        return MeterReading(
            energy_wh=energy,
            power_w=values[m.power_w],
            voltage_v=tuple(values[r] for r in m.voltage_v),
            current_a=tuple(values[r] for r in m.current_a),
            power_phase_w=tuple(values[r] for r in m.power_phase_w),
            frequency_hz=frequency,
        )

    def _fault(self, message: str, code: str) -> MeterFault:
        return MeterFault(
            f"{self.map.name} meter {self.device_id} on {self.bus.name}: {message}",
            vendor_error_code=code,
        )

    async def _read_block(self, block: Block) -> dict[Register, list[int]]:
        if block not in self._per_value:
            try:
                raw = await self._request(block.function, block.address, block.count)
            except ModbusDeviceError as err:
                if len(block.registers) == 1:
                    raise self._device_fault(err) from err
                log.debug("%r: block read rejected (%s); trying per-value reads", self, err)
            else:
                return {
                    reg: raw[reg.address - block.address : reg.address - block.address + reg.words]
                    for reg in block.registers
                }
        result: dict[Register, list[int]] = {}
        for reg in block.registers:
            try:
                result[reg] = await self._request(reg.function, reg.address, reg.words)
            except ModbusDeviceError as err:
                raise self._device_fault(err) from err
        if block not in self._per_value:
            log.info(
                "%r rejects reading %d registers at %#06x at once; reading them one by one",
                self,
                block.count,
                block.address,
            )
            self._per_value.add(block)
        return result

    def _device_fault(self, err: ModbusDeviceError) -> MeterFault:
        return MeterFault(f"{self.map.name} meter: {err}", vendor_error_code=err.vendor_error_code)

    async def _request(self, function: int, address: int, count: int) -> list[int]:
        last: ModbusTransportError | None = None
        for _attempt in range(self.retries + 1):
            try:
                return await self.bus.read_registers(self.device_id, function, address, count)
            except ModbusTransportError as err:
                last = err
        assert last is not None
        raise MeterFault(
            f"{self.map.name} meter: {last} (after {self.retries + 1} attempts)",
            vendor_error_code="ModbusTimeout",
        ) from last
