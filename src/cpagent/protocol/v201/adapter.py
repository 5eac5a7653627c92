"""The OCPP 2.0.1 side of the station: transaction events, statuses, boot, heartbeats.

The adapter outlives connections. It implements the station's output and authorizer
ports in 2.0.1 words, on the same store and delivery pipeline as 1.6:

* The station begins and ends transactions at the points TxCtrlr's TxStartPoint and
  TxStopPoint name (E01-E10); this adapter gives each a 2.0.1 transaction id, a UUID,
  unique across restarts and reinstalls, and says in each event what triggered it. Each
  TransactionEvent is numbered (seqNo) and written to the outbox in one commit with the
  transaction's record, before it is sent;
  events are written in the order they happened, whichever path raised them.
* StatusNotification goes per EVSE (connector 1) when its 2.0.1 status changes; the
  station-wide status of 1.6's connector 0 has no 2.0.1 message.
* Messages queued in the other OCPP version (a data_dir that ran 1.6) stay in the store,
  are counted in the status and go out when the agent speaks that version again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ocpp.exceptions import OCPPError

from cpagent import __version__
from cpagent.config import Config
from cpagent.exc import StoreError
from cpagent.protocol.delivery import Caller, Outgoing
from cpagent.protocol.link import CsmsLink
from cpagent.protocol.ocppj import MessageType
from cpagent.protocol.v201 import messages, schemas
from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.authorization import Authorization
from cpagent.protocol.v201.device_model import SetResult, SetStatus
from cpagent.protocol.v201.settings import Variables
from cpagent.protocol.v201.tx_points import TxPointsRejected, parse_tx_points
from cpagent.security.events import SecurityEvent, SecurityEventType
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    MeterSample,
    SampledValue,
    StatusChanged,
    StopReason,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
    TxPoint,
)
from cpagent.store import OutboxRow, Store
from cpagent.timeutil import now_iso

if TYPE_CHECKING:
    from cpagent.protocol.v201.certificate_renewal import Renewals
    from cpagent.protocol.v201.network_profiles import NetworkProfiles
    from cpagent.security.connection import ConnectionSecurity
    from cpagent.station.firmware import FirmwareUpdater
    from cpagent.station.station import Station
    from cpagent.updates import DiagnosticsUploader

log = logging.getLogger(__name__)

T = TypeVar("T")

PROTOCOL = "2.0.1"
"""The version the outbox rows this adapter queues are marked with."""
CONNECTOR_ID = 1
"""Each EVSE has one connector (interface.md: evseId N, connectorId 1)."""
LOCK_FAILURE = "ConnectorLockFailure"
"""The station's error code for a cable lock that did not engage."""

_TRIGGERS = {
    StopReason.DE_AUTHORIZED: "Deauthorized",
    StopReason.EMERGENCY_STOP: "AbnormalCondition",
    StopReason.EV_DISCONNECTED: "EVCommunicationLost",
    StopReason.HARD_RESET: "ResetCommand",
    StopReason.LOCAL: "StopAuthorized",
    StopReason.OTHER: "AbnormalCondition",
    StopReason.POWER_LOSS: "AbnormalCondition",
    StopReason.REBOOT: "AbnormalCondition",
    StopReason.REMOTE: "RemoteStop",
    StopReason.SOFT_RESET: "ResetCommand",
    StopReason.UNLOCK_COMMAND: "UnlockCommand",
    StopReason.STOPPED_BY_EV: "ChargingStateChanged",
    StopReason.TIMEOUT: "EVConnectTimeout",
}
"""The triggerReason of the Ended event for each way a session ends (E03, E06-E08, F03,
B11), and of the Updated event of an authorization that ends while its transaction goes
on (EVDisconnected: the cable unplugged with StopTxOnEVSideDisconnect)."""

_START_TRIGGERS = {
    TxPoint.AUTHORIZED: "Authorized",
    TxPoint.EV_CONNECTED: "CablePluggedIn",
    TxPoint.POWER_PATH_CLOSED: "Authorized",
    TxPoint.ENERGY_TRANSFER: "ChargingStateChanged",
}
"""The triggerReason of the Started event by the start point that began it (E01-E03).
PowerPathClosed closes the contactor on the authorization that completes the session, and
is named by it, as it always was here (RemoteStart for a RequestStartTransaction)."""


