"""The charging station certificate's renewal in OCPP 2.0.1 (A02, A03).

The station asks for a certificate with SignCertificate (certificateType
ChargingStationCertificate), carrying a CSR for a new key made on the board by the same
certificate store as in 1.6 (:meth:`CertificateStore.new_csr
<cpagent.security.pki.CertificateStore.new_csr>`): when the CSMS triggers it
(TriggerMessage SignChargingStationCertificate, A02) and, on security profile 3, when the
daily check finds the certificate within :data:`RENEW_BEFORE` of its end (A03). The CSR
names the station by its id (commonName) and SecurityCtrlr.OrganizationName (else
``[charge_point] vendor``). The answer, CertificateSigned, is handled by
:mod:`.security_handlers`. While none comes after an Accepted SignCertificate, the request is
made again (with a new CSR) after SecurityCtrlr.CertSigningWaitMinimum seconds, the wait
doubling each time, at most CertSigningRepeatTimes times (A02.FR.17-19); one renewal runs at
a time, a new one replacing it (:class:`Renewals`).

SecurityCtrlr.CertificateEntries is kept as the number of roots installed, counted at each
connection's certificate check and after each InstallCertificate and DeleteCertificate.

The certificate modules are imported when first needed: they load ``cryptography``, which a
station that never uses certificates need not hold in memory.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from ocpp.exceptions import OCPPError

from cpagent.protocol.rpc import ConnectionLost
from cpagent.security.connection import CERTS_DIR
from cpagent.systemd import journal_fields
from cpagent.timeutil import iso, utcnow

if TYPE_CHECKING:
    from cpagent.protocol.delivery import Caller
    from cpagent.protocol.v201.adapter import V201Adapter
    from cpagent.security.connection import ConnectionSecurity

log = logging.getLogger(__name__)

CHECK_EVERY_S = 24 * 3600.0
RENEW_BEFORE = timedelta(days=30)
"""The charging station certificate is renewed this long before it expires (as in 1.6)."""
CERTIFICATE_TYPE = "ChargingStationCertificate"
IDENTITY_PREFIX = "ChargePointCertificate "
"""How :meth:`CertificateStore.expiring` names the station's own certificate."""


def _fields() -> dict[str, str]:
    return journal_fields(action="SignCertificate")


async def sign_certificate(adapter: V201Adapter, cp: Caller) -> str | None:
    """Send SignCertificate for a new key; return the CSMS's status (Accepted or Rejected),
    None when nothing was sent: no certificate store, or no key could be made (a PKCS#11
    token that is missing or refuses the PIN), the reason in the log."""
    from cpagent.security.pki import PkiError

    security = adapter.security
    if security is None:
        log.error("no SignCertificate sent: the agent has no certificate store", extra=_fields())
        return None
    config = adapter.config
    organization = (
        adapter.values.text("SecurityCtrlr", "OrganizationName") or config.charge_point.vendor
    )
    try:
        csr = await asyncio.to_thread(
            security.certificates().new_csr, config.charge_point.id, organization
        )
    except PkiError as err:
        log.error("no SignCertificate sent: %s", err, extra=_fields())
        return None
    result = await cp.call_payload(
        "SignCertificate", {"csr": csr, "certificateType": CERTIFICATE_TYPE}
    )
    status: str = result["status"]
    log.info("SignCertificate: %s", status, extra=_fields())
    return status


class Renewals:
    """The renewal in progress: SignCertificate, repeated until CertificateSigned comes."""

    def __init__(self, adapter: V201Adapter) -> None:
        self.adapter = adapter
        self._signed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, cp: Caller) -> None:
        """Begin a renewal over ``cp``, ending the one in progress."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._signed.clear()
        self._task = asyncio.create_task(self._run(cp), name="certificate-renewal")

    def certificate_signed(self) -> None:
        """A CertificateSigned was Accepted: the renewal is done."""
        self._signed.set()

    async def _run(self, cp: Caller) -> None:
        values = self.adapter.values
        wait = float(max(1, values.int("SecurityCtrlr", "CertSigningWaitMinimum")))
        repeats = values.int("SecurityCtrlr", "CertSigningRepeatTimes")
        sent = 0
        try:
            while True:
                status = await sign_certificate(self.adapter, cp)
                sent += 1
                if status != "Accepted":
                    return
                try:
                    async with asyncio.timeout(wait):
                        await self._signed.wait()
                    return
                except TimeoutError:
                    pass
                if sent > repeats:
                    break
                log.info(
                    "no CertificateSigned within %g s: SignCertificate again", wait, extra=_fields()
                )
                wait *= 2
        except (OCPPError, TimeoutError, ConnectionLost) as err:
            log.warning("certificate renewal request failed: %s", err, extra=_fields())
            return
        log.warning(
            "no CertificateSigned after %d SignCertificate request(s); giving up until the"
            " next renewal",
            sent,
            extra=_fields(),
        )


async def update_entries(adapter: V201Adapter, security: ConnectionSecurity) -> None:
    """SecurityCtrlr.CertificateEntries: the roots the store holds now."""
    from cpagent.security.pki import CertificateUse

    store = security.certificates()
    count = 0
    for use in CertificateUse:
        count += len(await asyncio.to_thread(store.roots, use))
    adapter.values.set_runtime("SecurityCtrlr", "CertificateEntries", str(count))


async def check_loop(adapter: V201Adapter, cp: Caller) -> None:
    """Daily while connected: warn of installed certificates near their end and, on
    security profile 3, ask for a new charging station certificate (A03). Nothing is read
    while the agent holds no certificate at all."""
    while True:
        security = adapter.security
        if security is not None and (adapter.config.storage.data_dir / CERTS_DIR).exists():
            try:
                await update_entries(adapter, security)
                await _check(adapter, cp, security)
            except (OCPPError, TimeoutError, ConnectionLost) as err:
                log.warning("certificate renewal request failed: %s", err, extra=_fields())
            except Exception as err:  # noqa: BLE001 - a bad store must not end the link
                log.error("certificate check failed: %r", err)
        await asyncio.sleep(CHECK_EVERY_S)


async def _check(adapter: V201Adapter, cp: Caller, security: ConnectionSecurity) -> None:
    store = security.certificates()
    ending = await asyncio.to_thread(store.expiring, utcnow(), RENEW_BEFORE)
    for name, not_after in ending:
        log.warning("certificate %s expires %s", name, iso(not_after))
    if security.profile == 3 and any(name.startswith(IDENTITY_PREFIX) for name, _ in ending):
        log.info("asking the CSMS for a new charging station certificate", extra=_fields())
        adapter.renewals().start(cp)
