"""Pilot backends for EVSE controller boards on Modbus.

A Pi cannot make the 1 kHz pilot PWM or measure the pilot voltage, so a real build
leaves both to a controller board and talks to it over Modbus RTU, usually on the
same RS-485 line as the meter: the board shares the meter's :class:`ModbusBus` and
its lock, so requests to both never overlap on the wire.

Every board failure is a :class:`BoardFault` (OCPP ``OtherError``) whose
``vendor_error_code`` tells why:

- ``EvseBoardTimeout``: no usable answer after ``retries`` extra attempts;
- ``ModbusException<code>``: the board rejected a request (not retried);
- ``EvseBoardFailure``: the board reports a failure of its own (EVSE-DIN state 5);
- ``EvseBoardBadState``: a state value the driver does not know;
- ``PhoenixError0x....``: the Phoenix board's error register is not zero.

The station polls ``state()`` only while charging; :meth:`ModbusBoardPilot.watch`
polls it in the background so that plugging, unplugging and board faults reach the
station within ``interval_s``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar

from cpagent.exc import BoardFault
from cpagent.hal.base import Pilot, PilotState
from cpagent.hal.modbus import ModbusBus, ModbusDeviceError, ModbusTransportError

log = logging.getLogger(__name__)

MIN_CURRENT_A = 6.0
"""IEC 61851: below this no PWM is offered and the EV may not charge."""

_T = TypeVar("_T")


class ModbusBoardPilot(Pilot, abc.ABC):
    """What every Modbus EVSE board pilot shares: retries, fault mapping, the watch loop.

    ``offered_current`` is the current the board last accepted (0 when no PWM), so a
    rejected or unanswered write leaves it unchanged. ``last_state``/``last_fault``
    are the outcome of the latest ``state()`` call, whoever made it.
    """

    kind: ClassVar[str]
    """The board's config name, e.g. ``"evse-din"``."""
    title: ClassVar[str]
    """The board's name in messages."""

    def __init__(
        self,
        bus: ModbusBus,
        device_id: int = 1,
        *,
        retries: int = 2,
        max_current_a: float = 32.0,
    ) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id: must be 1..247, not {device_id!r}")
        if retries < 0:
            raise ValueError(f"retries: must not be negative, not {retries!r}")
        if not (math.isfinite(max_current_a) and max_current_a >= MIN_CURRENT_A):
            raise ValueError(
                f"max_current_a: must be at least {MIN_CURRENT_A:g}, not {max_current_a!r}"
            )
        self.bus = bus
        self.device_id = device_id
        self.retries = retries
        self.max_current_a = max_current_a
        self.firmware: str | None = None
        self._offered = 0.0
        self._state: PilotState | None = None
        self._fault_code: str | None = None
        self._set_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id {self.device_id} on {self.bus.name})"

    @property
    def offered_current(self) -> float:
        return self._offered

    @property
    def last_state(self) -> PilotState | None:
        """The state the last ``state()`` read, or None after a fault or before any read."""
        return self._state

    @property
    def last_fault(self) -> str | None:
        """The ``vendor_error_code`` of the fault the last ``state()`` raised, if it did."""
        return self._fault_code

    async def set_offered_current(self, amps: float) -> None:
        """Offer ``amps`` (capped at ``max_current_a``); below 6 A stop the PWM.

        Raises ValueError for a negative or NaN value, :class:`BoardFault` when the
        board does not take it. Concurrent calls are applied one after the other.
        """
        if not amps >= 0:
            raise ValueError(f"offered current must be a non-negative number, not {amps!r}")
        async with self._set_lock:
            await self._apply(amps)

    async def state(self) -> PilotState:
        try:
            state = await self._read_state()
        except BoardFault as fault:
            self._record(None, fault)
            raise
        self._record(state, None)
        return state

    async def start(self) -> None:
        """Prepare the board once at startup. Never raises on device errors: a board that
        is off at boot is reported by ``state()`` instead."""
        try:
            self.firmware = await self._read_firmware()
        except BoardFault as err:
            log.warning("%s: cannot read the firmware version: %s", self, err)
        else:
            log.info("%s: firmware %s", self, self.firmware)

    async def watch(self, notify: Callable[[], None], interval_s: float) -> None:
        """Read the state every ``interval_s`` forever; call ``notify()`` whenever the
        outcome (a state, or a fault's code) differs from the last one this watch
        reported, so also on a new fault and on recovery. Compared with what *this*
        watch reported, not with the last read: another caller of ``state()`` may see a
        change first, and the change must still be announced.

        Device errors never end the loop; ``last_state``/``last_fault`` hold what was
        read when ``notify`` runs. Cancel the task to stop it.
        """
        if not interval_s > 0:
            raise ValueError(f"interval_s: must be positive, not {interval_s!r}")
        reported = (self._state, self._fault_code)
        while True:
            with contextlib.suppress(BoardFault):
                await self.state()
            outcome = (self._state, self._fault_code)
            if outcome != reported:
                reported = outcome
                notify()
            await asyncio.sleep(interval_s)

    def describe(self) -> dict[str, object]:
        """The board, where it is and what it last reported, for ``cpagent status``."""
        return {
            "kind": self.kind,
            "device_id": self.device_id,
            "bus": self.bus.name,
            "firmware": self.firmware,
            "state": None if self.last_state is None else str(self.last_state),
            "fault": self.last_fault,
            "offered_a": self._offered,
        }

    @abc.abstractmethod
    async def _apply(self, amps: float) -> None:
        """Make the board offer ``amps`` (validated, >= 0) and update ``_offered``."""

    @abc.abstractmethod
    async def _read_state(self) -> PilotState:
        """Read the state, raising :class:`BoardFault` as the module docstring lists."""

    @abc.abstractmethod
    async def _read_firmware(self) -> str:
        """The board's firmware version as text."""

    def _record(self, state: PilotState | None, fault: BoardFault | None) -> None:
        code = None if fault is None else fault.vendor_error_code or "BoardFault"
        if (state, code) == (self._state, self._fault_code):
            return
        if fault is not None:
            log.warning("%s", fault)
        elif self._fault_code is not None:
            log.info("%s: answers again, state %s", self, state)
        self._state, self._fault_code = state, code

    def _board_fault(self, detail: str, code: str) -> BoardFault:
        return BoardFault(
            f"{self.title} board {self.device_id} on {self.bus.name}: {detail}",
            vendor_error_code=code,
        )

    async def _call(self, request: Callable[[], Awaitable[_T]]) -> _T:
        """Run one bus request, retrying transport errors, mapping failures to BoardFault."""
        last: ModbusTransportError | None = None
        for _attempt in range(self.retries + 1):
            try:
                return await request()
            except ModbusTransportError as err:
                last = err
            except ModbusDeviceError as err:
                raise self._board_fault(
                    str(err), err.vendor_error_code or "ModbusException"
                ) from err
        raise self._board_fault(
            f"no answer after {self.retries + 1} attempts ({last})", "EvseBoardTimeout"
        ) from last

    async def _read(self, function: int, address: int, count: int = 1) -> list[int]:
        return await self._call(
            lambda: self.bus.read_registers(self.device_id, function, address, count)
        )

    async def _write_register(self, address: int, value: int) -> None:
        await self._call(lambda: self.bus.write_register(self.device_id, address, value))

    async def _write_coil(self, address: int, value: bool) -> None:
        await self._call(lambda: self.bus.write_coil(self.device_id, address, value))


