"""The real-hardware backend: Modbus meters and EVSE boards, GPIO relays, a serial reader.

Built from :class:`~cpagent.hal.hardware_config.HardwareConfig` alone. Devices are
created without touching the wire (buses and the reader open on first use), so a
USB adapter that is missing or unplugged shows up as a Faulted connector the CSMS
sees, not as an agent that will not start. GPIO pins are claimed at build time: a
pin that does not exist or is taken is a wiring error, raised as
:class:`~cpagent.exc.HalError` naming the pin, and the agent exits with it.

Two things happen here that the station does not know about:

- every EVSE board is watched (its vehicle state read every ``state_poll_s``), and a
  change is reported through :meth:`Hardware.notify`, so a plug-in is seen within a
  fraction of a second although the station polls an idle connector only every 10 s;
- a GPIO contactor closes only while the station allows it *and* the EV asks for
  energy (pilot state C or D), as IEC 61851-1 requires; see :class:`GatedContactor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from cpagent.hal.base import ConnectorHardware, Contactor, Hardware
from cpagent.hal.card_reader import FRAMINGS, SerialCardReader
from cpagent.hal.evse_board import EvseDinPilot, ModbusBoardPilot, PhoenixPilot
from cpagent.hal.gpio import GpioContactor, GpioLock, GpioPhaseSwitch, PilotInterrupt, StatusLed
from cpagent.hal.hardware_config import (
    BusConfig,
    ConnectorConfig,
    HardwareConfig,
    SerialBusConfig,
)
from cpagent.hal.modbus import ModbusBus, ModbusMeter

log = logging.getLogger(__name__)


class BoardContactor(Contactor):
    """The contactor when the EVSE board switches it itself: the command is the state.

    EVSE-DIN and Phoenix boards close their relay output when the EV requests energy
    and current is offered, so the agent only records what the station asked for.
    """

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def set_closed(self, closed: bool) -> None:
        self._closed = closed


class GatedContactor(Contactor):
    """A GPIO contactor that follows the station's permission *and* the vehicle.

    ``set_closed(True)`` allows the supply; the relay then closes only while the
    board reports state C or D, and opens when the EV goes back to B or away, so the
    socket is live only while the EV asks for energy. :meth:`follow` re-applies the
    rule after each pilot state change.
    """

    def __init__(self, relay: GpioContactor, pilot: ModbusBoardPilot) -> None:
        self.relay = relay
        self.pilot = pilot
        self.allowed = False
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self.relay.closed

    async def set_closed(self, closed: bool) -> None:
        """Allow or forbid the supply. Always re-commands the relay, so a repeated command
        re-checks a feedback contact that disagreed (which is how a fault clears)."""
        self.allowed = closed
        async with self._lock:
            await self.relay.set_closed(self._wanted())

    async def follow(self) -> None:
        """Re-apply the rule after a pilot state change."""
        async with self._lock:
            want = self._wanted()
            if want != self.relay.commanded:
                await self.relay.set_closed(want)

    def _wanted(self) -> bool:
        state = self.pilot.last_state
        return self.allowed and state is not None and state.requests_energy

    async def verify(self) -> None:
        await self.relay.verify()


class RealHardware(Hardware):
    """A charger wired as ``config`` says. ``pin_factory`` is gpiozero's (None: default)."""

    def __init__(self, config: HardwareConfig, *, pin_factory: Any = None) -> None:
        self.config = config
        self.buses = {name: _bus(bus) for name, bus in config.buses.items()}
        self.pilots: dict[int, ModbusBoardPilot] = {}
        self.leds: dict[int, StatusLed] = {}
        self._gpio: list[Any] = []
        self._watchers: list[asyncio.Task[None]] = []
        connectors: dict[int, ConnectorHardware] = {}
        try:
            for c in config.connectors:
                connectors[c.connector_id] = self._connector(c, pin_factory)
        except BaseException:
            self._close_gpio()
            raise
        reader = None
        if config.card_reader is not None:
            r = config.card_reader
            reader = SerialCardReader(
                r.port,
                framing=FRAMINGS[r.protocol](),
                baudrate=r.baudrate,
                repeat_suppress_s=r.repeat_suppress_s,
            )
        super().__init__(connectors, reader)

    def _connector(self, c: ConnectorConfig, pin_factory: Any) -> ConnectorHardware:
        meter = ModbusMeter(
            c.meter.map, self.buses[c.meter.bus], c.meter.device_id, retries=c.meter.retries
        )
        board = c.pilot
        pilot_class = EvseDinPilot if board.board == "evse-din" else PhoenixPilot
        pilot = pilot_class(
            self.buses[board.bus],
            board.device_id,
            retries=board.retries,
            max_current_a=c.max_current_a,
            write_function=board.write_function,
        )
        self.pilots[c.connector_id] = pilot
        contactor: Contactor = BoardContactor()
        if (cc := c.contactor) is not None:
            feedback = cc.feedback
            relay = self._own(
                GpioContactor(
                    cc.pin,
                    active_high=cc.active_high,
                    feedback_pin=feedback.pin if feedback else None,
                    feedback_active_high=feedback.active_high if feedback else True,
                    feedback_pull=feedback.pull if feedback else "none",
                    settle_s=cc.settle_s,
                    pin_factory=pin_factory,
                )
            )
            relay.set_listener(functools.partial(self.notify, c.connector_id))
            contactor = GatedContactor(relay, pilot)
        lock = None
        if (lc := c.lock) is not None:
            lock = self._own(
                GpioLock(
                    lc.pin,
                    active_high=lc.active_high,
                    feedback_pin=lc.feedback.pin if lc.feedback else None,
                    feedback_active_high=lc.feedback.active_high if lc.feedback else True,
                    feedback_pull=lc.feedback.pull if lc.feedback else "none",
                    settle_s=lc.settle_s,
                    pin_factory=pin_factory,
                )
            )
        phase_switch = None
        if (pc := c.phase_switch) is not None:
            interrupt = None
            if pc.pilot_interrupt_pin is not None:
                interrupt = self._own(
                    PilotInterrupt(
                        pc.pilot_interrupt_pin,
                        active_high=pc.pilot_interrupt_active_high,
                        pin_factory=pin_factory,
                    )
                )
            phase_switch = self._own(
                GpioPhaseSwitch(
                    pc.pin,
                    contactor,
                    active_high=pc.active_high,
                    three_phase_when_active=pc.three_phase_when_active,
                    initial_phases=c.phases,
                    pilot_interrupt=interrupt,
                    interrupt_s=pc.interrupt_s,
                    pin_factory=pin_factory,
                )
            )
        if c.led is not None:
            self.leds[c.connector_id] = self._own(
                StatusLed(c.led.pin, active_high=c.led.active_high, pin_factory=pin_factory)
            )
        return ConnectorHardware(
            c.connector_id,
            meter,
            contactor,
            pilot,
            lock=lock,
            phase_switch=phase_switch,
            phases=c.phases,
            max_current_a=c.max_current_a,
            poll_interval_s=c.poll_interval_s,
        )

    def _own(self, device: Any) -> Any:
        self._gpio.append(device)
        return device

    async def start(self) -> None:
        for cid, pilot in self.pilots.items():
            await pilot.start()
            board = next(c.pilot for c in self.config.connectors if c.connector_id == cid)
            self._watchers.append(
                asyncio.create_task(
                    pilot.watch(functools.partial(self._pilot_changed, cid), board.state_poll_s),
                    name=f"board-watch-{cid}",
                )
            )
        for hw in self.connectors.values():
            if isinstance(hw.contactor, GatedContactor):
                await hw.contactor.relay.start()

    def _pilot_changed(self, connector_id: int) -> None:
        contactor = self.connectors[connector_id].contactor
        if isinstance(contactor, GatedContactor):
            task = asyncio.create_task(self._follow(connector_id, contactor))
            self._watchers.append(task)
            task.add_done_callback(self._forget)
        else:
            self.notify(connector_id)

    async def _follow(self, connector_id: int, contactor: GatedContactor) -> None:
        try:
            await contactor.follow()
        except Exception as err:  # noqa: BLE001 - reported by the station's verify/command
            log.warning("connector %d: contactor did not follow the vehicle: %s", connector_id, err)
        self.notify(connector_id)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(task)

    def show_status(self, connector_id: int, status: str) -> None:
        led = self.leds.get(connector_id)
        if led is not None:
            led.show(status)

    def describe(self) -> dict[str, object]:
        connectors: dict[str, object] = {}
        for cid, hw in self.connectors.items():
            meter = hw.meter
            assert isinstance(meter, ModbusMeter)
            entry: dict[str, object] = {
                "meter": f"{meter.map.name} id {meter.device_id} on {meter.bus.name}",
                "board": self.pilots[cid].describe(),
                "contactor": {
                    "switched_by": "gpio" if isinstance(hw.contactor, GatedContactor) else "board",
                    "closed": hw.contactor.closed,
                },
                "phases": hw.phase_switch.phases if hw.phase_switch else hw.phases,
            }
            if hw.lock is not None:
                assert isinstance(hw.lock, GpioLock)
                entry["lock"] = "locked" if hw.lock.locked else "unlocked"
            if cid in self.leds:
                entry["led"] = self.leds[cid].pattern
            connectors[str(cid)] = entry
        out: dict[str, object] = {
            "buses": {name: {"requests": bus.requests} for name, bus in self.buses.items()},
            "connectors": connectors,
        }
        if isinstance(self.card_reader, SerialCardReader):
            out["card_reader"] = self.card_reader.describe()
        return out

    async def close(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()
        await super().close()
        if isinstance(self.card_reader, SerialCardReader):
            self.card_reader.close()
        self._close_gpio()
        for bus in self.buses.values():
            await bus.close()

    def _close_gpio(self) -> None:
        for device in reversed(self._gpio):
            device.close()
        self._gpio.clear()


def _bus(config: BusConfig) -> ModbusBus:
    if isinstance(config, SerialBusConfig):
        return ModbusBus.serial(
            config.port,
            baudrate=config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
            timeout=config.timeout_s,
            gap_s=config.gap_s,
        )
    return ModbusBus.tcp(config.host, config.port, timeout=config.timeout_s, gap_s=config.gap_s)
