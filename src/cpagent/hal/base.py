"""Interfaces every hardware backend implements.

The station sees only these classes; which backend sits behind them (the
simulator, Modbus meters, GPIO relays, an EVSE board) is chosen by config and
passed in. A backend *must* implement every abstract method. Device failures
are raised as the matching :class:`cpagent.exc.HalError` subclass, which the
station turns into a Faulted connector with the error's OCPP error code.

Backends report spontaneous changes (a pilot state change, a device that
fails or recovers) by calling the listener given to :meth:`Hardware.subscribe`,
so the station never has to poll fast to notice them.
"""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class PilotState(enum.StrEnum):
    """IEC 61851 control pilot state as the EVSE measures it."""

    A = "A"  # no vehicle
    B = "B"  # vehicle connected, not requesting energy
    C = "C"  # vehicle requests energy
    D = "D"  # vehicle requests energy, ventilation required
    E = "E"  # short circuit / no mains
    F = "F"  # EVSE not available

    @property
    def plugged(self) -> bool:
        return self in (PilotState.B, PilotState.C, PilotState.D)

    @property
    def requests_energy(self) -> bool:
        return self in (PilotState.C, PilotState.D)


@dataclass(frozen=True)
class MeterReading:
    """One coherent snapshot of a connector's meter.

    ``energy_wh`` is the import register and never decreases. Per-phase tuples
    have one entry per wired phase (L1, L2, L3). ``soc_percent`` is set only
    where the EV reports it (the simulator does).
    """

    energy_wh: float
    power_w: float
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    power_phase_w: tuple[float, ...] = ()
    frequency_hz: float | None = None
    soc_percent: float | None = None


class Meter(abc.ABC):
    @abc.abstractmethod
    async def read(self) -> MeterReading:
        """Return a fresh reading; raise :class:`MeterFault` when the meter fails."""


class Contactor(abc.ABC):
    """The power relay of one connector. Its safe state is open."""

    @abc.abstractmethod
    async def set_closed(self, closed: bool) -> None:
        """Drive the relay; raise :class:`ContactorFault` if it does not follow (welded)."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """The last commanded (or, with a feedback contact, measured) state."""

    async def verify(self) -> None:  # noqa: B027 - an optional check; the default has none
        """Raise :class:`ContactorFault` if the relay is not where it was last commanded.

        Called on every poll, so a contact that welds or drops out between commands
        is reported. Without a feedback contact there is nothing to compare; the
        default does nothing.
        """


class Pilot(abc.ABC):
    """The control pilot of one connector. Its safe state is 0 A offered (no PWM)."""

    @abc.abstractmethod
    async def set_offered_current(self, amps: float) -> None:
        """Offer ``amps`` by PWM duty cycle; below 6 A means no PWM (charging not allowed).

        ``amps`` is the station's decision from the call on, even when the call raises
        :class:`PilotFault` (a device that does not answer or refuses it now): the pilot
        applies it when the device takes it again, and never offers more meanwhile."""

    @property
    @abc.abstractmethod
    def offered_current(self) -> float:
        """The current the device offers as far as the pilot knows, in A (0 when no PWM);
        it may be ``amps`` rounded to the device's own steps."""

    @abc.abstractmethod
    async def state(self) -> PilotState:
        """The pilot state now; raise :class:`PilotFault` when it cannot be measured."""


class ConnectorLock(abc.ABC):
    """The cable lock of a socket outlet. Its safe state is unlocked."""

    @abc.abstractmethod
    async def lock(self) -> bool:
        """Lock the cable in; return False if the lock did not engage."""

    @abc.abstractmethod
    async def unlock(self) -> bool:
        """Release the cable; return False if the lock did not open."""


class PhaseSwitch(abc.ABC):
    """A relay that switches a connector between one and three phases.

    Switching is only safe with the contactor open; implementations refuse
    otherwise and take care of the EV (e.g. interrupting the pilot so it
    re-detects the supply).
    """

    @property
    @abc.abstractmethod
    def phases(self) -> int:
        """The phases now wired through: 1 or 3."""

    @abc.abstractmethod
    async def set_phases(self, phases: int) -> None:
        """Switch to ``phases`` (1 or 3); raise :class:`HalError` if it cannot."""


class CardReader(abc.ABC):
    @abc.abstractmethod
    async def read_card(self) -> str:
        """Wait for the next card and return its UID as upper-case hex/text."""


@dataclass
class ConnectorHardware:
    """The devices wired to one connector (1-based ``connector_id``)."""

    connector_id: int
    meter: Meter
    contactor: Contactor
    pilot: Pilot
    lock: ConnectorLock | None = None
    phase_switch: PhaseSwitch | None = None
    phases: int = 3
    max_current_a: float = 32.0
    poll_interval_s: float = 1.0
    """How often the station reads this connector's meter and pilot while charging."""
    idle_poll_s: float | None = None
    """How often the station reads them while the connector supplies nothing: what the
    backend does not report through :meth:`Hardware.notify` (a meter that stopped
    answering) shows within this time. ``None``: the station's default (10 s). A backend
    whose devices report every change may set it longer, since each poll wakes the
    board's CPU."""


ChangeListener = Callable[[int], None]
"""Called with the connector id (0 = the whole charger) whose hardware changed."""


@dataclass
class Hardware:
    """Everything the station drives. ``close()`` puts every output in its safe state."""

    connectors: dict[int, ConnectorHardware]
    card_reader: CardReader | None = None
    _listeners: list[ChangeListener] = field(default_factory=list)

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: ChangeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def notify(self, connector_id: int) -> None:
        for listener in list(self._listeners):
            listener(connector_id)

    async def start(self) -> None:
        """Open devices and start watching them. Backends override; the default has nothing
        to open."""

    def show_status(self, connector_id: int, status: str) -> None:
        """Show a connector's OCPP status (``connector_id`` 0: the charger) on an indicator
        such as a status LED. The default has no indicator."""

    def describe(self) -> dict[str, object]:
        """What is wired where, for ``cpagent status``; backends override."""
        return {}

    async def close(self) -> None:
        """Open every contactor and stop every PWM, ignoring device errors. Idempotent."""
        for hw in self.connectors.values():
            with contextlib.suppress(Exception):  # shutdown must reach every output
                await hw.pilot.set_offered_current(0.0)
            with contextlib.suppress(Exception):
                await hw.contactor.set_closed(False)