class EvseDinPilot(ModbusBoardPilot):
    """An EVSE-DIN / SimpleEVSE-WB board (as openWB uses): FC03 reads, FC06 writes.

    Register 1000 takes the current in whole amps (0 = no PWM); 1002 reports the
    vehicle state (1-4 = A-D, 5 = failure); 1005 is the firmware version. The board
    must be in amp mode (register 2005 bit 7 clear, the default); its 0.01 A mode is
    not supported. Keep ``gap_s`` >= 0.1 on its bus, as the board needs.
    """

    kind = "evse-din"
    title = "EVSE-DIN"

    SET_CURRENT = 1000
    VEHICLE_STATE = 1002
    FIRMWARE = 1005
    _STATES: ClassVar[dict[int, PilotState]] = {
        1: PilotState.A,
        2: PilotState.B,
        3: PilotState.C,
        4: PilotState.D,
    }
    _FAILURE = 5

    async def _apply(self, amps: float) -> None:
        value = 0 if amps < MIN_CURRENT_A else int(min(amps, self.max_current_a))
        await self._write_register(self.SET_CURRENT, value)
        self._offered = float(value)

    async def _read_state(self) -> PilotState:
        (code,) = await self._read(3, self.VEHICLE_STATE)
        if code in self._STATES:
            return self._STATES[code]
        if code == self._FAILURE:
            raise self._board_fault("board reports a failure (vehicle state 5)", "EvseBoardFailure")
        raise self._board_fault(f"unknown vehicle state {code}", "EvseBoardBadState")

    async def _read_firmware(self) -> str:
        (version,) = await self._read(3, self.FIRMWARE)
        return str(version)


