"""Simulated charger hardware: per connector an EV, a meter, a relay, a pilot and a lock.

The simulator is a backend and a test instrument at once. The station drives it through the
:mod:`cpagent.hal.base` interfaces like any real hardware; tests and ``cpagent sim`` drive the
other side through :class:`SimHardware`'s instrument methods (plug an EV, force a pilot state,
make a device fail, present a card) and inspect what the station did through
:meth:`SimHardware.snapshot` and :attr:`SimContactor.history`.

The physics is deterministic and lazy: nothing runs in the background. Whenever a connector is
read or changed, its energy register is first integrated up to the injected clock's *now* with
the state that held since the previous call, and only then is the change applied. An automatic
EV whose battery fills up therefore stops drawing power at the exact simulated moment, but the
resulting C -> B change is announced to listeners on the next read of that connector.

The energy registers survive restarts through an optional JSON state file, written atomically
off the event loop, so the register a CSMS has seen never goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cpagent.exc import ContactorFault, HalError, MeterFault
from cpagent.fsutil import fsync_dir
from cpagent.hal.base import (
    CardReader,
    ConnectorHardware,
    ConnectorLock,
    Contactor,
    Hardware,
    Meter,
    MeterReading,
    PhaseSwitch,
    Pilot,
    PilotState,
)

logger = logging.getLogger(__name__)

MIN_PWM_CURRENT_A = 6.0
"""IEC 61851: an offer below this is no PWM, the EV must not draw current."""

FREQUENCY_HZ = 50.0
FAULT_DEVICES = ("meter", "relay", "pilot")
PERSIST_STEP_WH = 1.0
"""A meter read writes the state file once the register moved this much since the last write."""
IDLE_POLL_S = 60.0
"""The station's idle poll of a simulated connector: its devices change only when driven
(each change calls notify) or while they supply (polled at the charging rate), so a poll
of an idle one is only a backstop, and fewer of them keep an idle agent's CPU low."""


class _ConnectorModel:
    """The physical state of one connector: its EV, relay, pilot PWM and energy register.

    The single source of truth the ``Sim*`` devices of that connector are views of. Every
    method that reads or changes it calls :meth:`advance` first, so energy is always
    integrated with the state that held before the change.
    """

    def __init__(
        self,
        connector_id: int,
        *,
        voltage_v: float,
        phases: int,
        max_current_a: float,
        ev_max_current_a: float,
        ev_battery_wh: float,
        ev_initial_soc: float,
        energy_wh: float,
        clock: Callable[[], float],
        notify: Callable[[], None],
    ) -> None:
        self.connector_id = connector_id
        self.voltage_v = voltage_v
        self.phases = phases
        self.max_current_a = max_current_a
        self.ev_max_current_a = ev_max_current_a
        self.ev_battery_wh = ev_battery_wh
        self.ev_initial_soc = ev_initial_soc
        self._clock = clock
        self.notify = notify

        self.plugged = False
        self.forced: PilotState | None = None
        self.closed = False
        self.offered_a = 0.0
        self.faults: set[str] = set()
        self.energy_wh = energy_wh
        self.written_wh = energy_wh
        self.soc = ev_initial_soc
        self.time = clock()

    def pilot_state(self) -> PilotState:
        """The pilot state as the EVSE measures it now (no integration)."""
        if "pilot" in self.faults:
            return PilotState.E
        if not self.plugged:
            return PilotState.A
        if self.forced is not None:
            return self.forced
        if self.closed and self.offered_a >= MIN_PWM_CURRENT_A and self.soc < 100.0:
            return PilotState.C
        return PilotState.B

    def current_a(self) -> float:
        """Per-phase current the EV draws now."""
        if not (
            self.closed
            and self.offered_a >= MIN_PWM_CURRENT_A
            and self.pilot_state().requests_energy
        ):
            return 0.0
        return min(self.offered_a, self.ev_max_current_a, self.max_current_a)

    def power_w(self) -> float:
        return self.phases * self.voltage_v * self.current_a()

    def advance(self) -> None:
        """Integrate the register up to now with the current state; never decreases it.

        An automatic EV stops at a full battery, so only the energy needed to reach 100 %
        is added; a forced EV keeps drawing whatever its battery says.
        """
        now = self._clock()
        elapsed = now - self.time
        if elapsed <= 0:
            return
        self.time = now
        power = self.power_w()
        if power <= 0:
            return
        before = self.pilot_state()
        added_wh = power * elapsed / 3600.0
        to_full_wh = (100.0 - self.soc) / 100.0 * self.ev_battery_wh
        if self.forced is None and added_wh >= to_full_wh:
            self.energy_wh += to_full_wh
            self.soc = 100.0
        else:
            self.energy_wh += added_wh
            self.soc = min(100.0, self.soc + added_wh / self.ev_battery_wh * 100.0)
        if self.pilot_state() != before:
            self.notify()

    def notify_if_changed(self, before: PilotState) -> None:
        if self.pilot_state() != before:
            self.notify()

    def connect(self) -> None:
        """A new EV arrives (with the initial SoC) unless one is already plugged in."""
        if not self.plugged:
            self.plugged = True
            self.soc = self.ev_initial_soc

    def reading(self) -> MeterReading:
        current = self.current_a()
        return MeterReading(
            energy_wh=self.energy_wh,
            power_w=self.phases * self.voltage_v * current,
            voltage_v=(self.voltage_v,) * self.phases,
            current_a=(current,) * self.phases,
            power_phase_w=(self.voltage_v * current,) * self.phases,
            frequency_hz=FREQUENCY_HZ,
            soc_percent=self.soc if self.plugged else None,
        )

    def describe(self) -> dict[str, object]:
        return {
            "plugged": self.plugged,
            "ev_state": self.pilot_state().value,
            "forced": None if self.forced is None else self.forced.value,
            "contactor_closed": self.closed,
            "offered_current_a": self.offered_a,
            "current_a": self.current_a(),
            "power_w": self.power_w(),
            "phases": self.phases,
            "energy_wh": self.energy_wh,
            "soc_percent": self.soc if self.plugged else None,
            "faults": sorted(self.faults),
        }


