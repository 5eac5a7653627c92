"""The OCPP 1.6 side of the station: outgoing messages, authorization, configuration keys.

The adapter outlives connections. It keeps the ordered outgoing pipeline —
durable rows from the store for money-bearing messages, volatile entries for
status — and, while a connection is up and the CSMS has accepted the boot,
feeds it one CALL at a time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError

from cpagent import __version__
from cpagent.config import Config
from cpagent.exc import StoreError
from cpagent.protocol.delivery import Outgoing
from cpagent.protocol.link import CsmsLink
from cpagent.protocol.ocppj import MessageType
from cpagent.protocol.rpc import ConnectionLost
from cpagent.protocol.v16 import cistring, messages, schemas
from cpagent.protocol.v16.config_keys import ConfigurationKeys
from cpagent.security.connection import CERTS_DIR
from cpagent.security.events import SecurityEventType
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    MeterSample,
    StationSettings,
    StatusChanged,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
)
from cpagent.station.smart_charging import (
    SmartChargingLimits,
    parse_allowed_units,
)
from cpagent.store import AuthCacheRow, Message, OutboxRow, Store, TransactionRow
from cpagent.systemd import journal_fields
from cpagent.timeutil import expired, iso, now_iso, utcnow

if TYPE_CHECKING:
    from cpagent.protocol.v16.charge_point import ChargePoint
    from cpagent.security.connection import ConnectionSecurity
    from cpagent.station.firmware import FirmwareUpdater
    from cpagent.station.station import Station
    from cpagent.updates import DiagnosticsUploader

log = logging.getLogger(__name__)

LocalListEntry = tuple[str, AuthCacheRow | None]
"""One AuthorizationData of a SendLocalList: the id tag and its entry, None to remove it."""


def _decision(info: dict[str, Any]) -> AuthDecision:
    """The CSMS's IdTagInfo as a decision."""
    return AuthDecision(AuthStatus(info["status"]), info.get("parentIdTag"))


CERTIFICATE_CHECK_S = 24 * 3600.0
CERTIFICATE_RENEW_BEFORE = timedelta(days=30)
"""A charge point certificate is renewed (SignCertificate) this long before it expires."""

PROTOCOL = "1.6"
"""The version the outbox rows this adapter queues are marked with."""


def settings_from_keys(keys: ConfigurationKeys, settings: StationSettings) -> None:
    """Copy the keys the station acts on into its settings (called on every change)."""
    settings.connection_timeout_s = keys.get_int("ConnectionTimeOut")
    settings.meter_value_sample_interval_s = keys.get_int("MeterValueSampleInterval")
    settings.sampled_measurands = tuple(keys.get_list("MeterValuesSampledData"))
    settings.clock_aligned_interval_s = keys.get_int("ClockAlignedDataInterval")
    settings.aligned_measurands = tuple(keys.get_list("MeterValuesAlignedData"))
    settings.stop_txn_sampled_measurands = tuple(keys.get_list("StopTxnSampledData"))
    settings.stop_txn_aligned_measurands = tuple(keys.get_list("StopTxnAlignedData"))
    settings.stop_on_ev_side_disconnect = keys.get_bool("StopTransactionOnEVSideDisconnect")
    settings.unlock_on_ev_side_disconnect = keys.get_bool("UnlockConnectorOnEVSideDisconnect")
    settings.authorize_remote_tx_requests = keys.get_bool("AuthorizeRemoteTxRequests")
    settings.stop_on_invalid_id = keys.get_bool("StopTransactionOnInvalidId")
    settings.max_energy_on_invalid_wh = keys.get_int("MaxEnergyOnInvalidId")
    settings.reserve_connector_zero_supported = keys.get_bool("ReserveConnectorZeroSupported")
    settings.smart_charging = SmartChargingLimits(
        max_stack_level=keys.get_int("ChargeProfileMaxStackLevel"),
        max_periods=keys.get_int("ChargingScheduleMaxPeriods"),
        allowed_units=parse_allowed_units(
            keys.get("ChargingScheduleAllowedChargingRateUnit") or ""
        ),
        max_profiles=keys.get_int("MaxChargingProfilesInstalled"),
    )


