"""Reservations as the station keeps them: which connector a ReserveNow holds, for whom
and until when, and which id tags may start a session where.

Reservations (OCPP 1.6 §5.13): a reservation holds one connector (or, for connector 0,
any one connector) for an id tag or its group until its expiry. While it holds, other
id tags are refused there; the reserved id tag's session consumes it and carries its
id. It ends at its expiry, on a cancellation, and when the connector or the charger
goes Faulted or Unavailable (§5.13: "when the Charge Point or connector are set to
Faulted or Unavailable"). The reservations in force are persisted through the
optional :class:`ReservationStore` at every change and restored by :meth:`Station.start`.

Contract with the rest of the station: everything here runs under the station's lock
(the public commands take it). Whoever changes a reservation marks them changed, reports
the statuses the change affects (:meth:`ReservationRules._refresh_reserved`) and persists
them; a store that fails is tried again by the reservation loop, so a reservation holds
even while it cannot be saved. A reservation of connector 0 holds no connector of its
own: it keeps enough spare connectors free, and which ones is worked out again at every
status refresh (:meth:`ReservationRules._update_holds`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from cpagent.exc import StoreError
from cpagent.station import timing
from cpagent.station.model import (
    ConnectorState,
    ConnectorStatus,
    Reservation,
    ReservationOutcome,
    ReservationStore,
    StationSettings,
)
from cpagent.station.reporting import log
from cpagent.station.status import derive_status
from cpagent.systemd import journal_fields
from cpagent.timeutil import iso


class ReservationRules:
    """The reservation part of :class:`~cpagent.station.station.Station`."""

    settings: StationSettings
    reservation_store: ReservationStore | None
    _now: Callable[[], datetime]
    connectors: dict[int, ConnectorState]
    charger: ConnectorState
    _lock: asyncio.Lock
    _reservations: dict[int, Reservation]
    _reservations_dirty: bool
    _reservations_wake: asyncio.Event

    if TYPE_CHECKING:
        # Defined by the other parts of the station.
        def _free(self, c: ConnectorState) -> bool: ...
        def _refresh(self, c: ConnectorState) -> None: ...
        def _publish(self, c: ConnectorState) -> None: ...
        def _report(self, c: ConnectorState, status: ConnectorStatus, error_code: str) -> None: ...

    @property
    def reservations(self) -> list[Reservation]:
        """The reservations in force, by id."""
        return sorted(self._reservations.values(), key=lambda r: r.reservation_id)

    async def reserve(self, reservation: Reservation) -> ReservationOutcome:
        """ReserveNow (OCPP 1.6 §5.13): hold a connector for ``reservation``.

        A reservation with the id of one in force replaces it; the replacement is judged
        as if the old one were gone, and if refused the old one stays. Accepted is
        persisted before it is returned.
        """
        async with self._lock:
            self._expire_reservations()
            old = self._reservations.get(reservation.reservation_id)
            if old is not None:
                self._detach(old)
            outcome = self._judge(reservation)
            if outcome is not ReservationOutcome.ACCEPTED:
                if old is not None:
                    self._attach(old)
                log.info(
                    "reservation %d of connector %d for %s: %s",
                    reservation.reservation_id,
                    reservation.connector_id,
                    reservation.id_token,
                    outcome,
                )
                return outcome
            self._attach(reservation)
            log.info(
                "reservation %d%s: connector %d for %s until %s",
                reservation.reservation_id,
                " replaced" if old is not None else "",
                reservation.connector_id,
                reservation.id_token,
                iso(reservation.expiry),
                extra=journal_fields(connector=reservation.connector_id),
            )
            if old is not None:
                self._refresh_reserved(old)
            self._refresh_reserved(reservation)
            self._mark_reservations_changed()
            await self._persist_reservations()
            return outcome

    async def cancel_reservation(self, reservation_id: int) -> bool:
        """CancelReservation: True (Accepted) if the reservation was in force."""
        async with self._lock:
            self._expire_reservations()
            r = self._reservations.get(reservation_id)
            if r is None:
                log.info("reservation %d not cancelled: there is none", reservation_id)
                return False
            self._end_reservation(r, "cancelled")
            self._refresh_reserved(r)
            await self._persist_reservations()
            return True

    def _restore_reservations(self, saved: Sequence[Reservation]) -> None:
        now = self._now()
        for r in saved:
            c = self.connectors.get(r.connector_id)
            if r.expiry <= now:
                why = "it expired"
            elif r.connector_id == 0 and not self.settings.reserve_connector_zero_supported:
                why = "connector 0 cannot be reserved"
            elif r.connector_id != 0 and c is None:
                why = "there is no such connector"
            elif r.reservation_id in self._reservations or (c is not None and c.reservation):
                why = "it collides with another"
            else:
                self._attach(r)
                log.info(
                    "reservation %d of connector %d restored", r.reservation_id, r.connector_id
                )
                continue
            log.info("reservation %d dropped at start: %s", r.reservation_id, why)
            self._mark_reservations_changed()

    def _judge(self, r: Reservation) -> ReservationOutcome:
        """The answer to ReserveNow ``r`` in the present state (§5.13)."""
        if r.connector_id == 0 and not self.settings.reserve_connector_zero_supported:
            return ReservationOutcome.REJECTED
        if r.connector_id != 0 and r.connector_id not in self.connectors:
            return ReservationOutcome.REJECTED
        if r.expiry <= self._now():
            return ReservationOutcome.REJECTED
        if self.charger.faults:
            return ReservationOutcome.FAULTED
        if not self.charger.operative:
            return ReservationOutcome.UNAVAILABLE
        zero = len(self._zero_reservations())
        if r.connector_id == 0:
            if sum(self._spare(o) for o in self.connectors.values()) > zero:
                return ReservationOutcome.ACCEPTED
            statuses = {
                derive_status(replace(o, reserved_for_any=False))[0]
                for o in self.connectors.values()
            }
            if statuses == {ConnectorStatus.FAULTED}:
                return ReservationOutcome.FAULTED
            if statuses <= {ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE}:
                return ReservationOutcome.UNAVAILABLE
            return ReservationOutcome.OCCUPIED
        c = self.connectors[r.connector_id]
        status = derive_status(replace(c, reserved_for_any=False))[0]
        if status is ConnectorStatus.FAULTED:
            return ReservationOutcome.FAULTED
        if status is ConnectorStatus.UNAVAILABLE:
            return ReservationOutcome.UNAVAILABLE
        if status is not ConnectorStatus.AVAILABLE:
            return ReservationOutcome.OCCUPIED  # in use, or reserved by another reservation
        if self._spare_besides(c) < zero:
            return ReservationOutcome.OCCUPIED  # kept free for reservations of connector 0
        return ReservationOutcome.ACCEPTED

    def _zero_reservations(self) -> list[Reservation]:
        return [r for r in self._reservations.values() if r.connector_id == 0]

    def _spare(self, c: ConnectorState) -> bool:
        """Free for a reservation of connector 0: idle, usable, and not reserved itself."""
        return (
            self._free(c)
            and c.reservation is None
            and c.authorized_token is None
            and c.pilot not in ("B", "C", "D")
        )

    def _spare_besides(self, c: ConnectorState) -> int:
        return sum(self._spare(o) for o in self.connectors.values() if o is not c)

    def _claim(
        self, c: ConnectorState, id_token: str, group_token: str | None
    ) -> tuple[bool, Reservation | None]:
        """Whether a session of ``id_token`` (in group ``group_token``) may start on ``c`` as
        far as reservations go, and the reservation it would use up.

        A reservation of ``c`` admits only its id tag or group. Reservations of connector 0
        admit theirs anywhere; any other id tag may take ``c`` only if enough connectors
        are left for them (§5.13: "one connector remains available for the reserved idTag").
        A session elsewhere than its reserved connector does not use the reservation.
        """
        r = c.reservation
        if r is not None:
            return (True, r) if r.admits(id_token, group_token) else (False, None)
        zero = self._zero_reservations()
        for z in zero:
            if z.admits(id_token, group_token):
                return True, z
        if zero and self._spare_besides(c) < len(zero):
            return False, None
        return True, None

    def _admits(self, c: ConnectorState, id_token: str, group_token: str | None) -> bool:
        return self._claim(c, id_token, group_token)[0]

    def _attach(self, r: Reservation) -> None:
        self._reservations[r.reservation_id] = r
        if r.connector_id != 0:
            self.connectors[r.connector_id].reservation = r

    def _detach(self, r: Reservation) -> None:
        self._reservations.pop(r.reservation_id, None)
        c = self.connectors.get(r.connector_id)
        if c is not None and c.reservation == r:
            c.reservation = None

    def _end_reservation(self, r: Reservation, why: str) -> None:
        """Forget ``r`` (the caller refreshes the statuses and persists)."""
        self._detach(r)
        self._mark_reservations_changed()
        log.info(
            "reservation %d of connector %d for %s ended: %s",
            r.reservation_id,
            r.connector_id,
            r.id_token,
            why,
            extra=journal_fields(connector=r.connector_id),
        )

    def _refresh_reserved(self, r: Reservation) -> None:
        """Report the statuses a change of ``r`` affects. A connector whose reservation
        ended with an EV plugged in is reported Available (§4.9 G1: the reservation
        expired or was cancelled) before Preparing (A2): straight to Preparing would
        read as the reserved user come (G2)."""
        c = self.connectors.get(r.connector_id)
        if c is None:
            self._refresh_holds()
            return
        if (
            c.status is ConnectorStatus.RESERVED
            and c.reservation is None
            and derive_status(c)[0] is ConnectorStatus.PREPARING
        ):
            self._report(c, ConnectorStatus.AVAILABLE, "NoError")
        self._refresh(c)

    def _expire_reservations(self) -> None:
        now = self._now()
        for r in list(self._reservations.values()):
            if r.expiry <= now:
                self._end_reservation(r, "expired")
                self._refresh_reserved(r)

    def _void_reservation(self, c: ConnectorState) -> None:
        """End the reservation of ``c`` if it went Faulted or Unavailable (§5.13)."""
        r = c.reservation
        if r is None:
            return
        status = derive_status(c)[0]
        if status in (ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE):
            self._end_reservation(r, f"connector {status}")

    def _mark_reservations_changed(self) -> None:
        self._reservations_dirty = True
        self._reservations_wake.set()

    async def _persist_reservations(self) -> None:
        """Save the reservations in force; one that fails is retried by the reservation loop
        (meanwhile they hold, but would not survive a restart)."""
        if not self._reservations_dirty:
            return
        self._reservations_dirty = False
        if self.reservation_store is None:
            return
        try:
            await self.reservation_store.save_reservations(self.reservations)
        except StoreError as err:
            log.error("reservations not persisted: %s", err)
            self._reservations_dirty = True

    async def _reservation_loop(self) -> None:
        """End reservations at their expiry and persist changes made outside a command."""
        wake = self._reservations_wake
        while True:
            wake.clear()
            async with self._lock:
                self._expire_reservations()
                await self._persist_reservations()
            delay = timing.RESERVATION_RECHECK_S
            if self._reservations:
                soonest = min(r.expiry for r in self._reservations.values())
                delay = min(delay, max(0.0, (soonest - self._now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    def _update_holds(self) -> list[ConnectorState]:
        """Mark the connectors kept free for reservations of connector 0: all spare ones
        once no more are spare than there are such reservations. Return those changed."""
        zero = len(self._zero_reservations())
        spare = [o for o in self.connectors.values() if self._spare(o)]
        held = spare if zero and len(spare) <= zero else []
        changed = []
        for o in self.connectors.values():
            if o.reserved_for_any != (o in held):
                o.reserved_for_any = o in held
                changed.append(o)
        return changed

    def _refresh_holds(self) -> None:
        for o in self._update_holds():
            self._publish(o)