class SimMeter(Meter):
    """The connector's meter; with the ``meter`` fault on it stops answering.

    The register keeps integrating while the meter is silent, as a real meter's would.
    """

    def __init__(self, model: _ConnectorModel, persist: Callable[[], Awaitable[None]]) -> None:
        self._model = model
        self._persist = persist

    async def read(self) -> MeterReading:
        """Return a reading; also writes the state file once the register moved >= 1 Wh."""
        model = self._model
        model.advance()
        if model.energy_wh - model.written_wh >= PERSIST_STEP_WH:
            await self._persist()
        if "meter" in model.faults:
            raise MeterFault(
                f"simulated meter on connector {model.connector_id} does not answer",
                vendor_error_code="SimMeterTimeout",
            )
        return model.reading()


class SimContactor(Contactor):
    """The connector's relay; with the ``relay`` fault on it is welded (will not open).

    ``history`` holds ``(clock time, closed)`` for every effective state change, so a test
    can check not only where the relay ended up but when and how often it switched.
    """

    def __init__(self, model: _ConnectorModel) -> None:
        self._model = model
        self.history: list[tuple[float, bool]] = []

    @property
    def closed(self) -> bool:
        return self._model.closed

    async def set_closed(self, closed: bool) -> None:
        model = self._model
        model.advance()
        if not closed and model.closed and "relay" in model.faults:
            raise ContactorFault(
                f"simulated relay on connector {model.connector_id} is welded closed",
                vendor_error_code="SimRelayWelded",
            )
        if closed == model.closed:
            return
        before = model.pilot_state()
        model.closed = closed
        self.history.append((model.time, closed))
        model.notify_if_changed(before)


class SimPilot(Pilot):
    """The connector's control pilot; with the ``pilot`` fault on it measures state E."""

    def __init__(self, model: _ConnectorModel) -> None:
        self._model = model

    @property
    def offered_current(self) -> float:
        return self._model.offered_a

    async def set_offered_current(self, amps: float) -> None:
        """Offer ``amps``; below 6 A is stored as 0.0 (no PWM). Negative or NaN: ValueError."""
        if not math.isfinite(amps) or amps < 0:
            raise ValueError(f"offered current must be a finite value >= 0 A, got {amps!r}")
        model = self._model
        model.advance()
        before = model.pilot_state()
        model.offered_a = float(amps) if amps >= MIN_PWM_CURRENT_A else 0.0
        model.notify_if_changed(before)

    async def state(self) -> PilotState:
        self._model.advance()
        return self._model.pilot_state()


