"""The GPIO devices on gpiozero's MockFactory.

Outputs are checked by the level of the mock pin (``pin.state``, and ``pin.states`` for what
it went through and for how long); feedback inputs are driven by hand, or wired to their
output with ``MockConnectedPin`` where a relay that follows is wanted. Every device gets its
``pin_factory`` passed explicitly, so a device that ignored it would reach for real GPIO and
fail.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import gpiozero
import pytest
from gpiozero.exc import PinInvalidPin
from gpiozero.pins.mock import MockConnectedPin, MockFactory, MockPin, MockPWMPin

from cpagent.exc import ContactorFault, HalError, LockFault
from cpagent.hal.gpio import (
    GpioContactor,
    GpioLock,
    GpioPhaseSwitch,
    PilotInterrupt,
    StatusLed,
    validate_pin,
)

SETTLE = 0.01
WAIT_S = 30.0
"""Guard for a wait on an event: reaching it fails the test, so it is generous."""


class Closable(Protocol):
    def close(self) -> None: ...


class WatchedPin(MockPWMPin):  # type: ignore[misc]
    """A MockPWMPin that announces every level change, so tests wait without polling."""

    changed = threading.Condition()

    def _change_state(self, value: bool) -> bool:
        with WatchedPin.changed:
            result: bool = super()._change_state(value)
            WatchedPin.changed.notify_all()
        return result


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=WatchedPin)
    yield factory
    factory.reset()


@pytest.fixture
def plain_factory() -> Iterator[MockFactory]:
    """Plain MockPins: they keep their level when released (MockPWMPin drops to 0 on close)
    and can be wired to each other with MockConnectedPin."""
    factory = MockFactory(pin_class=MockPin)
    yield factory
    factory.reset()


@pytest.fixture
def devices() -> Iterator[Callable[[Any], Any]]:
    """Register a device to be closed at teardown (stops blink threads of failed tests)."""
    opened: list[Closable] = []

    def add(device: Any) -> Any:
        opened.append(device)
        return device

    yield add
    for device in reversed(opened):
        device.close()


def wire(factory: MockFactory, output: str, feedback: str) -> None:
    """Connect ``output`` to ``feedback`` so the feedback follows it, like a working relay."""
    factory.pin(output, pin_class=MockConnectedPin, input_pin=factory.pin(feedback))


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait, off the loop, until a pin change makes ``predicate`` true."""

    def wait() -> bool:
        with WatchedPin.changed:
            return WatchedPin.changed.wait_for(predicate, timeout)

    assert await asyncio.to_thread(wait), "timed out waiting for the pins"


# -- validate_pin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (17, "GPIO17"),
        ("17", "GPIO17"),
        ("GPIO17", "GPIO17"),
        ("gpio17", "GPIO17"),
        (" BCM17 ", "GPIO17"),
        ("BOARD11", "GPIO17"),
        ("J8:11", "GPIO17"),
        ("j8:11", "GPIO17"),
        (0, "GPIO0"),
        ("BCM27", "GPIO27"),
        ("BOARD13", "GPIO27"),
        ("BOARD40", "GPIO21"),
    ],
)
def test_validate_pin_accepts(value: object, expected: str) -> None:
    assert validate_pin(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("foo", """must be a GPIO pin like "GPIO17" or "BOARD11", not 'foo'"""),
        ("", "must be a GPIO pin like"),
        ("GPIO", "must be a GPIO pin like"),
        ("PIN17", "must be a GPIO pin like"),
        ("GPIO17x", "must be a GPIO pin like"),
        (True, "must be a GPIO pin like"),
        (17.0, "must be a GPIO pin like"),
        (None, "must be a GPIO pin like"),
        (-1, "GPIO numbers run from 0 to 27, not -1"),
        (28, "GPIO numbers run from 0 to 27, not 28"),
        ("GPIO40", "GPIO numbers run from 0 to 27, not 'GPIO40'"),
        ("BOARD0", "header pins run from 1 to 40, not 'BOARD0'"),
        ("J8:41", "header pins run from 1 to 40"),
        ("BOARD1", "a power or ground pin"),
        ("J8:6", "a power or ground pin"),
    ],
)
def test_validate_pin_rejects(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=r"^(must|GPIO|header)") as caught:
        validate_pin(value)
    assert reason in str(caught.value)


