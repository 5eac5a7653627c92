"""Pilot backends for EVSE controller boards on Modbus.

A Pi cannot make the 1 kHz pilot PWM or measure the pilot voltage, so a real build
leaves both to a controller board and talks to it over Modbus RTU, usually on the
same RS-485 line as the meter: the board shares the meter's :class:`ModbusBus` and
its lock, so requests to both never overlap on the wire.

The board's current setting is volatile: a board that loses power comes back offering
its own power-on current, whatever the station had decided. So every read of the
board (every ``state()``, which :meth:`ModbusBoardPilot.watch` makes every
``interval_s``) also reads the setting back and writes the station's decision again
when the two differ, and again after every fault the board recovers from. Only ever
the station's latest decision is written, under the same lock as the station's own
writes, so no read-back ever raises the current above it.

Every board failure is a :class:`BoardFault` (OCPP ``OtherError``) whose
``vendor_error_code`` tells why:

- ``EvseBoardTimeout``: no usable answer after ``retries`` extra attempts;
- ``ModbusException<code>``: the board rejected a request (not retried);
- ``EvseBoardFailure``: the board reports a failure of its own (EVSE-DIN state 5);
- ``EvseBoardBadState``: a state value the driver does not know;
- ``PhoenixError0x....``: the Phoenix board's error register is not zero;
- ``EvseBoardWriteFailed``: the board rejected the current written (both write codes
  answered exception 1, or a value it refuses), lasting after :data:`MAX_WRITE_FAILURES`
  failed writes in a row;
- ``EvseBoardSettingMismatch``: the setting read back still differs after
  :data:`MAX_CORRECTIONS` writes that the board acknowledged.

The last two are lasting: the driver tries once to switch the PWM off, then writes no
current and reports the fault from every read until the board has stopped answering
and answers again (it was restarted or replaced).
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

WRITE_FUNCTIONS = (6, 16)
"""Write Single Register and Write Multiple Registers: the codes a board may implement."""

MAX_CORRECTIONS = 3
"""Acknowledged writes of the current that the read-back may contradict in a row."""

MAX_WRITE_FAILURES = 3
"""Writes of the current that may fail in a row (each after its own retries)."""

TIMEOUT = "EvseBoardTimeout"

_T = TypeVar("_T")


def _amps(value: float) -> str:
    return f"{value:g} A" if value else "0 A (no PWM)"


class ModbusBoardPilot(Pilot, abc.ABC):
    """What every Modbus EVSE board pilot shares: retries, fault mapping, keeping the
    board's current setting at the station's decision, the watch loop.

    ``offered_current`` is what the board holds as far as the driver knows: the value
    last written and acknowledged, or read back. ``last_state``/``last_fault`` are the
    outcome of the latest ``state()`` call, whoever made it.
    """

    kind: ClassVar[str]
    """The board's config name, e.g. ``"evse-din"``."""
    title: ClassVar[str]
    """The board's name in messages."""
    default_write_function: ClassVar[int]
    """The function code registers are written with unless configured otherwise."""

    def __init__(
        self,
        bus: ModbusBus,
        device_id: int = 1,
        *,
        retries: int = 2,
        max_current_a: float = 32.0,
        write_function: int | None = None,
    ) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id: must be 1..247, not {device_id!r}")
        if retries < 0:
            raise ValueError(f"retries: must not be negative, not {retries!r}")
        if not (math.isfinite(max_current_a) and max_current_a >= MIN_CURRENT_A):
            raise ValueError(
                f"max_current_a: must be at least {MIN_CURRENT_A:g}, not {max_current_a!r}"
            )
        if write_function is not None and write_function not in WRITE_FUNCTIONS:
            raise ValueError(f"write_function: must be 6 or 16, not {write_function!r}")
        self.bus = bus
        self.device_id = device_id
        self.retries = retries
        self.max_current_a = max_current_a
        self.write_function = write_function or self.default_write_function
        self.firmware: str | None = None
        self._wanted = 0.0
        self._offered = 0.0
        self._state: PilotState | None = None
        self._fault_code: str | None = None
        self._silent = False
        self._corrections = 0
        self._write_failures = 0
        self._latched: BoardFault | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id {self.device_id} on {self.bus.name})"

    def __str__(self) -> str:
        return f"{self.title} board {self.device_id} on {self.bus.name}"

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

        The value becomes the station's decision at once, so a board that does not take
        it now gets it from the next read that finds it answering. Raises ValueError for
        a negative or NaN value, :class:`BoardFault` when the board does not take it.
        Calls and reads are applied one after the other.
        """
        if not amps >= 0:
            raise ValueError(f"offered current must be a non-negative number, not {amps!r}")
        async with self._lock:
            wanted = 0.0 if amps < MIN_CURRENT_A else min(amps, self.max_current_a)
            if wanted != self._wanted:
                self._wanted, self._corrections = wanted, 0
            if self._latched is not None and self._wanted > 0:
                raise self._latched
            await self._write_wanted()

    async def state(self) -> PilotState:
        async with self._lock:
            try:
                outcome = await self._check()
            except BoardFault as fault:
                self._record(None, fault)
                raise
            if isinstance(outcome, BoardFault):
                self._record(None, outcome)
                raise outcome
            self._record(outcome, None)
            return outcome

    async def start(self) -> None:
        """Prepare the board once at startup and bring its current setting to 0 A (a board
        fresh from power-on offers its own). Never raises on device errors: a board that is
        off at boot is reported by ``state()``, and set up when it answers."""
        async with self._lock:
            try:
                await self._prepare()
                await self._check()
            except BoardFault as err:
                if err.vendor_error_code == TIMEOUT:
                    self._silent = True
                    self._forget()
                log.warning("%s: not set up at start (done when it answers): %s", self, err)

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

    # -- what each board implements

    @abc.abstractmethod
    async def _read_board(self) -> tuple[float, PilotState | BoardFault]:
        """Read the current setting (A, 0 = no PWM) and the vehicle state, or the fault
        the board reports instead of a state. Raises :class:`BoardFault` when the board
        cannot be read."""

    @abc.abstractmethod
    async def _apply(self, amps: float) -> float:
        """Write ``amps`` (0, or ``MIN_CURRENT_A``..``max_current_a``) to the board as it can
        hold it; return that value (what reads back)."""

    @abc.abstractmethod
    def _quantum(self, amps: float) -> float:
        """``amps`` as the board holds it, once read (the value ``_apply`` would write)."""

    async def _prepare(self) -> None:
        """Set the board up; run at start and whenever it answers again after silence."""

    def _forget(self) -> None:
        """Drop what was learnt about the board: it went silent and may come back another."""

    # -- keeping the setting at the decision

    async def _check(self) -> PilotState | BoardFault:
        """One read of the board: bring its setting back to the station's decision when it
        differs, or when the board recovers from a fault; return the vehicle state or the
        fault the board reports. Raises :class:`BoardFault` when the board cannot be read,
        a write fails, or the board is faulty for good."""
        try:
            setting, outcome = await self._read_board()
        except BoardFault as fault:
            if fault.vendor_error_code == TIMEOUT and not self._silent:
                self._silent = True
                self._forget()
            raise
        recovered = self._silent or (
            self._fault_code is not None and not isinstance(outcome, BoardFault)
        )
        if self._silent:
            await self._answering_again()
        self._offered = setting
        if self._latched is None:
            await self._enforce(setting, recovered)
        if self._latched is not None:
            raise self._latched
        return outcome

    async def _answering_again(self) -> None:
        self._silent = False
        if self._latched is not None:
            log.warning("%s: answers again after a silence; %s cleared", self, self._latched)
        self._latched = None
        self._corrections = self._write_failures = 0
        try:
            await self._prepare()
        except BoardFault as err:
            log.warning("%s: cannot set the board up again: %s", self, err)

    async def _enforce(self, setting: float, recovered: bool) -> None:
        wanted = self._quantum(self._wanted)
        if setting == wanted:
            self._corrections = 0
            if not recovered:
                return
            log.info("%s: answers again; setting %s again", self, _amps(wanted))
        elif self._corrections >= MAX_CORRECTIONS:
            fault = self._board_fault(
                f"the current setting reads {_amps(setting)} instead of {_amps(wanted)} "
                f"after {self._corrections} writes of it",
                "EvseBoardSettingMismatch",
            )
            await self._latch(fault)
            return
        else:
            log.warning(
                "%s: the current setting reads %s instead of %s; writing %s again",
                self,
                _amps(setting),
                _amps(wanted),
                _amps(wanted),
            )
        await self._write_wanted()
        if setting != wanted:
            self._corrections += 1

    async def _write_wanted(self) -> None:
        """Write the decision. A board that rejects it is an ``EvseBoardWriteFailed`` fault
        (a silent one stays ``EvseBoardTimeout``), lasting after too many in a row."""
        wanted = self._wanted
        try:
            held = await self._apply(wanted)
        except BoardFault as fault:
            self._write_failures += 1
            lasting = self._write_failures >= MAX_WRITE_FAILURES and self._latched is None
            if fault.vendor_error_code == TIMEOUT and not lasting:
                raise
            detail = f"cannot write {_amps(wanted)}: {str(fault).removeprefix(f'{self}: ')}"
            if lasting:
                detail += f" ({self._write_failures} times in a row)"
            failure = self._board_fault(detail, "EvseBoardWriteFailed")
            if lasting:
                await self._latch(failure)
            raise failure from fault
        self._write_failures = 0
        self._offered = held

    async def _latch(self, fault: BoardFault) -> None:
        """Make ``fault`` lasting: one attempt to switch the PWM off, then no more writes."""
        self._latched = fault
        try:
            await self._apply(0.0)
        except BoardFault as err:
            off = f"cannot switch the PWM off ({err})"
        else:
            off = "PWM switched off"
        log.error(
            "%s (%s); %s; no current is written until the board restarts",
            fault,
            fault.vendor_error_code,
            off,
        )

    def _record(self, state: PilotState | None, fault: BoardFault | None) -> None:
        code = None if fault is None else fault.vendor_error_code or "BoardFault"
        if (state, code) == (self._state, self._fault_code):
            return
        if fault is not None:
            log.warning("%s", fault)
        elif self._fault_code is not None:
            log.info("%s: answers again, state %s", self, state)
        self._state, self._fault_code = state, code

    # -- bus access

    def _board_fault(self, detail: str, code: str) -> BoardFault:
        return BoardFault(f"{self}: {detail}", vendor_error_code=code)

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
            f"no answer after {self.retries + 1} attempts ({last})", TIMEOUT
        ) from last

    async def _read(self, function: int, address: int, count: int = 1) -> list[int]:
        return await self._call(
            lambda: self.bus.read_registers(self.device_id, function, address, count)
        )

    async def _write_register(self, address: int, value: int) -> None:
        """Write one holding register with ``write_function``; a board that answers it with
        exception 1 (illegal function) is written with the other code, from then on."""
        try:
            await self._write_with(self.write_function, address, value)
        except BoardFault as fault:
            if fault.vendor_error_code != "ModbusException1":
                raise
            tried = self.write_function
            other = 6 if tried == 16 else 16
            try:
                await self._write_with(other, address, value)
            except BoardFault as second:
                if second.vendor_error_code != "ModbusException1":
                    raise
                raise self._board_fault(
                    f"register {address} = {value}: FC{tried:02d} and FC{other:02d} both "
                    "answered exception 1 (illegal function)",
                    "ModbusException1",
                ) from second
            log.warning(
                "%s answers FC%02d with exception 1 (illegal function); writing with FC%02d "
                "from now on",
                self,
                tried,
                other,
            )
            self.write_function = other

    async def _write_with(self, function: int, address: int, value: int) -> None:
        if function == 16:
            await self._call(lambda: self.bus.write_registers(self.device_id, address, [value]))
        else:
            await self._call(lambda: self.bus.write_register(self.device_id, address, value))

    async def _write_coil(self, address: int, value: bool) -> None:
        await self._call(lambda: self.bus.write_coil(self.device_id, address, value))


class EvseDinPilot(ModbusBoardPilot):
    """An EVSE-DIN / SimpleEVSE-WB board (as openWB and evcc drive it): FC03 reads, FC16
    writes by default.

    Register 1000 is the current setting (0 = no PWM): whole amps, or 0.01 A when
    register 2005 bit 7 is set (firmware >= 17, as openWB sets it); the driver reads the
    mode before it writes a current and scales to it. Each read takes 1000-1002 in one
    request, as openWB does: the setting and the vehicle state (1002: 1-4 = A-D,
    5 = failure). 1001, the current signalled, is not used: it is capped by the cable,
    and its unit in the 0.01 A mode is not documented. At start the power-on current
    (EEPROM register 2000, 32 A from the factory) is set to 0 if the board takes it, so
    a board that restarts offers nothing until told. Keep ``gap_s`` >= 0.1 on its bus.
    """

    kind = "evse-din"
    title = "EVSE-DIN"
    default_write_function = 16

    SET_CURRENT = 1000
    FIRMWARE = 1005
    POWER_ON_CURRENT = 2000
    OPTIONS = 2005
    PRECISE_BIT = 1 << 7
    PRECISE_FIRMWARE = 17
    _STATES: ClassVar[dict[int, PilotState]] = {
        1: PilotState.A,
        2: PilotState.B,
        3: PilotState.C,
        4: PilotState.D,
    }
    _FAILURE = 5

    _steps: int | None = None
    """Register 1000's steps per amp (1 or 100); None until read from the board."""

    async def _prepare(self) -> None:
        await self._steps_per_amp()
        await self._no_power_on_current()

    def _forget(self) -> None:
        self._steps = None

    def _quantum(self, amps: float) -> float:
        steps = self._steps or 1
        return self._raw(amps, steps) / steps

    @staticmethod
    def _raw(amps: float, steps: int) -> int:
        """``amps`` in register 1000's unit, rounded down (0 below 6 A)."""
        return 0 if amps < MIN_CURRENT_A else math.floor(amps * steps + 1e-6)

    async def _read_board(self) -> tuple[float, PilotState | BoardFault]:
        steps = await self._steps_per_amp()
        current, _signalled, code = await self._read(3, self.SET_CURRENT, 3)
        return current / steps, self._decode_state(code)

    async def _apply(self, amps: float) -> float:
        steps = await self._steps_per_amp() if amps >= MIN_CURRENT_A else 1
        raw = self._raw(amps, steps)
        await self._write_register(self.SET_CURRENT, raw)
        return raw / steps

    def _decode_state(self, code: int) -> PilotState | BoardFault:
        if code in self._STATES:
            return self._STATES[code]
        if code == self._FAILURE:
            return self._board_fault(
                "board reports a failure (vehicle state 5)", "EvseBoardFailure"
            )
        return self._board_fault(f"unknown vehicle state {code}", "EvseBoardBadState")

    async def _steps_per_amp(self) -> int:
        """The unit of register 1000, read from the board once (and after a silence)."""
        if self._steps is not None:
            return self._steps
        (version,) = await self._read(3, self.FIRMWARE)
        self.firmware = str(version)
        options = 0
        if version >= self.PRECISE_FIRMWARE:
            try:
                (options,) = await self._read(3, self.OPTIONS)
            except BoardFault as fault:
                if fault.vendor_error_code != "ModbusException2":
                    raise
        self._steps = 100 if options & self.PRECISE_BIT else 1
        unit = "0.01 A (register 2005 bit 7)" if self._steps == 100 else "1 A"
        log.info("%s: firmware %s, current set in steps of %s", self, version, unit)
        return self._steps

    async def _no_power_on_current(self) -> None:
        """Make 0 A (no PWM) the current the board offers after power-on, where it takes it;
        EEPROM, so written only when it differs."""
        (value,) = await self._read(3, self.POWER_ON_CURRENT)
        if value == 0:
            return
        try:
            await self._write_register(self.POWER_ON_CURRENT, 0)
        except BoardFault as err:
            if err.vendor_error_code is None or not err.vendor_error_code.startswith(
                "ModbusException"
            ):
                raise
            log.warning(
                "%s refuses 0 as its power-on current (register 2000 = %d, %s): it offers "
                "%d A after a restart until the agent sets the current again",
                self,
                value,
                err.vendor_error_code,
                value,
            )
            return
        log.info(
            "%s: power-on current (register 2000) was %d A, set to 0: after a restart the "
            "board offers no current until told",
            self,
            value,
        )


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
    is not; it is retentive, so it is written only when it differs. With it the board
    comes out of a power-on with charging disabled: no PWM until told. Offering >= 6 A
    writes holding register 22000 (capped at 63 A, the board's maximum), then coil
    20000 = 1; below 6 A coil 20000 = 0. Each read takes the error register 24025, the
    state (holding register 24000, two ASCII characters such as "B2", A-F all valid),
    and reads the setting back: coil 20000 and register 22000. The manual lists all of
    these as holding registers (FC03/06), the firmware version as input registers
    1031-1033 (FC04).
    """

    kind = "phoenix"
    title = "Phoenix EV Charge Control"
    default_write_function = 6

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

    _mode_set = False
    """Whether register 4000 was seen at 3 (or set to it) since the board last went silent."""

    async def _prepare(self) -> None:
        try:
            self.firmware = await self._read_firmware()
        except BoardFault as err:
            log.warning("%s: cannot read the firmware version: %s", self, err)
        else:
            log.info("%s: firmware %s", self, self.firmware)
        await self._ensure_mode()

    def _forget(self) -> None:
        self._mode_set = False

    def _quantum(self, amps: float) -> float:
        return 0.0 if amps < MIN_CURRENT_A else float(int(min(amps, self.MAX_CURRENT_A)))

    async def _ensure_mode(self) -> None:
        (mode,) = await self._read(self.STATUS_FUNCTION, self.ENABLE_MODE)
        if mode != self.ENABLE_BY_COIL:
            await self._write_register(self.ENABLE_MODE, self.ENABLE_BY_COIL)
            log.info("%s: register 4000 was %d, set to 3 (enable by Modbus)", self, mode)
        self._mode_set = True

    async def _apply(self, amps: float) -> float:
        held = self._quantum(amps)
        if held == 0:
            await self._write_coil(self.ENABLE, False)
            return held
        if not self._mode_set:
            await self._ensure_mode()
        await self._write_register(self.MAX_CURRENT, int(held))
        await self._write_coil(self.ENABLE, True)
        return held

    async def _read_board(self) -> tuple[float, PilotState | BoardFault]:
        outcome = await self._read_state()
        (enabled,) = await self._call(lambda: self.bus.read_coils(self.device_id, self.ENABLE, 1))
        (current,) = await self._read(self.STATUS_FUNCTION, self.MAX_CURRENT)
        return (float(current) if enabled else 0.0), outcome

    async def _read_state(self) -> PilotState | BoardFault:
        (bits,) = await self._read(self.STATUS_FUNCTION, self.ERRORS)
        if bits:
            names = [name for bit, name in PHOENIX_ERROR_BITS.items() if bits >> bit & 1]
            return self._board_fault(
                f"board reports errors {bits:#06x} ({', '.join(names) or 'unknown bits'})",
                f"PhoenixError{bits:#06x}",
            )
        (word,) = await self._read(self.STATUS_FUNCTION, self.STATUS)
        letter = chr(word >> 8)
        if letter in "ABCDEF":
            return PilotState(letter)
        return self._board_fault(f"unknown state register value {word:#06x}", "EvseBoardBadState")

    async def _read_firmware(self) -> str:
        first, version, minor = await self._read(self.FIRMWARE_FUNCTION, self.FIRMWARE, 3)
        return f"{chr(first >> 8)}{first & 0xFF}.{version}.{minor}"