class SimPhaseSwitch(PhaseSwitch):
    """A 1p/3p switch on a 3-phase connector: the EV then draws on the phases it selects.
    Like a real one it refuses to switch while the contactor is closed."""

    def __init__(self, model: _ConnectorModel) -> None:
        self._model = model

    @property
    def phases(self) -> int:
        return self._model.phases

    async def set_phases(self, phases: int) -> None:
        if phases not in (1, 3):
            raise ValueError(f"a phase switch selects 1 or 3 phases, not {phases!r}")
        model = self._model
        if phases == model.phases:
            return
        if model.closed:
            raise HalError(
                f"simulated phase switch on connector {model.connector_id}: cannot switch"
                " while the contactor is closed",
                vendor_error_code="PhaseSwitchWhileEnergized",
            )
        model.advance()
        model.phases = phases


class SimLock(ConnectorLock):
    """A cable lock that always works; ``unlocks`` counts the unlock requests."""

    def __init__(self) -> None:
        self.unlocks = 0
        self.locked = False

    async def lock(self) -> bool:
        self.locked = True
        return True

    async def unlock(self) -> bool:
        self.unlocks += 1
        self.locked = False
        return True


class SimCardReader(CardReader):
    """A reader fed by :meth:`SimHardware.present_card`; cards queue up until read."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def present(self, uid: str) -> None:
        self._queue.put_nowait(uid)

    @property
    def waiting(self) -> int:
        """Cards presented but not read yet."""
        return self._queue.qsize()

    async def read_card(self) -> str:
        return await self._queue.get()


class SimHardware(Hardware):
    """A simulated charger with ``connectors`` identical connectors, each with an EV.

    Every connector gets a :class:`SimMeter`, :class:`SimContactor`, :class:`SimPilot` and
    :class:`SimLock`; the charger has one :class:`SimCardReader`. All time comes from
    ``clock`` so tests advance it by hand. ``state_file``, when given, keeps the energy
    registers across restarts (see :meth:`persist`).

    The instrument methods raise :class:`ValueError` with a message fit for the user on an
    unknown connector, device or pilot state.
    """

    def __init__(
        self,
        connectors: int,
        *,
        voltage_v: float = 230.0,
        phases: int = 3,
        ev_max_current_a: float = 32.0,
        ev_battery_wh: float = 60000.0,
        ev_initial_soc: float = 20.0,
        max_current_a: float = 32.0,
        phase_switch: bool = False,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_arguments(
            connectors=connectors,
            voltage_v=voltage_v,
            phases=phases,
            ev_max_current_a=ev_max_current_a,
            ev_battery_wh=ev_battery_wh,
            ev_initial_soc=ev_initial_soc,
            max_current_a=max_current_a,
        )
        if phase_switch and phases != 3:
            raise ValueError(f"a phase switch needs 3 wired phases, not {phases}")
        self._state_file = state_file
        stored = _load_energies(state_file) if state_file is not None else {}

        self._models: dict[int, _ConnectorModel] = {}
        self._meters: dict[int, SimMeter] = {}
        self._contactors: dict[int, SimContactor] = {}
        self._pilots: dict[int, SimPilot] = {}
        self._locks: dict[int, SimLock] = {}
        hardware: dict[int, ConnectorHardware] = {}
        for cid in range(1, connectors + 1):
            model = _ConnectorModel(
                cid,
                voltage_v=voltage_v,
                phases=phases,
                max_current_a=max_current_a,
                ev_max_current_a=ev_max_current_a,
                ev_battery_wh=ev_battery_wh,
                ev_initial_soc=ev_initial_soc,
                energy_wh=stored.get(cid, 0.0),
                clock=clock,
                notify=self._notifier(cid),
            )
            self._models[cid] = model
            self._meters[cid] = SimMeter(model, self._persist_after_read)
            self._contactors[cid] = SimContactor(model)
            self._pilots[cid] = SimPilot(model)
            self._locks[cid] = SimLock()
            hardware[cid] = ConnectorHardware(
                connector_id=cid,
                meter=self._meters[cid],
                contactor=self._contactors[cid],
                pilot=self._pilots[cid],
                lock=self._locks[cid],
                phase_switch=SimPhaseSwitch(model) if phase_switch else None,
                phases=phases,
                max_current_a=max_current_a,
                idle_poll_s=IDLE_POLL_S,
            )
        self._reader = SimCardReader()
        super().__init__(connectors=hardware, card_reader=self._reader)

        self._write_lock = threading.Lock()
        self._persist_seq = 0
        self._written_seq = 0
        self._persist_failing = False

    def _notifier(self, connector_id: int) -> Callable[[], None]:
        return lambda: self.notify(connector_id)

    # -- typed access to the simulated devices (ValueError on an unknown connector) --------

    def meter(self, connector_id: int) -> SimMeter:
        self._model(connector_id)
        return self._meters[connector_id]

    def contactor(self, connector_id: int) -> SimContactor:
        self._model(connector_id)
        return self._contactors[connector_id]

    def pilot(self, connector_id: int) -> SimPilot:
        self._model(connector_id)
        return self._pilots[connector_id]

    def lock(self, connector_id: int) -> SimLock:
        self._model(connector_id)
        return self._locks[connector_id]

    # -- the instrument -------------------------------------------------------------------

    def plug(self, connector_id: int) -> None:
        """Connect an EV (state B), or return a plugged one to automatic mode."""
        model = self._model(connector_id)
        model.advance()
        model.connect()
        model.forced = None
        model.notify()

    def unplug(self, connector_id: int) -> None:
        """Disconnect the EV (state A), whatever it was doing; clears a forced state."""
        model = self._model(connector_id)
        model.advance()
        model.plugged = False
        model.forced = None
        model.notify()

    def force_ev_state(self, connector_id: int, state: PilotState | str) -> None:
        """Pin the EV to ``state`` until the next plug/unplug; ``A`` unplugs it.

        Forcing a state on an empty connector plugs an EV in first.
        """
        model = self._model(connector_id)
        wanted = _pilot_state(state)
        if wanted is PilotState.A:
            self.unplug(connector_id)
            return
        model.advance()
        model.connect()
        model.forced = wanted
        model.notify()

    def present_card(self, uid: str) -> None:
        """Present an RFID card; the reader returns ``uid`` verbatim (stripped)."""
        if not isinstance(uid, str) or not uid.strip():
            raise ValueError("card UID must be a non-empty string")
        self._reader.present(uid.strip())
        self.notify(0)

    def set_fault(self, device: str, connector_id: int, on: bool) -> None:
        """Make ``device`` (``meter``, ``relay`` or ``pilot``) of a connector fail or recover.

        ``meter``: reads raise :class:`MeterFault`. ``relay``: welded, opening raises
        :class:`ContactorFault`. ``pilot``: the pilot measures state E.
        """
        if device not in FAULT_DEVICES:
            raise ValueError(
                f"unknown device {device!r}: expected one of {', '.join(FAULT_DEVICES)}"
            )
        model = self._model(connector_id)
        model.advance()
        if on:
            model.faults.add(device)
        else:
            model.faults.discard(device)
        model.notify()

    def raise_energy_floor(self, connector_id: int, energy_wh: float) -> None:
        """Make the register at least ``energy_wh`` (never lowers it; the SoC is unchanged).

        Used when the state file was lost but a higher register value is known elsewhere, so
        the simulated meter never reads below what was already reported.
        """
        if not math.isfinite(energy_wh):
            raise ValueError(f"energy floor must be a finite number of Wh, got {energy_wh!r}")
        model = self._model(connector_id)
        model.advance()
        model.energy_wh = max(model.energy_wh, float(energy_wh))

    def snapshot(self) -> dict[str, object]:
        """The simulated charger's state as JSON-able data, connector ids as string keys."""
        connectors: dict[str, object] = {}
        for cid, model in self._models.items():
            model.advance()
            connectors[str(cid)] = model.describe()
        return {"connectors": connectors, "cards_waiting": self._reader.waiting}

    # -- persistence and lifecycle --------------------------------------------------------

    async def persist(self) -> None:
        """Write the state file now (no-op without one); raises :class:`OSError` on failure.

        The write runs in a worker thread: temporary file in the same directory, flush,
        fsync, rename over the old file. A write that finishes after a newer one is dropped,
        so a cancelled caller can never leave an older register on disk.
        """
        path = self._state_file
        if path is None:
            return
        energies: dict[int, float] = {}
        for cid, model in self._models.items():
            model.advance()
            energies[cid] = model.energy_wh
        self._persist_seq += 1
        await asyncio.to_thread(self._write_state, path, self._persist_seq, energies)
        for cid, energy_wh in energies.items():
            self._models[cid].written_wh = energy_wh

    async def close(self) -> None:
        """Put every output in its safe state, then save the registers. Idempotent."""
        await super().close()
        try:
            await self.persist()
        except OSError as err:
            logger.error("cannot write simulator state file %s: %s", self._state_file, err)

    async def _persist_after_read(self) -> None:
        """Persist on behalf of a meter read: a failing disk must not fail the meter."""
        try:
            await self.persist()
        except OSError as err:
            if not self._persist_failing:
                self._persist_failing = True
                logger.warning("cannot write simulator state file %s: %s", self._state_file, err)
            return
        if self._persist_failing:
            self._persist_failing = False
            logger.info("simulator state file %s written again", self._state_file)

    def _write_state(self, path: Path, seq: int, energies: dict[int, float]) -> None:
        document = {"connectors": {str(cid): {"energy_wh": wh} for cid, wh in energies.items()}}
        with self._write_lock:
            if seq <= self._written_seq:
                return
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(document, f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            fsync_dir(path.parent)
            self._written_seq = seq

    def _model(self, connector_id: int) -> _ConnectorModel:
        model = (
            self._models.get(connector_id)
            if isinstance(connector_id, int) and not isinstance(connector_id, bool)
            else None
        )
        if model is None:
            raise ValueError(
                f"unknown connector {connector_id!r}: "
                f"the simulated charger has connectors 1..{len(self._models)}"
            )
        return model


def _pilot_state(state: PilotState | str) -> PilotState:
    try:
        return PilotState(str(state).strip().upper())
    except ValueError:
        valid = ", ".join(s.value for s in PilotState)
        raise ValueError(f"unknown pilot state {state!r}: expected one of {valid}") from None


def _check_arguments(
    *,
    connectors: int,
    voltage_v: float,
    phases: int,
    ev_max_current_a: float,
    ev_battery_wh: float,
    ev_initial_soc: float,
    max_current_a: float,
) -> None:
    problems: list[str] = []
    if isinstance(connectors, bool) or not isinstance(connectors, int) or connectors < 1:
        problems.append(f"connectors must be an integer >= 1, got {connectors!r}")
    if phases not in (1, 2, 3) or isinstance(phases, bool):
        problems.append(f"phases must be 1, 2 or 3, got {phases!r}")
    for name, value in (
        ("voltage_v", voltage_v),
        ("ev_max_current_a", ev_max_current_a),
        ("ev_battery_wh", ev_battery_wh),
        ("max_current_a", max_current_a),
    ):
        if not math.isfinite(value) or value <= 0:
            problems.append(f"{name} must be a positive number, got {value!r}")
    if not 0.0 <= ev_initial_soc <= 100.0:
        problems.append(f"ev_initial_soc must be between 0 and 100, got {ev_initial_soc!r}")
    if problems:
        raise ValueError("; ".join(problems))


def _load_energies(path: Path) -> dict[int, float]:
    """Registers from the state file; a missing, unreadable or corrupt file gives none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        logger.warning("cannot read simulator state file %s (%s); registers start at 0", path, err)
        return {}
    try:
        return _parse_state(raw)
    except ValueError as err:
        logger.warning(
            "ignoring corrupt simulator state file %s (%s); registers start at 0", path, err
        )
        return {}


def _parse_state(raw: bytes) -> dict[int, float]:
    document = json.loads(raw)
    connectors = document.get("connectors") if isinstance(document, dict) else None
    if not isinstance(connectors, dict):
        raise ValueError('no "connectors" object')
    energies: dict[int, float] = {}
    for key, entry in connectors.items():
        try:
            cid = int(key)
        except ValueError:
            raise ValueError(f"connector key {key!r} is not a number") from None
        energy = entry.get("energy_wh") if isinstance(entry, dict) else None
        if (
            isinstance(energy, bool)
            or not isinstance(energy, int | float)
            or not math.isfinite(energy)
            or energy < 0
        ):
            raise ValueError(f"connector {key}: energy_wh must be a number >= 0")
        energies[cid] = float(energy)
    return energies
