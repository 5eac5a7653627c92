"""The charging station: connectors, transactions, authorization and metering.

The station drives the hardware through the HAL, decides what happens when a
card is shown or an EV is plugged, and reports through :class:`StationOutput`.
It is protocol-agnostic: the OCPP adapter translates its events into
messages and CSMS requests into its commands.

Concurrency: every change to connector state happens under one lock, so a
plug, a card and a remote command never interleave half-way. Money-bearing
outputs (transaction start/stop, transaction meter values) are awaited under
that lock, which keeps them in the order they happened.

Reservations (OCPP 1.6 §5.13): a reservation holds one connector (or, for connector 0,
any one connector) for an id tag or its group until its expiry. While it holds, other
id tags are refused there; the reserved id tag's session consumes it and carries its
id. It ends at its expiry, on a cancellation, and when the connector or the charger
goes Faulted or Unavailable (§5.13: "when the Charge Point or connector are set to
Faulted or Unavailable"). The reservations in force are persisted through the
optional :class:`ReservationStore` at every change and restored by :meth:`Station.start`.

Smart charging (OCPP 1.6 §3.13): the installed charging profiles decide the current a
session is offered (:mod:`cpagent.station.smart_charging`). The station re-evaluates a
charging connector at the exact instant its limit changes, offers the new limit on the
pilot, and suspends the supply (SuspendedEVSE) while the limit is below the 6 A a pilot
can signal. Profiles are persisted through the optional :class:`ProfileStore`; TxProfiles
end with their session, so none is restored (no session survives a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from cpagent.exc import HalError, LockFault, StoreError
from cpagent.hal.base import (
    ConnectorHardware,
    ConnectorLock,
    Hardware,
    MeterReading,
    PhaseSwitch,
    PilotState,
)
from cpagent.station.metering import sample_values
from cpagent.station.model import (
    ActiveTransaction,
    ArmedSession,
    AuthDecision,
    Authorizer,
    AuthStatus,
    ConnectorState,
    ConnectorStatus,
    Fault,
    MeterSample,
    ProfileStore,
    Reservation,
    ReservationOutcome,
    ReservationStore,
    StationOutput,
    StationSettings,
    StatusChanged,
    StopReason,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
    TxPoint,
)
from cpagent.station.pacing import Pacer
from cpagent.station.smart_charging import (
    MIN_CURRENT_A,
    ChargingProfile,
    ChargingSchedule,
    ProfileSet,
    Purpose,
    Rejection,
    RejectReason,
    Unit,
    composite_schedule,
    limit_at,
    next_change,
    validate_profile,
)
from cpagent.station.status import derive_status
from cpagent.systemd import journal_fields
from cpagent.timers import Changes, wait_due
from cpagent.timeutil import iso, now_iso, parse_iso, to_millisecond, utcnow

log = logging.getLogger(__name__)

POLL_IDLE_S = 10.0
ALIGNED_RECHECK_S = 60.0
RECORD_RETRY_S = 5.0
RESERVATION_RECHECK_S = 60.0
"""A wait for a reservation's expiry re-reads the wall clock at least this often (NTP may
step it), and a reservation store that failed is tried again this often. Waits for a
charging profile's next period do the same."""
RemoteProfile = tuple[str, ChargingProfile]
"""A TxProfile brought by RemoteStartTransaction and the id tag it is for."""
BOUNDARY_MARGIN_S = 0.005
"""Waits for a profile period boundary end this much after it, so the wall clock read on
waking is past the boundary even if the timer (monotonic) fires a hair early."""


#: Which start point names a transaction when several become true together.
_START_ORDER = (
    TxPoint.AUTHORIZED,
    TxPoint.EV_CONNECTED,
    TxPoint.PARKING_BAY_OCCUPANCY,
    TxPoint.POWER_PATH_CLOSED,
    TxPoint.ENERGY_TRANSFER,
    TxPoint.DATA_SIGNED,
)
#: What becomes true when a card (or a remote start) authorizes an EV already connected,
#: and when an EV is connected for an authorization that waits: the contactor closes then.
_AUTHORIZED = frozenset({TxPoint.AUTHORIZED, TxPoint.POWER_PATH_CLOSED})
_EV_CONNECTED = frozenset({TxPoint.EV_CONNECTED, TxPoint.POWER_PATH_CLOSED})


