"""GPIO-driven devices of an EV charger on a Raspberry Pi, through gpiozero 2.

A Pi cannot measure the control pilot, so a real build pairs an EVSE controller board (for
the pilot) with these GPIO devices: the power contactor with its optional feedback (mirror)
contact, a relay that disconnects the pilot line, the 1p/3p phase switch relay, a hold-type
cable lock and a status LED.

Every device takes a gpiozero pin spec (``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``
or ``17``) and an optional ``pin_factory`` handed to gpiozero as is (``None``: gpiozero's
default), which is how tests put them on a ``MockFactory``. gpiozero is imported only when
the first device is built, so config validation (:func:`validate_pin`) and the simulator
never load it.

Each device starts in its safe state (relays released, LED off) and ``close()`` returns it
there before releasing the pins; ``close()`` never raises and may be called again. Driving a
pin that fails raises the matching :class:`cpagent.exc.HalError` subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeAlias

from cpagent.exc import ContactorFault, HalError, LockFault
from cpagent.hal.base import ConnectorLock, Contactor, PhaseSwitch

logger = logging.getLogger(__name__)

PinSpec: TypeAlias = int | str
FeedbackPull: TypeAlias = Literal["up", "down", "none"]
LedPattern: TypeAlias = Literal["on", "off", "slow", "charging", "fast"]

MAX_BCM = 27

_HEADER_TO_BCM: dict[int, int] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23,
    18: 24, 19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5,
    31: 6, 32: 12, 33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip
"""The 40-pin header (J8) of every Pi since the B+: physical pin -> BCM number. The other
twelve pins are power and ground."""

_PIN_SPEC = re.compile(r"(GPIO|BCM|BOARD|J8:)?(\d{1,3})", re.IGNORECASE)
_PIN_REASON = 'must be a GPIO pin like "GPIO17" or "BOARD11"'

_STATUS_PATTERNS: dict[str, LedPattern] = {
    "Available": "on",
    "Reserved": "on",
    "Preparing": "slow",
    "Finishing": "slow",
    "SuspendedEV": "slow",
    "SuspendedEVSE": "slow",
    "Charging": "charging",
    "Faulted": "fast",
    "Unavailable": "off",
}
_BLINK_TIMES: dict[LedPattern, tuple[float, float]] = {
    "slow": (1.0, 1.0),
    "charging": (0.5, 0.5),
    "fast": (0.1, 0.1),
}


def validate_pin(value: object) -> str:
    """Return the canonical BCM spec (``"GPIO17"``) of a configured pin, or raise ValueError.

    Accepts an int or digit string (BCM number), ``GPIO<n>``/``BCM<n>`` with n 0..27 and the
    header names ``BOARD<n>``/``J8:<n>`` with n 1..40 (case-insensitive); header pins are
    translated, so one pin has one name and a pin configured twice under different names is
    seen. Power and ground header pins are refused. The ValueError message is a short reason
    phrase for a config problem line. Pure: touches neither gpiozero nor the hardware.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{_PIN_REASON}, not {value!r}")
    if isinstance(value, int):
        number = value
    else:
        match = _PIN_SPEC.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{_PIN_REASON}, not {value!r}")
        kind = (match[1] or "GPIO").upper()
        number = int(match[2])
        if kind in ("BOARD", "J8:"):
            if not 1 <= number <= 40:
                raise ValueError(f"header pins run from 1 to 40, not {value!r}")
            if number not in _HEADER_TO_BCM:
                raise ValueError(f"{_PIN_REASON}, not {value!r} (a power or ground pin)")
            return f"GPIO{_HEADER_TO_BCM[number]}"
    if not 0 <= number <= MAX_BCM:
        raise ValueError(f"GPIO numbers run from 0 to {MAX_BCM}, not {value!r}")
    return f"GPIO{number}"


