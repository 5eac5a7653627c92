"""Sessions by their start and stop points: an id tag authorized and waiting for an EV, a
transaction begun when a start point (OCPP 2.0.1 TxStartPoint; 1.6's fixed rule) becomes
true, a session supplied until the EV draws when only EnergyTransfer can begin it, an
authorization that ends while its transaction goes on, and a transaction ended when a
stop point stops being true.

Contract with the rest of the station: everything here runs under the station's lock
(the timers that fire outside it spawn a task that takes it). A start, an authorization
and a stop are recorded through :class:`StationOutput` in the order they happen: a start
that cannot be recorded does not happen, and a stop, recorded once the supply is off, is
retried until it is (a session's end is money). Each step ends by refreshing the
connector's status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cpagent.exc import StoreError
from cpagent.hal.base import MeterReading
from cpagent.station import timing
from cpagent.station.model import (
    ActiveTransaction,
    ArmedSession,
    AuthDecision,
    ConnectorState,
    Reservation,
    StationOutput,
    StationSettings,
    StopReason,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
    TxPoint,
)
from cpagent.station.reporting import _fields, log
from cpagent.station.smart_charging import MIN_CURRENT_A, ChargingProfile, ProfileSet
from cpagent.systemd import journal_fields
from cpagent.timeutil import iso, now_iso

if TYPE_CHECKING:
    from cpagent.station.station import UnfinishedTransaction

RemoteProfile = tuple[str, ChargingProfile]
"""A TxProfile brought by RemoteStartTransaction and the id tag it is for."""


#: Which start point names a transaction when several become true together.
_START_ORDER = (
    TxPoint.AUTHORIZED,
    TxPoint.EV_CONNECTED,
    TxPoint.PARKING_BAY_OCCUPANCY,
    TxPoint.POWER_PATH_CLOSED,
    TxPoint.ENERGY_TRANSFER,
    TxPoint.DATA_SIGNED,
)


class Transactions:
    """The transaction part of :class:`~cpagent.station.station.Station`."""

    output: StationOutput
    settings: StationSettings
    _now: Callable[[], datetime]
    connectors: dict[int, ConnectorState]
    _closing: bool
    _plugged: dict[int, bool]
    _implicit_auth: dict[int, bool]
    _auth_expiry: dict[int, tuple[float, asyncio.TimerHandle]]
    _unverified: set[int]
    _profiles: ProfileSet
    _remote_profiles: dict[int, RemoteProfile]
    _samplers: dict[int, asyncio.Task[None]]
    _connect_timeouts: dict[int, asyncio.TimerHandle]
    _wake: dict[int, asyncio.Event]

    if TYPE_CHECKING:
        # Defined by the other parts of the station.
        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None: ...
        async def _locked_stop(self, c: ConnectorState, reason: StopReason) -> None: ...
        async def _sampler(self, c: ConnectorState, local_id: int) -> None: ...
        @staticmethod
        def _drawing(c: ConnectorState) -> bool: ...
        async def _read_meter(self, c: ConnectorState) -> MeterReading | None: ...
        async def _supply(self, c: ConnectorState) -> None: ...
        async def _energize(self, c: ConnectorState, amps: float) -> None: ...
        def _values(
            self,
            c: ConnectorState,
            measurands: tuple[str, ...],
            reading: MeterReading,
            context: str,
        ) -> tuple[Any, ...]: ...
        def _claim(
            self, c: ConnectorState, id_token: str, group_token: str | None
        ) -> tuple[bool, Reservation | None]: ...
        def _admits(self, c: ConnectorState, id_token: str, group_token: str | None) -> bool: ...
        def _end_reservation(self, r: Reservation, why: str) -> None: ...
        async def _persist_reservations(self) -> None: ...
        def _profiles_changed(self) -> None: ...
        async def _persist_profiles(self) -> bool: ...
        def _refresh(self, c: ConnectorState) -> None: ...
        def _refresh_charger(self) -> None: ...

    async def _follow_supply(self, c: ConnectorState) -> None:
        """Begin the transaction of an armed session once the EV draws energy, and end a
        transaction whose power path or energy transfer, being stop points, stopped."""
        drawing = self._drawing(c)
        armed = c.armed
        if armed is not None and drawing:
            c.armed = None
            await self._record_start(
                c,
                armed.id_token,
                TxPoint.ENERGY_TRANSFER,
                group_token=armed.group_token,
                reservation_id=armed.reservation_id,
                profile=self._remote_profile_for(c, armed.id_token),
            )
            return
        tx = c.transaction
        if tx is None:
            return
        tx.closed_seen = tx.closed_seen or c.contactor_closed
        tx.drawn_seen = tx.drawn_seen or drawing
        stops = self.settings.stop_points()
        plugged = self._plugged[c.connector_id]
        if TxPoint.POWER_PATH_CLOSED in stops and tx.closed_seen and not c.contactor_closed:
            await self._stop(c, StopReason.OTHER if plugged else StopReason.EV_DISCONNECTED)
        elif TxPoint.ENERGY_TRANSFER in stops and tx.drawn_seen and not drawing:
            if not plugged:
                reason = StopReason.EV_DISCONNECTED
            elif c.contactor_closed and c.offered_a >= MIN_CURRENT_A:
                reason = StopReason.STOPPED_BY_EV  # the offer stands: the EV stopped drawing
            else:
                reason = StopReason.OTHER
            await self._stop(c, reason)

    def _free(self, c: ConnectorState) -> bool:
        return (
            c.transaction is None
            and c.armed is None
            and c.operative
            and not c.maintenance
            and not c.faults
            and c.pilot not in ("E", "F")
        )

    def _authorize(
        self, c: ConnectorState, id_token: str, *, implicit: bool, group_token: str | None = None
    ) -> None:
        self._clear_authorization(c)
        c.authorized_token = id_token
        c.authorized_group = group_token
        self._implicit_auth[c.connector_id] = implicit
        self._arm_expiry(c, id_token, asyncio.get_running_loop().time())
        self._refresh(c)

    def _arm_expiry(self, c: ConnectorState, id_token: str, since: float) -> None:
        """End the wait of ``id_token`` on ``c`` ConnectionTimeOut seconds after ``since``."""
        timeout = max(1, self.settings.connection_timeout_s)
        handle = asyncio.get_running_loop().call_at(
            since + timeout, self._expire_authorization, c, id_token
        )
        self._auth_expiry[c.connector_id] = (since, handle)

    def _expire_authorization(self, c: ConnectorState, id_token: str) -> None:
        if c.authorized_token == id_token and c.transaction is None:
            log.info(
                "connector %d: no EV connected in time for %s",
                c.connector_id,
                id_token,
                extra=_fields(c),
            )
            self._clear_authorization(c)
            self._refresh(c)

    def _clear_authorization(self, c: ConnectorState) -> RemoteProfile | None:
        """Forget the id tag waiting on ``c``; return the TxProfile its remote start
        brought, if any (for the session it starts)."""
        c.authorized_token = None
        c.authorized_group = None
        self._unverified.discard(c.connector_id)
        expiry = self._auth_expiry.pop(c.connector_id, None)
        if expiry is not None:
            expiry[1].cancel()
        return self._remote_profiles.pop(c.connector_id, None)

    def _take_authorization(
        self, c: ConnectorState
    ) -> tuple[str, str | None, RemoteProfile | None] | None:
        """The id tag (its group, its remote start's TxProfile) waiting for this plug-in:
        this connector's, or one shown for any connector that may use this one (a
        reservation may keep it out)."""
        if c.authorized_token is not None:
            if c.connector_id in self._unverified:
                return None  # a remote start: it begins once its Authorize has answered
            id_token, parent = c.authorized_token, c.authorized_group
            return id_token, parent, self._clear_authorization(c)
        for o in self.connectors.values():
            if (
                o is not c
                and o.authorized_token is not None
                and self._implicit_auth.get(o.connector_id)
                and not self._plugged[o.connector_id]
                and self._admits(c, o.authorized_token, o.authorized_group)
            ):
                taken = (o.authorized_token, o.authorized_group)
                self._clear_authorization(o)
                self._refresh(o)
                return (*taken, None)
        return None

    def _rising_start(self, rising: frozenset[TxPoint]) -> TxPoint | None:
        """The start point, of those that just became true, that begins a transaction."""
        for point in _START_ORDER:
            if point in rising and point in self.settings.tx_start_points:
                return point
        return None

    async def _start(
        self,
        c: ConnectorState,
        id_token: str,
        decision: AuthDecision,
        remote: RemoteProfile | None = None,
        *,
        rising: frozenset[TxPoint],
    ) -> None:
        """Start a session for ``id_token``, ``rising`` being the start points that just
        became true: a transaction begins, or, when only EnergyTransfer can begin one, the
        EV is supplied and the transaction begins as it draws (an armed session). The
        TxProfile its remote start brought (``remote``, or the one waiting on the
        connector) is installed for it; another id tag's is not."""
        waiting = self._clear_authorization(c) or remote
        profile = waiting[1] if waiting is not None and waiting[0] == id_token else None
        if self._closing:
            log.info(
                "connector %d: not starting a session for %s: the agent is restarting",
                c.connector_id,
                id_token,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        point = self._rising_start(rising)
        if point is None and TxPoint.ENERGY_TRANSFER not in self.settings.tx_start_points:
            log.info(
                "connector %d: %s authorized; no transaction start point became true, so "
                "none starts until the EV is connected again",
                c.connector_id,
                id_token,
                extra=_fields(c),
            )
            self._authorize(c, id_token, implicit=False, group_token=decision.group_token)
            return
        allowed, reservation = self._claim(c, id_token, decision.group_token)
        if not allowed:
            log.info(
                "connector %d: reserved; not starting a session for %s",
                c.connector_id,
                id_token,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        if point is not None:
            await self._record_start(
                c,
                id_token,
                point,
                group_token=decision.group_token,
                reservation=reservation,
                profile=profile,
            )
            return
        c.armed = ArmedSession(
            id_token, decision.group_token, reservation.reservation_id if reservation else None
        )
        if profile is not None:
            self._remote_profiles[c.connector_id] = (id_token, profile)
        if reservation is not None:
            self._end_reservation(reservation, f"used by {id_token}")
            await self._persist_reservations()
        log.info(
            "connector %d: supplying %s; the transaction begins when the EV draws energy",
            c.connector_id,
            id_token,
            extra=_fields(c),
        )
        await self._supply(c)
        self._refresh(c)

    def _remote_profile_for(self, c: ConnectorState, id_token: str) -> ChargingProfile | None:
        """The TxProfile a remote start of ``id_token`` left waiting on ``c``, taken."""
        waiting = self._remote_profiles.get(c.connector_id)
        if waiting is None or waiting[0] != id_token:
            return None
        del self._remote_profiles[c.connector_id]
        return waiting[1]

    async def _record_start(
        self,
        c: ConnectorState,
        id_token: str | None,
        point: TxPoint,
        *,
        group_token: str | None = None,
        reservation: Reservation | None = None,
        reservation_id: int | None = None,
        profile: ChargingProfile | None = None,
    ) -> None:
        """Begin a transaction on ``c`` because ``point`` became true: for ``id_token``, or
        for no one yet (the EV connected first; energy waits for an authorization). It
        uses up ``reservation``; ``reservation_id`` names one an armed session used."""
        if reservation is not None:
            reservation_id = reservation.reservation_id
        reading = await self._read_meter(c)
        if reading is None:
            log.error(
                "connector %d: cannot start a session for %s: meter failed",
                c.connector_id,
                id_token,
                extra=_fields(c),
            )
            await self._supply(c)
            self._refresh(c)
            return
        timestamp = iso(self._now())
        measurands = self.settings.begin_measurands
        if measurands is None:
            measurands = self.settings.stop_txn_sampled_measurands
        begin = self._values(c, measurands, reading, "Transaction.Begin")
        meter_start = round(reading.energy_wh)
        try:
            local_id = await self.output.transaction_started(
                TransactionStarted(
                    c.connector_id,
                    id_token,
                    meter_start,
                    timestamp,
                    begin,
                    reservation_id=reservation_id,
                    trigger=point,
                )
            )
        except StoreError as err:
            log.error(
                "connector %d: cannot record the start of a session for %s (%s); not starting",
                c.connector_id,
                id_token,
                err,
                extra=_fields(c),
            )
            await self._supply(c)
            self._refresh(c)
            return
        plugged = self._plugged[c.connector_id]
        c.transaction = ActiveTransaction(
            local_id,
            id_token,
            meter_start,
            timestamp,
            group_token=group_token,
            authorized=id_token is not None,
            ev_seen=plugged,
        )
        c.finishing = False
        log.info(
            "connector %d: session %d started for %s at %d Wh%s",
            c.connector_id,
            local_id,
            id_token or "no one yet",
            meter_start,
            "" if point is TxPoint.POWER_PATH_CLOSED else f" ({point})",
            extra=_fields(c),
        )
        await self._take_up(c, local_id, reservation, profile)
        await self._supply(c)
        if not plugged:
            self._arm_connect_timeout(c, local_id)
        self._samplers[c.connector_id] = asyncio.create_task(
            self._sampler(c, local_id), name=f"sampler-{c.connector_id}"
        )
        self._wake[c.connector_id].set()
        self._refresh(c)

    def _awaits_authorization(self, c: ConnectorState) -> bool:
        """Whether ``c`` runs a transaction that a card or a remote start may authorize:
        one begun by the EV connecting, or one whose authorization ended."""
        tx = c.transaction
        return (
            tx is not None
            and not tx.authorized
            and c.operative
            and not c.maintenance
            and c.pending_inoperative is None
        )

    def _startable(self, c: ConnectorState) -> bool:
        """Whether a remote start may use ``c``: free, or awaiting an authorization."""
        return self._free(c) or self._awaits_authorization(c)

    async def _authorize_transaction(
        self, c: ConnectorState, id_token: str, decision: AuthDecision
    ) -> None:
        """Authorize the transaction running on ``c`` without one: energy may flow."""
        tx = c.transaction
        assert tx is not None
        waiting = self._clear_authorization(c)
        profile = waiting[1] if waiting is not None and waiting[0] == id_token else None
        allowed, reservation = self._claim(c, id_token, decision.group_token)
        if not allowed:
            log.info(
                "connector %d: reserved; %s does not authorize session %d",
                c.connector_id,
                id_token,
                tx.local_id,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        try:
            await self.output.transaction_authorized(
                TransactionAuthorized(
                    tx.local_id,
                    c.connector_id,
                    id_token,
                    now_iso(),
                    reservation.reservation_id if reservation else None,
                )
            )
        except StoreError as err:
            log.error(
                "connector %d: cannot record %s authorizing session %d (%s)",
                c.connector_id,
                id_token,
                tx.local_id,
                err,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        tx.id_token, tx.group_token, tx.authorized = id_token, decision.group_token, True
        log.info(
            "connector %d: session %d authorized for %s",
            c.connector_id,
            tx.local_id,
            id_token,
            extra=_fields(c),
        )
        await self._take_up(c, tx.local_id, reservation, profile)
        await self._supply(c)
        self._refresh(c)

    async def _take_up(
        self,
        c: ConnectorState,
        local_id: int,
        reservation: Reservation | None,
        profile: ChargingProfile | None,
    ) -> None:
        """What an authorized session ``local_id`` takes with it: the reservation it uses
        up and the TxProfile its remote start brought, both persisted."""
        if reservation is not None:
            self._end_reservation(reservation, f"used by session {local_id}")
            await self._persist_reservations()
        if profile is not None:
            self._profiles = self._profiles.install(c.connector_id, profile)
            await self._persist_profiles()
            log.info(
                "connector %d: charging profile %d of the remote start installed",
                c.connector_id,
                profile.id,
                extra=_fields(c),
            )
        self._profiles_changed()

    async def _end_authorization(
        self, c: ConnectorState, reason: StopReason, id_token: str | None = None
    ) -> None:
        """The authorization of the transaction on ``c`` ends (its card again, a remote
        stop, the CSMS refusing the token, the EV unplugged with StopTxOnEVSideDisconnect).

        The transaction ends with it when Authorized is a stop point, or when stopping the
        supply ends it (PowerPathClosed or EnergyTransfer as a stop point), or when the
        CSMS asks to stop one that was never authorized. Otherwise energy stops and the
        transaction goes on until one of its stop points becomes false.
        """
        tx = c.transaction
        if tx is None:
            return
        stops = self.settings.stop_points()
        if (
            (tx.authorized and TxPoint.AUTHORIZED in stops)
            or (not tx.authorized and reason is StopReason.REMOTE)
            or (TxPoint.POWER_PATH_CLOSED in stops and c.contactor_closed)
            or (TxPoint.ENERGY_TRANSFER in stops and self._drawing(c))
        ):
            await self._stop(c, reason, id_token)
            return
        if not tx.authorized:
            return
        tx.authorized = False
        await self._energize(c, 0.0)
        try:
            await self.output.transaction_deauthorized(
                TransactionDeauthorized(tx.local_id, c.connector_id, reason, now_iso(), id_token)
            )
        except StoreError as err:
            log.error(
                "connector %d: cannot record the end of authorization of session %d (%s)",
                c.connector_id,
                tx.local_id,
                err,
                extra=_fields(c),
            )
        log.info(
            "connector %d: session %d no longer authorized (%s); it ends at a stop point",
            c.connector_id,
            tx.local_id,
            reason,
            extra=_fields(c),
        )
        self._refresh(c)

    async def _disarm(self, c: ConnectorState, why: str) -> None:
        """End an armed session (no transaction began: the EV drew nothing)."""
        armed = c.armed
        if armed is None:
            return
        c.armed = None
        self._remote_profile_for(c, armed.id_token)
        log.info(
            "connector %d: supply for %s ended before the EV drew energy (%s)",
            c.connector_id,
            armed.id_token,
            why,
            extra=_fields(c),
        )
        await self._energize(c, 0.0)
        self._refresh(c)

    def _arm_connect_timeout(self, c: ConnectorState, local_id: int) -> None:
        """A transaction begun by the authorization ends (Timeout) if no EV is connected
        within ConnectionTimeOut (2.0.1: EVConnectionTimeOut, E03)."""
        self._cancel_connect_timeout(c)
        timeout = max(1, self.settings.connection_timeout_s)
        self._connect_timeouts[c.connector_id] = asyncio.get_running_loop().call_later(
            timeout, self._connect_timed_out, c, local_id
        )

    def _cancel_connect_timeout(self, c: ConnectorState) -> None:
        handle = self._connect_timeouts.pop(c.connector_id, None)
        if handle is not None:
            handle.cancel()

    def _connect_timed_out(self, c: ConnectorState, local_id: int) -> None:
        self._connect_timeouts.pop(c.connector_id, None)
        tx = c.transaction
        if tx is not None and tx.local_id == local_id and not tx.ev_seen:
            log.info(
                "connector %d: no EV connected in time for session %d",
                c.connector_id,
                local_id,
                extra=_fields(c),
            )
            self._spawn(self._locked_stop(c, StopReason.TIMEOUT), f"timeout-{c.connector_id}")

    async def _stop(
        self, c: ConnectorState, reason: StopReason, id_token: str | None = None
    ) -> None:
        tx = c.transaction
        if tx is None:
            return
        sampler = self._samplers.pop(c.connector_id, None)
        if sampler is not None:
            sampler.cancel()
        self._cancel_connect_timeout(c)
        await self._energize(c, 0.0)
        reading = await self._read_meter(c)
        meter_stop = round(reading.energy_wh) if reading else round(c.energy_wh)
        end = (
            self._values(c, self.settings.stop_txn_sampled_measurands, reading, "Transaction.End")
            if reading
            else ()
        )
        await self._record_stop(
            TransactionStopped(
                tx.local_id,
                c.connector_id,
                max(meter_stop, tx.meter_start_wh),
                now_iso(),
                reason,
                id_token,
                end,
            )
        )
        c.transaction = None
        c.limit_a = None
        c.finishing = self._plugged[c.connector_id]
        ended = self._profiles.end_transaction(c.connector_id, tx.transaction_id)
        if len(ended) != len(self._profiles):
            self._profiles = ended
            await self._persist_profiles()
        self._profiles_changed()
        log.info(
            "connector %d: session %d stopped (%s) at %d Wh",
            c.connector_id,
            tx.local_id,
            reason,
            meter_stop,
            extra=journal_fields(
                connector=c.connector_id,
                local_transaction_id=tx.local_id,
                transaction_id=tx.transaction_id,
            ),
        )
        if c.pending_inoperative is not None:
            await self._set_operative(c, not c.pending_inoperative)
            self._refresh_charger()
        self._refresh(c)

    async def _close_unfinished(self, tx: UnfinishedTransaction, reason: StopReason) -> None:
        c = self.connectors.get(tx.connector_id)
        meter = tx.last_meter_wh
        if c is not None:
            reading = await self._read_meter(c)
            if reading is not None:
                meter = max(meter, round(reading.energy_wh))
        log.warning(
            "session %d on connector %d was interrupted; closing it (%s) at %d Wh",
            tx.local_id,
            tx.connector_id,
            reason,
            meter,
            extra=journal_fields(connector=tx.connector_id, local_transaction_id=tx.local_id),
        )
        await self._record_stop(
            TransactionStopped(
                tx.local_id, tx.connector_id, max(meter, tx.meter_start_wh), now_iso(), reason
            )
        )

    async def _record_availability(self, connector_id: int, operative: bool) -> None:
        try:
            await self.output.availability_changed(connector_id, operative)
        except StoreError as err:
            log.error(
                "connector %d: availability not persisted: %s",
                connector_id,
                err,
                extra=journal_fields(connector=connector_id),
            )

    async def _record_stop(self, event: TransactionStopped) -> None:
        """A session's end is money: retry until it is recorded. The supply is already off."""
        failures = 0
        fields = journal_fields(connector=event.connector_id, local_transaction_id=event.local_id)
        while True:
            try:
                await self.output.transaction_stopped(event)
            except StoreError as err:
                if failures == 0:
                    log.error(
                        "session %d: cannot record its end (%s); retrying every %.0f s",
                        event.local_id,
                        err,
                        timing.RECORD_RETRY_S,
                        extra=fields,
                    )
                failures += 1
                await asyncio.sleep(timing.RECORD_RETRY_S)
                continue
            if failures:
                log.info(
                    "session %d: end recorded after %d retries",
                    event.local_id,
                    failures,
                    extra=fields,
                )
            return

    async def _set_operative(self, c: ConnectorState, operative: bool) -> None:
        c.pending_inoperative = None
        if c.operative != operative:
            c.operative = operative
            if not operative:
                self._clear_authorization(c)
                await self._disarm(c, "made inoperative")
            await self._record_availability(c.connector_id, operative)
        self._refresh(c)