def test_validate_pin_agrees_with_gpiozero_header_map(factory: MockFactory) -> None:
    for number in range(1, 41):
        spec = f"BOARD{number}"
        try:
            expected: str | None = factory.pin(spec).info.name
        except PinInvalidPin:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                validate_pin(spec)
        else:
            assert validate_pin(spec) == expected, spec
            assert validate_pin(f"J8:{number}") == expected


def test_validate_pin_does_not_load_gpiozero() -> None:
    code = (
        "import sys\n"
        "from cpagent.hal.gpio import validate_pin\n"
        "assert validate_pin('BOARD11') == 'GPIO17'\n"
        "assert 'gpiozero' not in sys.modules, 'gpiozero was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


# -- GpioContactor ----------------------------------------------------------------------------


async def test_contactor_active_high_drives_pin(factory: MockFactory, devices: Any) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    pin = factory.pin("GPIO17")
    assert pin.state == 0
    assert contactor.closed is False
    await contactor.set_closed(True)
    assert pin.state == 1
    assert contactor.closed is True
    await contactor.verify()
    await contactor.set_closed(False)
    assert pin.state == 0
    assert contactor.closed is False


async def test_contactor_active_low_drives_pin(factory: MockFactory, devices: Any) -> None:
    contactor = devices(GpioContactor("BOARD11", active_high=False, pin_factory=factory))
    pin = factory.pin("GPIO17")
    assert pin.state == 1, "an active-low relay must start released (pin high)"
    await contactor.set_closed(True)
    assert pin.state == 0
    await contactor.set_closed(False)
    assert pin.state == 1


async def test_contactor_feedback_that_follows(plain_factory: MockFactory, devices: Any) -> None:
    wire(plain_factory, "GPIO17", "GPIO27")
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=plain_factory)
    )
    assert contactor.has_feedback
    await contactor.set_closed(True)
    assert plain_factory.pin("GPIO27").state is True
    assert contactor.closed is True
    await contactor.verify()
    await contactor.set_closed(False)
    assert contactor.closed is False
    await contactor.verify()


async def test_contactor_feedback_arriving_within_settle_time(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=0.2, pin_factory=factory)
    )
    task = asyncio.create_task(contactor.set_closed(True))
    await asyncio.sleep(0)
    assert factory.pin("GPIO17").state == 1
    assert not task.done(), "set_closed must wait settle_s before checking the feedback"
    factory.pin("GPIO27").drive_high()
    await task
    assert contactor.closed is True


async def test_contactor_welded(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    )
    feedback = factory.pin("GPIO27")
    feedback.drive_high()
    await contactor.set_closed(True)
    with pytest.raises(ContactorFault) as caught:
        await contactor.set_closed(False)
    fault = caught.value
    assert fault.vendor_error_code == "ContactorWelded"
    assert fault.error_code == "PowerSwitchFailure"
    assert "GPIO17" in str(fault)
    assert "GPIO27" in str(fault)
    assert factory.pin("GPIO17").state == 0, "the relay must be released even if it welds"
    assert contactor.closed is True, "with feedback, closed is the measured state"
    with pytest.raises(ContactorFault) as again:
        await contactor.verify()
    assert again.value.vendor_error_code == "ContactorWelded"

    feedback.drive_low()
    await contactor.verify()
    assert contactor.closed is False
    await contactor.set_closed(False)


async def test_contactor_welds_between_commands(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    )
    await contactor.set_closed(False)
    await contactor.verify()
    factory.pin("GPIO27").drive_high()
    with pytest.raises(ContactorFault, match="welded") as caught:
        await contactor.verify()
    assert caught.value.vendor_error_code == "ContactorWelded"


async def test_contactor_stuck_open(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    )
    with pytest.raises(ContactorFault) as caught:
        await contactor.set_closed(True)
    assert caught.value.vendor_error_code == "ContactorStuckOpen"
    assert "GPIO17" in str(caught.value)
    assert "GPIO27" in str(caught.value)
    assert contactor.closed is False
    with pytest.raises(ContactorFault) as again:
        await contactor.verify()
    assert again.value.vendor_error_code == "ContactorStuckOpen"

    factory.pin("GPIO27").drive_high()
    await contactor.verify()
    await contactor.set_closed(True)
    assert contactor.closed is True