_ENDED_INTERVALS = {"Sample.Periodic": "SampledDataCtrlr", "Sample.Clock": "AlignedDataCtrlr"}
"""Whose TxEndedInterval paces the readings of each context kept for the Ended event."""
KEEP_SLACK_S = 0.5
"""A reading this much early for its TxEndedInterval still counts: readings come at their
own cadence, and one a little early must not push the next kept one a whole period away."""


@dataclass(frozen=True)
class RemoteStart:
    """An accepted RequestStartTransaction waiting for its session (F01, F02)."""

    remote_start_id: int
    token_type: str
    until: float | None
    """When (monotonic) the station has given up waiting for the EV: after
    TxCtrlr.EVConnectionTimeOut; None when it waits without limit."""


_SAMPLE_TRIGGERS = {
    "Sample.Periodic": "MeterValuePeriodic",
    "Sample.Clock": "MeterValueClock",
    "Trigger": "Trigger",
}


def ended_event(
    event: TransactionStopped,
    transaction_id: str,
    data: list[dict[str, Any]],
    *,
    charging_state: str,
    offline: bool,
) -> Callable[[int], tuple[str, dict[str, Any]]]:
    """The Ended TransactionEvent of a session, made from the seqNo the store gives it: the
    meter values kept during the session (TxEndedMeasurands) and those of its end; a
    session closed after a power loss has no reading of its end but the register it was
    last known at, which the CSMS bills up to."""
    end = messages.meter_value(event.timestamp, event.end_values)
    if end is None:  # no reading at the stop: a session closed after a power loss
        register = SampledValue(
            "Energy.Active.Import.Register", float(event.meter_stop_wh), "Wh", "Transaction.End"
        )
        end = messages.meter_value(event.timestamp, [register])

    def make(seq_no: int) -> tuple[str, dict[str, Any]]:
        return "TransactionEvent", messages.transaction_event(
            event_type="Ended",
            timestamp=event.timestamp,
            trigger_reason=_TRIGGERS[event.reason],
            seq_no=seq_no,
            transaction_id=transaction_id,
            charging_state=charging_state,
            stopped_reason=messages.stopped_reason(event.reason),
            id_token=messages.id_token(event.id_token) if event.id_token else None,
            meter_values=[*data, end],
            offline=offline,
        )

    return make