class V16Adapter(CsmsLink):
    """Implements the station's output and authorizer ports for OCPP 1.6."""

    PROTOCOL = PROTOCOL
    cp: ChargePoint | None

    def __init__(
        self,
        config: Config,
        store: Store,
        keys: ConfigurationKeys,
        *,
        meter_type: str,
        request_reset: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        super().__init__(config, store, self)
        self.keys = keys
        self.meter_type = meter_type
        self.request_reset = request_reset
        self.station: Station | None = None
        self.firmware: FirmwareUpdater | None = None
        self.diagnostics: DiagnosticsUploader | None = None
        self.security: ConnectionSecurity | None = None
        self._connection_ready = False
        self._transaction_ids: dict[int, int] = {}  # local id -> CSMS transactionId
        keys.subscribe(self._key_changed)

    def _key_changed(self, name: str, _value: str) -> None:
        if name == "HeartbeatInterval":
            self.heartbeat_changes.notify()
        elif name == "TransactionMessageRetryInterval":
            self.delivery.wake.notify()

    def attach(self, station: Station) -> None:
        self.station = station

    def _append(self, item: Outgoing) -> None:
        self.delivery.append(item)

    # ---------------------------------------------------------- station output

    async def transaction_started(self, event: TransactionStarted) -> int:
        # 1.6 transactions begin at PowerPathClosed: always with their id tag.
        assert event.id_token is not None
        payload = messages.start_transaction(event)
        tx, row = await self.store.run(
            self.store.start_transaction,
            connector_id=event.connector_id,
            id_tag=event.id_token,
            meter_start_wh=event.meter_start_wh,
            started_at=event.timestamp,
            reservation_id=event.reservation_id,
            message=("StartTransaction", payload),
            data=(
                messages.meter_value(event.timestamp, event.begin_values)
                if event.begin_values
                else None
            ),
        )
        assert row is not None
        self._append(Outgoing(row.action, row.payload, row))
        return tx.local_id

    async def transaction_authorized(self, event: TransactionAuthorized) -> None:
        """Never asked in 1.6: its transactions begin authorized (no TxStartPoint)."""
        raise StoreError("OCPP 1.6 has no transaction begun before its authorization")

    async def transaction_deauthorized(self, event: TransactionDeauthorized) -> None:
        """Never asked in 1.6: Authorized is always a stop point there."""
        raise StoreError("OCPP 1.6 ends a transaction with its authorization")

    async def transaction_stopped(self, event: TransactionStopped) -> None:
        tx = await self.store.run(self.store.get_transaction, event.local_id)
        if tx is not None and tx.protocol != PROTOCOL:
            await self._stop_in_other_version(event, tx)
            return
        data = await self.store.run(self.store.transaction_data, event.local_id)
        row = await self._record_stop(
            event, ("StopTransaction", messages.stop_transaction(event, data))
        )
        self._append(Outgoing(row.action, row.payload, row))

    async def _record_stop(self, event: TransactionStopped, message: Message) -> OutboxRow:
        """End the session in the store and queue ``message`` with it, in one commit."""
        _, row = await self.store.run(
            self.store.stop_transaction,
            event.local_id,
            meter_stop_wh=event.meter_stop_wh,
            stopped_at=event.timestamp,
            reason=str(event.reason),
            stop_id_tag=event.id_token,
            message=message,
        )
        assert row is not None
        return row

    async def _stop_in_other_version(self, event: TransactionStopped, tx: TransactionRow) -> None:
        """A session a 2.0.1 agent started, closed after the switch to 1.6 (the agent died
        during it): its Ended TransactionEvent is queued in 2.0.1, numbered after the events
        already queued, for the 2.0.1 CSMS that knows the transaction."""
        from cpagent.protocol.v201.adapter import ended_event

        assert tx.ocpp_transaction_id is not None
        data = await self.store.run(self.store.transaction_data, event.local_id)
        make = ended_event(event, tx.ocpp_transaction_id, data, charging_state="Idle", offline=True)
        row = await self._record_stop(event, make)
        log.warning(
            "session %d was started in OCPP %s: its Ended event is kept for OCPP %s",
            event.local_id,
            tx.protocol,
            tx.protocol,
        )
        self.delivery.held[row.protocol] = self.delivery.held.get(row.protocol, 0) + 1

    async def meter_values(self, sample: MeterSample) -> None:
        payload = messages.meter_values(sample) if sample.values else None
        if sample.tx_local_id is None:
            if payload is not None and self._connection_ready:
                self._append(Outgoing("MeterValues", payload))
            return
        data = (
            messages.meter_value(sample.timestamp, sample.stop_values)
            if sample.stop_values
            else None
        )
        row = await self.store.run(
            self.store.record_meter,
            sample.tx_local_id,
            sample.meter_wh,
            sample.timestamp,
            ("MeterValues", payload) if payload is not None else None,
            data,
        )
        if row is not None:
            self._append(Outgoing(row.action, row.payload, row))

    async def availability_changed(self, connector_id: int, operative: bool) -> None:
        await self.store.run(
            self.store.set_state, f"availability.{connector_id}", "1" if operative else "0"
        )

    def status_changed(self, event: StatusChanged) -> None:
        if self._connection_ready:
            self._append(Outgoing("StatusNotification", messages.status_notification(event)))

    # ---------------------------------------------------------------- authorizer

    async def authorize(self, id_tag: str) -> AuthDecision:
        """Decide whether ``id_tag`` may charge (OCPP 1.6 §3.5, §4.1).

        What the charge point knows locally comes from the local authorization list (while
        LocalAuthListEnabled) and, only for a tag not on it, from the authorization cache:
        the list has priority (§3.5.3). With LocalPreAuthorize a locally Accepted tag starts
        at once, without an Authorize. Any other tag is put to the CSMS when it can be
        reached, and its answer wins, also over a local entry that is not Accepted (that
        entry may be stale; §4.1 lets the charge point ask about a known tag). Without an
        answer the offline rules of :meth:`_offline_decision` decide.
        """
        known, source = await self._known(id_tag)
        if known is not None and known.accepted and self.keys.get_bool("LocalPreAuthorize"):
            log.info("%s Accepted from the %s (LocalPreAuthorize)", id_tag, source)
            return known
        cp = self.cp
        if cp is not None and self.registered:
            try:
                result = await cp.call_payload("Authorize", {"idTag": id_tag})
            except (OCPPError, TimeoutError, ConnectionLost) as err:
                log.warning(
                    "Authorize for %s got no answer (%s); deciding offline",
                    id_tag,
                    err,
                    extra=journal_fields(action="Authorize"),
                )
            else:
                decision = await self._remember(id_tag, result["idTagInfo"])
                return decision
        return self._offline_decision(id_tag, known, source)

    def _offline_decision(
        self, id_tag: str, known: AuthDecision | None, source: str
    ) -> AuthDecision:
        """With LocalAuthorizeOffline, a tag on the local list or in the cache gets its entry's
        status, so a listed tag that is not Accepted is refused; a tag known to neither
        starts only with AllowOfflineTxForUnknownId (§3.5.4)."""
        if known is not None and self.keys.get_bool("LocalAuthorizeOffline"):
            log.info("offline: %s %s from the %s", id_tag, known.status, source)
            return known
        if known is None and self.keys.get_bool("AllowOfflineTxForUnknownId"):
            log.info("offline: unknown id tag %s allowed (AllowOfflineTxForUnknownId)", id_tag)
            return AuthDecision(AuthStatus.ACCEPTED)
        return AuthDecision(AuthStatus.INVALID)

    async def _known(self, id_tag: str) -> tuple[AuthDecision | None, str]:
        """The local decision for ``id_tag`` and where it came from (for the log)."""
        listed = await self._listed(id_tag)
        if listed is not None:
            return listed, "local authorization list"
        return await self._cached(id_tag), "authorization cache"

    async def _listed(self, id_tag: str) -> AuthDecision | None:
        """The local list's decision, None when the tag is not listed or the list is off.

        ConcurrentTx counts as Accepted here: on the list it marks a valid identifier
        (§3.5.2), not one that is busy elsewhere. An entry past its expiryDate is Expired.
        """
        if not self.keys.get_bool("LocalAuthListEnabled"):
            return None
        row = await self.store.run(self.store.local_list_get, id_tag)
        if row is None:
            return None
        status = AuthStatus(row.status)
        if status is AuthStatus.CONCURRENT_TX:
            status = AuthStatus.ACCEPTED
        if expired(row.expiry):
            status = AuthStatus.EXPIRED
        return AuthDecision(status, row.parent_id_tag)

    async def _cached(self, id_tag: str) -> AuthDecision | None:
        if not self.keys.get_bool("AuthorizationCacheEnabled"):
            return None
        row = await self.store.run(self.store.cache_get, id_tag)
        if row is None:
            return None
        status = AuthStatus(row.status)
        if expired(row.expiry):
            status = AuthStatus.EXPIRED
        return AuthDecision(status, row.parent_id_tag)

    async def _remember(self, id_tag: str, info: dict[str, Any]) -> AuthDecision:
        """The CSMS's IdTagInfo as a decision, cached unless the tag is on the local list.

        A listed tag is never cached (§3.5.3: listed identifiers SHALL NOT be added to the
        cache). When the CSMS's answer and the list disagree on whether the tag may charge,
        the CSMS hears of it (:meth:`_local_list_conflict`); the list itself stays as the
        CSMS last sent it (§3.5.2: only SendLocalList changes it).

        An IdTagInfo without parentIdTag (StartTransaction.conf and StopTransaction.conf
        often have none) says nothing of the tag's group: the group known from the list,
        else from the cache, stays the tag's, in the decision and in the cache. Forgetting
        it would keep another card of the group from stopping the tag's session (§3.5.3,
        §5.11) and from using a reservation of the group offline.
        """
        listed = await self._listed(id_tag)
        parent = info.get("parentIdTag")
        if parent is None:
            known = listed if listed is not None else await self._cached(id_tag)
            parent = None if known is None else known.group_token
        decision = AuthDecision(AuthStatus(info["status"]), parent)
        if listed is not None:
            if listed.accepted != decision.accepted:
                self._local_list_conflict(id_tag, listed, decision)
        elif self.keys.get_bool("AuthorizationCacheEnabled"):
            await self.store.run(
                self.store.cache_put,
                AuthCacheRow(id_tag, info["status"], info.get("expiryDate"), parent),
                unless_listed=self.keys.get_bool("LocalAuthListEnabled"),
            )
        return decision

    def _local_list_conflict(self, id_tag: str, listed: AuthDecision, csms: AuthDecision) -> None:
        """Report a conflict between the local list and the CSMS, as §3.5.2 requires: a
        StatusNotification for connector 0 with errorCode LocalListConflict and the charge
        point's current status, the id tag and its listed status in ``info``."""
        log.warning(
            "local list conflict: %s is %s on the list but %s by the CSMS",
            id_tag,
            listed.status,
            csms.status,
        )
        if not self._connection_ready or self.station is None:
            return
        status = self.station.charger.status
        payload = {
            "connectorId": 0,
            "errorCode": "LocalListConflict",
            "status": str(status) if status is not None else "Available",
            "timestamp": now_iso(),
            "info": f"{id_tag} listed {listed.status}"[:50],
        }
        self._append(Outgoing("StatusNotification", payload))

    # ----------------------------------------------------- local authorization list

    async def local_list_version(self) -> int:
        """GetLocalListVersion's answer (OCPP 1.6 §5.10).

        -1 while LocalAuthListEnabled is false: the list then takes no part in
        authorization, which to the CSMS is the same as no list support. 0 for an empty
        list, whatever version the update that emptied it carried, since §5.10 reserves 0
        for "the list is empty" (the compliance test TC_042_2_CS expects 0 after a Full
        update at version 1 without entries). Otherwise the version of the last accepted
        update.
        """
        if not self.keys.get_bool("LocalAuthListEnabled"):
            return -1
        version, size = await self.store.run(self.store.local_list_state)
        return version if size else 0

    async def update_local_list(
        self, version: int, update_type: str, entries: list[LocalListEntry]
    ) -> str:
        """Apply a SendLocalList (OCPP 1.6 §5.15) and return its UpdateStatus.

        NotSupported while LocalAuthListEnabled is false, which leaves the stored list as it
        was for when it is enabled again. Failed, changing nothing, for a request that
        :meth:`_local_list_problem` refuses or a resulting list longer than
        LocalAuthListMaxLength. VersionMismatch for a Differential whose version is not
        above the current one as GetLocalListVersion reports it. Otherwise Accepted: a Full
        update replaces the list, a Differential adds or replaces the entries with
        idTagInfo and removes those without, and the list takes the request's version (an
        empty Differential changes only the version). List and version change in one
        commit. CSMS requests are handled one at a time, so the version read for the check
        is still current when the update commits.
        """
        kind = f"{update_type} update to version {version}"
        if not self.keys.get_bool("LocalAuthListEnabled"):
            log.info("SendLocalList %s: NotSupported, LocalAuthListEnabled is false", kind)
            return "NotSupported"
        problem = self._local_list_problem(version, update_type, entries)
        if problem is None and update_type == "Differential":
            current = await self.local_list_version()
            if version <= current:
                log.warning("SendLocalList %s: VersionMismatch, the list is at %d", kind, current)
                return "VersionMismatch"
        if problem is None:
            max_size = self.keys.get_int("LocalAuthListMaxLength")
            added = [row for _, row in entries if row is not None]
            removed = [tag for tag, row in entries if row is None]
            if update_type == "Full":
                call = functools.partial(self.store.local_list_replace, version, added)
            else:
                call = functools.partial(self.store.local_list_update, version, added, removed)
            if not await self.store.run(call, max_size=max_size):
                problem = f"the list would hold more than {max_size} entries"
        if problem is not None:
            log.warning("SendLocalList %s: Failed, %s", kind, problem)
            return "Failed"
        log.info("SendLocalList %s with %d entries: Accepted", kind, len(entries))
        return "Accepted"

    def _local_list_problem(
        self, version: int, update_type: str, entries: list[LocalListEntry]
    ) -> str | None:
        """Why a SendLocalList must fail whatever the stored list holds; else None.

        More entries than SendLocalListMaxLength; an id tag twice (compared
        case-insensitively, §5.15: "no duplicate values are allowed"); a Full entry
        without idTagInfo (AuthorizationData requires it there); a non-empty Full list
        with a version below 1, which GetLocalListVersion could not report (0 means empty,
        -1 no list). An expiryDate that is no RFC 3339 date-time never gets here: the
        request is refused as malformed, like any other date-time a CSMS gets wrong.
        """
        limit = self.keys.get_int("SendLocalListMaxLength")
        if len(entries) > limit:
            return f"{len(entries)} entries, SendLocalListMaxLength is {limit}"
        seen: set[str] = set()
        for tag, _ in entries:
            if cistring.fold(tag) in seen:
                return f"id tag {tag} appears twice"
            seen.add(cistring.fold(tag))
        if update_type == "Full":
            missing = [tag for tag, row in entries if row is None]
            if missing:
                return f"Full update entry {missing[0]} has no idTagInfo"
            if entries and version < 1:
                return "a non-empty list needs a version of at least 1"
        return None

    # ------------------------------------------------------------ connection life

    def boot_payload(self) -> dict[str, Any]:
        cp = self.config.charge_point
        return messages.boot_notification(
            vendor=cp.vendor,
            model=cp.model,
            firmware_version=cp.firmware_version or __version__,
            serial_number=cp.serial_number,
            meter_type=self.meter_type,
        )

    def heartbeat_interval(self) -> int:
        return self.keys.get_int("HeartbeatInterval")

    def set_heartbeat_interval(self, seconds: int) -> None:
        self.keys.set_runtime("HeartbeatInterval", str(seconds))

    async def serve(self, cp: ChargePoint, established: Callable[[], None] = lambda: None) -> None:
        """Drive one connection: boot until accepted, then statuses, queue and heartbeats.

        ``established()`` is called once the CSMS has accepted the charge point (at once on
        a reconnect after that). Returns (or raises) when the connection ends; durable
        messages stay queued.
        """
        self.cp = cp
        self.connected_since = now_iso()
        try:
            await self._boot(cp)
            established()
            self._connection_ready = True
            assert self.station is not None
            self.station.resend_status()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.delivery.run(cp), name="ocpp-sender")
                tg.create_task(self._heartbeat_loop(cp), name="ocpp-heartbeat")
                tg.create_task(self._certificate_check_loop(cp), name="certificate-check")
        finally:
            self.cp = None
            self.connected_since = None
            self._connection_ready = False
            self.delivery.drop_volatile()

    async def _certificate_check_loop(self, cp: ChargePoint) -> None:
        """Daily while connected: warn of installed certificates near their end and, on
        security profile 3, ask for a new charge point certificate (SignCertificate)
        :data:`CERTIFICATE_RENEW_BEFORE` before the current one expires. Nothing is read
        while the agent holds no certificate at all."""
        while True:
            security = self.security
            if security is not None and (self.config.storage.data_dir / CERTS_DIR).exists():
                try:
                    await self._check_certificates(cp, security)
                except (OCPPError, TimeoutError, ConnectionLost) as err:
                    log.warning("certificate renewal request failed: %s", err)
                except Exception as err:  # noqa: BLE001 - a bad store must not end the link
                    log.error("certificate check failed: %r", err)
            await asyncio.sleep(CERTIFICATE_CHECK_S)

    async def _check_certificates(self, cp: ChargePoint, security: ConnectionSecurity) -> None:
        store = security.certificates()
        ending = await asyncio.to_thread(store.expiring, utcnow(), CERTIFICATE_RENEW_BEFORE)
        for name, not_after in ending:
            log.warning("certificate %s expires %s", name, iso(not_after))
        if security.profile == 3 and any(
            name.startswith("ChargePointCertificate ") for name, _ in ending
        ):
            log.info("asking the CSMS for a new charge point certificate")
            await cp.sign_certificate()

    # ------------------------------------------------------ delivery policy (1.6)

    def attempts(self) -> int:
        return self.keys.get_int("TransactionMessageAttempts")

    def retry_interval(self) -> int:
        return self.keys.get_int("TransactionMessageRetryInterval")

    def validate_result(self, action: str, payload: dict[str, Any]) -> None:
        schemas.validate(MessageType.CallResult, action, payload)

    async def final_payload(self, item: Outgoing) -> dict[str, Any] | None:
        """Fill in the CSMS transaction id, which may have been unknown when queued.

        Returns None (and sets the message aside) when the session's StartTransaction was
        refused for good, so that no id can ever be known.
        """
        row = item.row
        if row is None or row.tx_local_id is None or item.action == "StartTransaction":
            return item.payload
        transaction_id = self._transaction_ids.get(row.tx_local_id)
        if transaction_id is None:
            tx = await self.store.run(self.store.get_transaction, row.tx_local_id)
            transaction_id = tx.transaction_id if tx is not None else None
        if transaction_id is not None:
            self._transaction_ids[row.tx_local_id] = transaction_id
            return {"transactionId": transaction_id, **item.payload}
        await self.delivery.set_aside(
            item, "its StartTransaction was refused, so it has no transactionId"
        )
        return None

    async def delivered(self, item: Outgoing, result: dict[str, Any]) -> None:
        row = item.row
        payload = item.payload
        assert row is not None
        if item.action == "StartTransaction" and row.tx_local_id is not None:
            await self._transaction_accepted(row, result)
        elif item.action == "StopTransaction" and "idTagInfo" in result and "idTag" in payload:
            await self._remember(payload["idTag"], result["idTagInfo"])

    def on_result(self, item: Outgoing) -> Callable[[dict[str, Any]], None] | None:
        """What must happen as soon as the answer to ``item`` is read (see
        :meth:`ChargePoint.call_payload`): a StartTransaction's id becomes known."""
        row = item.row
        if item.action != "StartTransaction" or row is None or row.tx_local_id is None:
            return None
        return functools.partial(self._transaction_id_known, row)

    def _transaction_id_known(self, row: OutboxRow, result: dict[str, Any]) -> None:
        """Give the station the CSMS's transactionId (OCPP 1.6 §5.12: from then on the
        transaction is ongoing for a RemoteStopTransaction), once per id. Called as the
        answer is read, ahead of its disk write in :meth:`_transaction_accepted`; a crash
        in between sends the StartTransaction again, as for any unrecorded answer."""
        assert row.tx_local_id is not None
        transaction_id = int(result["transactionId"])
        if self._transaction_ids.get(row.tx_local_id) == transaction_id:
            return
        self._transaction_ids[row.tx_local_id] = transaction_id
        if self.station is not None:
            decision = _decision(result["idTagInfo"])
            self.station.transaction_confirmed(row.tx_local_id, transaction_id, decision)

    async def _transaction_accepted(self, row: OutboxRow, result: dict[str, Any]) -> None:
        assert row.tx_local_id is not None
        transaction_id = int(result["transactionId"])
        await self.store.run(self.store.set_transaction_id, row.tx_local_id, transaction_id)
        self._transaction_id_known(row, result)
        decision = await self._remember(row.payload["idTag"], result["idTagInfo"])
        log.info(
            "StartTransaction %d confirmed: transactionId %d (%s)",
            row.tx_local_id,
            transaction_id,
            decision.status,
            extra=journal_fields(
                action="StartTransaction",
                message_id=row.message_id,
                local_transaction_id=row.tx_local_id,
                transaction_id=transaction_id,
                connector=row.payload.get("connectorId"),
            ),
        )

    async def firmware_status(
        self, status: str, request_id: int | None = None, detail: str | None = None
    ) -> None:
        """Queue a FirmwareStatusNotification durably: an update is reported at every step,
        also across an outage or the restart an installer causes. A signed update
        (``request_id``) is reported as SignedFirmwareStatusNotification; an installed
        firmware and a signature that does not verify are security events too."""
        payload: dict[str, Any] = {"status": status}
        action = "FirmwareStatusNotification"
        if request_id is not None:
            action = "SignedFirmwareStatusNotification"
            payload["requestId"] = request_id
        await self._queue_durably(action, payload)
        if status == "Installed":
            await self.security_event(SecurityEventType.FIRMWARE_UPDATED)
        elif status == "InvalidSignature":
            await self.security_event(SecurityEventType.INVALID_FIRMWARE_SIGNATURE, detail)

    async def log_status(self, status: str, request_id: int) -> None:
        """Queue a LogStatusNotification (GetLog) durably, like the diagnostics statuses."""
        await self._queue_durably(
            "LogStatusNotification", {"status": status, "requestId": request_id}
        )

    async def diagnostics_status(self, status: str) -> None:
        """Queue a DiagnosticsStatusNotification durably, like the firmware statuses."""
        await self._queue_durably("DiagnosticsStatusNotification", {"status": status})