class GpioContactor(Contactor):
    """A power relay on a GPIO output, optionally watched through a feedback contact.

    Without feedback the relay is trusted: ``closed`` is the command and :meth:`verify` has
    nothing to compare. With feedback, every command is checked ``settle_s`` after it (the
    relay's operate time plus contact bounce), and :meth:`verify` keeps checking between
    commands, so a contact that welds or drops out is reported as :class:`ContactorFault`
    (``ContactorWelded`` or ``ContactorStuckOpen``).

    ``feedback_active_high`` alone says which level means closed; ``feedback_pull`` only
    chooses the pull resistor. The raw level is read because gpiozero ties the meaning of
    ``is_active`` to the pull (and refuses ``active_state`` together with a pull).
    """

    def __init__(
        self,
        pin: PinSpec,
        *,
        active_high: bool = True,
        feedback_pin: PinSpec | None = None,
        feedback_active_high: bool = True,
        feedback_pull: FeedbackPull = "none",
        settle_s: float = 0.2,
        pin_factory: Any = None,
        name: str = "contactor",
    ) -> None:
        _check_seconds("settle_s", settle_s)
        _check_pull(feedback_pull)
        self._settle_s = settle_s
        self._feedback_active_high = feedback_active_high
        self._out = _output(pin, active_high, pin_factory, name)
        self._feedback: Any = None
        if feedback_pin is not None:
            try:
                self._feedback = _input(
                    feedback_pin, feedback_pull, pin_factory, f"{name} feedback"
                )
                self._feedback.when_activated = self._feedback_changed
                self._feedback.when_deactivated = self._feedback_changed
            except BaseException:
                _close_quietly(self._out, self._feedback)
                raise
        self._label = f"{name} relay on {_pin_name(self._out, pin)}"
        self._feedback_label = (
            None
            if self._feedback is None
            else f"feedback on {_pin_name(self._feedback, feedback_pin)}"
        )
        self._commanded = False
        self._last_command = -math.inf  # no command yet: nothing is moving
        self._generation = 0
        self._shut = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        """Measured through the feedback when there is one, else the command; False once shut."""
        if self._shut:
            return False
        if self._feedback is None:
            return self._commanded
        return self._measured()

    @property
    def has_feedback(self) -> bool:
        return self._feedback is not None

    @property
    def commanded(self) -> bool:
        """The state last commanded (what the output drives, whatever the feedback says)."""
        return self._commanded

    async def set_closed(self, closed: bool) -> None:
        """Drive the relay; with feedback, raise :class:`ContactorFault` unless it follows.

        The check comes ``settle_s`` after the last change of command; repeating the current
        command checks at once when that time has passed. A check overtaken by a newer command
        is dropped (the newer call checks). After :meth:`close`, opening is a no-op and closing
        raises.
        """
        if self._shut:
            if closed:
                raise ContactorFault(f"{self._label} is shut down", vendor_error_code="GpioClosed")
            return
        _drive(self._out, closed, ContactorFault, self._label)
        if closed != self._commanded:
            self._commanded = closed
            self._last_command = time.monotonic()
            self._generation += 1
        if self._feedback is None:
            return
        generation = self._generation
        remaining = self._settle_s - (time.monotonic() - self._last_command)
        if remaining > 0:
            await asyncio.sleep(remaining)
        if generation == self._generation and not self._shut:
            self._check()

    async def verify(self) -> None:
        """Raise :class:`ContactorFault` if the feedback disagrees with the command.

        Skipped without feedback, after :meth:`close`, and within ``settle_s`` of the last
        change of command, while the relay may still be moving.
        """
        if self._feedback is None or self._shut:
            return
        if time.monotonic() - self._last_command < self._settle_s:
            return
        self._check()

    def set_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop whenever the feedback level changes.

        gpiozero reports edges from its own thread on real pins (and synchronously under
        ``MockFactory``), so the call is handed to the loop captured by :meth:`start`; edges
        before :meth:`start` are not reported.
        """
        self._listener = callback

    async def start(self) -> None:
        """Capture the running loop for listener calls (nothing to do without feedback)."""
        if self._feedback is not None:
            self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """Open the relay and release the pins. Never raises; idempotent."""
        if self._shut:
            return
        self._shut = True
        self._commanded = False
        self._listener = None
        with contextlib.suppress(Exception):
            self._out.off()
        _close_quietly(self._feedback, self._out)

    def _measured(self) -> bool:
        return _feedback_active(
            self._feedback,
            self._feedback_active_high,
            ContactorFault,
            f"{self._label} {self._feedback_label}",
        )

    def _check(self) -> None:
        if self._measured() == self._commanded:
            return
        if self._commanded:
            raise ContactorFault(
                f"{self._label} was commanded closed but its {self._feedback_label} reads open",
                vendor_error_code="ContactorStuckOpen",
            )
        raise ContactorFault(
            f"{self._label} was commanded open but its {self._feedback_label} reads closed"
            " (welded?)",
            vendor_error_code="ContactorWelded",
        )

    def _feedback_changed(self) -> None:
        loop, listener = self._loop, self._listener
        if loop is None or listener is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while the pin was moving
            loop.call_soon_threadsafe(self._announce, listener)

    def _announce(self, listener: Callable[[], None]) -> None:
        """Tell the listener now and again once the settle time is over, because
        :meth:`verify` ignores a change that comes while the relay may still be moving."""
        listener()
        asyncio.get_running_loop().call_later(self._settle_s, listener)


class PilotInterrupt:
    """A relay that disconnects the control pilot line; released (pilot connected) is safe.

    While the pilot is interrupted the EV sees no EVSE; when it comes back the EV detects the
    charger afresh. Used around phase switching and to wake EVs that went to sleep.
    """

    def __init__(self, pin: PinSpec, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self._out = _output(pin, active_high, pin_factory, "pilot interrupt")
        self._label = f"pilot interrupt relay on {_pin_name(self._out, pin)}"
        self._depth = 0
        self._shut = False

    @property
    def interrupted(self) -> bool:
        return self._depth > 0 and not self._shut

    @contextlib.contextmanager
    def interrupting(self) -> Iterator[None]:
        """Keep the pilot disconnected for the body of a ``with`` block.

        The pilot is restored however the block ends (error, cancellation). Holds nest: the
        pilot comes back when the outermost one ends. Raises :class:`HalError` after
        :meth:`close` or when the relay cannot be driven.
        """
        if self._shut:
            raise HalError(f"{self._label} is shut down", vendor_error_code="GpioClosed")
        if self._depth == 0:
            _drive(self._out, True, HalError, self._label)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and not self._shut:
                _drive(self._out, False, HalError, self._label)

    async def interrupt(self, duration_s: float) -> None:
        """Disconnect the pilot for ``duration_s`` seconds, then restore it (also if cancelled)."""
        _check_seconds("duration_s", duration_s)
        with self.interrupting():
            await asyncio.sleep(duration_s)

    def close(self) -> None:
        """Reconnect the pilot and release the pin. Never raises; idempotent."""
        if self._shut:
            return
        self._shut = True
        self._depth = 0
        with contextlib.suppress(Exception):
            self._out.off()
        _close_quietly(self._out)


class GpioPhaseSwitch(PhaseSwitch):
    """A relay that switches the connector between one and three phases.

    ``three_phase_when_active`` says which way the energized relay wires the supply. Switching
    is refused with :class:`HalError` (``PhaseSwitchWhileEnergized``) while ``contactor``
    reports closed. With a :class:`PilotInterrupt` the pilot is disconnected before the relay
    moves and kept so for ``interrupt_s``, so the EV re-detects the supply with the new
    phase count; the pilot is restored even if the switch is cancelled midway.

    The switch owns ``pilot_interrupt``: :meth:`close` closes it too. Close the contactor
    first: closing the switch de-energizes its relay, which changes the phases.
    """

    def __init__(
        self,
        pin: PinSpec,
        contactor: Contactor,
        *,
        active_high: bool = True,
        three_phase_when_active: bool = True,
        initial_phases: int = 3,
        pilot_interrupt: PilotInterrupt | None = None,
        interrupt_s: float = 3.0,
        pin_factory: Any = None,
    ) -> None:
        _check_phases(initial_phases)
        _check_seconds("interrupt_s", interrupt_s)
        self._contactor = contactor
        self._pilot = pilot_interrupt
        self._interrupt_s = interrupt_s
        self._three_when_active = three_phase_when_active
        self._out = _output(
            pin, active_high, pin_factory, "phase switch", initial=self._active(initial_phases)
        )
        self._label = f"phase switch relay on {_pin_name(self._out, pin)}"
        self._phases = initial_phases
        self._switching = asyncio.Lock()
        self._shut = False

    @property
    def phases(self) -> int:
        return self._phases

    async def set_phases(self, phases: int) -> None:
        """Switch to ``phases`` (1 or 3, else ValueError); a no-op when already there."""
        _check_phases(phases)
        async with self._switching:
            if phases == self._phases:
                return
            if self._shut:
                raise HalError(f"{self._label} is shut down", vendor_error_code="GpioClosed")
            if self._contactor.closed:
                raise HalError(
                    f"{self._label}: cannot switch to {phases} phases while the contactor is"
                    " closed",
                    vendor_error_code="PhaseSwitchWhileEnergized",
                )
            if self._pilot is None:
                self._switch(phases)
                return
            with self._pilot.interrupting():
                self._switch(phases)
                await asyncio.sleep(self._interrupt_s)

    def close(self) -> None:
        """De-energize the relay, release the pin and close the pilot interrupt. Never raises."""
        if self._shut:
            return
        self._shut = True
        with contextlib.suppress(Exception):
            self._out.off()
            self._phases = 1 if self._three_when_active else 3
        _close_quietly(self._out)
        if self._pilot is not None:
            self._pilot.close()

    def _active(self, phases: int) -> bool:
        return (phases == 3) == self._three_when_active

    def _switch(self, phases: int) -> None:
        _drive(self._out, self._active(phases), HalError, self._label)
        self._phases = phases


class GpioLock(ConnectorLock):
    """A hold-type cable lock: the actuator holds the pin while its output is active.

    With a feedback switch (``feedback_active_high`` is the level meaning locked), lock and
    unlock wait ``settle_s`` and report whether the lock really moved; without one they
    trust the actuator. Unlocked is the safe state, restored by :meth:`close`.
    """

    def __init__(
        self,
        pin: PinSpec,
        *,
        active_high: bool = True,
        feedback_pin: PinSpec | None = None,
        feedback_active_high: bool = True,
        feedback_pull: FeedbackPull = "none",
        settle_s: float = 0.5,
        pin_factory: Any = None,
    ) -> None:
        _check_seconds("settle_s", settle_s)
        _check_pull(feedback_pull)
        self._settle_s = settle_s
        self._feedback_active_high = feedback_active_high
        self._out = _output(pin, active_high, pin_factory, "connector lock")
        self._feedback: Any = None
        if feedback_pin is not None:
            try:
                self._feedback = _input(feedback_pin, feedback_pull, pin_factory, "lock feedback")
            except BaseException:
                _close_quietly(self._out)
                raise
        self._label = f"connector lock on {_pin_name(self._out, pin)}"
        self._commanded = False
        self._shut = False

    @property
    def locked(self) -> bool:
        """Measured through the feedback when there is one, else the command; False once shut."""
        if self._shut:
            return False
        if self._feedback is None:
            return self._commanded
        return self._measured()

    async def lock(self) -> bool:
        """Engage the lock; False if the feedback does not show locked after ``settle_s``."""
        return await self._move(True)

    async def unlock(self) -> bool:
        """Release the lock; False if the feedback still shows locked after ``settle_s``."""
        return await self._move(False)

    def close(self) -> None:
        """Unlock and release the pins. Never raises; idempotent."""
        if self._shut:
            return
        self._shut = True
        self._commanded = False
        with contextlib.suppress(Exception):
            self._out.off()
        _close_quietly(self._feedback, self._out)

    async def _move(self, locked: bool) -> bool:
        if self._shut:
            if locked:
                raise LockFault(f"{self._label} is shut down", vendor_error_code="GpioClosed")
            return True
        _drive(self._out, locked, LockFault, self._label)
        self._commanded = locked
        if self._feedback is None:
            return True
        await asyncio.sleep(self._settle_s)
        if self._shut:
            return not locked
        return self._measured() == locked

    def _measured(self) -> bool:
        return _feedback_active(
            self._feedback, self._feedback_active_high, LockFault, f"the feedback of {self._label}"
        )


class StatusLed:
    """An LED showing a connector's OCPP 1.6 status as a steady or blinking light.

    Available/Reserved: on; Preparing/Finishing/SuspendedEV/SuspendedEVSE: slow blink
    (1 s / 1 s); Charging: 0.5 s / 0.5 s; Faulted: fast blink (0.1 s / 0.1 s); Unavailable and
    anything unknown: off. The LED changes only when the pattern does, so a status repeated
    on every poll never restarts a blink. An indicator must not take the station down: pin
    errors are logged, not raised.
    """

    def __init__(self, pin: PinSpec, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self._led = _open(
            "LED",
            "status LED",
            pin,
            active_high=active_high,
            initial_value=False,
            pin_factory=pin_factory,
        )
        self._label = f"status LED on {_pin_name(self._led, pin)}"
        self._pattern: LedPattern = "off"
        self._shut = False

    @property
    def pattern(self) -> LedPattern:
        return self._pattern

    def show(self, status: str) -> None:
        pattern = _STATUS_PATTERNS.get(status, "off")
        if pattern == self._pattern or self._shut:
            return
        try:
            if pattern == "on":
                self._led.on()
            elif pattern == "off":
                self._led.off()
            else:
                on_s, off_s = _BLINK_TIMES[pattern]
                self._led.blink(on_time=on_s, off_time=off_s, background=True)
        except _gpio_errors() as exc:
            logger.warning("cannot drive %s: %s", self._label, exc)
            return
        self._pattern = pattern

    def close(self) -> None:
        """Stop any blink, turn the LED off and release the pin. Never raises; idempotent."""
        if self._shut:
            return
        self._shut = True
        self._pattern = "off"
        with contextlib.suppress(Exception):
            self._led.off()
        _close_quietly(self._led)


def _gpio_errors() -> tuple[type[Exception], ...]:
    from gpiozero import GPIOZeroError

    return (GPIOZeroError, OSError)


def _open(cls_name: str, what: str, pin: PinSpec, **kwargs: Any) -> Any:
    """Build the gpiozero device ``cls_name`` on ``pin``; failures become :class:`HalError`."""
    import gpiozero

    try:
        return getattr(gpiozero, cls_name)(pin, **kwargs)
    except _gpio_errors() as exc:
        hint = ""
        if isinstance(exc, gpiozero.BadPinFactory):
            hint = " (on a Raspberry Pi, install python3-lgpio; see docs/hardware.md)"
        raise HalError(
            f"cannot open the {what} on pin {pin!r}: {exc}{hint}",
            vendor_error_code="GpioUnavailable",
        ) from exc


def _output(
    pin: PinSpec, active_high: bool, pin_factory: Any, what: str, *, initial: bool = False
) -> Any:
    return _open(
        "DigitalOutputDevice",
        what,
        pin,
        active_high=active_high,
        initial_value=initial,
        pin_factory=pin_factory,
    )


def _input(pin: PinSpec, pull: FeedbackPull, pin_factory: Any, what: str) -> Any:
    """An input for raw-level reads: gpiozero wants ``active_state`` on a floating input and
    refuses it on a pulled one, so only the floating case sets it (the level meaning is ours)."""
    if pull == "none":
        return _open(
            "DigitalInputDevice",
            what,
            pin,
            pull_up=None,
            active_state=True,
            pin_factory=pin_factory,
        )
    return _open("DigitalInputDevice", what, pin, pull_up=pull == "up", pin_factory=pin_factory)


def _feedback_active(device: Any, active_high: bool, fault: type[HalError], label: str) -> bool:
    """Whether a feedback contact reads its active level. The raw pin level is read, because
    gpiozero ties ``is_active`` to the pull resistor."""
    try:
        level = bool(device.pin.state)
    except _gpio_errors() as exc:
        raise fault(f"cannot read {label}: {exc}", vendor_error_code="GpioError") from exc
    return level == active_high


def _drive(device: Any, active: bool, fault: type[HalError], label: str) -> None:
    try:
        if active:
            device.on()
        else:
            device.off()
    except _gpio_errors() as exc:
        raise fault(f"cannot drive {label}: {exc}", vendor_error_code="GpioError") from exc


def _pin_name(device: Any, spec: PinSpec | None) -> str:
    try:
        return str(device.pin.info.name)
    except AttributeError:
        return str(spec)


def _close_quietly(*devices: Any) -> None:
    for device in devices:
        if device is not None:
            with contextlib.suppress(Exception):  # closing must reach every device
                device.close()


def _check_seconds(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")


def _check_pull(pull: str) -> None:
    if pull not in ("up", "down", "none"):
        raise ValueError(f'feedback_pull must be "up", "down" or "none", not {pull!r}')


def _check_phases(phases: int) -> None:
    if isinstance(phases, bool) or phases not in (1, 3):
        raise ValueError(f"phases must be 1 or 3, not {phases!r}")
