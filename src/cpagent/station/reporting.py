"""What the station tells about itself: the statuses of its connectors and of the
charger, the activity a restart waits on, and the snapshot ``cpagent status`` shows; and
the log all its parts write to.

Contract with the rest of the station: a status is derived from the state
(:func:`~cpagent.station.status.derive_status`), never set by hand, and reported only when
it changes. Whoever changes a connector's state calls :meth:`Reporting._refresh` before
releasing the station's lock; that also ends a reservation the change voids and tells
who waits for the charger to go idle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from cpagent.hal.base import Hardware
from cpagent.station.model import (
    ConnectorState,
    ConnectorStatus,
    Reservation,
    StationOutput,
    StatusChanged,
)
from cpagent.station.status import derive_status
from cpagent.systemd import journal_fields
from cpagent.timers import Changes
from cpagent.timeutil import iso, now_iso

#: The log of every part of the station: its lines keep the one logger name that
#: journal filters and logging configurations know them by.
log = logging.getLogger("cpagent.station.station")


class Reporting:
    """The reporting part of :class:`~cpagent.station.station.Station`."""

    hardware: Hardware
    output: StationOutput
    connectors: dict[int, ConnectorState]
    charger: ConnectorState
    _lock: asyncio.Lock
    _idle: asyncio.Event
    activity: Changes
    _busy_seen: tuple[int, ...]
    _authorizing: int
    _closing: bool

    if TYPE_CHECKING:
        # Defined by the other parts of the station.
        @property
        def reservations(self) -> list[Reservation]: ...
        def _free(self, c: ConnectorState) -> bool: ...
        def _end_reservation(self, r: Reservation, why: str) -> None: ...
        def _refresh_reserved(self, r: Reservation) -> None: ...
        def _void_reservation(self, c: ConnectorState) -> None: ...
        def _update_holds(self) -> list[ConnectorState]: ...

    def resend_status(self, connector_id: int | None = None) -> None:
        """Emit the current status again (for a new connection or a TriggerMessage)."""
        ids = [connector_id] if connector_id is not None else [0, *self.connectors]
        for cid in ids:
            c = self.charger if cid == 0 else self.connectors[cid]
            if c.status is not None:
                self.output.status_changed(self._status_event(c))

    def _status_event(self, c: ConnectorState) -> StatusChanged:
        assert c.status is not None
        fault = next(iter(c.faults.values()), None)
        return StatusChanged(
            c.connector_id,
            c.status,
            c.error_code,
            now_iso(),
            info=_short(fault.info) if fault else None,
            vendor_error_code=fault.vendor_error_code if fault else None,
        )

    def _refresh(self, c: ConnectorState) -> None:
        if c.transaction is None:
            self._idle.set()
        self._void_reservation(c)
        changed = self._update_holds()
        self._publish(c)
        for o in changed:
            if o is not c:
                self._publish(o)
        self._note_activity()

    def busy_connectors(self) -> list[int]:
        """The connectors with a session running or about to begin, by id: a transaction, an
        id tag authorized and waiting for the EV (a card, a remote start: Preparing), and,
        while a card shown is still being authorized, every connector it could start on.

        A charger with none is idle: stopping it now ends no session.
        """
        return [
            c.connector_id
            for c in self.connectors.values()
            if c.transaction is not None
            or c.armed is not None
            or c.authorized_token is not None
            or (self._authorizing and self._free(c))
        ]

    def _note_activity(self) -> None:
        busy = tuple(self.busy_connectors())
        if busy != self._busy_seen:
            self._busy_seen = busy
            self.activity.notify()

    async def quiesce(self, *, force: bool = False) -> list[int]:
        """Prepare for the agent to go away (a restart): return :meth:`busy_connectors`;
        when there are none, or with ``force``, no new session starts from now on (a card
        or a remote start is refused), so none can begin between this decision and the
        shutdown. Taken under the station's lock: a start or stop in progress is finished
        first, and a stopped session's StopTransaction is already in the durable queue."""
        async with self._lock:
            busy = self.busy_connectors()
            if force or not busy:
                self._closing = True
            return busy

    def _publish(self, c: ConnectorState) -> None:
        """Report the status of ``c`` if it changed."""
        status, error_code = derive_status(c)
        if (status, error_code) != (c.status, c.error_code):
            self._report(c, status, error_code)

    def _report(self, c: ConnectorState, status: ConnectorStatus, error_code: str) -> None:
        """Make ``status`` the reported status of ``c``: log it, tell the CSMS and the
        hardware's display."""
        c.status, c.error_code = status, error_code
        log.info(
            "connector %d: %s%s",
            c.connector_id,
            status,
            "" if error_code == "NoError" else f" ({error_code})",
            extra=_fields(c),
        )
        self.output.status_changed(self._status_event(c))
        self.hardware.show_status(c.connector_id, status)

    def _refresh_charger(self) -> None:
        ch = self.charger
        if ch.faults:
            status, code = ConnectorStatus.FAULTED, next(iter(ch.faults.values())).error_code
        elif not ch.operative:
            status, code = ConnectorStatus.UNAVAILABLE, "NoError"
        else:
            status, code = ConnectorStatus.AVAILABLE, "NoError"
        if status is not ConnectorStatus.AVAILABLE:
            # Faulted or Unavailable: no reservation holds (§5.13).
            for r in self.reservations:
                self._end_reservation(r, f"charge point {status}")
                self._refresh_reserved(r)
        if (status, code) != (ch.status, ch.error_code):
            ch.status, ch.error_code = status, code
            self.output.status_changed(self._status_event(ch))
            self.hardware.show_status(0, status)

    def snapshot(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in self.connectors.values():
            tx = c.transaction
            fault = next(iter(c.faults.values()), None)
            out.append(
                {
                    "id": c.connector_id,
                    "status": str(c.status) if c.status else None,
                    "error_code": c.error_code,
                    "info": fault.info if fault else None,
                    "operative": c.operative,
                    "pilot": c.pilot,
                    "offered_a": c.offered_a,
                    "limit_a": c.limit_a,
                    "contactor_closed": c.contactor_closed,
                    "energy_wh": round(c.energy_wh, 1),
                    "power_w": round(c.power_w, 1),
                    "reservation": None
                    if c.reservation is None
                    else {
                        "id": c.reservation.reservation_id,
                        "id_tag": c.reservation.id_token,
                        "parent_id_tag": c.reservation.group_token,
                        "expiry": iso(c.reservation.expiry),
                    },
                    "reserved_for_any": c.reserved_for_any,
                    "transaction": None
                    if tx is None
                    else {
                        "id": tx.transaction_id,
                        "local_id": tx.local_id,
                        "id_tag": tx.id_token,
                        "meter_start_wh": tx.meter_start_wh,
                        "started_at": tx.started_at,
                        "energy_wh": round(c.energy_wh - tx.meter_start_wh, 1),
                    },
                }
            )
        return out


def _fields(c: ConnectorState) -> dict[str, Any]:
    """Journal fields of a connector's log line: the connector and its running session."""
    tx = c.transaction
    return journal_fields(
        connector=c.connector_id,
        local_transaction_id=tx.local_id if tx else None,
        transaction_id=tx.transaction_id if tx else None,
    )


def _short(text: str, limit: int = 50) -> str:
    """``text`` cut to ``limit`` characters (OCPP's CiString50: printable ASCII) at a word
    boundary."""
    if len(text) <= limit:
        return text
    return text[: limit - 3].rsplit(" ", 1)[0] + "..."