async def test_contactor_verify_skipped_within_settle_time(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=0.3, pin_factory=factory)
    )
    task = asyncio.create_task(contactor.set_closed(True))
    await asyncio.sleep(0)
    await contactor.verify()  # within settle_s: the relay may still be moving
    with pytest.raises(ContactorFault) as caught:
        await task
    assert caught.value.vendor_error_code == "ContactorStuckOpen"
    with pytest.raises(ContactorFault):
        await contactor.verify()


async def test_contactor_overtaken_check_is_dropped(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=0.1, pin_factory=factory)
    )
    closing = asyncio.create_task(contactor.set_closed(True))
    await asyncio.sleep(0)
    await contactor.set_closed(False)
    await closing  # commanded open again before the check: no StuckOpen
    assert factory.pin("GPIO17").state == 0


async def test_contactor_check_overtaken_while_relay_moves(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=0.1, pin_factory=factory)
    )
    feedback = factory.pin("GPIO27")
    closing = asyncio.create_task(contactor.set_closed(True))
    await asyncio.sleep(0)
    opening = asyncio.create_task(contactor.set_closed(False))
    await asyncio.sleep(0)
    feedback.drive_high()  # the relay pulls in late, just as it is told to drop out
    await closing  # its check is stale: only the newer command's check counts
    with pytest.raises(ContactorFault) as caught:
        await opening
    assert caught.value.vendor_error_code == "ContactorWelded"


async def test_contactor_repeat_command_checks_at_once(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=3600, pin_factory=factory)
    )
    contactor._last_command -= 10  # as if constructed long ago
    async with asyncio.timeout(WAIT_S):  # far less than settle_s: no wait for the relay
        await contactor.set_closed(False)
        factory.pin("GPIO27").drive_high()
        with pytest.raises(ContactorFault):
            await contactor.set_closed(False)


async def test_contactor_feedback_pull_up_active_low(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor(
            "GPIO17",
            feedback_pin="GPIO27",
            feedback_pull="up",
            feedback_active_high=False,
            settle_s=SETTLE,
            pin_factory=factory,
        )
    )
    feedback = factory.pin("GPIO27")
    assert feedback.pull == "up"
    assert feedback.state is True
    assert contactor.closed is False, "pulled high and active-low: open"
    await contactor.set_closed(False)
    feedback.drive_low()
    assert contactor.closed is True
    await contactor.set_closed(True)
    with pytest.raises(ContactorFault) as caught:
        await contactor.set_closed(False)
    assert caught.value.vendor_error_code == "ContactorWelded"


async def test_contactor_feedback_pull_up_active_high(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor(
            "GPIO17",
            feedback_pin="GPIO27",
            feedback_pull="up",
            feedback_active_high=True,
            settle_s=SETTLE,
            pin_factory=factory,
        )
    )
    assert factory.pin("GPIO27").pull == "up"
    assert contactor.closed is True, "the level decides, not the pull: high means closed"
    with pytest.raises(ContactorFault) as caught:
        await contactor.set_closed(False)
    assert caught.value.vendor_error_code == "ContactorWelded"


async def test_contactor_feedback_pull_down_and_floating_active_low(
    factory: MockFactory, devices: Any
) -> None:
    pulled_down = devices(
        GpioContactor(
            "GPIO17",
            feedback_pin="GPIO27",
            feedback_pull="down",
            settle_s=SETTLE,
            pin_factory=factory,
        )
    )
    assert factory.pin("GPIO27").pull == "down"
    assert pulled_down.closed is False
    floating_low = devices(
        GpioContactor(
            "GPIO5",
            feedback_pin="GPIO6",
            feedback_active_high=False,
            settle_s=SETTLE,
            pin_factory=factory,
        )
    )
    assert factory.pin("GPIO6").pull == "floating"
    factory.pin("GPIO6").drive_low()
    assert floating_low.closed is True
    factory.pin("GPIO6").drive_high()
    assert floating_low.closed is False
    await floating_low.set_closed(False)


async def test_contactor_listener_runs_on_the_loop(factory: MockFactory, devices: Any) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    )
    feedback = factory.pin("GPIO27")
    feedback.drive_high()  # before start(): not reported, and must not fail
    feedback.drive_low()

    calls: asyncio.Queue[int] = asyncio.Queue()

    def listener() -> None:
        calls.put_nowait(threading.get_ident())

    async def announced() -> list[int]:
        """Each change is announced twice: at once and again once settle_s is over."""
        async with asyncio.timeout(WAIT_S):
            return [await calls.get(), await calls.get()]

    contactor.set_listener(listener)
    await contactor.start()
    feedback.drive_high()
    assert calls.empty(), "the listener must be scheduled on the loop, not called inline"
    assert await announced() == [threading.get_ident()] * 2

    await asyncio.to_thread(feedback.drive_low)  # as gpiozero's callback thread would
    assert await announced() == [threading.get_ident()] * 2
    assert calls.empty()


