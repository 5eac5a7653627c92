"""OCPP 1.6J charge point: CSMS requests translated into station commands.

On the shared OCPP-J endpoint (:mod:`cpagent.protocol.rpc`) with the ``ocpp`` library's
routing of actions to handlers and its answers' field names (:mod:`.call_result`), with the
message intake replaced: every frame is bounded and read by :mod:`.intake`, a request is
checked against its schema and then for what its handler could not use, and whatever is
refused gets the CALLERROR OCPP-J 1.6 wants instead of a log line; responses nobody waits
for are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OCPPError,
)
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.routing import on

from cpagent import __version__
from cpagent.protocol.rpc import RpcEndpoint
from cpagent.protocol.v16 import call_result, cistring, schemas
from cpagent.protocol.v16.actions import Action
from cpagent.protocol.v16.adapter import LocalListEntry, V16Adapter
from cpagent.protocol.v16.intake import check_request
from cpagent.security.events import SecurityEventType
from cpagent.station.firmware import FirmwareJob
from cpagent.station.model import Reservation
from cpagent.station.smart_charging import (
    ChargingProfile,
    Purpose,
    Unit,
    parse_profile,
    schedule_to_ocpp,
)
from cpagent.store import AuthCacheRow
from cpagent.systemd import journal_fields
from cpagent.timeutil import iso, parse_iso, utcnow
from cpagent.updates import DiagnosticsRequest

if TYPE_CHECKING:
    from cpagent.security.pki import CertificateStore
    from cpagent.station.station import Station

log = logging.getLogger(__name__)

TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)
"""Every TriggerMessage target of OCPP 1.6."""
EXTENDED_TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "SignChargePointCertificate",
        "StatusNotification",
    }
)
"""Every ExtendedTriggerMessage target of the security extension."""
VENDOR_ID = "cpagent"
DEFAULT_TRANSFER_RETRIES = 3
"""UpdateFirmware and GetDiagnostics without ``retries`` leave the count to the charge point."""
DEFAULT_RETRY_INTERVAL_S = 60
_CLOSED = object()
"""Put in the response queue when the connection ends under a CALL waiting for its answer."""


def _unhandled_action(action: Any) -> OCPPError:
    """The CALLERROR for a CALL without a handler, as OCPP-J 1.6 §4.2.3 defines the codes:
    NotImplemented when the action is not known at all, NotSupported when it is a known
    OCPP 1.6 action this charge point does not support. (The ``ocpp`` library swaps them.)"""
    try:
        Action(action)
    except ValueError:
        return OcppNotImplementedError(description=f"unknown action {action!r}")
    return NotSupportedError(description=f"{action} is not supported by this charge point")


def _security_fields() -> dict[str, Any]:
    return journal_fields(action="SecurityEventNotification")


class ChargePoint(RpcEndpoint):
    def __init__(
        self,
        cp_id: str,
        connection: Any,
        adapter: V16Adapter,
        *,
        response_timeout: float,
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.adapter = adapter

    def _validate(self, message_type_id: int, action: str, payload: dict[str, Any]) -> None:
        schemas.validate(message_type_id, action, payload)

    def _check_request(self, action: str, payload: dict[str, Any]) -> None:
        check_request(action, payload)

    def _unhandled_action(self, action: Any) -> OCPPError:
        return _unhandled_action(action)

    def _code(self, error: OCPPError) -> str:
        """The error's code as OCPP-J 1.6 spells it."""
        if isinstance(error, FormatViolationError):
            return str(FormationViolationError.code)
        return str(error.code)

    def _late_answer(self, unique_id: str, payload: dict[str, Any]) -> bool:
        return self.adapter.accept_late_answer(unique_id, payload)

    @property
    def station(self) -> Station:
        assert self.adapter.station is not None
        return self.adapter.station

    # ----------------------------------------------------------------- handlers

    @on(Action.remote_start_transaction)
    async def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> call_result.RemoteStartTransaction:
        if self._pending_registration("RemoteStartTransaction"):
            return call_result.RemoteStartTransaction(status="Rejected")
        profile: ChargingProfile | None = None
        if charging_profile is not None:
            profile = parse_profile(charging_profile)  # checked by check_request
        ok = connector_id != 0 and await self.station.remote_start(id_tag, connector_id, profile)
        return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        if self._pending_registration("RemoteStopTransaction"):
            return call_result.RemoteStopTransaction(status="Rejected")
        ok = await self.station.remote_stop(transaction_id)
        return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    def _pending_registration(self, action: str) -> bool:
        """Whether ``action`` must be Rejected because the CSMS has not accepted the charge
        point: OCPP 1.6 §4.2 does not allow remote starts and stops in the pending state,
        where the charge point may send no transaction message of its own."""
        if self.adapter.accepted:
            return False
        log.warning(
            "%s Rejected: registration is %s, not Accepted",
            action,
            self.adapter.registration or "not answered yet",
            extra=journal_fields(action=action),
        )
        return True

    @on(Action.reset)
    async def on_reset(self, type: str) -> call_result.Reset:
        self._after(lambda: self.adapter.request_reset(type))
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    async def on_change_availability(
        self, connector_id: int, type: str
    ) -> call_result.ChangeAvailability:
        status = await self.station.change_availability(connector_id, type == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on(Action.get_configuration)
    async def on_get_configuration(self, key: list[str] | None = None) -> dict[str, Any]:
        """The wire payload itself: this answer (every key, some 50 of them) is the largest
        a CSMS asks for often, and a ``call_result`` dataclass would be converted key by
        key."""
        keys = self.adapter.keys
        max_keys = keys.get_int("GetConfigurationMaxKeys")
        if key and len(key) > max_keys:
            raise OccurenceConstraintViolationError(
                description=f"at most {max_keys} keys per GetConfiguration"
            )
        known = []
        listed, unknown = keys.report(key)
        for spec, value in listed:
            entry: dict[str, Any] = {"key": spec.name, "readonly": not spec.writable}
            if value is not None:
                entry["value"] = value[:500]
            known.append(entry)
        answer: dict[str, Any] = {}
        if known:
            answer["configurationKey"] = known
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    @on(Action.change_configuration)
    async def on_change_configuration(
        self, key: str, value: str
    ) -> call_result.ChangeConfiguration:
        keys = self.adapter.keys
        security = self.adapter.security
        spec = keys.spec(key)
        key = spec.name if spec is not None else key  # a CiString: the spec's spelling
        status, canonical = keys.check_change(key, value)
        if status == "Accepted" and security is not None:
            reason = await asyncio.to_thread(security.vet, key, canonical)
            if reason is not None:
                status, canonical = "Rejected", reason
        shown = "***" if spec is not None and spec.secret else repr(value)
        if status == "Accepted":
            previous = keys.get(key)
            await self.adapter.store.run(self.adapter.store.set_config_key, key, canonical)
            keys.apply(key, canonical)
            log.info(
                "configuration %s changed to %s by the CSMS",
                key,
                shown,
                extra=journal_fields(action="ChangeConfiguration"),
            )
            if security is not None and previous != canonical:
                self._after(lambda: self._security_changed(key, previous))
        else:
            log.info(
                "configuration change %s=%s: %s (%s)",
                key,
                shown,
                status,
                canonical,
                extra=journal_fields(action="ChangeConfiguration"),
            )
        return call_result.ChangeConfiguration(status=status)

    async def _security_changed(self, key: str, previous: str | None) -> None:
        assert self.adapter.security is not None
        self.adapter.security.changing(key, previous)

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, connector_id: int) -> call_result.UnlockConnector:
        status = await self.station.unlock(connector_id)
        return call_result.UnlockConnector(status=status)

    @on(Action.clear_cache)
    async def on_clear_cache(self) -> call_result.ClearCache:
        await self.adapter.store.run(self.adapter.store.cache_clear)
        return call_result.ClearCache(status="Accepted")

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(list_version=await self.adapter.local_list_version())

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
    ) -> call_result.SendLocalList:
        entries: list[LocalListEntry] = []
        for item in local_authorization_list or []:
            id_tag: str = item["id_tag"]
            info: dict[str, Any] | None = item.get("id_tag_info")
            row = None
            if info is not None:
                row = AuthCacheRow(
                    id_tag, info["status"], info.get("expiry_date"), info.get("parent_id_tag")
                )
            entries.append((id_tag, row))
        status = await self.adapter.update_local_list(list_version, update_type, entries)
        return call_result.SendLocalList(status=status)

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> call_result.DataTransfer:
        if cistring.fold(vendor_id) != VENDOR_ID:
            log.info("DataTransfer for vendor %s: UnknownVendorId", vendor_id)
            return call_result.DataTransfer(status="UnknownVendorId")
        if message_id is not None and cistring.fold(message_id) == "version":
            return call_result.DataTransfer(status="Accepted", data=__version__)
        return call_result.DataTransfer(status="UnknownMessageId")

    @on(Action.update_firmware)
    async def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.UpdateFirmware:
        firmware = self.adapter.firmware
        assert firmware is not None  # set before the session starts
        job = FirmwareJob(
            location=location,
            retrieve_at=parse_iso(retrieve_date).timestamp(),  # checked by check_request
            retries=DEFAULT_TRANSFER_RETRIES if retries is None else max(0, retries),
            retry_interval_s=float(
                DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
            ),
        )
        if await firmware.accept(job):  # on disk before the answer goes out
            self._after(firmware.begin)
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> call_result.GetDiagnostics:
        diagnostics = self.adapter.diagnostics
        assert diagnostics is not None  # set before the session starts
        start = parse_iso(start_time) if start_time else None  # checked by check_request
        stop = parse_iso(stop_time) if stop_time else None
        request = DiagnosticsRequest(
            location=location,
            retries=DEFAULT_TRANSFER_RETRIES if retries is None else max(0, retries),
            retry_interval_s=float(
                DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
            ),
            start=start,
            stop=stop,
        )
        name = diagnostics.request(request)
        if name is not None:
            self._after(diagnostics.begin)
        return call_result.GetDiagnostics(file_name=name)

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> call_result.ReserveNow:
        reservation = Reservation(
            reservation_id=reservation_id,
            connector_id=connector_id,
            id_token=id_tag,
            group_token=parent_id_tag,
            expiry=parse_iso(expiry_date),  # checked by check_request
        )
        outcome = await self.station.reserve(reservation)
        return call_result.ReserveNow(status=str(outcome))

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        ok = await self.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> call_result.SetChargingProfile:
        profile = parse_profile(cs_charging_profiles)  # checked by check_request
        rejection = await self.station.set_charging_profile(connector_id, profile)
        status = "Accepted" if rejection is None else "Rejected"
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> call_result.ClearChargingProfile:
        cleared = await self.station.clear_charging_profile(
            profile_id=id,
            connector_id=connector_id,
            purpose=None if charging_profile_purpose is None else Purpose(charging_profile_purpose),
            stack_level=stack_level,
        )
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> call_result.GetCompositeSchedule:
        allowed = self.station.settings.smart_charging.allowed_units
        unit: Unit = "W" if charging_rate_unit == "W" or allowed == {"W"} else "A"
        schedule = None
        if unit in allowed:
            schedule = self.station.composite_schedule(connector_id, duration, unit)
        if schedule is None:
            log.info(
                "GetCompositeSchedule for connector %d over %d s in %s: Rejected",
                connector_id,
                duration,
                unit,
                extra=journal_fields(action="GetCompositeSchedule", connector=connector_id),
            )
            return call_result.GetCompositeSchedule(status="Rejected")
        assert schedule.start_schedule is not None
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=iso(schedule.start_schedule),
            charging_schedule=schedule_to_ocpp(schedule),
        )

    # ------------------------------------------------- security extension (edition 3)
    # Its handlers import the certificate modules when first called: they load
    # cryptography, which a charger that never uses them need not hold in memory.

    def _certificates(self) -> CertificateStore:
        assert self.adapter.security is not None  # set before the session starts
        return self.adapter.security.certificates()

    @on(Action.install_certificate)
    async def on_install_certificate(
        self, certificate_type: str, certificate: str
    ) -> call_result.InstallCertificate:
        from cpagent.security.pki import CertificateUse  # cryptography only when used

        use = CertificateUse(certificate_type)  # the schema admits only the two uses
        status = await asyncio.to_thread(
            self._certificates().install_root, use, certificate, utcnow()
        )
        log.info("InstallCertificate %s: %s", use, status, extra=_security_fields())
        return call_result.InstallCertificate(status=status)

    @on(Action.delete_certificate)
    async def on_delete_certificate(
        self, certificate_hash_data: dict[str, Any]
    ) -> call_result.DeleteCertificate:
        from cpagent.security.pki import CertificateHashData

        wanted = CertificateHashData.from_ocpp(certificate_hash_data)
        assert self.adapter.security is not None  # set before the session starts
        status = await asyncio.to_thread(
            self._certificates().delete,
            wanted,
            still_verifies=self.adapter.security.still_verifies,
        )
        log.info("DeleteCertificate %s: %s", wanted.serial_number, status, extra=_security_fields())
        return call_result.DeleteCertificate(status=status)

    @on(Action.get_installed_certificate_ids)
    async def on_get_installed_certificate_ids(
        self, certificate_type: str
    ) -> call_result.GetInstalledCertificateIds:
        from cpagent.security.pki import CertificateUse

        use = CertificateUse(certificate_type)
        found = await asyncio.to_thread(self._certificates().installed_ids, use)
        if not found:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(
            status="Accepted", certificate_hash_data=[h.to_ocpp() for h in found]
        )

    @on(Action.certificate_signed)
    async def on_certificate_signed(self, certificate_chain: str) -> call_result.CertificateSigned:
        """Install the certificate our last CSR asked for; with security profile 3 the agent
        reconnects with it at once, and falls back to the previous one if it cannot."""
        from cpagent.security.pki import PkiError

        try:
            cert = await asyncio.to_thread(
                self._certificates().accept_signed,
                certificate_chain,
                utcnow(),
                common_name=self.adapter.config.charge_point.id,
            )
        except PkiError as err:
            log.warning("CertificateSigned refused: %s", err, extra=_security_fields())
            await self.adapter.security_event(
                SecurityEventType.INVALID_CHARGE_POINT_CERTIFICATE, f"{err.reason}: {err}"
            )
            return call_result.CertificateSigned(status="Rejected")
        log.info(
            "new charge point certificate installed, valid until %s",
            iso(cert.not_valid_after_utc),
            extra=_security_fields(),
        )
        security = self.adapter.security
        if security is not None and security.profile == 3:
            self._after(lambda: self._security_changed("ChargePointCertificate", None))
        return call_result.CertificateSigned(status="Accepted")

    async def sign_certificate(self) -> None:
        """SignCertificate: a CSR for a new key made on the board (ExtendedTriggerMessage,
        or the charge point certificate nearing its end). Not sent, with the reason in the
        log, when no key can be made (a PKCS#11 token that is missing or refuses the PIN)."""
        from cpagent.security.pki import PkiError

        adapter = self.adapter
        organization = adapter.keys.get("CpoName") or adapter.config.charge_point.vendor
        try:
            csr = await asyncio.to_thread(
                self._certificates().new_csr, adapter.config.charge_point.id, organization
            )
        except PkiError as err:
            log.error("no SignCertificate sent: %s", err, extra=_security_fields())
            return
        result = await self.call_payload("SignCertificate", {"csr": csr})
        log.info("SignCertificate: %s", result["status"], extra=_security_fields())

    @on(Action.signed_update_firmware)
    async def on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.SignedUpdateFirmware:
        from cpagent.security.firmware_signature import (
            FirmwareSignatureError,
            verify_with_manufacturer_roots,
        )

        updater = self.adapter.firmware
        assert updater is not None  # set before the session starts
        try:
            await asyncio.to_thread(
                verify_with_manufacturer_roots,
                self._certificates(),
                firmware["signing_certificate"],
                utcnow(),
            )
        except FirmwareSignatureError as err:
            log.warning("SignedUpdateFirmware %d refused: %s", request_id, err)
            await self.adapter.security_event(
                SecurityEventType.INVALID_FIRMWARE_SIGNING_CERTIFICATE, str(err)
            )
            return call_result.SignedUpdateFirmware(status="InvalidCertificate")
        job = FirmwareJob(
            location=firmware["location"],
            retrieve_at=parse_iso(firmware["retrieve_date_time"]).timestamp(),
            retries=DEFAULT_TRANSFER_RETRIES if retries is None else max(0, retries),
            retry_interval_s=float(
                DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
            ),
            request_id=request_id,
            signing_certificate=firmware["signing_certificate"],
            signature=firmware["signature"],
        )
        replacing = updater.job is not None
        if not await updater.accept(job):  # on disk before the answer goes out
            return call_result.SignedUpdateFirmware(status="Rejected")
        self._after(updater.begin)
        return call_result.SignedUpdateFirmware(
            status="AcceptedCanceled" if replacing else "Accepted"
        )

    @on(Action.get_log)
    async def on_get_log(
        self,
        log_type: str,
        request_id: int,
        log: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.GetLog:
        diagnostics = self.adapter.diagnostics
        assert diagnostics is not None  # set before the session starts
        oldest, latest = log.get("oldest_timestamp"), log.get("latest_timestamp")
        request = DiagnosticsRequest(
            location=log["remote_location"],
            retries=DEFAULT_TRANSFER_RETRIES if retries is None else max(0, retries),
            retry_interval_s=float(
                DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
            ),
            start=parse_iso(oldest) if oldest else None,  # checked by check_request
            stop=parse_iso(latest) if latest else None,
            log_type="SecurityLog" if log_type == "SecurityLog" else "DiagnosticsLog",
            request_id=request_id,
        )
        canceled = diagnostics.busy
        if canceled:
            await diagnostics.stop()
        name = diagnostics.request(request)
        if name is None:
            return call_result.GetLog(status="Rejected")
        self._after(diagnostics.begin)
        return call_result.GetLog(
            status="AcceptedCanceled" if canceled else "Accepted", filename=name
        )

    @on(Action.trigger_message)
    async def on_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> call_result.TriggerMessage:
        status = self._trigger(requested_message, connector_id, TRIGGERABLE, extended=False)
        return call_result.TriggerMessage(status=status)

    @on(Action.extended_trigger_message)
    async def on_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> call_result.ExtendedTriggerMessage:
        status = self._trigger(requested_message, connector_id, EXTENDED_TRIGGERABLE, extended=True)
        return call_result.ExtendedTriggerMessage(status=status)

    def _trigger(
        self, message: str, connector_id: int | None, targets: frozenset[str], *, extended: bool
    ) -> str:
        """Answer a (Extended)TriggerMessage and send the message after the answer.

        ``connectorId`` selects the connector for StatusNotification (0: the charger;
        absent: the charger and every connector) and MeterValues (absent or 0: every
        connector); the other targets ignore it. One out of range is Rejected."""
        if message not in targets:
            return "NotImplemented"
        if connector_id is not None and not (0 <= connector_id <= len(self.station.connectors)):
            return "Rejected"
        self._after(lambda: self._triggered(message, connector_id, extended=extended))
        return "Accepted"

    async def _triggered(self, message: str, connector_id: int | None, *, extended: bool) -> None:
        adapter = self.adapter
        if message == "FirmwareStatusNotification" and extended:
            firmware = adapter.firmware
            payload: dict[str, Any] = {"status": str(firmware.status) if firmware else "Idle"}
            job = firmware.job if firmware else None
            if job is not None and job.request_id is not None:
                payload["requestId"] = job.request_id
            adapter.send_triggered("SignedFirmwareStatusNotification", payload)
        elif message == "LogStatusNotification":
            diagnostics = adapter.diagnostics
            request_id = diagnostics.request_id if diagnostics else None
            log_status: dict[str, Any] = {"status": "Idle"}
            if request_id is not None:
                log_status = {"status": "Uploading", "requestId": request_id}
            adapter.send_triggered("LogStatusNotification", log_status)
        elif message == "SignChargePointCertificate":
            await self.sign_certificate()
        elif message == "BootNotification":
            result = await self.call_payload("BootNotification", adapter.boot_payload())
            adapter.boot_answered(result)
        elif message == "Heartbeat":
            await adapter.send_heartbeat(self)
        elif message == "StatusNotification":
            self.station.resend_status(connector_id)
        elif message == "MeterValues":
            await self.station.sample_now(connector_id or None)
        elif message == "FirmwareStatusNotification":
            status = str(adapter.firmware.status) if adapter.firmware else "Idle"
            adapter.send_triggered("FirmwareStatusNotification", {"status": status})
        elif message == "DiagnosticsStatusNotification":
            busy = adapter.diagnostics is not None and adapter.diagnostics.busy
            status = "Uploading" if busy else "Idle"
            adapter.send_triggered("DiagnosticsStatusNotification", {"status": status})
