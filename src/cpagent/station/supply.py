"""The hardware side of energy: reading a connector's pilot, contactor and meter into its
state, and switching its supply (cable lock, contactor, pilot current, phase switch) to
what its session and the charging profiles allow.

Contract with the rest of the station: everything here runs under the station's lock. A
hardware error never escapes: it becomes a fault of the connector, by device, which its
status then reports, and the fault clears when the device works again (the relay's only
by a command the relay then follows, so a welded contact stays reported). Every switch
ends by reading the hardware again, so the state says what the hardware did, not what it
was told.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cpagent.exc import HalError, LockFault
from cpagent.hal.base import ConnectorHardware, ConnectorLock, Hardware, MeterReading, PhaseSwitch
from cpagent.station.model import ConnectorState, Fault
from cpagent.station.reporting import _fields, log
from cpagent.station.smart_charging import MIN_CURRENT_A, ProfileSet, limit_at


class Supply:
    """The supply part of :class:`~cpagent.station.station.Station`."""

    hardware: Hardware
    _now: Callable[[], datetime]
    _plugged: dict[int, bool]
    _profiles: ProfileSet

    if TYPE_CHECKING:
        # Defined by the other parts of the station.
        def _profile_context(self, c: ConnectorState) -> dict[str, Any]: ...

    @staticmethod
    def _drawing(c: ConnectorState) -> bool:
        """Whether energy may be flowing: the EV asks for it (pilot C or D), the contactor
        is closed and a current it may draw is offered. The meter is not asked: a moment's
        reading cannot tell a rise."""
        return c.pilot in ("C", "D") and c.contactor_closed and c.offered_a >= MIN_CURRENT_A

    async def _observe(self, c: ConnectorState) -> None:
        hw = self.hardware.connectors[c.connector_id]
        try:
            c.pilot = (await hw.pilot.state()).value
            self._clear_fault(c, "pilot")
        except HalError as err:
            self._set_fault(c, "pilot", err)
        c.offered_a = hw.pilot.offered_current
        c.contactor_closed = hw.contactor.closed
        try:
            await hw.contactor.verify()
        except HalError as err:
            # Cleared only by a command the relay then follows (see _energize), so a welded
            # contact stays reported until it really opens.
            self._set_fault(c, "relay", err)
        await self._read_meter(c)

    async def _read_meter(self, c: ConnectorState) -> MeterReading | None:
        hw = self.hardware.connectors[c.connector_id]
        try:
            reading = await hw.meter.read()
        except HalError as err:
            self._set_fault(c, "meter", err)
            return None
        except Exception as err:  # noqa: BLE001 - a backend bug is a meter fault, not a crash
            self._set_fault(c, "meter", HalError(f"meter read failed: {err!r}"))
            return None
        self._clear_fault(c, "meter")
        c.energy_wh = max(c.energy_wh, reading.energy_wh)
        c.power_w = reading.power_w
        return reading

    def _set_fault(self, c: ConnectorState, device: str, err: HalError) -> None:
        if device not in c.faults:
            log.error("connector %d: %s fault: %s", c.connector_id, device, err, extra=_fields(c))
        c.faults[device] = Fault(device, err.error_code, str(err), err.vendor_error_code)

    def _clear_fault(self, c: ConnectorState, device: str) -> None:
        if c.faults.pop(device, None) is not None:
            log.info("connector %d: %s recovered", c.connector_id, device, extra=_fields(c))

    async def _supply(self, c: ConnectorState) -> None:
        """Switch the supply to what :meth:`_supply_target` allows now, on the phases it
        wants (off, with a fault, while the phase switch refuses them)."""
        amps, phases = self._supply_target(c)
        switch = self.hardware.connectors[c.connector_id].phase_switch
        if (
            amps > 0
            and switch is not None
            and switch.phases != phases
            and not await self._switch_phases(c, switch, phases)
        ):
            amps = 0.0  # not on the wrong phases: the connector is Faulted until it works
        await self._energize(c, amps)

    def _supply_target(self, c: ConnectorState) -> tuple[float, int]:
        """The current the pilot should offer now and on how many phases: 0 A without a
        running session that may draw energy, else the hardware's maximum capped by the
        charging profiles, and 0 A when that is below what a pilot can signal. The phases
        are the profiles' numberPhases, else all the connector has (they matter only to a
        connector with a phase switch). Updates ``c.limit_a``."""
        hw = self.hardware.connectors[c.connector_id]
        tx = c.transaction
        if (tx is None and c.armed is None) or not self._plugged[c.connector_id]:
            return 0.0, hw.phases
        if tx is not None and (tx.suspended or not tx.authorized):
            return 0.0, hw.phases
        limit = limit_at(self._profiles, c.connector_id, self._now(), **self._profile_context(c))
        c.limit_a = None if limit is None else limit.current_a
        if limit is None:
            return hw.max_current_a, hw.phases
        amps = limit.current_a if limit.current_a >= MIN_CURRENT_A else 0.0
        # A phase switch serves one phase or all of them: 2 phases are served on all.
        return amps, 1 if limit.number_phases == 1 else hw.phases

    async def _switch_phases(self, c: ConnectorState, switch: PhaseSwitch, phases: int) -> bool:
        """Switch the supply off and the phase switch to ``phases``; False, with a fault,
        when the switch refuses."""
        log.info(
            "connector %d: switching from %d to %d phase(s) for the charging profile",
            c.connector_id,
            switch.phases,
            phases,
            extra=_fields(c),
        )
        await self._energize(c, 0.0)
        try:
            await switch.set_phases(phases)
        except HalError as err:
            self._set_fault(c, "phase_switch", err)
            return False
        self._clear_fault(c, "phase_switch")
        return True

    async def _offer(self, c: ConnectorState, amps: float) -> None:
        """Change the current offered while the supply stays on (a new profile limit)."""
        await self._set_pilot(c, amps)
        await self._observe(c)

    async def _set_pilot(self, c: ConnectorState, amps: float) -> bool:
        """Tell the pilot to offer ``amps``; False, with a pilot fault, when it cannot. Told
        once: a pilot that cannot take it now keeps it as the decision it applies when it
        can (see :class:`~cpagent.hal.base.Pilot`)."""
        c.requested_a = amps
        try:
            await self.hardware.connectors[c.connector_id].pilot.set_offered_current(amps)
        except HalError as err:
            self._set_fault(c, "pilot", err)
            return False
        return True

    async def _energize(self, c: ConnectorState, amps: float) -> None:
        """Switch the supply on offering ``amps`` (lock, contactor, pilot), or off for 0.
        Off opens the contactor even when the pilot cannot be told."""
        on = amps > 0
        hw: ConnectorHardware = self.hardware.connectors[c.connector_id]
        if on and hw.lock is not None and not await self._lock_cable(c, hw.lock):
            await self._observe(c)
            return
        if not on:
            await self._set_pilot(c, 0.0)
        try:
            await hw.contactor.set_closed(on)
            self._clear_fault(c, "relay")
        except HalError as err:
            self._set_fault(c, "relay", err)
        else:
            if on:
                await self._set_pilot(c, amps)
        await self._observe(c)

    async def _lock_cable(self, c: ConnectorState, lock: ConnectorLock) -> bool:
        """Lock the cable before the supply goes on; a lock that fails keeps it off."""
        try:
            if not await lock.lock():
                raise LockFault(
                    f"connector {c.connector_id}: cable lock did not engage",
                    vendor_error_code="LockNotEngaged",
                )
        except HalError as err:
            self._set_fault(c, "lock", err)
            return False
        self._clear_fault(c, "lock")
        return True
