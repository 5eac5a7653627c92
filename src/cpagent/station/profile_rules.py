"""Charging profiles as the station applies them: installing, clearing and reporting
them, and waking a charging connector whenever its limit changes.

Smart charging (OCPP 1.6 §3.13): the installed charging profiles decide the current a
session is offered (:mod:`cpagent.station.smart_charging`, which holds the rules; this
part holds the station's profile set). The station re-evaluates a charging connector at
the exact instant its limit changes, offers the new limit on the pilot, and suspends the
supply (SuspendedEVSE) while the limit is below the 6 A a pilot can signal. Profiles are
persisted through the optional :class:`ProfileStore`; TxProfiles end with their session,
so none is restored (no session survives a restart).

Contract with the rest of the station: everything here runs under the station's lock.
The profile set is replaced, never changed in place. After any change to it, or to a
session a profile may depend on, :meth:`ProfileRules._profiles_changed` wakes every
connector, and the supply part then offers what the profiles allow; it reads a
connector's facts for them through :meth:`ProfileRules._profile_context`. A profile is
Accepted only once it is persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cpagent.exc import StoreError
from cpagent.hal.base import Hardware
from cpagent.station import timing
from cpagent.station.model import ConnectorState, ProfileStore, StationSettings
from cpagent.station.reporting import log
from cpagent.station.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ProfileSet,
    Purpose,
    Rejection,
    RejectReason,
    Unit,
    composite_schedule,
    next_change,
    validate_profile,
)
from cpagent.systemd import journal_fields
from cpagent.timeutil import parse_iso, to_millisecond

BOUNDARY_MARGIN_S = 0.005
"""Waits for a profile period boundary end this much after it, so the wall clock read on
waking is past the boundary even if the timer (monotonic) fires a hair early."""


class ProfileRules:
    """The charging-profile part of :class:`~cpagent.station.station.Station`."""

    hardware: Hardware
    settings: StationSettings
    profile_store: ProfileStore | None
    _now: Callable[[], datetime]
    connectors: dict[int, ConnectorState]
    _lock: asyncio.Lock
    _profiles: ProfileSet
    _profiles_wake: asyncio.Event
    _wake: dict[int, asyncio.Event]

    async def set_charging_profile(
        self, connector_id: int, profile: ChargingProfile
    ) -> Rejection | None:
        """SetChargingProfile (OCPP 1.6 §5.16): install ``profile`` on ``connector_id`` (0:
        the charger), replacing the one with its id or its stack level and purpose. Returns
        why it is Rejected, or None once it is installed and persisted (Accepted)."""
        async with self._lock:
            rejection = self._judge_profile(connector_id, profile, remote_start=False)
            if rejection is None:
                before = self._profiles
                self._profiles = before.install(connector_id, profile)
                if not await self._persist_profiles():
                    self._profiles = before
                    return Rejection(RejectReason.NOT_STORED, f"profile {profile.id}")
                self._profiles_changed()
            log.info(
                "charging profile %d (%s, stack level %d) on connector %d: %s",
                profile.id,
                profile.purpose,
                profile.stack_level,
                connector_id,
                "installed" if rejection is None else f"rejected, {rejection}",
                extra=journal_fields(connector=connector_id),
            )
            return rejection

    async def clear_charging_profile(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> bool:
        """ClearChargingProfile (§5.4): True (Accepted) if a profile matched and was removed,
        False (Unknown) otherwise; see :meth:`ProfileSet.clear` for the criteria."""
        async with self._lock:
            kept, cleared = self._profiles.clear(
                profile_id=profile_id,
                connector_id=connector_id,
                purpose=purpose,
                stack_level=stack_level,
            )
            if cleared:
                log.info("%d charging profile(s) cleared", len(self._profiles) - len(kept))
                self._profiles = kept
                await self._persist_profiles()
                self._profiles_changed()
            return cleared

    def composite_schedule(
        self, connector_id: int, duration_s: int, unit: Unit
    ) -> ChargingSchedule | None:
        """GetCompositeSchedule (§5.7): the limits on ``connector_id`` for ``duration_s``
        seconds from now, or None (Rejected) for an unknown connector or a bad duration.
        Connector 0 reports the charger's limit, whose ceiling is the sum of its
        connectors' maximum currents.

        The schedule starts at the request instant, to the millisecond a scheduleStart
        carries, so that every profile in force then (one that began a moment ago
        included) gives period 0; one that begins later shows from the first whole
        second at which it is in force."""
        if duration_s <= 0:
            return None
        every = self.hardware.connectors.values()
        if connector_id == 0:
            context: dict[str, Any] = {
                "tx_start": None,
                "transaction_id": None,
                "phases": max(hw.phases for hw in every),
                "max_current_a": sum(hw.max_current_a for hw in every),
                "phase_switching": all(hw.phase_switch is not None for hw in every),
            }
        elif (c := self.connectors.get(connector_id)) is not None:
            context = self._profile_context(c)
        else:
            return None
        return composite_schedule(
            self._profiles,
            connector_id,
            to_millisecond(self._now()),
            duration_s,
            unit,
            **context,
        )

    @property
    def charging_profiles(self) -> ProfileSet:
        return self._profiles

    def _judge_profile(
        self, connector_id: int, profile: ChargingProfile, *, remote_start: bool
    ) -> Rejection | None:
        if connector_id != 0 and connector_id not in self.connectors:
            return Rejection(RejectReason.UNKNOWN_CONNECTOR, str(connector_id))
        c = self.connectors.get(connector_id)
        tx = c.transaction if c is not None else None
        return validate_profile(
            profile,
            connector_id,
            limits=self.settings.smart_charging,
            installed=self._profiles,
            transaction_running=tx is not None,
            transaction_id=tx.transaction_id if tx is not None else None,
            remote_start=remote_start,
        )

    def _restore_profiles(self, saved: ProfileSet) -> bool:
        """Install the persisted profiles that can still apply; False if any was dropped."""
        now = self._now()
        kept = saved.drop_expired(now)
        for entry in saved:
            p, cid = entry.profile, entry.connector_id
            if entry not in kept.entries:
                why = "it expired"
            elif p.purpose is Purpose.TX:
                why = "its session ended with the restart"
            elif cid != 0 and cid not in self.connectors:
                why = "there is no such connector"
            else:
                continue
            kept = ProfileSet(tuple(e for e in kept if e != entry))
            log.info("charging profile %d of connector %d dropped at start: %s", p.id, cid, why)
        self._profiles = kept
        if kept:
            log.info("%d charging profile(s) restored", len(kept))
        return len(kept) == len(saved)

    def _profiles_changed(self) -> None:
        """Profiles or sessions changed: re-evaluate every connector and the next boundary."""
        self._profiles_wake.set()
        for wake in self._wake.values():
            wake.set()

    async def _persist_profiles(self) -> bool:
        if self.profile_store is None:
            return True
        try:
            await self.profile_store.save_charging_profiles(self._profiles)
        except StoreError as err:
            log.error("charging profiles not persisted: %s", err)
            return False
        return True

    async def _profile_loop(self) -> None:
        """Wake each charging connector at the instant its limit changes (a period
        boundary, a profile's validity starting or ending), and forget profiles that
        expired. The wall clock is re-read at least every RESERVATION_RECHECK_S."""
        while True:
            self._profiles_wake.clear()
            async with self._lock:
                now = self._now()
                kept = self._profiles.drop_expired(now)
                if len(kept) != len(self._profiles):
                    log.info("%d charging profile(s) expired", len(self._profiles) - len(kept))
                    self._profiles = kept
                    await self._persist_profiles()
                due = min(
                    (t for c in self.connectors.values() if (t := self._next_change(c, now))),
                    default=None,
                )
            delay = float(timing.RESERVATION_RECHECK_S)
            if due is not None:
                delay = min(delay, (due - now).total_seconds() + BOUNDARY_MARGIN_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, delay)):
                    await self._profiles_wake.wait()
            if due is not None and self._now() >= due:
                for c in self.connectors.values():
                    if c.transaction is not None:
                        self._wake[c.connector_id].set()

    def _next_change(self, c: ConnectorState, now: datetime) -> datetime | None:
        if c.transaction is None or not self._profiles:
            return None
        return next_change(self._profiles, c.connector_id, now, **self._profile_context(c))

    def _profile_context(self, c: ConnectorState) -> dict[str, Any]:
        """What the smart-charging functions need to know of ``c``: its session (start and
        CSMS id: TxProfiles and Relative schedules depend on them) and its hardware."""
        hw = self.hardware.connectors[c.connector_id]
        tx = c.transaction
        return {
            "tx_start": parse_iso(tx.started_at) if tx is not None else None,
            "transaction_id": tx.transaction_id if tx is not None else None,
            "phases": hw.phases,
            "max_current_a": hw.max_current_a,
            "phase_switching": hw.phase_switch is not None,
        }