async def test_contactor_without_feedback_start_is_harmless(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    contactor.set_listener(lambda: None)
    await contactor.start()
    await contactor.verify()
    assert not contactor.has_feedback


async def test_contactor_close_opens_and_is_idempotent(factory: MockFactory) -> None:
    contactor = GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    factory.pin("GPIO27").drive_high()
    await contactor.set_closed(True)
    contactor.close()
    contactor.close()
    assert factory.pin("GPIO17").state == 0
    assert contactor.closed is False
    await contactor.verify()
    await contactor.set_closed(False)
    with pytest.raises(ContactorFault):
        await contactor.set_closed(True)
    again = GpioContactor("GPIO17", feedback_pin="GPIO27", pin_factory=factory)
    again.close()


async def test_contactor_active_low_close_leaves_pin_high(plain_factory: MockFactory) -> None:
    contactor = GpioContactor("GPIO17", active_high=False, pin_factory=plain_factory)
    await contactor.set_closed(True)
    assert plain_factory.pin("GPIO17").state is False
    contactor.close()
    assert plain_factory.pin("GPIO17").state is True


async def test_contactor_close_survives_a_failing_device(factory: MockFactory) -> None:
    contactor = GpioContactor("GPIO17", pin_factory=factory)
    await contactor.set_closed(True)
    contactor._out.close()  # released behind its back
    contactor.close()
    with pytest.raises(ContactorFault):
        await contactor.set_closed(True)


def test_contactor_pin_in_use_is_a_hal_error(factory: MockFactory, devices: Any) -> None:
    devices(GpioContactor("GPIO17", pin_factory=factory))
    with pytest.raises(HalError) as caught:
        GpioContactor("BOARD11", pin_factory=factory)
    assert caught.value.vendor_error_code == "GpioUnavailable"


def test_contactor_failed_feedback_releases_output(factory: MockFactory, devices: Any) -> None:
    devices(GpioLock("GPIO27", pin_factory=factory))
    with pytest.raises(HalError):
        GpioContactor("GPIO17", feedback_pin="GPIO27", pin_factory=factory)
    devices(GpioContactor("GPIO17", pin_factory=factory))  # GPIO17 was released


def test_contactor_rejects_bad_arguments(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="settle_s"):
        GpioContactor("GPIO17", settle_s=-1, pin_factory=factory)
    with pytest.raises(ValueError, match="feedback_pull"):
        GpioContactor("GPIO17", feedback_pull="sideways", pin_factory=factory)  # type: ignore[arg-type]


def test_default_pin_factory_is_gpiozeros() -> None:
    previous = gpiozero.Device.pin_factory
    mock = MockFactory(pin_class=MockPWMPin)
    gpiozero.Device.pin_factory = mock
    try:
        contactor = GpioContactor("GPIO17", active_high=False)
        assert mock.pin("GPIO17").state == 1
        contactor.close()
    finally:
        mock.reset()
        gpiozero.Device.pin_factory = previous


# -- PilotInterrupt and GpioPhaseSwitch -------------------------------------------------------


async def test_pilot_interrupt_restores_after_duration(factory: MockFactory, devices: Any) -> None:
    pilot = devices(PilotInterrupt("GPIO22", pin_factory=factory))
    pin = factory.pin("GPIO22")
    assert pin.state == 0
    task = asyncio.create_task(pilot.interrupt(0.1))
    await asyncio.sleep(0)
    assert pin.state == 1
    assert pilot.interrupted
    await task
    assert pin.state == 0
    assert not pilot.interrupted
    assert pin.states[-1].timestamp >= 0.09, "interrupted for the whole duration"


async def test_pilot_interrupt_restores_when_cancelled(factory: MockFactory, devices: Any) -> None:
    pilot = devices(PilotInterrupt("GPIO22", active_high=False, pin_factory=factory))
    pin = factory.pin("GPIO22")
    assert pin.state == 1
    task = asyncio.create_task(pilot.interrupt(30))
    await asyncio.sleep(0)
    assert pin.state == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pin.state == 1
    assert not pilot.interrupted


async def test_pilot_interrupt_holds_nest(factory: MockFactory, devices: Any) -> None:
    pilot = devices(PilotInterrupt("GPIO22", pin_factory=factory))
    pin = factory.pin("GPIO22")
    with pilot.interrupting():
        await pilot.interrupt(0)
        assert pin.state == 1, "an inner hold must not reconnect the pilot early"
    assert pin.state == 0
    with pytest.raises(ValueError):
        await pilot.interrupt(-1)


async def test_phase_switch_refused_while_contactor_closed(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    pilot = PilotInterrupt("GPIO22", pin_factory=factory)
    switch = devices(
        GpioPhaseSwitch("GPIO23", contactor, pilot_interrupt=pilot, pin_factory=factory)
    )
    await contactor.set_closed(True)
    with pytest.raises(HalError) as caught:
        await switch.set_phases(1)
    assert caught.value.vendor_error_code == "PhaseSwitchWhileEnergized"
    assert switch.phases == 3
    assert factory.pin("GPIO23").state == 1
    assert len(factory.pin("GPIO22").states) == 1, "the pilot must not be touched"

    await contactor.set_closed(False)
    await switch.set_phases(1)
    assert switch.phases == 1


async def test_phase_switch_refused_by_measured_contactor(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(
        GpioContactor("GPIO17", feedback_pin="GPIO27", settle_s=SETTLE, pin_factory=factory)
    )
    switch = devices(GpioPhaseSwitch("GPIO23", contactor, pin_factory=factory))
    factory.pin("GPIO27").drive_high()  # commanded open, but welded
    with pytest.raises(HalError, match="contactor is closed"):
        await switch.set_phases(1)
    assert switch.phases == 3


async def test_phase_switch_sequence_with_pilot_interrupt(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    pilot = PilotInterrupt("GPIO22", pin_factory=factory)
    switch = devices(
        GpioPhaseSwitch(
            "GPIO23", contactor, pilot_interrupt=pilot, interrupt_s=0.2, pin_factory=factory
        )
    )
    relay, pilot_pin = factory.pin("GPIO23"), factory.pin("GPIO22")
    assert relay.state == 1, "three phases with the relay energized"
    assert pilot_pin.state == 0

    task = asyncio.create_task(switch.set_phases(1))
    await asyncio.sleep(0)
    assert pilot_pin.state == 1, "the pilot is interrupted while the relay moves"
    assert relay.state == 0
    assert switch.phases == 1
    assert not task.done()
    await asyncio.sleep(0.05)
    assert pilot.interrupted
    await task
    assert pilot_pin.state == 0, "the pilot comes back afterwards"
    assert [s.state for s in pilot_pin.states] == [0, 1, 0]
    assert pilot_pin.states[-1].timestamp >= 0.19, "kept interrupted for interrupt_s"
    assert [s.state for s in relay.states] == [0, 1, 0]

    await switch.set_phases(3)
    assert relay.state == 1
    assert switch.phases == 3
    assert [s.state for s in pilot_pin.states] == [0, 1, 0, 1, 0]


async def test_phase_switch_three_phase_when_inactive_without_pilot(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    switch = devices(
        GpioPhaseSwitch(
            "GPIO23",
            contactor,
            active_high=False,
            three_phase_when_active=False,
            initial_phases=1,
            interrupt_s=3600,
            pin_factory=factory,
        )
    )
    relay = factory.pin("GPIO23")
    assert switch.phases == 1
    assert relay.state == 0, "one phase = active = low on an active-low relay"
    async with asyncio.timeout(WAIT_S):  # no pilot to interrupt: no waiting interrupt_s
        await switch.set_phases(3)
    assert relay.state == 1
    assert switch.phases == 3


async def test_phase_switch_noop_and_bad_values(factory: MockFactory, devices: Any) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    pilot = PilotInterrupt("GPIO22", pin_factory=factory)
    switch = devices(
        GpioPhaseSwitch(
            "GPIO23", contactor, pilot_interrupt=pilot, interrupt_s=3600, pin_factory=factory
        )
    )
    await contactor.set_closed(True)
    async with asyncio.timeout(WAIT_S):
        await switch.set_phases(3)  # already there: no interrupt, no refusal
    assert len(factory.pin("GPIO22").states) == 1
    assert len(factory.pin("GPIO23").states) == 2  # the initial drive only
    for bad in (2, 0, True):
        with pytest.raises(ValueError, match="1 or 3"):
            await switch.set_phases(bad)
    with pytest.raises(ValueError):
        GpioPhaseSwitch("GPIO24", contactor, initial_phases=2, pin_factory=factory)


async def test_phase_switch_cancelled_midway_restores_pilot(
    factory: MockFactory, devices: Any
) -> None:
    contactor = devices(GpioContactor("GPIO17", pin_factory=factory))
    pilot = PilotInterrupt("GPIO22", pin_factory=factory)
    switch = devices(
        GpioPhaseSwitch(
            "GPIO23", contactor, pilot_interrupt=pilot, interrupt_s=30, pin_factory=factory
        )
    )
    task = asyncio.create_task(switch.set_phases(1))
    await asyncio.sleep(0)
    assert factory.pin("GPIO22").state == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert factory.pin("GPIO22").state == 0
    assert switch.phases == 1
    assert factory.pin("GPIO23").state == 0


async def test_phase_switch_close_releases_relay_and_pilot(factory: MockFactory) -> None:
    contactor = GpioContactor("GPIO17", pin_factory=factory)
    pilot = PilotInterrupt("GPIO22", pin_factory=factory)
    switch = GpioPhaseSwitch("GPIO23", contactor, pilot_interrupt=pilot, pin_factory=factory)
    assert factory.pin("GPIO23").state == 1
    switch.close()
    switch.close()
    contactor.close()
    assert factory.pin("GPIO23").state == 0
    assert factory.pin("GPIO22").state == 0
    assert switch.phases == 1
    assert not pilot.interrupted
    with pytest.raises(HalError):
        await switch.set_phases(3)
    with pytest.raises(HalError):
        await pilot.interrupt(0.01)


# -- GpioLock ---------------------------------------------------------------------------------


async def test_lock_without_feedback(factory: MockFactory, devices: Any) -> None:
    lock = devices(GpioLock("GPIO24", pin_factory=factory))
    pin = factory.pin("GPIO24")
    assert pin.state == 0
    assert lock.locked is False
    assert await lock.lock() is True
    assert pin.state == 1
    assert lock.locked is True
    assert await lock.unlock() is True
    assert pin.state == 0
    assert lock.locked is False


async def test_lock_with_feedback_that_follows(plain_factory: MockFactory, devices: Any) -> None:
    wire(plain_factory, "GPIO24", "GPIO25")
    lock = devices(
        GpioLock("GPIO24", feedback_pin="GPIO25", settle_s=SETTLE, pin_factory=plain_factory)
    )
    assert await lock.lock() is True
    assert lock.locked is True
    assert await lock.unlock() is True
    assert lock.locked is False


async def test_lock_waits_settle_time_for_feedback(factory: MockFactory, devices: Any) -> None:
    lock = devices(GpioLock("GPIO24", feedback_pin="GPIO25", settle_s=0.2, pin_factory=factory))
    locking = asyncio.create_task(lock.lock())
    await asyncio.sleep(0)
    assert factory.pin("GPIO24").state == 1
    assert not locking.done()
    factory.pin("GPIO25").drive_high()
    assert await locking is True


async def test_lock_fails_when_feedback_does_not_follow(factory: MockFactory, devices: Any) -> None:
    lock = devices(
        GpioLock(
            "GPIO24",
            feedback_pin="GPIO25",
            feedback_pull="up",
            feedback_active_high=False,
            settle_s=SETTLE,
            pin_factory=factory,
        )
    )
    feedback = factory.pin("GPIO25")
    assert lock.locked is False
    assert await lock.lock() is False
    assert factory.pin("GPIO24").state == 1
    assert lock.locked is False
    feedback.drive_low()  # the lock engages late
    assert lock.locked is True
    assert await lock.lock() is True
    assert await lock.unlock() is False, "feedback still shows locked"
    feedback.drive_high()
    assert await lock.unlock() is True


async def test_lock_close_unlocks(factory: MockFactory) -> None:
    lock = GpioLock("GPIO24", active_high=False, pin_factory=factory)
    assert factory.pin("GPIO24").state == 1
    await lock.lock()
    assert factory.pin("GPIO24").state == 0
    lock.close()
    lock.close()
    assert factory.pin("GPIO24").states[-2].state == 1, "driven to unlocked before release"
    assert lock.locked is False
    assert await lock.unlock() is True
    with pytest.raises(LockFault):
        await lock.lock()


# -- StatusLed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "pattern"),
    [
        ("Available", "on"),
        ("Reserved", "on"),
        ("Preparing", "slow"),
        ("Finishing", "slow"),
        ("SuspendedEV", "slow"),
        ("SuspendedEVSE", "slow"),
        ("Charging", "charging"),
        ("Faulted", "fast"),
        ("Unavailable", "off"),
        ("SomethingNew", "off"),
        ("available", "off"),
    ],
)
def test_status_led_patterns(factory: MockFactory, devices: Any, status: str, pattern: str) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    led.show("Available")
    led.show(status)
    assert led.pattern == pattern


def test_status_led_steady_states(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    pin = factory.pin("GPIO26")
    assert pin.state == 0
    assert led.pattern == "off"
    led.show("Available")
    assert pin.state == 1
    led.show("Unavailable")
    assert pin.state == 0
    led.show("Reserved")
    assert pin.state == 1
    led.show("NoSuchStatus")
    assert pin.state == 0


def test_status_led_active_low(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", active_high=False, pin_factory=factory))
    pin = factory.pin("GPIO26")
    assert pin.state == 1
    led.show("Available")
    assert pin.state == 0


def durations(pin: Any, count: int) -> list[float]:
    """How long each of the first ``count`` completed blink phases lasted."""
    return [s.timestamp for s in pin.states[2 : 2 + count]]


def assert_blink(phases: list[float], phase_s: float, *, slower: float) -> None:
    """Every phase lasted ``phase_s`` or longer, and the shortest less than ``slower`` (the
    phase of a slower pattern): a busy machine stretches a phase now and then, not each one,
    and never shortens one."""
    assert phases and all(d >= phase_s * 0.9 for d in phases), phases
    assert min(phases) < slower, phases


async def test_status_led_fast_blink(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    pin = factory.pin("GPIO26")
    led.show("Faulted")
    assert led.pattern == "fast"
    await wait_until(lambda: len(pin.states) >= 6)
    assert [s.state for s in pin.states[:6]] == [0, 1, 0, 1, 0, 1]
    assert_blink(durations(pin, 4), 0.1, slower=0.5)


async def test_status_led_charging_blink(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    pin = factory.pin("GPIO26")
    led.show("Charging")
    await wait_until(lambda: len(pin.states) >= 4)
    assert_blink(durations(pin, 2), 0.5, slower=1.0)


async def test_status_led_slow_blink(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    pin = factory.pin("GPIO26")
    led.show("SuspendedEV")
    await wait_until(lambda: len(pin.states) >= 4)
    assert pin.states[2].state == 0
    assert_blink(durations(pin, 2), 1.0, slower=1.5)


async def test_status_led_repeat_does_not_restart_blink(factory: MockFactory, devices: Any) -> None:
    led = devices(StatusLed("GPIO26", pin_factory=factory))
    pin = factory.pin("GPIO26")
    led.show("Charging")
    await wait_until(lambda: len(pin.states) >= 3)  # now in the 0.5 s off phase
    seen = len(pin.states)
    for _ in range(5):
        led.show("Charging")
    # A restarted blink switches the LED on at once, cutting the phase short.
    await wait_until(lambda: len(pin.states) > seen)
    assert pin.states[seen].timestamp >= 0.45, pin.states


async def test_status_led_close_turns_off(factory: MockFactory) -> None:
    led = StatusLed("GPIO26", pin_factory=factory)
    pin = factory.pin("GPIO26")
    led.show("Faulted")
    await wait_until(lambda: pin.state == 1)
    led.close()
    led.close()
    assert pin.state == 0
    assert led.pattern == "off"
    seen = len(pin.states)
    await asyncio.sleep(0.25)  # a blink thread left running would toggle the pin
    assert len(pin.states) == seen
    led.show("Available")
    assert pin.state == 0


def test_status_led_close_drives_off_before_release(plain_factory: MockFactory) -> None:
    led = StatusLed("GPIO26", pin_factory=plain_factory)
    led.show("Available")
    assert plain_factory.pin("GPIO26").state is True
    led.close()
    assert plain_factory.pin("GPIO26").state is False
