"""OCPP 2.0.1 blocks L (UpdateFirmware) and N01 (GetLog), on the 1.6 machinery.

* UpdateFirmware (L01 signed, L02 unsigned): one :class:`~cpagent.station.firmware.FirmwareJob`
  for the :class:`~cpagent.station.firmware.FirmwareUpdater` the 1.6 agent uses (download,
  the signature check, waiting for running sessions, ``[firmware] install_command``),
  carrying the request's ``requestId`` so that every FirmwareStatusNotification does. A
  request with a signature is signed: its signingCertificate is checked against the
  installed ManufacturerRootCertificates before the answer (InvalidCertificate and the
  security event InvalidFirmwareSigningCertificate when it does not verify), the file after
  its download (SignatureVerified, or InvalidSignature and the file deleted). A request
  without one is installed as it comes. installDateTime holds the installation back until
  then (InstallScheduled). The job is on disk before the answer; an update not yet
  installing is replaced (AcceptedCanceled), one installing is not (Rejected).
* GetLog (N01): the :class:`~cpagent.updates.DiagnosticsUploader` builds the diagnostics
  archive (DiagnosticsLog) or the security log's (SecurityLog) and uploads it to
  remoteLocation, reporting LogStatusNotification with the ``requestId``; the answer names
  the file. A GetLog while an upload runs cancels that one (AcceptedCanceled, and a
  LogStatusNotification AcceptedCanceled for the cancelled request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ocpp.routing import on

from cpagent.protocol.v201.enums import Action
from cpagent.security.events import SecurityEventType
from cpagent.station.firmware import FirmwareJob
from cpagent.systemd import journal_fields
from cpagent.timeutil import parse_iso, utcnow
from cpagent.updates import DiagnosticsRequest
from cpagent.urlredact import redact_url

if TYPE_CHECKING:
    from cpagent.protocol.v201.adapter import V201Adapter

log = logging.getLogger(__name__)

Payload = dict[str, Any]

DEFAULT_RETRIES = 3
"""UpdateFirmware and GetLog without ``retries`` leave the count to the station."""
DEFAULT_RETRY_INTERVAL_S = 60


def _status_info(reason: str) -> Payload:
    return {"reasonCode": "Other", "additionalInfo": reason[:512]}


def _retries(payload: Payload) -> tuple[int, float]:
    retries = payload.get("retries")
    interval = payload.get("retryInterval")
    return (
        DEFAULT_RETRIES if retries is None else max(0, retries),
        float(DEFAULT_RETRY_INTERVAL_S if interval is None else max(0, interval)),
    )


class FirmwareHandlers:
    """The 2.0.1 ChargePoint's firmware and log handlers (a mixin: it needs the ChargePoint's
    ``adapter`` and its OCPP-J endpoint's ``_after``)."""

    adapter: V201Adapter

    if TYPE_CHECKING:

        def _after(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None: ...

    @on(Action.update_firmware)
    async def on_update_firmware(self, payload: Payload) -> Payload:
        adapter = self.adapter
        updater = adapter.firmware
        assert updater is not None  # set before the session starts
        request_id: int = payload["requestId"]
        firmware = payload["firmware"]
        certificate = firmware.get("signingCertificate")
        signature = firmware.get("signature")
        if (certificate is None) != (signature is None):
            missing = "signingCertificate" if certificate is None else "signature"
            log.warning("UpdateFirmware %d Rejected: no %s", request_id, missing)
            return {"status": "Rejected", "statusInfo": _status_info(f"no {missing}")}
        if certificate is not None:
            refusal = await self._check_signing_certificate(request_id, certificate)
            if refusal is not None:
                return {"status": "InvalidCertificate", "statusInfo": _status_info(refusal)}
        retries, interval = _retries(payload)
        install = firmware.get("installDateTime")
        job = FirmwareJob(
            location=firmware["location"],
            retrieve_at=parse_iso(firmware["retrieveDateTime"]).timestamp(),  # checked
            retries=retries,
            retry_interval_s=interval,
            request_id=request_id,
            signing_certificate=certificate,
            signature=signature,
            install_at=parse_iso(install).timestamp() if install else None,
        )
        replacing = updater.job is not None
        if not await updater.accept(job):  # on disk before the answer goes out
            return {"status": "Rejected", "statusInfo": _status_info("an update is installing")}
        log.info(
            "UpdateFirmware %d (%s) from %s accepted",
            request_id,
            "signed" if job.signed else "unsigned",
            redact_url(job.location),
            extra=journal_fields(action="UpdateFirmware"),
        )
        self._after(updater.begin)
        return {"status": "AcceptedCanceled" if replacing else "Accepted"}

    async def _check_signing_certificate(self, request_id: int, certificate: str) -> str | None:
        """Why the signing certificate is refused (L01.FR.02), reported as a security event;
        None when it verifies up to an installed ManufacturerRootCertificate."""
        from cpagent.security.firmware_signature import (
            FirmwareSignatureError,
            verify_with_manufacturer_roots,
        )

        security = self.adapter.security
        assert security is not None  # set before the session starts
        try:
            store = security.certificates()
            await asyncio.to_thread(verify_with_manufacturer_roots, store, certificate, utcnow())
        except FirmwareSignatureError as err:
            log.warning("UpdateFirmware %d refused: %s", request_id, err)
            await self.adapter.security_event(
                SecurityEventType.INVALID_FIRMWARE_SIGNING_CERTIFICATE, str(err)
            )
            return str(err)
        return None

    @on(Action.get_log)
    async def on_get_log(self, payload: Payload) -> Payload:
        adapter = self.adapter
        diagnostics = adapter.diagnostics
        assert diagnostics is not None  # set before the session starts
        window = payload["log"]
        oldest, latest = window.get("oldestTimestamp"), window.get("latestTimestamp")
        retries, interval = _retries(payload)
        request = DiagnosticsRequest(
            location=window["remoteLocation"],
            retries=retries,
            retry_interval_s=interval,
            start=parse_iso(oldest) if oldest else None,  # checked by check_request
            stop=parse_iso(latest) if latest else None,
            log_type="SecurityLog" if payload["logType"] == "SecurityLog" else "DiagnosticsLog",
            request_id=payload["requestId"],
        )
        canceled = diagnostics.request_id if diagnostics.busy else None
        if diagnostics.busy:
            await diagnostics.stop()
        name = diagnostics.request(request)
        if name is None:
            return {"status": "Rejected", "statusInfo": _status_info("an upload is running")}
        if canceled is not None:
            await adapter.log_status("AcceptedCanceled", canceled)
        self._after(diagnostics.begin)
        return {"status": "Accepted" if canceled is None else "AcceptedCanceled", "filename": name}
