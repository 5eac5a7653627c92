"""OCPP 2.0.1 block A (certificates) and M's root certificate management, on the 1.6 store.

The CSMS requests of certificate management, mapped onto the
:class:`~cpagent.security.pki.CertificateStore` the 1.6 agent uses:

* InstallCertificate (M05): CSMSRootCertificate and ManufacturerRootCertificate are
  installed as 1.6's CentralSystemRootCertificate and ManufacturerRootCertificate, with the
  same checks (one certificate, a CA, within its validity, room in the store);
  V2GRootCertificate and MORootCertificate (ISO 15118, which cpagent does not speak) are
  Rejected.
* DeleteCertificate (M04): by certificateHashData; NotFound, Failed (among others when it
  names the CSMS root the connection in force is verified with, M04.FR.06) or Accepted.
* GetInstalledCertificateIds (M03): the roots of the types asked for (all when none is
  named) as certificateHashDataChain entries; NotFound when there are none. cpagent holds
  no V2G certificate chain, so no entry has childCertificateHashData.
* CertificateSigned (A02, A03): the certificate the station's last CSR asked for, checked
  as in 1.6 (it chains to a CSMS root, is for the pending key, names this station, is
  within its validity); a refused one is Rejected and reported as the security event
  InvalidChargingStationCertificate. On security profile 3 the station reconnects with the
  new certificate at once, and falls back to the previous one if it cannot connect.

The certificate modules are imported when a handler first runs: they load ``cryptography``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ocpp.routing import on

from cpagent.protocol.v201.enums import Action
from cpagent.security.events import SecurityEventType
from cpagent.systemd import journal_fields
from cpagent.timeutil import iso, utcnow

if TYPE_CHECKING:
    from cpagent.protocol.v201.adapter import V201Adapter
    from cpagent.security.pki import CertificateStore, CertificateUse

log = logging.getLogger(__name__)

Payload = dict[str, Any]

CSMS_ROOT = "CSMSRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
STORED_TYPES = (CSMS_ROOT, MANUFACTURER_ROOT)
"""The 2.0.1 certificate types the station keeps, in the order it lists them."""


def _use(certificate_type: str) -> CertificateUse | None:
    """The store's kind of root for a 2.0.1 certificate type; None for one not kept."""
    from cpagent.security.pki import CertificateUse

    return {
        CSMS_ROOT: CertificateUse.CENTRAL_SYSTEM_ROOT,
        MANUFACTURER_ROOT: CertificateUse.MANUFACTURER_ROOT,
    }.get(certificate_type)


def _fields(action: str) -> dict[str, str]:
    return journal_fields(action=action)


def _status_info(reason: str) -> Payload:
    return {"reasonCode": "Other", "additionalInfo": reason[:512]}


class SecurityHandlers:
    """The 2.0.1 ChargePoint's certificate handlers (a mixin: it needs the ChargePoint's
    ``adapter`` and its OCPP-J endpoint's ``_after``)."""

    adapter: V201Adapter

    if TYPE_CHECKING:

        def _after(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None: ...

    def after_answer(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``make()`` once the answer to the CSMS request being handled is sent (a
        setting that makes the station reconnect takes effect after its answer)."""
        self._after(make)

    def _certificates(self) -> CertificateStore:
        security = self.adapter.security
        assert security is not None  # set before the session starts
        return security.certificates()

    @on(Action.install_certificate)
    async def on_install_certificate(self, payload: Payload) -> Payload:
        kind = payload["certificateType"]
        use = _use(kind)
        if use is None:
            log.info(
                "InstallCertificate %s: Rejected (not supported)",
                kind,
                extra=_fields("InstallCertificate"),
            )
            return {
                "status": "Rejected",
                "statusInfo": _status_info(f"cpagent keeps no {kind}"),
            }
        status = await asyncio.to_thread(
            self._certificates().install_root, use, payload["certificate"], utcnow()
        )
        log.info("InstallCertificate %s: %s", kind, status, extra=_fields("InstallCertificate"))
        await self._entries_changed()
        return {"status": status}

    async def _entries_changed(self) -> None:
        from cpagent.protocol.v201.certificate_renewal import update_entries

        assert self.adapter.security is not None
        await update_entries(self.adapter, self.adapter.security)

    @on(Action.delete_certificate)
    async def on_delete_certificate(self, payload: Payload) -> Payload:
        from cpagent.security.pki import CertificateHashData

        wanted = CertificateHashData.from_ocpp(payload["certificateHashData"])
        security = self.adapter.security
        assert security is not None  # set before the session starts
        status = await asyncio.to_thread(
            self._certificates().delete, wanted, still_verifies=security.still_verifies
        )
        log.info(
            "DeleteCertificate %s: %s",
            wanted.serial_number,
            status,
            extra=_fields("DeleteCertificate"),
        )
        await self._entries_changed()
        return {"status": status}

    @on(Action.get_installed_certificate_ids)
    async def on_get_installed_certificate_ids(self, payload: Payload) -> Payload:
        asked = payload.get("certificateType") or list(STORED_TYPES)
        wanted = [kind for kind in STORED_TYPES if kind in asked]
        store = self._certificates() if wanted else None
        chain: list[Payload] = []
        for kind in wanted:
            use = _use(kind)
            assert use is not None and store is not None
            found = await asyncio.to_thread(store.installed_ids, use)
            chain += [{"certificateType": kind, "certificateHashData": h.to_ocpp()} for h in found]
        if not chain:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": chain}

    @on(Action.certificate_signed)
    async def on_certificate_signed(self, payload: Payload) -> Payload:
        """Install the certificate the last CSR asked for (A02.FR.06-07, A03)."""
        from cpagent.security.pki import PkiError

        if payload.get("certificateType", "ChargingStationCertificate") != (
            "ChargingStationCertificate"
        ):
            return {
                "status": "Rejected",
                "statusInfo": _status_info("cpagent asks for no V2GCertificate"),
            }
        adapter = self.adapter
        try:
            cert = await asyncio.to_thread(
                self._certificates().accept_signed,
                payload["certificateChain"],
                utcnow(),
                common_name=adapter.config.charge_point.id,
            )
        except PkiError as err:
            log.warning("CertificateSigned refused: %s", err, extra=_fields("CertificateSigned"))
            await adapter.security_event(
                SecurityEventType.INVALID_CHARGE_POINT_CERTIFICATE, f"{err.reason}: {err}"
            )
            return {"status": "Rejected", "statusInfo": _status_info(err.reason)}
        log.info(
            "new charging station certificate installed, valid until %s",
            iso(cert.not_valid_after_utc),
            extra=_fields("CertificateSigned"),
        )
        adapter.renewals().certificate_signed()
        security = adapter.security
        if security is not None and security.profile == 3:

            async def reconnect() -> None:
                security.changing("ChargePointCertificate", None)

            self._after(reconnect)
        return {"status": "Accepted"}