PHOENIX_ERROR_BITS: dict[int, str] = {
    2: "13 A cable rejected",
    3: "invalid PP value",
    4: "invalid CP value",
    5: "state F: station not available",
    6: "locking failed",
    7: "unlocking failed",
    8: "LD unavailable during locking",
    11: "state D, vehicle rejected",
    12: "charging contactor error",
    13: "no diode in the vehicle's CP circuit",
    15: "EV-RCM residual current detected",
}
"""Bits of the Phoenix error register 24025 (manual 106377_en_04, table 9-2)."""


class PhoenixPilot(ModbusBoardPilot):
    """A Phoenix Contact EV Charge Control board (EV-CC-AC1-M3-..., Modbus/RTU).

    ``start()`` sets holding register 4000 to 3 (charging enabled by coil 20000) if it
    is not; it is retentive, so it is written only when it differs. Offering >= 6 A
    writes holding register 22000 (capped at 63 A, the board's maximum), then coil
    20000 = 1; below 6 A coil 20000 = 0. The state is holding register 24000, two
    ASCII characters ("B2"); the letter is the state, A-F all valid. A non-zero error
    register 24025 is a fault. The manual lists all of these as holding registers
    (FC03/06), the firmware version as input registers 1031-1033 (FC04).
    """

    kind = "phoenix"
    title = "Phoenix EV Charge Control"

    ENABLE = 20000
    ENABLE_MODE = 4000
    ENABLE_BY_COIL = 3
    MAX_CURRENT = 22000
    MAX_CURRENT_A = 63
    STATUS = 24000
    ERRORS = 24025
    STATUS_FUNCTION = 3
    FIRMWARE = 1031
    FIRMWARE_FUNCTION = 4

    def __init__(
        self,
        bus: ModbusBus,
        device_id: int = 1,
        *,
        retries: int = 2,
        max_current_a: float = 32.0,
    ) -> None:
        super().__init__(bus, device_id, retries=retries, max_current_a=max_current_a)
        self._mode_set = False
        self._enabled = False

    async def start(self) -> None:
        await super().start()
        try:
            await self._ensure_mode()
        except BoardFault as err:
            log.warning("%s: cannot enable charging by Modbus (retried on offer): %s", self, err)

    async def _ensure_mode(self) -> None:
        (mode,) = await self._read(self.STATUS_FUNCTION, self.ENABLE_MODE)
        if mode != self.ENABLE_BY_COIL:
            await self._write_register(self.ENABLE_MODE, self.ENABLE_BY_COIL)
            log.info("%s: register 4000 was %d, set to 3 (enable by Modbus)", self, mode)
        self._mode_set = True

    async def _apply(self, amps: float) -> None:
        if amps < MIN_CURRENT_A:
            await self._write_coil(self.ENABLE, False)
            self._enabled = False
            self._offered = 0.0
            return
        if not self._mode_set:
            await self._ensure_mode()
        value = int(min(amps, self.max_current_a, self.MAX_CURRENT_A))
        await self._write_register(self.MAX_CURRENT, value)
        if self._enabled:
            self._offered = float(value)
        await self._write_coil(self.ENABLE, True)
        self._enabled = True
        self._offered = float(value)

    async def _read_state(self) -> PilotState:
        (bits,) = await self._read(self.STATUS_FUNCTION, self.ERRORS)
        if bits:
            names = [name for bit, name in PHOENIX_ERROR_BITS.items() if bits >> bit & 1]
            raise self._board_fault(
                f"board reports errors {bits:#06x} ({', '.join(names) or 'unknown bits'})",
                f"PhoenixError{bits:#06x}",
            )
        (word,) = await self._read(self.STATUS_FUNCTION, self.STATUS)
        letter = chr(word >> 8)
        if letter in "ABCDEF":
            return PilotState(letter)
        raise self._board_fault(f"unknown state register value {word:#06x}", "EvseBoardBadState")

    async def _read_firmware(self) -> str:
        first, version, minor = await self._read(self.FIRMWARE_FUNCTION, self.FIRMWARE, 3)
        return f"{chr(first >> 8)}{first & 0xFF}.{version}.{minor}"