def _next_multiple(t: float, interval: int) -> float:
    """The first multiple of ``interval`` after ``t`` (seconds since the epoch)."""
    return (math.floor(t / interval) + 1) * interval


@dataclass(frozen=True)
class UnfinishedTransaction:
    """A transaction found open in the store at start-up (the agent died during it)."""

    local_id: int
    connector_id: int
    id_token: str
    meter_start_wh: int
    last_meter_wh: int


class Station:
    def __init__(
        self,
        hardware: Hardware,
        output: StationOutput,
        authorizer: Authorizer,
        settings: StationSettings,
        *,
        reservation_store: ReservationStore | None = None,
        profile_store: ProfileStore | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """``reservation_store``/``profile_store`` persist reservations and charging
        profiles (None: they do not survive a restart); ``now`` is the wall clock
        reservations expire by and charging schedules run on (aware, UTC)."""
        self.hardware = hardware
        self.output = output
        self.authorizer = authorizer
        self.settings = settings
        self.reservation_store = reservation_store
        self.profile_store = profile_store
        self._now = now
        self.connectors = {cid: ConnectorState(cid) for cid in sorted(hardware.connectors)}
        self.charger = ConnectorState(0)
        self._lock = asyncio.Lock()
        self._idle = asyncio.Event()  # set whenever a session ends
        self.activity = Changes()
        """Notified whenever :meth:`busy_connectors` changes (a restart waits on it)."""
        self._busy_seen: tuple[int, ...] = ()
        self._authorizing = 0  # cards shown whose authorization has not answered yet
        self._closing = False  # the agent is going away: no new session starts
        self._plugged = dict.fromkeys(self.connectors, False)
        self._implicit_auth: dict[int, bool] = {}
        # When each waiting id tag was authorized (loop time) and the timer that expires it.
        self._auth_expiry: dict[int, tuple[float, asyncio.TimerHandle]] = {}
        self._settings_changes = Changes()
        self._unverified: set[int] = set()  # remote starts still waiting for their Authorize
        self._reservations: dict[int, Reservation] = {}
        self._reservations_dirty = False  # changed since last persisted
        self._reservations_wake = asyncio.Event()
        self._profiles = ProfileSet()
        self._profiles_wake = asyncio.Event()
        # The TxProfile a remote start brought, with its id tag, until its session starts.
        self._remote_profiles: dict[int, RemoteProfile] = {}
        self._samplers: dict[int, asyncio.Task[None]] = {}
        # Transactions begun by a card, ended if no EV is connected in time.
        self._connect_timeouts: dict[int, asyncio.TimerHandle] = {}
        self._changes: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = {cid: asyncio.Event() for cid in self.connectors}
        self._listener = self._changes.put_nowait
        hardware.subscribe(self._listener)

    def detach(self) -> None:
        """Stop listening to the hardware (it may outlive this station across a soft reset)."""
        self.hardware.unsubscribe(self._listener)

    # ----------------------------------------------------------------- lifecycle

    async def start(
        self,
        *,
        availability: dict[int, bool],
        unfinished: list[UnfinishedTransaction],
        recovery_reason: StopReason = StopReason.POWER_LOSS,
        reservations: Sequence[Reservation] = (),
        charging_profiles: ProfileSet | None = None,
    ) -> None:
        """Read the hardware, apply persisted availability, close what a crash left open and
        restore the persisted ``reservations`` and ``charging_profiles`` that still hold."""
        self.charger.operative = availability.get(0, True)
        for cid, c in self.connectors.items():
            c.operative = self.charger.operative and availability.get(cid, True)
        async with self._lock:
            for c in self.connectors.values():
                await self._observe(c)
            for tx in unfinished:
                await self._close_unfinished(tx, recovery_reason)
            self._restore_reservations(reservations)
            restored = self._restore_profiles(charging_profiles or ProfileSet())
            for c in self.connectors.values():
                self._plugged[c.connector_id] = PilotState(c.pilot).plugged
                c.finishing = self._plugged[c.connector_id]
                self._refresh(c)
            self._refresh_charger()
            if self._reservations_dirty:
                await self._persist_reservations()
            if not restored:
                await self._persist_profiles()

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

    async def run(self) -> None:
        """Run the station's loops until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._change_loop(), name="station-changes")
                tg.create_task(self._aligned_loop(), name="station-aligned-meter")
                tg.create_task(self._reservation_loop(), name="station-reservations")
                tg.create_task(self._profile_loop(), name="station-charging-profiles")
                if self.hardware.card_reader is not None:
                    tg.create_task(self._card_loop(), name="station-card-reader")
                for c in self.connectors.values():
                    tg.create_task(self._poll_loop(c), name=f"station-poll-{c.connector_id}")
        finally:
            for task in [*self._tasks, *self._samplers.values()]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._samplers.values(), return_exceptions=True)
            for _, handle in self._auth_expiry.values():
                handle.cancel()
            for handle in self._connect_timeouts.values():
                handle.cancel()

    def settings_changed(self) -> None:
        """The settings changed: a new interval (ClockAlignedDataInterval,
        MeterValueSampleInterval, ConnectionTimeOut) takes effect at once, counted from the
        same start as the old one, not after a wait begun under the old one."""
        self._settings_changes.notify()
        for cid, (since, handle) in list(self._auth_expiry.items()):
            handle.cancel()
            c = self.connectors[cid]
            if c.authorized_token is not None:
                self._arm_expiry(c, c.authorized_token, since)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("station task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ commands

    async def present_tag(self, id_token: str) -> None:
        """A card was shown: stop the session it started, or authorize a new one."""
        async with self._lock:
            for c in self.connectors.values():
                tx = c.transaction
                if tx is not None and tx.authorized and tx.id_token == id_token:
                    await self._end_authorization(c, StopReason.LOCAL, id_token)
                    return
                if c.armed is not None and c.armed.id_token == id_token:
                    await self._disarm(c, "ended by its card")
                    return
        # Counted as a session about to begin until the lock is held again, so a restart
        # waiting for an idle charger cannot slip in between.
        self._authorizing += 1
        counted = True
        self._note_activity()
        try:
            decision = await self.authorizer.authorize(id_token)
            async with self._lock:
                self._authorizing -= 1
                counted = False
                await self._begin_for_card(id_token, decision)
        finally:
            if counted:
                self._authorizing -= 1
            self._note_activity()

    async def _begin_for_card(self, id_token: str, decision: AuthDecision) -> None:
        """The rest of :meth:`present_tag`, under the lock, once the card is judged."""
        if self._closing:
            log.info("card %s: no new session, the agent is restarting", id_token)
            return
        if decision.group_token:
            for c in self.connectors.values():
                tx = c.transaction
                if tx is not None and tx.authorized and tx.group_token == decision.group_token:
                    await self._end_authorization(c, StopReason.LOCAL, id_token)
                    return
        if not decision.accepted:
            log.info("card %s not authorized: %s", id_token, decision.status)
            return
        self._expire_reservations()
        parent = decision.group_token
        # A connector reserved for this card comes first; one reserved for another
        # card is not offered at all.
        usable = sorted(
            (c for c in self.connectors.values() if self._admits(c, id_token, parent)),
            key=lambda c: c.reservation is None,
        )
        waiting = [c for c in usable if self._awaits_authorization(c)]
        if waiting:
            # A transaction begun by the EV connecting: the card authorizes it, one with
            # the EV still there first.
            c = min(waiting, key=lambda o: not self._plugged[o.connector_id])
            await self._authorize_transaction(c, id_token, decision)
            return
        for c in usable:
            if self._free(c) and self._plugged[c.connector_id]:
                if c.status is ConnectorStatus.RESERVED:
                    # §4.9 G2: the reservation's identity presented makes it Preparing.
                    self._authorize(c, id_token, implicit=False, group_token=parent)
                await self._start(c, id_token, decision, rising=_AUTHORIZED)
                return
        for c in usable:
            if self._free(c) and c.authorized_token is None:
                self._authorize(c, id_token, implicit=True, group_token=parent)
                if TxPoint.AUTHORIZED in self.settings.tx_start_points:
                    await self._start(c, id_token, decision, rising=_AUTHORIZED)
                return
        log.info("card %s authorized but no connector is free for it", id_token)

    async def remote_start(
        self, id_token: str, connector_id: int | None, profile: ChargingProfile | None = None
    ) -> bool:
        """Accept or refuse a remote start; the session itself begins after the answer.

        A connector reserved for another id tag refuses it, unless the reservation names a
        group (parentIdTag): the id tag's group is then learnt from an Authorize after the
        answer (§5.13), and the start is dropped if it is not the reserved group.
        ``profile`` (a TxProfile without transactionId, §5.11) is installed when the
        session starts; one that :func:`validate_profile` rejects refuses the start.
        """
        async with self._lock:
            if self._closing:
                log.info("remote start of %s refused: the agent is restarting", id_token)
                return False
            self._expire_reservations()
            if connector_id is not None:
                c = self.connectors.get(connector_id)
                if c is None or not self._startable(c):
                    return False
                verdict = self._remote_verdict(c, id_token)
                if verdict is None:
                    log.info(
                        "remote start of %s refused: connector %d is reserved",
                        id_token,
                        c.connector_id,
                    )
                    return False
            else:
                options: list[tuple[ConnectorState, Literal["yes", "ask"]]] = []
                for o in self.connectors.values():
                    v = self._remote_verdict(o, id_token) if self._startable(o) else None
                    if v is not None:
                        options.append((o, v))
                if not options:
                    return False
                # Its own reservation first, then a connector that needs no Authorize to
                # learn the group, then a plugged one.
                c, verdict = min(
                    options,
                    key=lambda o: (
                        o[0].reservation is None,
                        o[1] == "ask",
                        not self._plugged[o[0].connector_id],
                    ),
                )
            if profile is not None:
                rejection = self._judge_profile(c.connector_id, profile, remote_start=True)
                if rejection is not None:
                    log.info(
                        "remote start of %s refused: charging profile %d: %s",
                        id_token,
                        profile.id,
                        rejection,
                    )
                    return False
            self._authorize(c, id_token, implicit=False)
            if profile is not None:
                self._remote_profiles[c.connector_id] = (id_token, profile)
            verify = verdict == "ask" or self.settings.authorize_remote_tx_requests
            if verify:
                # Not started by a plug-in until the Authorize has answered.
                self._unverified.add(c.connector_id)
        self._spawn(self._remote_begin(c, id_token, verify), f"remote-start-{c.connector_id}")
        return True

    def _remote_verdict(self, c: ConnectorState, id_token: str) -> Literal["yes", "ask"] | None:
        """May a remote start of ``id_token`` use ``c``: "yes", "ask" (only if its group,
        unknown yet, is a reserved one) or None."""
        if self._admits(c, id_token, None):
            return "yes"
        blocking = [c.reservation] if c.reservation is not None else self._zero_reservations()
        if any(r.group_token is not None for r in blocking):
            return "ask"
        return None

    async def _remote_begin(self, c: ConnectorState, id_token: str, verify: bool) -> None:
        decision = AuthDecision(AuthStatus.ACCEPTED)
        if verify:
            decision = await self.authorizer.authorize(id_token)
        async with self._lock:
            if c.authorized_token != id_token:
                return
            self._unverified.discard(c.connector_id)
            if not decision.accepted or not self._admits(c, id_token, decision.group_token):
                log.info(
                    "connector %d: remote start of %s dropped (%s)",
                    c.connector_id,
                    id_token,
                    decision.status if not decision.accepted else "reserved for another id tag",
                    extra=_fields(c),
                )
                self._clear_authorization(c)
                self._refresh(c)
                return
            c.authorized_group = decision.group_token
            if self._awaits_authorization(c):
                await self._authorize_transaction(c, id_token, decision)
            elif c.transaction is None and (
                self._plugged[c.connector_id] or TxPoint.AUTHORIZED in self.settings.tx_start_points
            ):
                await self._start(c, id_token, decision, rising=_AUTHORIZED)

    async def remote_stop(self, transaction_id: int) -> bool:
        for c in self.connectors.values():
            tx = c.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                self._spawn(
                    self._locked_end_authorization(c, StopReason.REMOTE),
                    f"remote-stop-{c.connector_id}",
                )
                return True
        return False

    def plugged(self, connector_id: int) -> bool:
        """Whether an EV's cable is in ``connector_id`` (pilot state B, C or D seen)."""
        return self._plugged.get(connector_id, False)

    def stop_transaction(self, local_id: int, reason: StopReason) -> bool:
        """End the running session ``local_id`` (a remote stop by the station's own id):
        its authorization, for a Remote or DeAuthorized ``reason`` (the transaction then
        ends as its stop points say), else the transaction. False when no connector runs
        it."""
        for c in self.connectors.values():
            tx = c.transaction
            if tx is not None and tx.local_id == local_id:
                if reason in (StopReason.REMOTE, StopReason.DE_AUTHORIZED):
                    self._spawn(self._locked_end_authorization(c, reason), f"stop-{c.connector_id}")
                else:
                    self._spawn(self._locked_stop(c, reason), f"stop-{c.connector_id}")
                return True
        return False

    async def _locked_stop(self, c: ConnectorState, reason: StopReason) -> None:
        async with self._lock:
            await self._stop(c, reason)

    async def _locked_end_authorization(self, c: ConnectorState, reason: StopReason) -> None:
        async with self._lock:
            await self._end_authorization(c, reason)

    async def stop_all(self, reason: StopReason) -> None:
        async with self._lock:
            for c in self.connectors.values():
                await self._disarm(c, str(reason))
                await self._stop(c, reason)

    async def unlock(self, connector_id: int) -> str:
        """UnlockConnector semantics: stop a running session first, then release the cable."""
        c = self.connectors.get(connector_id)
        if c is None:
            return "NotSupported"
        hw = self.hardware.connectors[connector_id]
        async with self._lock:
            await self._disarm(c, "unlock command")
            await self._stop(c, StopReason.UNLOCK_COMMAND)
            if hw.lock is None:
                return "NotSupported"
            try:
                return "Unlocked" if await hw.lock.unlock() else "UnlockFailed"
            except HalError as err:
                log.warning(
                    "connector %d: unlock failed: %s",
                    connector_id,
                    err,
                    extra=journal_fields(connector=connector_id),
                )
                return "UnlockFailed"

    async def change_availability(self, connector_id: int, operative: bool) -> str:
        """Return Accepted, Scheduled (a session runs; applied when it ends) or Rejected."""
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        targets = (
            list(self.connectors.values()) if connector_id == 0 else [self.connectors[connector_id]]
        )
        scheduled = False
        async with self._lock:
            if connector_id == 0:
                self.charger.operative = operative
                await self._record_availability(0, operative)
            for c in targets:
                if c.transaction is not None and not operative:
                    c.pending_inoperative = True
                    scheduled = True
                else:
                    await self._set_operative(c, operative)
            self._refresh_charger()
        return "Scheduled" if scheduled else "Accepted"

    async def hold_for_maintenance(self) -> None:
        """Refuse new sessions and return once none is running (firmware installation).

        Idle connectors go Unavailable at once; a running session goes on to its normal
        end, after which its connector goes Unavailable too. Nothing is persisted: a
        restart ends the hold.
        """
        async with self._lock:
            for c in self.connectors.values():
                c.maintenance = True
                self._clear_authorization(c)
                self._refresh(c)
        while any(c.transaction is not None for c in self.connectors.values()):
            self._idle.clear()
            await self._idle.wait()

    async def end_maintenance(self) -> None:
        async with self._lock:
            for c in self.connectors.values():
                c.maintenance = False
                self._refresh(c)

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

    def transaction_confirmed(
        self, local_id: int, transaction_id: int, decision: AuthDecision
    ) -> None:
        """The CSMS answered a StartTransaction (OCPP 1.6): learn its id, then act on its
        verdict on the id tag as :meth:`id_token_answered` does."""
        for c in self.connectors.values():
            tx = c.transaction
            if tx is not None and tx.local_id == local_id:
                tx.transaction_id = transaction_id
                self._profiles_changed()  # a TxProfile for this transactionId may apply now
        self.id_token_answered(local_id, decision)

    def id_token_answered(self, local_id: int, decision: AuthDecision) -> None:
        """The CSMS judged the id tag of a running session (it matters for sessions started
        offline): stop with DeAuthorized when StopTransactionOnInvalidId, else let at most
        MaxEnergyOnInvalidId Wh flow. A parentIdTag in the answer becomes the session's
        group; an answer without one leaves the group known from the start (a card of it
        may still stop the session)."""
        for c in self.connectors.values():
            tx = c.transaction
            if tx is None or tx.local_id != local_id:
                continue
            if decision.group_token is not None:
                tx.group_token = decision.group_token
            if decision.accepted:
                return
            log.warning(
                "connector %d: CSMS refused id tag %s of session %d (%s)",
                c.connector_id,
                tx.id_token,
                local_id,
                decision.status,
                extra=_fields(c),
            )
            if self.settings.stop_on_invalid_id:
                self._spawn(
                    self._locked_end_authorization(c, StopReason.DE_AUTHORIZED), "deauthorize"
                )
            else:
                tx.energy_cap_wh = tx.meter_start_wh + self.settings.max_energy_on_invalid_wh
                self._wake[c.connector_id].set()

    def resend_status(self, connector_id: int | None = None) -> None:
        """Emit the current status again (for a new connection or a TriggerMessage)."""
        ids = [connector_id] if connector_id is not None else [0, *self.connectors]
        for cid in ids:
            c = self.charger if cid == 0 else self.connectors[cid]
            if c.status is not None:
                self.output.status_changed(self._status_event(c))

    async def sample_now(
        self, connector_id: int | None, measurands: tuple[str, ...] | None = None
    ) -> None:
        """Report the current meter values (TriggerMessage MeterValues): the sampled
        measurands, as part of a running session. With ``measurands``, those, as a reading
        of the connector apart from any session (OCPP 2.0.1 sends them in MeterValues)."""
        ids = [connector_id] if connector_id else list(self.connectors)
        async with self._lock:
            for cid in ids:
                c = self.connectors[cid]
                reading = await self._read_meter(c)
                if reading is None:
                    continue
                if measurands is None:
                    sample = self._sample(c, reading, "Trigger", self.settings.sampled_measurands)
                else:
                    sample = MeterSample(
                        cid,
                        now_iso(),
                        round(reading.energy_wh),
                        self._values(c, measurands, reading, "Trigger"),
                    )
                await self._record_sample(sample)

    # ----------------------------------------------------------------- reactions

    async def _change_loop(self) -> None:
        while True:
            cid = await self._changes.get()
            if cid == 0:
                continue
            c = self.connectors.get(cid)
            if c is not None:
                async with self._lock:
                    await self._reevaluate(c)

    async def _poll_loop(self, c: ConnectorState) -> None:
        """Re-read hardware that cannot report changes itself, and keep faults current.
        A poll that takes longer than the interval (a slow bus) is followed by the next at
        once, never by a backlog."""
        wake = self._wake[c.connector_id]
        hw = self.hardware.connectors[c.connector_id]
        pacer = Pacer(f"connector {c.connector_id}: one poll of its meter and board")
        while True:
            delay = hw.poll_interval_s if c.transaction is not None else POLL_IDLE_S
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that comes as the event is set, and this loop would then outlive shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pacer.wait_s(delay)):
                    await wake.wait()
            wake.clear()
            async with self._lock:
                pacer.started()
                await self._reevaluate(c)

    async def _card_loop(self) -> None:
        reader = self.hardware.card_reader
        assert reader is not None
        while True:
            try:
                uid = await reader.read_card()
            except HalError as err:
                log.error("card reader failed: %s", err)
                self.charger.faults["reader"] = Fault(
                    "reader", err.error_code, str(err), err.vendor_error_code
                )
                self._refresh_charger()
                await asyncio.sleep(POLL_IDLE_S)
                continue
            if self.charger.faults.pop("reader", None) is not None:
                self._refresh_charger()
            await self.present_tag(uid)

    async def _aligned_loop(self) -> None:
        """Clock-aligned samples at every multiple of ClockAlignedDataInterval counted from
        midnight UTC. A new interval counts from its next boundary at once; the wall clock is
        read again at least every ALIGNED_RECHECK_S, so a clock set by NTP is followed."""
        due: tuple[int, float] | None = None  # the interval in force and its next boundary

        def left() -> float | None:
            nonlocal due
            interval = self.settings.clock_aligned_interval_s
            if interval <= 0:
                return None
            now = time.time()
            if due is None or due[0] != interval or due[1] - now > interval:
                due = (interval, _next_multiple(now, interval))
            return min(due[1] - now, ALIGNED_RECHECK_S)

        while True:
            await wait_due(left, self._settings_changes)
            assert due is not None
            due = (due[0], _next_multiple(max(time.time(), due[1]), due[0]))
            async with self._lock:
                for c in self.connectors.values():
                    reading = await self._read_meter(c)
                    if reading is None:
                        continue
                    await self._record_sample(
                        self._sample(
                            c,
                            reading,
                            "Sample.Clock",
                            self.settings.aligned_measurands,
                            self.settings.stop_txn_aligned_measurands,
                        )
                    )

    async def _sampler(self, c: ConnectorState, local_id: int) -> None:
        last = time.monotonic()

        def left() -> float | None:
            interval = self.settings.meter_value_sample_interval_s
            return last + interval - time.monotonic() if interval > 0 else None

        while True:
            await wait_due(left, self._settings_changes)
            last = time.monotonic()
            async with self._lock:
                tx = c.transaction
                if tx is None or tx.local_id != local_id:
                    return
                reading = await self._read_meter(c)
                if reading is None:
                    continue
                await self._record_sample(
                    self._sample(
                        c,
                        reading,
                        "Sample.Periodic",
                        self.settings.sampled_measurands,
                        self.settings.stop_txn_sampled_measurands,
                    )
                )

    async def _reevaluate(self, c: ConnectorState) -> None:
        """Bring the model in line with the hardware and act on plug/unplug edges."""
        await self._observe(c)
        cid = c.connector_id
        state = PilotState(c.pilot)
        was_plugged = self._plugged[cid]
        if state is PilotState.A and was_plugged:
            self._plugged[cid] = False
            c.finishing = False
            await self._disarm(c, "EV unplugged")
            if c.transaction is not None:
                if TxPoint.EV_CONNECTED in self.settings.stop_points():
                    await self._stop(c, StopReason.EV_DISCONNECTED)
                elif (
                    self.settings.stop_on_ev_side_disconnect
                    and self.settings.tx_stop_points is not None
                ):
                    await self._end_authorization(c, StopReason.EV_DISCONNECTED)
            lock = self.hardware.connectors[cid].lock
            if (
                lock is not None
                and c.transaction is None
                and self.settings.unlock_on_ev_side_disconnect
            ):
                try:
                    await lock.unlock()
                except HalError as err:
                    log.warning(
                        "connector %d: unlock after unplug failed: %s",
                        cid,
                        err,
                        extra=journal_fields(connector=cid),
                    )
        elif state.plugged and not was_plugged:
            self._plugged[cid] = True
            self._expire_reservations()
            if c.transaction is not None:  # begun by a card, or going on after an unplug
                c.transaction.ev_seen = True
                self._cancel_connect_timeout(c)
            elif (taken := self._take_authorization(c)) is not None:
                if self._free(c):
                    id_token, parent, remote = taken
                    decision = AuthDecision(AuthStatus.ACCEPTED, parent)
                    await self._start(c, id_token, decision, remote, rising=_EV_CONNECTED)
            elif self._free(c) and TxPoint.EV_CONNECTED in self.settings.tx_start_points:
                await self._record_start(c, None, TxPoint.EV_CONNECTED)
        tx = c.transaction
        cap = tx.energy_cap_wh if tx is not None else None
        if tx is not None and cap is not None and not tx.suspended and c.energy_wh >= cap:
            log.warning(
                "connector %d: MaxEnergyOnInvalidId reached; withholding energy",
                cid,
                extra=_fields(c),
            )
            tx.suspended = True
        allowed, phases = self._supply_target(c)
        switch = self.hardware.connectors[cid].phase_switch
        supplying = c.offered_a > 0 or c.contactor_closed
        if state in (PilotState.E, PilotState.F) and supplying:
            log.error(
                "connector %d: pilot state %s; switching the supply off",
                cid,
                state,
                extra=_fields(c),
            )
            await self._energize(c, 0.0)
        elif allowed == 0 and supplying:
            if tx is not None and not tx.suspended:
                log.info(
                    "connector %d: charging profile limit %.1f A is below %.0f A; suspending",
                    cid,
                    c.limit_a or 0.0,
                    MIN_CURRENT_A,
                    extra=_fields(c),
                )
            await self._energize(c, 0.0)
        elif allowed > 0 and switch is not None and switch.phases != phases:
            if await self._switch_phases(c, switch, phases) and state.plugged:
                await self._energize(c, allowed)
        elif (
            allowed > 0
            and state.plugged
            and c.offered_a < MIN_CURRENT_A
            and "pilot" not in c.faults
        ):
            log.info(
                "connector %d: offering %.1f A with the pilot in %s",
                cid,
                allowed,
                state,
                extra=_fields(c),
            )
            await self._energize(c, allowed)
        elif allowed > 0 and c.offered_a >= MIN_CURRENT_A and c.requested_a != allowed:
            log.info(
                "connector %d: charging profile limit; offering %.1f A instead of %.1f A",
                cid,
                allowed,
                c.offered_a,
                extra=_fields(c),
            )
            await self._offer(c, allowed)
        elif "relay" in c.faults:
            await self._energize(c, allowed if c.offered_a >= MIN_CURRENT_A else 0.0)
        await self._follow_supply(c)
        self._refresh(c)

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

    # --------------------------------------------------------------- transactions

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
        await self._supply(c)
        if not plugged:
            self._arm_connect_timeout(c, local_id)
        self._samplers[c.connector_id] = asyncio.create_task(
            self._sampler(c, local_id), name=f"sampler-{c.connector_id}"
        )
        self._wake[c.connector_id].set()
        self._refresh(c)

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
        if reservation is not None:
            self._end_reservation(reservation, f"used by session {tx.local_id}")
            await self._persist_reservations()
        if profile is not None:
            self._profiles = self._profiles.install(c.connector_id, profile)
            await self._persist_profiles()
        self._profiles_changed()
        await self._supply(c)
        self._refresh(c)

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

    async def _record_sample(self, sample: MeterSample) -> None:
        """Meter values are worth a retry only through the queue; one that cannot even be
        written (disk full) is skipped: the session's final reading still reaches the CSMS."""
        try:
            await self.output.meter_values(sample)
        except StoreError as err:
            log.error(
                "connector %d: meter values not recorded: %s",
                sample.connector_id,
                err,
                extra=journal_fields(
                    connector=sample.connector_id, local_transaction_id=sample.tx_local_id
                ),
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
                        RECORD_RETRY_S,
                        extra=fields,
                    )
                failures += 1
                await asyncio.sleep(RECORD_RETRY_S)
                continue
            if failures:
                log.info(
                    "session %d: end recorded after %d retries",
                    event.local_id,
                    failures,
                    extra=fields,
                )
            return

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

    async def _set_operative(self, c: ConnectorState, operative: bool) -> None:
        c.pending_inoperative = None
        if c.operative != operative:
            c.operative = operative
            if not operative:
                self._clear_authorization(c)
                await self._disarm(c, "made inoperative")
            await self._record_availability(c.connector_id, operative)
        self._refresh(c)

    def _sample(
        self,
        c: ConnectorState,
        reading: MeterReading,
        context: str,
        measurands: tuple[str, ...],
        stop_measurands: tuple[str, ...] = (),
    ) -> MeterSample:
        """Values to report now and, during a session, values to keep for its final record."""
        tx = c.transaction
        return MeterSample(
            c.connector_id,
            now_iso(),
            round(reading.energy_wh),
            self._values(c, measurands, reading, context),
            tx.local_id if tx else None,
            self._values(c, stop_measurands, reading, context) if tx else (),
        )

    def _values(
        self, c: ConnectorState, measurands: tuple[str, ...], reading: MeterReading, context: str
    ) -> tuple[Any, ...]:
        hw = self.hardware.connectors[c.connector_id]
        phases = hw.phase_switch.phases if hw.phase_switch is not None else hw.phases
        return sample_values(
            measurands, reading, context=context, offered_a=c.offered_a, phases=phases
        )

    # --------------------------------------------------------------- reservations

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
            delay = RESERVATION_RECHECK_S
            if self._reservations:
                soonest = min(r.expiry for r in self._reservations.values())
                delay = min(delay, max(0.0, (soonest - self._now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    # ---------------------------------------------------------- charging profiles

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
            delay = float(RESERVATION_RECHECK_S)
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

    # --------------------------------------------------------------------- status

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
