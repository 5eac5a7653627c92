"""OCPP 2.0.1 block A and certificate management end to end: the real ``cpagent run``
speaking 2.0.1 to the loopback CSMS, plain or over TLS with a CA the test makes.

What is checked is what a CSMS sees (InstallCertificate, DeleteCertificate,
GetInstalledCertificateIds with their 2.0.1 shapes, SignCertificate, CertificateSigned,
SetVariables of SecurityCtrlr.BasicAuthPassword and the SecurityEventNotifications), how
the station connects (basic-auth password, client certificate) and what it keeps across a
restart. Hash data is recomputed from the certificates without the agent's code. Every frame
both ways passes the 2.0.1 schemas. Waits are event-driven or bounded polls.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from cpagent.testing import LoopbackCsms
from cpagent.testing.pki import Issued, TestCa
from tests.integration.conftest import AgentProcess
from tests.integration.test_certificates import (
    expected_hash_data,
    normalised,
    pem,
    serial_presented,
)
from tests.integration.test_security_profiles import CP_ID, tls_csms

AgentFactory = Callable[..., AgentProcess]

CSMS_ROOT = "CSMSRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
EVENT = "SecurityEventNotification"
PASSWORD = "factory-password-0001"  # [csms] password: 16 to 40 characters
NEW_PASSWORD = "csms-set-password-0002"


# -------------------------------------------------------------------------- helpers


async def up(csms: LoopbackCsms, agent: AgentProcess, *, since: int = 0) -> None:
    """The station booted, reported its EVSE and has nothing queued."""
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=since)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])


async def agent_201(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    *,
    url: str | None = None,
    profile: int | None = None,
    roots: TestCa | None = None,
    identity: Issued | None = None,
    password: str | None = None,
    workdir: Path | None = None,
) -> AgentProcess:
    """A started 2.0.1 agent, with SecurityCtrlr.SecurityProfile, the factory CSMS roots and
    charging station certificate when given, up and idle on ``csms``."""
    ocpp201: dict[str, dict[str, Any]] = {}
    if profile is not None:
        ocpp201["SecurityCtrlr"] = {"SecurityProfile": profile}
    agent = agent_factory(csms_url=url or csms.url, ocpp201=ocpp201)
    if password is not None:
        agent.tables["csms"]["password"] = password
    security: dict[str, str] = {}
    if roots is not None:
        assert workdir is not None
        path = workdir / "csms-roots.pem"
        path.write_text(roots.pem())
        security["csms_root_certificates"] = str(path)
    if identity is not None:
        assert workdir is not None
        cert, key = identity.write(workdir, "charge-point")
        security |= {"charge_point_certificate": str(cert), "charge_point_key": str(key)}
    if security:
        agent.tables["security"] = security
    agent.write()
    await agent.start()
    await up(csms, agent)
    return agent


async def install(csms: LoopbackCsms, kind: str, certificate: str) -> dict[str, Any]:
    return await csms.call(
        "InstallCertificate", {"certificateType": kind, "certificate": certificate}
    )


async def delete(csms: LoopbackCsms, data: dict[str, str]) -> str:
    answer = await csms.call("DeleteCertificate", {"certificateHashData": data})
    status: str = answer["status"]
    return status


async def listed(csms: LoopbackCsms, *kinds: str) -> set[tuple[str, tuple[str, str, str, int]]]:
    """GetInstalledCertificateIds for ``kinds`` (all when none): (type, hash data) pairs."""
    request: dict[str, Any] = {"certificateType": list(kinds)} if kinds else {}
    answer = await csms.call("GetInstalledCertificateIds", request)
    if answer["status"] == "NotFound":
        assert "certificateHashDataChain" not in answer, answer
        return set()
    assert answer["status"] == "Accepted", answer
    chain = answer["certificateHashDataChain"]
    assert all("childCertificateHashData" not in entry for entry in chain), chain
    return {(e["certificateType"], normalised(e["certificateHashData"])) for e in chain}


def entry(kind: str, cert: x509.Certificate, issuer: x509.Certificate) -> tuple[str, Any]:
    return kind, normalised(expected_hash_data(cert, issuer))


async def trigger_sign_certificate(csms: LoopbackCsms) -> dict[str, Any]:
    """TriggerMessage SignChargingStationCertificate; the SignCertificate it brings."""
    mark = csms.mark()
    answer = await csms.call(
        "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}
    )
    assert answer == {"status": "Accepted"}
    return await csms.wait_for("SignCertificate", since=mark, timeout=30)


async def set_password(csms: LoopbackCsms, value: str) -> dict[str, Any]:
    answer = await csms.call(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": value,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    )
    (result,) = answer["setVariableResult"]
    return dict(result)


async def certificate_entries(csms: LoopbackCsms) -> str:
    got = await csms.call(
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "CertificateEntries"},
                }
            ]
        },
    )
    (result,) = got["getVariableResult"]
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


# ------------------------------------------------------------------ root certificates


async def test_roots_are_installed_listed_and_deleted_in_201_shapes(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await agent_201(agent_factory, csms)
    assert await listed(csms) == set()
    assert await listed(csms, CSMS_ROOT) == set()

    central = TestCa.create("CSMS Root A").cert
    maker = TestCa.create("Maker Root")
    maker_sub = maker.intermediate("Maker Sub CA").cert
    for kind, cert in ((CSMS_ROOT, central), (MANUFACTURER_ROOT, maker.cert)):
        assert await install(csms, kind, pem(cert)) == {"status": "Accepted"}, kind
    assert await install(csms, MANUFACTURER_ROOT, pem(maker_sub)) == {"status": "Accepted"}
    assert await install(csms, CSMS_ROOT, pem(central)) == {"status": "Accepted"}  # again

    # Each type names its own roots; no filter lists them all; a sub CA names its root.
    everything = {
        entry(CSMS_ROOT, central, central),
        entry(MANUFACTURER_ROOT, maker.cert, maker.cert),
        entry(MANUFACTURER_ROOT, maker_sub, maker.cert),
    }
    assert await listed(csms) == everything
    assert await listed(csms, CSMS_ROOT, "V2GRootCertificate") == {
        entry(CSMS_ROOT, central, central)
    }
    assert await listed(csms, MANUFACTURER_ROOT) == everything - {
        entry(CSMS_ROOT, central, central)
    }
    assert await listed(csms, "V2GRootCertificate", "MORootCertificate") == set()
    roots = agent.data_dir / "certs"
    assert len(list((roots / "central-system-roots").glob("*.pem"))) == 1
    assert len(list((roots / "manufacturer-roots").glob("*.pem"))) == 2
    assert await certificate_entries(csms) == "3"

    # DeleteCertificate: hex in upper case names the same certificate; once gone, NotFound.
    sub_ids = {k: v.upper() for k, v in expected_hash_data(maker_sub, maker.cert).items()}
    sub_ids["hashAlgorithm"] = "SHA256"
    assert await delete(csms, sub_ids) == "Accepted"
    assert await delete(csms, sub_ids) == "NotFound"
    # Over ws:// no CSMS root is in use: even the last one may go (SHA384 names it too).
    assert await delete(csms, expected_hash_data(central, central, "SHA384")) == "Accepted"
    assert await listed(csms) == {entry(MANUFACTURER_ROOT, maker.cert, maker.cert)}
    assert list((roots / "central-system-roots").glob("*.pem")) == []
    assert await certificate_entries(csms) == "1"

    # After a restart the count is there again once the station is connected.
    await agent.stop()
    mark = csms.mark()
    await agent.start()
    await up(csms, agent, since=mark)
    assert await certificate_entries(csms) == "1"


async def test_install_certificate_refuses_other_types_and_what_is_no_root(
    agent_factory: AgentFactory, csms: LoopbackCsms, ca: TestCa
) -> None:
    await agent_201(agent_factory, csms)
    other = TestCa.create("V2G Root").pem()
    for kind in ("V2GRootCertificate", "MORootCertificate"):
        answer = await install(csms, kind, other)
        assert answer["status"] == "Rejected", kind
        assert kind in answer["statusInfo"]["additionalInfo"]
    for kind in (CSMS_ROOT, MANUFACTURER_ROOT):
        assert await install(csms, kind, pem(ca.issue_client(CP_ID).cert)) == {"status": "Rejected"}
        assert await install(csms, kind, "not a certificate") == {"status": "Rejected"}
    assert await listed(csms) == set()


async def test_the_csms_root_in_use_is_not_deleted_on_profile_2(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), password=PASSWORD)
    started.append(await csms.start())
    await agent_201(agent_factory, csms, profile=2, roots=ca, password=PASSWORD, workdir=workdir)
    other = TestCa.create("Unrelated Root").cert
    assert await install(csms, CSMS_ROOT, pem(other)) == {"status": "Accepted"}
    in_use = expected_hash_data(ca.cert, ca.cert)
    assert await delete(csms, in_use) == "Failed"
    assert await delete(csms, expected_hash_data(other, other)) == "Accepted"
    assert await listed(csms, CSMS_ROOT) == {entry(CSMS_ROOT, ca.cert, ca.cert)}


# ------------------------------------------- the charging station certificate (A02, A03)


async def profile_3(
    agent_factory: AgentFactory,
    workdir: Path,
    ca: TestCa,
    started: list[LoopbackCsms],
    factory: Issued | None = None,
) -> tuple[LoopbackCsms, AgentProcess, Issued]:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    factory = factory or ca.issue_client(CP_ID)
    agent = await agent_201(
        agent_factory, csms, profile=3, roots=ca, identity=factory, workdir=workdir
    )
    return csms, agent, factory


async def test_certificate_renewal_over_mutual_tls(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent, factory = await profile_3(agent_factory, workdir, ca, started)
    assert serial_presented(csms) == factory.cert.serial_number
    answer = await csms.call(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "ACME Charging",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "OrganizationName"},
                }
            ]
        },
    )
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"

    request = await trigger_sign_certificate(csms)
    assert request["certificateType"] == "ChargingStationCertificate"
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP_ID
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "ACME Charging"
    assert csr.public_key() != factory.cert.public_key()  # a new key, made on the board

    chain = ca.sign_csr(request["csr"])
    renewed = x509.load_pem_x509_certificate(chain.encode())
    connections = len(csms.subprotocols)
    mark = csms.mark()
    assert await csms.call("CertificateSigned", {"certificateChain": chain}) == {
        "status": "Accepted"
    }
    await csms.wait_connections(connections + 1)
    assert serial_presented(csms) == renewed.serial_number
    await agent.wait_log("ChargePointCertificate confirmed by a successful connection")
    changed = await csms.wait_for(EVENT, since=mark)
    assert changed["type"] == "ReconfigurationOfSecurityParameters"
    assert csms.subprotocols[-1] == "ocpp2.0.1"

    # A restart keeps the renewed certificate.
    await agent.stop()
    connections = len(csms.subprotocols)
    await agent.start()
    await csms.wait_connections(connections + 1)
    assert serial_presented(csms) == renewed.serial_number


async def test_a_certificate_signed_that_does_not_fit_is_rejected_and_reported(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent, factory = await profile_3(agent_factory, workdir, ca, started)
    own = agent.data_dir / "certs" / "charge-point"
    identity = ((own / "cert.pem").read_bytes(), (own / "key.pem").read_bytes())
    connections = len(csms.subprotocols)

    async def refused(chain: str, reason: str, **extra: str) -> None:
        mark = csms.mark()
        answer = await csms.call("CertificateSigned", {"certificateChain": chain, **extra})
        assert answer["status"] == "Rejected", reason
        if "certificateType" in extra:
            return
        assert answer["statusInfo"]["additionalInfo"] == reason
        event = await csms.wait_for(
            EVENT, lambda p: p["type"] == "InvalidChargingStationCertificate", since=mark
        )
        assert event["techInfo"].startswith(f"{reason}:"), event

    await refused(ca.issue_client(CP_ID).chain_pem(), "NoPendingRequest")
    stale = (await trigger_sign_certificate(csms))["csr"]
    csr = (await trigger_sign_certificate(csms))["csr"]
    await refused(ca.sign_csr(stale), "KeyMismatch")
    await refused(TestCa.create("Rogue CA").sign_csr(csr), "ChainInvalid")
    now = datetime.now(UTC)
    await refused(
        ca.sign_csr(csr, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)),
        "Expired",
    )
    await refused("not a certificate chain", "Unparseable")
    await refused(ca.sign_csr(csr), "V2G", certificateType="V2GCertificate")
    assert ((own / "cert.pem").read_bytes(), (own / "key.pem").read_bytes()) == identity
    assert len(csms.subprotocols) == connections  # nothing made it reconnect

    # The pending CSR still takes its certificate.
    assert await csms.call("CertificateSigned", {"certificateChain": ca.sign_csr(csr)}) == {
        "status": "Accepted"
    }
    await csms.wait_connections(connections + 1)
    assert serial_presented(csms) != factory.cert.serial_number


async def test_a_certificate_near_its_end_is_renewed_unasked(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    ending = ca.issue_client(CP_ID, not_after=datetime.now(UTC) + timedelta(days=10))
    csms, agent, _ = await profile_3(agent_factory, workdir, ca, started, factory=ending)
    request = await csms.wait_for("SignCertificate")
    assert request["certificateType"] == "ChargingStationCertificate"
    assert "ChargePointCertificate CN=CP001" in agent.log()
    answer = await csms.call("CertificateSigned", {"certificateChain": ca.sign_csr(request["csr"])})
    assert answer == {"status": "Accepted"}
    connections = len(csms.subprotocols)
    await csms.wait_connections(connections + 1)
    assert serial_presented(csms) != ending.cert.serial_number
    assert len(csms.payloads("SignCertificate")) == 1  # the renewed one has years left


async def test_sign_certificate_is_repeated_while_no_certificate_comes(
    agent_factory: AgentFactory, csms: LoopbackCsms, ca: TestCa
) -> None:
    """A02.FR.17-19: SignCertificate again after CertSigningWaitMinimum, the wait doubling,
    at most CertSigningRepeatTimes times; the last CSR still takes its certificate."""
    arrivals: list[float] = []

    async def accepted(payload: dict[str, Any]) -> dict[str, Any]:
        arrivals.append(time.monotonic())
        return {"status": "Accepted"}

    csms.responders["SignCertificate"] = accepted
    ocpp201 = {"SecurityCtrlr": {"CertSigningWaitMinimum": 1, "CertSigningRepeatTimes": 2}}
    agent = agent_factory(ocpp201=ocpp201)
    await agent.start()
    await up(csms, agent)
    assert await install(csms, CSMS_ROOT, ca.pem()) == {"status": "Accepted"}

    mark = csms.mark()
    await trigger_sign_certificate(csms)
    await agent.wait_log("no CertificateSigned after 3 SignCertificate request(s)")
    requests = csms.payloads("SignCertificate", since=mark)
    assert len(requests) == 3
    assert len({r["csr"] for r in requests}) == 3  # a new key each time
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps

    answer = await csms.call(
        "CertificateSigned", {"certificateChain": ca.sign_csr(requests[-1]["csr"])}
    )
    assert answer == {"status": "Accepted"}
    own = agent.data_dir / "certs" / "charge-point" / "cert.pem"
    assert x509.load_pem_x509_certificate(own.read_bytes()).public_key() == (
        x509.load_pem_x509_csr(requests[-1]["csr"].encode()).public_key()
    )


# ------------------------------------------------------------ A01: BasicAuthPassword


async def test_a_new_basic_auth_password_is_used_kept_and_never_shown(
    agent_factory: AgentFactory,
) -> None:
    async with LoopbackCsms(password=PASSWORD) as csms:
        agent = await agent_201(agent_factory, csms, password=PASSWORD)
        too_short = await set_password(csms, "short")
        assert too_short["attributeStatus"] == "Rejected"

        csms.password = NEW_PASSWORD  # the CSMS takes the new one from now on
        connections = len(csms.subprotocols)
        mark = csms.mark()
        assert (await set_password(csms, NEW_PASSWORD))["attributeStatus"] == "Accepted"
        await csms.wait_connections(connections + 1)
        await agent.wait_log("AuthorizationKey confirmed by a successful connection")
        event = await csms.wait_for(EVENT, since=mark)
        assert event == {
            "type": "ReconfigurationOfSecurityParameters",
            "timestamp": event["timestamp"],
            "techInfo": "AuthorizationKey changed",
        }
        got = await csms.call(
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "SecurityCtrlr"},
                        "variable": {"name": "BasicAuthPassword"},
                    }
                ]
            },
        )
        (result,) = got["getVariableResult"]
        assert result["attributeStatus"] == "Rejected" and "attributeValue" not in result

        # Persisted: after a restart the station connects with it at once.
        await agent.stop()
        connections = len(csms.subprotocols)
        await agent.start()
        await csms.wait_connections(connections + 1)
        await up(csms, agent, since=mark)
        assert csms.auth_failures == []
        assert NEW_PASSWORD not in agent.log()
        assert csms.schema_errors == []


async def test_a_basic_auth_password_that_cannot_connect_falls_back(
    agent_factory: AgentFactory,
) -> None:
    async with LoopbackCsms(password=PASSWORD) as csms:  # never learns the new one
        agent = await agent_201(agent_factory, csms, password=PASSWORD)
        connections = len(csms.subprotocols)
        mark = csms.mark()
        assert (await set_password(csms, NEW_PASSWORD))["attributeStatus"] == "Accepted"
        await agent.wait_log("falling back to the previous one")
        await csms.wait_connections(connections + 1)
        assert len(csms.auth_failures) == 3
        await agent.wait_status(lambda s: s["csms"]["connected"] and s["queue"]["depth"] == 0)
        changed, restored = [
            p
            for p in csms.payloads(EVENT, since=mark)
            if p["type"] == "ReconfigurationOfSecurityParameters"
        ]
        assert changed["techInfo"] == "AuthorizationKey changed"
        assert restored["type"] == "ReconfigurationOfSecurityParameters"
        assert "AuthorizationKey restored" in restored["techInfo"]

        # The fallback is on disk: a restart connects with the factory password at once.
        await agent.stop()
        failures = len(csms.auth_failures)
        connections = len(csms.subprotocols)
        await agent.start()
        await csms.wait_connections(connections + 1)
        assert len(csms.auth_failures) == failures
        assert NEW_PASSWORD not in agent.log()
        assert csms.schema_errors == []
