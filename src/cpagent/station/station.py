"""The charging station: connectors, transactions, authorization and metering.

The station drives the hardware through the HAL, decides what happens when a
card is shown or an EV is plugged, and reports through :class:`StationOutput`.
It is protocol-agnostic: the OCPP adapter translates its events into
messages and CSMS requests into its commands.

Concurrency: every change to connector state happens under one lock, so a
plug, a card and a remote command never interleave half-way. Money-bearing
outputs (transaction start/stop, transaction meter values) are awaited under
that lock, which keeps them in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from cpagent.exc import HalError, LockFault, StoreError
from cpagent.hal.base import (
    ConnectorHardware,
    ConnectorLock,
    Hardware,
    MeterReading,
    PilotState,
)
from cpagent.station.metering import sample_values
from cpagent.station.model import (
    ActiveTransaction,
    AuthDecision,
    Authorizer,
    AuthStatus,
    ConnectorState,
    ConnectorStatus,
    Fault,
    MeterSample,
    StationOutput,
    StationSettings,
    StatusChanged,
    StopReason,
    TransactionStarted,
    TransactionStopped,
)
from cpagent.station.status import derive_status
from cpagent.systemd import journal_fields
from cpagent.timeutil import now_iso

log = logging.getLogger(__name__)

POLL_IDLE_S = 10.0
SAMPLER_RECHECK_S = 1.0
RECORD_RETRY_S = 5.0


@dataclass(frozen=True)
class UnfinishedTransaction:
    """A transaction found open in the store at start-up (the agent died during it)."""

    local_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: int
    last_meter_wh: int


class Station:
    def __init__(
        self,
        hardware: Hardware,
        output: StationOutput,
        authorizer: Authorizer,
        settings: StationSettings,
    ) -> None:
        self.hardware = hardware
        self.output = output
        self.authorizer = authorizer
        self.settings = settings
        self.connectors = {cid: ConnectorState(cid) for cid in sorted(hardware.connectors)}
        self.charger = ConnectorState(0)
        self._lock = asyncio.Lock()
        self._idle = asyncio.Event()  # set whenever a session ends
        self._plugged = dict.fromkeys(self.connectors, False)
        self._implicit_auth: dict[int, bool] = {}
        self._auth_expiry: dict[int, asyncio.TimerHandle] = {}
        self._samplers: dict[int, asyncio.Task[None]] = {}
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
    ) -> None:
        """Read the hardware, apply persisted availability and close what a crash left open."""
        self.charger.operative = availability.get(0, True)
        for cid, c in self.connectors.items():
            c.operative = self.charger.operative and availability.get(cid, True)
        async with self._lock:
            for c in self.connectors.values():
                await self._observe(c)
            for tx in unfinished:
                await self._close_unfinished(tx, recovery_reason)
            for c in self.connectors.values():
                self._plugged[c.connector_id] = PilotState(c.pilot).plugged
                c.finishing = self._plugged[c.connector_id]
                self._refresh(c)
            self._refresh_charger()

    async def run(self) -> None:
        """Run the station's loops until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._change_loop(), name="station-changes")
                tg.create_task(self._aligned_loop(), name="station-aligned-meter")
                if self.hardware.card_reader is not None:
                    tg.create_task(self._card_loop(), name="station-card-reader")
                for c in self.connectors.values():
                    tg.create_task(self._poll_loop(c), name=f"station-poll-{c.connector_id}")
        finally:
            for task in [*self._tasks, *self._samplers.values()]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._samplers.values(), return_exceptions=True)
            for handle in self._auth_expiry.values():
                handle.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("station task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ commands

    async def present_tag(self, id_tag: str) -> None:
        """A card was shown: stop the session it started, or authorize a new one."""
        async with self._lock:
            for c in self.connectors.values():
                tx = c.transaction
                if tx is not None and tx.id_tag == id_tag:
                    await self._stop(c, StopReason.LOCAL, id_tag)
                    return
        decision = await self.authorizer.authorize(id_tag)
        async with self._lock:
            if decision.parent_id_tag:
                for c in self.connectors.values():
                    tx = c.transaction
                    if tx is not None and tx.parent_id_tag == decision.parent_id_tag:
                        await self._stop(c, StopReason.LOCAL, id_tag)
                        return
            if not decision.accepted:
                log.info("card %s not authorized: %s", id_tag, decision.status)
                return
            for c in self.connectors.values():
                if self._free(c) and self._plugged[c.connector_id]:
                    await self._start(c, id_tag, decision)
                    return
            for c in self.connectors.values():
                if self._free(c) and c.authorized_id_tag is None:
                    self._authorize(c, id_tag, implicit=True)
                    return
            log.info("card %s authorized but no connector is free", id_tag)

    async def remote_start(self, id_tag: str, connector_id: int | None) -> bool:
        """Accept or refuse a remote start; the session itself begins after the answer."""
        async with self._lock:
            if connector_id is not None:
                c = self.connectors.get(connector_id)
                if c is None or not self._free(c):
                    return False
            else:
                free = [c for c in self.connectors.values() if self._free(c)]
                plugged = [c for c in free if self._plugged[c.connector_id]]
                if not free:
                    return False
                c = (plugged or free)[0]
            self._authorize(c, id_tag, implicit=False)
        self._spawn(self._remote_begin(c, id_tag), f"remote-start-{c.connector_id}")
        return True

    async def _remote_begin(self, c: ConnectorState, id_tag: str) -> None:
        decision = AuthDecision(AuthStatus.ACCEPTED)
        if self.settings.authorize_remote_tx_requests:
            decision = await self.authorizer.authorize(id_tag)
        async with self._lock:
            if c.authorized_id_tag != id_tag:
                return
            if not decision.accepted:
                self._clear_authorization(c)
                self._refresh(c)
                return
            if self._plugged[c.connector_id] and c.transaction is None:
                await self._start(c, id_tag, decision)

    async def remote_stop(self, transaction_id: int) -> bool:
        for c in self.connectors.values():
            tx = c.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                self._spawn(
                    self._locked_stop(c, StopReason.REMOTE), f"remote-stop-{c.connector_id}"
                )
                return True
        return False

    async def _locked_stop(self, c: ConnectorState, reason: StopReason) -> None:
        async with self._lock:
            await self._stop(c, reason)

    async def stop_all(self, reason: StopReason) -> None:
        async with self._lock:
            for c in self.connectors.values():
                await self._stop(c, reason)

    async def unlock(self, connector_id: int) -> str:
        """UnlockConnector semantics: stop a running session first, then release the cable."""
        c = self.connectors.get(connector_id)
        if c is None:
            return "NotSupported"
        hw = self.hardware.connectors[connector_id]
        async with self._lock:
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
        """The CSMS answered a StartTransaction: learn its id, and act on a refused id tag
        (it matters for sessions started offline): stop with DeAuthorized when
        StopTransactionOnInvalidId, else let at most MaxEnergyOnInvalidId Wh flow."""
        for c in self.connectors.values():
            tx = c.transaction
            if tx is None or tx.local_id != local_id:
                continue
            tx.transaction_id = transaction_id
            tx.parent_id_tag = decision.parent_id_tag
            if decision.accepted:
                return
            log.warning(
                "connector %d: CSMS refused id tag %s of transaction %d (%s)",
                c.connector_id,
                tx.id_tag,
                transaction_id,
                decision.status,
                extra=_fields(c),
            )
            if self.settings.stop_on_invalid_id:
                self._spawn(self._locked_stop(c, StopReason.DE_AUTHORIZED), "deauthorize")
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

    async def sample_now(self, connector_id: int | None) -> None:
        """Report the current meter values (TriggerMessage MeterValues)."""
        ids = [connector_id] if connector_id else list(self.connectors)
        async with self._lock:
            for cid in ids:
                c = self.connectors[cid]
                reading = await self._read_meter(c)
                if reading is None:
                    continue
                await self._record_sample(
                    self._sample(c, reading, "Trigger", self.settings.sampled_measurands)
                )

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
        """Re-read hardware that cannot report changes itself, and keep faults current."""
        wake = self._wake[c.connector_id]
        hw = self.hardware.connectors[c.connector_id]
        while True:
            delay = hw.poll_interval_s if c.transaction is not None else POLL_IDLE_S
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that comes as the event is set, and this loop would then outlive shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()
            wake.clear()
            async with self._lock:
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
        while True:
            interval = self.settings.clock_aligned_interval_s
            if interval <= 0:
                await asyncio.sleep(POLL_IDLE_S)
                continue
            now = time.time()
            await asyncio.sleep((math.floor(now / interval) + 1) * interval - now)
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
        while True:
            interval = self.settings.meter_value_sample_interval_s
            wait = last + interval - time.monotonic() if interval > 0 else SAMPLER_RECHECK_S
            if wait > 0:
                # Re-read the interval at least every SAMPLER_RECHECK_S, so that a
                # MeterValueSampleInterval changed mid-session takes effect at once rather
                # than after the old interval has run out.
                await asyncio.sleep(min(wait, SAMPLER_RECHECK_S))
                continue
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
            if c.transaction is not None and self.settings.stop_on_ev_side_disconnect:
                await self._stop(c, StopReason.EV_DISCONNECTED)
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
            id_tag = self._take_authorization(c)
            if id_tag is not None and self._free(c):
                await self._start(c, id_tag, None)
        tx = c.transaction
        cap = tx.energy_cap_wh if tx is not None else None
        if tx is not None and cap is not None and not tx.suspended and c.energy_wh >= cap:
            log.warning(
                "connector %d: MaxEnergyOnInvalidId reached; withholding energy",
                cid,
                extra=_fields(c),
            )
            tx.suspended = True
        if tx is not None and tx.suspended and (c.offered_a > 0 or c.contactor_closed):
            await self._energize(c, False)
        elif state in (PilotState.E, PilotState.F) and (c.offered_a > 0 or c.contactor_closed):
            log.error(
                "connector %d: pilot state %s; switching the supply off",
                cid,
                state,
                extra=_fields(c),
            )
            await self._energize(c, False)
        elif tx is not None and not tx.suspended and state.plugged and c.offered_a < 6.0:
            log.info(
                "connector %d: pilot back to %s; resuming the supply",
                cid,
                state,
                extra=_fields(c),
            )
            await self._energize(c, True)
        elif "relay" in c.faults:
            await self._energize(c, tx is not None and not tx.suspended and c.offered_a >= 6.0)
        self._refresh(c)

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
            and c.operative
            and not c.maintenance
            and not c.faults
            and c.pilot not in ("E", "F")
        )

    def _authorize(self, c: ConnectorState, id_tag: str, *, implicit: bool) -> None:
        self._clear_authorization(c)
        c.authorized_id_tag = id_tag
        self._implicit_auth[c.connector_id] = implicit
        timeout = max(1, self.settings.connection_timeout_s)
        self._auth_expiry[c.connector_id] = asyncio.get_running_loop().call_later(
            timeout, self._expire_authorization, c, id_tag
        )
        self._refresh(c)

    def _expire_authorization(self, c: ConnectorState, id_tag: str) -> None:
        if c.authorized_id_tag == id_tag and c.transaction is None:
            log.info(
                "connector %d: no EV connected in time for %s",
                c.connector_id,
                id_tag,
                extra=_fields(c),
            )
            self._clear_authorization(c)
            self._refresh(c)

    def _clear_authorization(self, c: ConnectorState) -> None:
        c.authorized_id_tag = None
        handle = self._auth_expiry.pop(c.connector_id, None)
        if handle is not None:
            handle.cancel()

    def _take_authorization(self, c: ConnectorState) -> str | None:
        """The id tag waiting for this plug-in: this connector's, or one shown for any connector."""
        candidates = [c] + [
            o
            for o in self.connectors.values()
            if o is not c
            and self._implicit_auth.get(o.connector_id)
            and not self._plugged[o.connector_id]
        ]
        for o in candidates:
            if o.authorized_id_tag is not None:
                id_tag = o.authorized_id_tag
                self._clear_authorization(o)
                if o is not c:
                    self._refresh(o)
                return id_tag
        return None

    async def _start(self, c: ConnectorState, id_tag: str, decision: AuthDecision | None) -> None:
        self._clear_authorization(c)
        reading = await self._read_meter(c)
        if reading is None:
            log.error(
                "connector %d: cannot start a session for %s: meter failed",
                c.connector_id,
                id_tag,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        timestamp = now_iso()
        begin = self._values(
            c, self.settings.stop_txn_sampled_measurands, reading, "Transaction.Begin"
        )
        meter_start = round(reading.energy_wh)
        try:
            local_id = await self.output.transaction_started(
                TransactionStarted(c.connector_id, id_tag, meter_start, timestamp, begin)
            )
        except StoreError as err:
            log.error(
                "connector %d: cannot record the start of a session for %s (%s); not starting",
                c.connector_id,
                id_tag,
                err,
                extra=_fields(c),
            )
            self._refresh(c)
            return
        c.transaction = ActiveTransaction(
            local_id,
            id_tag,
            meter_start,
            timestamp,
            parent_id_tag=decision.parent_id_tag if decision else None,
        )
        c.finishing = False
        log.info(
            "connector %d: session %d started for %s at %d Wh",
            c.connector_id,
            local_id,
            id_tag,
            meter_start,
            extra=_fields(c),
        )
        await self._energize(c, True)
        self._samplers[c.connector_id] = asyncio.create_task(
            self._sampler(c, local_id), name=f"sampler-{c.connector_id}"
        )
        self._wake[c.connector_id].set()
        self._refresh(c)

    async def _stop(self, c: ConnectorState, reason: StopReason, id_tag: str | None = None) -> None:
        tx = c.transaction
        if tx is None:
            return
        sampler = self._samplers.pop(c.connector_id, None)
        if sampler is not None:
            sampler.cancel()
        await self._energize(c, False)
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
                id_tag,
                end,
            )
        )
        c.transaction = None
        c.finishing = self._plugged[c.connector_id]
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

    async def _energize(self, c: ConnectorState, on: bool) -> None:
        hw: ConnectorHardware = self.hardware.connectors[c.connector_id]
        if on and hw.lock is not None and not await self._lock_cable(c, hw.lock):
            await self._observe(c)
            return
        try:
            if on:
                await hw.contactor.set_closed(True)
                await hw.pilot.set_offered_current(hw.max_current_a)
            else:
                await hw.pilot.set_offered_current(0.0)
                await hw.contactor.set_closed(False)
            self._clear_fault(c, "relay")
        except HalError as err:
            self._set_fault(c, "relay", err)
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
        return sample_values(
            measurands, reading, context=context, offered_a=c.offered_a, phases=hw.phases
        )

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
        status, error_code = derive_status(c)
        if (status, error_code) != (c.status, c.error_code):
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
                    "contactor_closed": c.contactor_closed,
                    "energy_wh": round(c.energy_wh, 1),
                    "power_w": round(c.power_w, 1),
                    "transaction": None
                    if tx is None
                    else {
                        "id": tx.transaction_id,
                        "local_id": tx.local_id,
                        "id_tag": tx.id_tag,
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
