"""The charging station: connectors, transactions, authorization and metering.

The station drives the hardware through the HAL, decides what happens when a
card is shown or an EV is plugged, and reports through :class:`StationOutput`.
It is protocol-agnostic: the OCPP adapter translates its events into
messages and CSMS requests into its commands.

Concurrency: every change to connector state happens under one lock, so a
plug, a card and a remote command never interleave half-way. Money-bearing
outputs (transaction start/stop, transaction meter values) are awaited under
that lock, which keeps them in the order they happened.

:class:`Station` is one object made of parts, each a mixin in a module of its own that
says what it holds and promises: reservations (:mod:`~cpagent.station.reservation_rules`),
charging profiles as the station applies them (:mod:`~cpagent.station.profile_rules`),
the supply hardware (:mod:`~cpagent.station.supply`), sessions by their start and stop
points (:mod:`~cpagent.station.transactions`), meter readings
(:mod:`~cpagent.station.readings`) and statuses and activity
(:mod:`~cpagent.station.reporting`). This module keeps construction, the lifecycle, the
commands the protocol adapters call and the reactions to the hardware. A part declares
the attributes it uses and, for the type checker only, the methods of other parts it
calls; at run time they are found through :class:`Station`'s method resolution order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cpagent.exc import HalError
from cpagent.hal.base import Hardware, PilotState
from cpagent.station.model import (
    AuthDecision,
    Authorizer,
    AuthStatus,
    ConnectorState,
    ConnectorStatus,
    Fault,
    ProfileStore,
    Reservation,
    ReservationStore,
    StationOutput,
    StationSettings,
    StopReason,
    TxPoint,
)
from cpagent.station.pacing import Pacer
from cpagent.station.profile_rules import ProfileRules
from cpagent.station.readings import Readings
from cpagent.station.reporting import Reporting, _fields
from cpagent.station.reservation_rules import ReservationRules
from cpagent.station.smart_charging import MIN_CURRENT_A, ChargingProfile, ProfileSet
from cpagent.station.supply import Supply
from cpagent.station.transactions import RemoteProfile, Transactions
from cpagent.systemd import journal_fields
from cpagent.timers import Changes
from cpagent.timeutil import utcnow

log = logging.getLogger(__name__)

POLL_IDLE_S = 10.0
"""How often a connector that supplies nothing is polled, unless its hardware says."""


#: What becomes true when a card (or a remote start) authorizes an EV already connected,
#: and when an EV is connected for an authorization that waits: the contactor closes then.
_AUTHORIZED = frozenset({TxPoint.AUTHORIZED, TxPoint.POWER_PATH_CLOSED})
_EV_CONNECTED = frozenset({TxPoint.EV_CONNECTED, TxPoint.POWER_PATH_CLOSED})


@dataclass(frozen=True)
class UnfinishedTransaction:
    """A transaction found open in the store at start-up (the agent died during it)."""

    local_id: int
    connector_id: int
    id_token: str
    meter_start_wh: int
    last_meter_wh: int


class Station(ReservationRules, ProfileRules, Transactions, Supply, Readings, Reporting):
    """The charging station: see the module's docstring for its parts."""

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
        restore the persisted ``reservations`` and ``charging_profiles`` that still hold. An
        EV found connected begins a transaction when EVConnected is a start point: no
        transaction runs on its EVSE any more."""
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
            for c in self.connectors.values():
                if (
                    self._plugged[c.connector_id]
                    and self._free(c)
                    and TxPoint.EV_CONNECTED in self.settings.tx_start_points
                ):
                    await self._record_start(c, None, TxPoint.EV_CONNECTED)
            self._refresh_charger()
            if self._reservations_dirty:
                await self._persist_reservations()
            if not restored:
                await self._persist_profiles()

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
            if c.transaction is not None or c.contactor_closed:
                delay = hw.poll_interval_s
            else:
                delay = POLL_IDLE_S if hw.idle_poll_s is None else hw.idle_poll_s
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