class V201Adapter(CsmsLink):
    """Implements the station's output and authorizer ports for OCPP 2.0.1."""

    PROTOCOL = PROTOCOL

    def __init__(
        self,
        config: Config,
        store: Store,
        values: Variables,
        *,
        request_reset: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        super().__init__(config, store, self)
        self.values = values
        self.request_reset = request_reset
        self.station: Station | None = None
        self.boot_reason = "PowerUp"
        self.authorization = Authorization(store, values, self._ask)
        self._connection_ready = False
        self._sent_status: dict[int, str] = {}
        self._charging_state: dict[int, str] = {}  # local id -> the last chargingState sent
        self._transactions: dict[int, tuple[str, int]] = {}  # local id -> (id, next seqNo)
        self._kept_at: dict[tuple[int, str], float] = {}  # (local id, context) -> monotonic
        self._remote_starts: dict[str, RemoteStart] = {}  # by idToken, until its session starts
        self.network: NetworkProfiles | None = None
        self.persist_variables: Callable[[], Awaitable[None]] | None = None
        self.variable_listeners: list[Callable[[], None]] = []
        self._last_write: asyncio.Future[Any] | None = None
        self._lock_failed: set[int] = set()
        self._event_id = int(time.time()) % 2**30
        """NotifyEvent eventIds: counted up from a start that differs at each start-up."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self, station: Station) -> None:
        self.station = station

    # -------------------------------------------------------- ordered transaction writes

    def _serial(self, make: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``make()`` after every write started before it: events of a transaction are
        numbered and queued in the order the station raised them, whether it awaited them
        (start, stop, meter values) or could not (a charging state change)."""
        previous = self._last_write

        async def run() -> T:
            if previous is not None:
                with contextlib.suppress(Exception):  # its own caller hears of its failure
                    await asyncio.shield(previous)
            return await make()

        task = asyncio.ensure_future(run())
        self._last_write = task
        return task

    def _queued(self, row: OutboxRow | None) -> None:
        if row is None:
            return
        if row.protocol != PROTOCOL:
            held = self.delivery.held
            held[row.protocol] = held.get(row.protocol, 0) + 1
            return
        if row.tx_local_id is not None and row.action == "TransactionEvent":
            if row.payload["eventType"] == "Ended":  # forgotten: months of sessions add up
                self._transactions.pop(row.tx_local_id, None)
            else:
                self._transactions[row.tx_local_id] = (
                    row.payload["transactionInfo"]["transactionId"],
                    row.payload["seqNo"] + 1,
                )
        self.delivery.append(Outgoing(row.action, row.payload, row))

    # ---------------------------------------------------------------- station output

    async def transaction_started(self, event: TransactionStarted) -> int:
        transaction_id = str(uuid.uuid4())
        remote = token = None
        if event.id_token is not None:
            remote = self._remote_start(event.id_token, pop=True)
            token = messages.id_token(event.id_token, remote.token_type if remote else "ISO14443")
        offline = not self._connection_ready
        begin = messages.meter_value(event.timestamp, event.begin_values)
        trigger = _START_TRIGGERS[event.trigger]
        if remote is not None and trigger == "Authorized":
            trigger = "RemoteStart"
        charging_state = (
            "Charging"  # begun by the EV drawing energy
            if event.trigger is TxPoint.ENERGY_TRANSFER
            else self._current_charging_state(event.connector_id)
        )

        def make(seq_no: int) -> tuple[str, dict[str, Any]]:
            return "TransactionEvent", messages.transaction_event(
                event_type="Started",
                timestamp=event.timestamp,
                trigger_reason=trigger,
                seq_no=seq_no,
                transaction_id=transaction_id,
                evse_id=event.connector_id,
                connector_id=CONNECTOR_ID,
                charging_state=charging_state,
                remote_start_id=remote.remote_start_id if remote else None,
                id_token=token,
                meter_values=[begin],
                offline=offline,
                reservation_id=event.reservation_id,
            )

        tx, row = await self._serial(
            lambda: self.store.run(
                self.store.start_transaction,
                connector_id=event.connector_id,
                id_tag=event.id_token or "",
                meter_start_wh=event.meter_start_wh,
                started_at=event.timestamp,
                reservation_id=event.reservation_id,
                message=make,
                protocol=PROTOCOL,
                ocpp_transaction_id=transaction_id,
            )
        )
        self._charging_state[tx.local_id] = charging_state
        self._queued(row)
        return tx.local_id

    def _current_charging_state(self, connector_id: int) -> str:
        """The chargingState of an EVSE as the station last reported it: EVConnected for a
        new transaction whose status is not out yet, Idle without an EV."""
        station = self.station
        if station is None:
            return "EVConnected"
        status = station.connectors[connector_id].status
        plugged = station.plugged(connector_id)
        state = messages.charging_state(status, plugged=plugged) if status else None
        if state is None or state == "Idle":
            return "EVConnected" if plugged else "Idle"
        return state

    async def transaction_authorized(self, event: TransactionAuthorized) -> None:
        """A transaction begun before its authorization got one (E02: the EV connected
        first): an Updated event, triggerReason Authorized (RemoteStart with the request's
        remoteStartId), carrying the idToken; the store keeps the token with it."""
        remote = self._remote_start(event.id_token, pop=True)
        await self._queue_updated(
            event.local_id,
            timestamp=event.timestamp,
            trigger_reason="RemoteStart" if remote else "Authorized",
            id_tag=event.id_token,
            remote_start_id=remote.remote_start_id if remote else None,
            id_token=messages.id_token(event.id_token, remote.token_type if remote else "ISO14443"),
            reservation_id=event.reservation_id,
        )

    async def transaction_deauthorized(self, event: TransactionDeauthorized) -> None:
        """The authorization of a transaction ended and TxStopPoint lets it go on (E06):
        an Updated event with the triggerReason of the cause (StopAuthorized, RemoteStop,
        Deauthorized, EVCommunicationLost) and the token that ended it, if any."""
        await self._queue_updated(
            event.local_id,
            timestamp=event.timestamp,
            trigger_reason=_TRIGGERS[event.reason],
            id_token=messages.id_token(event.id_token) if event.id_token else None,
        )

    async def _queue_updated(
        self,
        local_id: int,
        *,
        timestamp: str,
        trigger_reason: str,
        id_tag: str | None = None,
        **fields: Any,
    ) -> None:
        """Queue a TransactionEvent Updated of a running transaction, numbered by the store
        and written in the order events happened; ``fields`` are the event's others (see
        :func:`messages.transaction_event`), and ``id_tag`` is kept with the transaction in
        the same commit. StoreError when the transaction has ended."""
        offline = not self._connection_ready

        async def write() -> OutboxRow:
            tx_id = await self._known_transaction_id(local_id)

            def make(seq_no: int) -> tuple[str, dict[str, Any]]:
                return "TransactionEvent", messages.transaction_event(
                    event_type="Updated",
                    timestamp=timestamp,
                    trigger_reason=trigger_reason,
                    seq_no=seq_no,
                    transaction_id=tx_id,
                    offline=offline,
                    **fields,
                )

            return await self.store.run(
                self.store.queue_transaction_message, local_id, make, id_tag=id_tag
            )

        self._queued(await self._serial(write))

    async def _known_transaction_id(self, local_id: int) -> str:
        known = self._transactions.get(local_id)
        return known[0] if known else await self._transaction_id(local_id)

    async def transaction_stopped(self, event: TransactionStopped) -> None:
        tx = await self.store.run(self.store.get_transaction, event.local_id)
        if tx is not None and tx.protocol != PROTOCOL:
            await self._stop_in_other_version(event, tx.protocol)
            return
        data = await self.store.run(self.store.transaction_data, event.local_id)
        transaction_id = tx.ocpp_transaction_id if tx is not None else None
        assert transaction_id is not None
        make = ended_event(
            event,
            transaction_id,
            data,
            charging_state=self._ended_charging_state(event.connector_id),
            offline=not self._connection_ready,
        )
        _, row = await self._serial(
            lambda: self.store.run(
                self.store.stop_transaction,
                event.local_id,
                meter_stop_wh=event.meter_stop_wh,
                stopped_at=event.timestamp,
                reason=str(event.reason),
                stop_id_tag=event.id_token,
                message=make,
            )
        )
        self._charging_state.pop(event.local_id, None)
        for context in _ENDED_INTERVALS:
            self._kept_at.pop((event.local_id, context), None)
        self._queued(row)

    def _ended_charging_state(self, connector_id: int) -> str:
        """EVConnected while the cable is still in (a local or remote stop), else Idle."""
        plugged = self.station is not None and self.station.plugged(connector_id)
        return "EVConnected" if plugged else "Idle"

    async def _stop_in_other_version(self, event: TransactionStopped, version: str) -> None:
        """A session a 1.6 agent started, closed after the switch to 2.0.1 (the agent died
        during it): its StopTransaction is queued in 1.6, with the session's data, for the
        1.6 CSMS that knows the transaction."""
        from cpagent.protocol.v16 import messages as messages16

        data = await self.store.run(self.store.transaction_data, event.local_id)
        payload = messages16.stop_transaction(event, data)
        _, row = await self.store.run(
            self.store.stop_transaction,
            event.local_id,
            meter_stop_wh=event.meter_stop_wh,
            stopped_at=event.timestamp,
            reason=str(event.reason),
            stop_id_tag=event.id_token,
            message=("StopTransaction", payload),
        )
        log.warning(
            "session %d was started in OCPP %s: its StopTransaction is kept for OCPP %s",
            event.local_id,
            version,
            version,
        )
        self._queued(row)

    async def meter_values(self, sample: MeterSample) -> None:
        """Readings outside a transaction go in MeterValues (J01), a transaction's in a
        TransactionEvent Updated (J02), except aligned ones while
        AlignedDataCtrlr.SendDuringIdle; the values TxEndedMeasurands asks for are kept
        for the Ended event at its TxEndedInterval (:meth:`_kept`), sent or not."""
        local_id = sample.tx_local_id
        if local_id is None:
            payload = messages.meter_values(sample, sample.connector_id)
            if payload is not None and self._connection_ready:
                self.delivery.append(Outgoing("MeterValues", payload))
            return
        values = messages.meter_value(sample.timestamp, sample.values)
        context = sample.values[0].context if sample.values else "Sample.Periodic"
        kept = self._kept(
            local_id, context, messages.meter_value(sample.timestamp, sample.stop_values)
        )
        if context == "Sample.Clock" and self.values.bool("AlignedDataCtrlr", "SendDuringIdle"):
            values = None  # aligned values go only while no transaction runs; kept still
        tx_id = await self._known_transaction_id(local_id)
        offline = not self._connection_ready

        def make(seq_no: int) -> tuple[str, dict[str, Any]]:
            return "TransactionEvent", messages.transaction_event(
                event_type="Updated",
                timestamp=sample.timestamp,
                trigger_reason=_SAMPLE_TRIGGERS.get(context, "MeterValuePeriodic"),
                seq_no=seq_no,
                transaction_id=tx_id,
                meter_values=[values],
                offline=offline,
            )

        row = await self._serial(
            lambda: self.store.run(
                self.store.record_meter,
                local_id,
                sample.meter_wh,
                sample.timestamp,
                make if values is not None else None,
                kept,
            )
        )
        self._queued(row)

    def _kept(
        self, local_id: int, context: str, value: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The reading to keep for the Ended event (J02): a periodic one every
        SampledDataCtrlr.TxEndedInterval, an aligned one every
        AlignedDataCtrlr.TxEndedInterval seconds, as readings come; none while that
        interval is 0 (the Ended event then carries the values at its end only, as the
        Started event carried those at the start), nor a triggered one."""
        component = _ENDED_INTERVALS.get(context)
        if value is None or component is None:
            return None
        interval = self.values.int(component, "TxEndedInterval")
        if interval <= 0:
            return None
        now = time.monotonic()
        last = self._kept_at.get((local_id, context))
        if last is not None and now - last < interval - KEEP_SLACK_S:
            return None
        self._kept_at[(local_id, context)] = now
        return value

    async def _transaction_id(self, local_id: int) -> str:
        tx = await self.store.run(self.store.get_transaction, local_id)
        if tx is None or tx.ocpp_transaction_id is None:
            raise StoreError(f"session {local_id} has no OCPP 2.0.1 transaction id")
        return tx.ocpp_transaction_id

    async def availability_changed(self, connector_id: int, operative: bool) -> None:
        await self.store.run(
            self.store.set_state, f"availability.{connector_id}", "1" if operative else "0"
        )

    def status_changed(self, event: StatusChanged) -> None:
        cid = event.connector_id
        if cid == 0 or self.station is None:
            return
        plugged = self.station.plugged(cid)
        self._lock_problem(cid, event)
        status = messages.connector_status(event.status, plugged=plugged)
        if self._connection_ready and self._sent_status.get(cid) != status:
            self._sent_status[cid] = status
            payload = messages.status_notification(event, cid, CONNECTOR_ID, plugged=plugged)
            self.delivery.append(Outgoing("StatusNotification", payload))
        tx = self.station.connectors[cid].transaction
        if tx is None or tx.local_id not in self._charging_state:
            return
        state = messages.charging_state(event.status, plugged=plugged)
        if state is None or state == self._charging_state[tx.local_id]:
            return
        self._charging_state[tx.local_id] = state
        self._spawn(self._charging_state_changed(tx.local_id, state, event.timestamp))

    def _lock_problem(self, evse_id: int, event: StatusChanged) -> None:
        """G05: a cable lock that fails is reported with NotifyEvent (the connector's
        ConnectorPlugRetentionLock.Problem becomes true), and again, cleared, when it works
        once more. Queued durably like security events: the CSMS hears of it after an
        outage too."""
        failed = event.error_code == LOCK_FAILURE
        if failed == (evse_id in self._lock_failed):
            return
        if failed:
            self._lock_failed.add(evse_id)
        else:
            self._lock_failed.discard(evse_id)
        self._event_id += 1
        data = messages.lock_failure_event(
            event_id=self._event_id,
            timestamp=event.timestamp,
            evse_id=evse_id,
            connector_id=CONNECTOR_ID,
            problem=failed,
        )
        payload = messages.notify_event(generated_at=now_iso(), seq_no=0, events=[data])
        task = asyncio.ensure_future(self._queue_durably("NotifyEvent", payload))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _charging_state_changed(self, local_id: int, state: str, timestamp: str) -> None:
        """TransactionEvent Updated, triggerReason ChargingStateChanged (E01-E15)."""
        try:
            await self._queue_updated(
                local_id,
                timestamp=timestamp,
                trigger_reason="ChargingStateChanged",
                charging_state=state,
            )
        except StoreError as err:  # ended meanwhile: the Ended event says the rest
            log.info("charging state %s of session %d not sent: %s", state, local_id, err)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("recording a transaction event failed: %r", err)

    def remote_start_expected(self, id_token: str, remote_start_id: int, token_type: str) -> None:
        """RequestStartTransaction accepted: the session the station starts for ``id_token``
        carries ``remote_start_id`` and the request's token type (F01, F02), if it starts
        while the station still waits for the EV (TxCtrlr.EVConnectionTimeOut)."""
        timeout = self.values.int("TxCtrlr", "EVConnectionTimeOut")
        until = time.monotonic() + timeout if timeout > 0 else None
        self._remote_starts[id_token] = RemoteStart(remote_start_id, token_type, until)

    def _remote_start(self, id_token: str, *, pop: bool = False) -> RemoteStart | None:
        """The remote start waiting for ``id_token``'s session; one the station gave up on
        (the EV never came) is forgotten, so a later card session is not taken for it."""
        remote = self._remote_starts.get(id_token)
        if remote is None:
            return None
        expired = remote.until is not None and time.monotonic() > remote.until
        if pop or expired:
            del self._remote_starts[id_token]
        return None if expired else remote

    def transaction_of(self, transaction_id: str) -> int | None:
        """The local id of the running session the CSMS knows as ``transaction_id``."""
        for local_id, (tx_id, _) in self._transactions.items():
            if tx_id == transaction_id and local_id in self._charging_state:
                return local_id
        return None

    def transaction_id(self, local_id: int) -> str | None:
        known = self._transactions.get(local_id)
        return known[0] if known else None

    # ------------------------------------------------------------------- authorizer

    async def authorize(self, id_tag: str) -> AuthDecision:
        """The station's question about a token. A remote start's NoAuthorization token
        (free charging, an empty idToken) is not put to the CSMS: it asked for it. While the
        CSMS answers the boot Pending or Rejected, no card starts a transaction unless
        TxCtrlr.TxBeforeAcceptedEnabled."""
        remote = self._remote_start(id_tag)
        if remote is not None and remote.token_type == "NoAuthorization":
            return AuthDecision(AuthStatus.ACCEPTED)
        if self.registration in ("Pending", "Rejected") and not self.values.bool(
            "TxCtrlr", "TxBeforeAcceptedEnabled"
        ):
            # B02/B03: no transaction before the CSMS accepted the station, unless allowed.
            log.info("id token %s refused: the CSMS has not accepted the station", id_tag)
            return AuthDecision(AuthStatus.INVALID)
        decision = await self.authorization.authorize(id_tag)
        if not decision.accepted:
            # A remote start whose token is refused is dropped by the station.
            self._remote_starts.pop(id_tag, None)
        return decision

    async def _ask(self, id_token: str) -> dict[str, Any] | None:
        cp = self.cp
        if cp is None or not self._connection_ready:
            return None
        remote = self._remote_start(id_token)
        kind = remote.token_type if remote is not None else "ISO14443"
        result = await cp.call_payload("Authorize", {"idToken": messages.id_token(id_token, kind)})
        info: dict[str, Any] = result["idTokenInfo"]
        return info

    # ---------------------------------------------------------- delivery policy (2.0.1)

    def attempts(self) -> int:
        return self.values.int("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent")

    def retry_interval(self) -> int:
        return self.values.int("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent")

    def validate_result(self, action: str, payload: dict[str, Any]) -> None:
        schemas.validate(MessageType.CallResult, action, payload)

    async def final_payload(self, item: Outgoing) -> dict[str, Any] | None:
        return item.payload

    def on_result(self, item: Outgoing) -> Callable[[dict[str, Any]], None] | None:
        return None

    async def delivered(self, item: Outgoing, result: dict[str, Any]) -> None:
        """A TransactionEvent's answer judges its id token (E05): the verdict is cached,
        and a session whose token the CSMS refuses is stopped or capped as TxCtrlr says."""
        info = result.get("idTokenInfo")
        token = item.payload.get("idToken")
        if item.action != "TransactionEvent" or info is None or not isinstance(token, dict):
            return
        decision = await self.authorization.remember(token["idToken"], info)
        row = item.row
        if decision.accepted or row is None or row.tx_local_id is None:
            return
        if self.station is not None:
            self.station.id_token_answered(row.tx_local_id, decision)

    # ------------------------------------------------------------ connection life

    def boot_payload(self) -> dict[str, Any]:
        cp = self.config.charge_point
        return messages.boot_notification(
            vendor=cp.vendor,
            model=cp.model,
            firmware_version=cp.firmware_version or __version__,
            serial_number=cp.serial_number,
            reason=self.boot_reason,
        )

    def heartbeat_interval(self) -> int:
        return self.values.int("OCPPCommCtrlr", "HeartbeatInterval")

    def set_heartbeat_interval(self, seconds: int) -> None:
        self.values.set_runtime("OCPPCommCtrlr", "HeartbeatInterval", str(seconds))

    def security_event_payload(self, event: SecurityEvent) -> dict[str, Any]:
        return messages.security_event(str(event.type), event.timestamp, event.tech_info)

    async def serve(self, cp: Caller, established: Callable[[], None] = lambda: None) -> None:
        """Drive one connection: boot until accepted (B01-B03), then statuses (G01), the
        queue and heartbeats (G02). Returns (or raises) when the connection ends; durable
        messages stay queued."""
        self.cp = cp
        self.connected_since = now_iso()
        try:
            await self._boot(cp)
            established()
            self._connection_ready = True
            self._sent_status.clear()
            assert self.station is not None
            self.station.resend_status()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.delivery.run(cp), name="ocpp-sender")
                tg.create_task(self._heartbeat_loop(cp), name="ocpp-heartbeat")
                tg.create_task(self.certificate_check_loop(cp), name="certificate-check")
        finally:
            self.cp = None
            self.connected_since = None
            self._connection_ready = False
            self.delivery.drop_volatile()

    # ------------------------------------------------------- F06: TriggerMessage

    async def trigger_boot(self) -> None:
        """A BootNotification the CSMS asked for while not accepted (B02)."""
        cp = self.cp
        if cp is None:
            return
        try:
            result = await cp.call_payload("BootNotification", self.boot_payload())
        except (OCPPError, TimeoutError) as err:
            log.warning("triggered BootNotification failed: %s", err)
            return
        self.boot_answered(result)

    async def trigger_heartbeat(self) -> None:
        if self.cp is not None:
            await self.send_heartbeat(self.cp)

    async def trigger_status(self, evse_id: int | None) -> None:
        """StatusNotification of one EVSE (or all), sent whether or not it changed."""
        if self.station is None:
            return
        for cid in [evse_id] if evse_id is not None else list(self.station.connectors):
            self._sent_status.pop(cid, None)
            self.station.resend_status(cid)

    def transactions_running(self, evse_id: int | None) -> bool:
        """Whether a transaction runs on ``evse_id`` (on any EVSE when None)."""
        if self.station is None:
            return False
        ids = [evse_id] if evse_id is not None else list(self.station.connectors)
        for cid in ids:
            tx = self.station.connectors[cid].transaction
            if tx is not None and tx.local_id in self._charging_state:
                return True
        return False

    async def trigger_meter_values(self, evse_id: int | None) -> None:
        """MeterValues of one EVSE (or each) with AlignedDataCtrlr.Measurands, context
        Trigger, sent whether or not a transaction runs (F06)."""
        if self.station is not None:
            measurands = self.values.list("AlignedDataCtrlr", "Measurands")
            await self.station.sample_now(evse_id, measurands)

    async def trigger_transaction_events(self, evse_id: int | None) -> None:
        """TransactionEvent Updated, triggerReason Trigger, of each running transaction (of
        one EVSE, or all), with the meter values of the moment."""
        if self.station is None:
            return
        ids = [evse_id] if evse_id is not None else list(self.station.connectors)
        for cid in ids:
            tx = self.station.connectors[cid].transaction
            if tx is not None and tx.local_id in self._charging_state:
                await self.station.sample_now(cid)

    async def trigger_idle_status(self, action: str) -> None:
        """FirmwareStatusNotification or LogStatusNotification as things stand: the
        update's or upload's status with its requestId, Idle when none runs."""
        payload = (
            self.current_firmware_status()
            if action == "FirmwareStatusNotification"
            else self.current_log_status()
        )
        self.send_triggered(action, payload)

    # ---------------------------------------------------------- device model

    def vet_variable(
        self, component: ComponentRef, variable: VariableRef, value: str
    ) -> SetResult | None:
        """A SetVariables the device model would take but the agent cannot act on, refused:
        an empty TxStartPoint or TxStopPoint (no transaction would ever begin, or end)."""
        if variable.name == "NetworkConfigurationPriority" and self.network is not None:
            why = self.network.priority_refusal(value)
            return None if why is None else SetResult(SetStatus.REJECTED, why)
        if component.name != "TxCtrlr" or variable.name not in ("TxStartPoint", "TxStopPoint"):
            return None
        try:
            wanted = parse_tx_points(value)
        except TxPointsRejected:
            return None  # not a MemberList of points at all: the device model refuses it
        if wanted:
            return None
        return SetResult(SetStatus.REJECTED, f"{variable.name} needs at least one point")

    async def variables_changed(self) -> None:
        """The CSMS set variables: persist them (they win over the config after a restart)
        and let what acts on them know."""
        if self.persist_variables is not None:
            await self.persist_variables()
        for listener in self.variable_listeners:
            listener()
        self.heartbeat_changes.notify()
        self.delivery.wake.notify()

    # ------------------------------------------------------------ security events

    # ------------------------------------------------------------------- status

    def protocol_status(self) -> dict[str, Any]:
        """The 2.0.1 state for ``cpagent status``: each running transaction with its id and
        the seqNo of its next event."""
        transactions = []
        if self.station is not None:
            for cid, c in self.station.connectors.items():
                tx = c.transaction
                known = self._transactions.get(tx.local_id) if tx is not None else None
                if tx is not None and known is not None:
                    transactions.append(
                        {
                            "evse_id": cid,
                            "transaction_id": known[0],
                            "next_seq_no": known[1],
                            "charging_state": self._charging_state.get(tx.local_id),
                        }
                    )
        return {"transactions": transactions}

    # ------------------------------------------ A, L, N01: security, firmware, logs
    # Set by the agent before the session starts.

    security: ConnectionSecurity | None = None
    firmware: FirmwareUpdater | None = None
    diagnostics: DiagnosticsUploader | None = None

    async def firmware_status(
        self, status: str, request_id: int | None = None, detail: str | None = None
    ) -> None:
        """Queue a FirmwareStatusNotification durably (L01, L02): an update is reported at
        every step, also across an outage or the restart an installer causes. An installed
        firmware and a signature that does not verify are security events too."""
        await self._queue_durably(
            "FirmwareStatusNotification", messages.firmware_status(status, request_id)
        )
        if status == "Installed":
            await self.security_event(SecurityEventType.FIRMWARE_UPDATED)
        elif status == "InvalidSignature":
            await self.security_event(SecurityEventType.INVALID_FIRMWARE_SIGNATURE, detail)

    async def log_status(self, status: str, request_id: int) -> None:
        """Queue a LogStatusNotification (N01) durably, like the firmware statuses."""
        await self._queue_durably("LogStatusNotification", messages.log_status(status, request_id))

    async def diagnostics_status(self, status: str) -> None:
        """1.6's GetDiagnostics has no 2.0.1 counterpart: every upload here is a GetLog."""
        log.debug("diagnostics status %s (no 2.0.1 message)", status)

    def current_firmware_status(self) -> dict[str, Any]:
        """FirmwareStatusNotification as things stand (F06): the update's status and
        requestId, Idle without one when none runs."""
        firmware = self.firmware
        job = firmware.job if firmware is not None else None
        if firmware is None or job is None:
            return messages.firmware_status("Idle")
        return messages.firmware_status(str(firmware.status), job.request_id)

    def current_log_status(self) -> dict[str, Any]:
        """LogStatusNotification as things stand (F06): Uploading with the GetLog's
        requestId, Idle without one when none runs."""
        diagnostics = self.diagnostics
        request_id = diagnostics.request_id if diagnostics is not None else None
        if request_id is None:
            return messages.log_status("Idle")
        return messages.log_status("Uploading", request_id)

    async def sign_certificate(self) -> None:
        """SignCertificate for a new charging station certificate (A02, TriggerMessage),
        repeated while no CertificateSigned comes."""
        cp = self.cp
        if cp is not None:
            self.renewals().start(cp)

    def renewals(self) -> Renewals:
        """The certificate renewal in progress (made on first use)."""
        from cpagent.protocol.v201.certificate_renewal import Renewals

        if self._renewals is None:
            self._renewals = Renewals(self)
        return self._renewals

    _renewals: Renewals | None = None

    async def certificate_check_loop(self, cp: Caller) -> None:
        """The daily certificate check of a connection (A03)."""
        from cpagent.protocol.v201 import certificate_renewal

        await certificate_renewal.check_loop(self, cp)
