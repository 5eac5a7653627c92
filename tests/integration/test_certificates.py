"""Certificate management and security events of the OCPP 1.6 security extension, end to
end: the real ``cpagent run`` against a loopback CSMS (plain, or TLS with a CA the test
makes). What is checked is what a Central System sees on the wire (InstallCertificate,
GetInstalledCertificateIds, DeleteCertificate, SignCertificate, CertificateSigned and the
SecurityEventNotifications), the client certificate the charger presents when it connects,
and what the charger keeps on disk (its keys, the security log). Hash data is recomputed
here from the certificates, without the agent's code. Waits are event-driven or bounded
polls."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpagent.security.pki import hash_data
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, CsmsCallError, Received
from cpagent.testing.pki import Issued, TestCa
from tests.integration.conftest import AgentProcess
from tests.integration.test_security_profiles import (
    CP_ID,
    PASSWORD,
    booted,
    reconnected,
    secured_agent,
    tls_csms,
)

AgentFactory = Callable[..., AgentProcess]

CENTRAL = "CentralSystemRootCertificate"
MANUFACTURER = "ManufacturerRootCertificate"
EVENT = "SecurityEventNotification"
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# -------------------------------------------------------------------------- helpers


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def self_signed_end_entity() -> str:
    """A self-signed certificate that says it is no CA (basicConstraints cA false) and
    carries no keyUsage: self-issued like a root, yet no root."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not A CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return pem(cert)


def expected_hash_data(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256"
) -> dict[str, str]:
    """CertificateHashDataType as RFC 6960's CertID defines its parts: the hash of the DER
    issuer name, the hash of the issuer's public key bits (for an EC key the BIT STRING holds
    the uncompressed point), the serial number in hex."""
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    bits = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    digest = algorithm.lower()
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": hashlib.new(digest, cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.new(digest, bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def normalised(entry: dict[str, str]) -> tuple[str, str, str, int]:
    """Hash data compared as OCPP means it: hex in either case, the serial as a number."""
    hexes = (entry["issuerNameHash"], entry["issuerKeyHash"], entry["serialNumber"])
    assert all(re.fullmatch(r"[0-9a-fA-F]+", h) for h in hexes), entry
    return (
        entry["hashAlgorithm"].upper(),
        entry["issuerNameHash"].lower(),
        entry["issuerKeyHash"].lower(),
        int(entry["serialNumber"], 16),
    )


async def installed(csms: LoopbackCsms, use: str) -> dict[str, Any]:
    return await csms.call("GetInstalledCertificateIds", {"certificateType": use})


async def listed(csms: LoopbackCsms, use: str) -> set[tuple[str, str, str, int]]:
    answer = await installed(csms, use)
    assert answer["status"] == "Accepted", answer
    return {normalised(entry) for entry in answer["certificateHashData"]}


async def install(csms: LoopbackCsms, use: str, certificate: str) -> str:
    answer = await csms.call(
        "InstallCertificate", {"certificateType": use, "certificate": certificate}
    )
    status: str = answer["status"]
    return status


async def delete(csms: LoopbackCsms, data: dict[str, str]) -> str:
    answer = await csms.call("DeleteCertificate", {"certificateHashData": data})
    status: str = answer["status"]
    return status


def security_log(agent: AgentProcess) -> list[dict[str, Any]]:
    path = agent.data_dir / "security.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_security_log(
    agent: AgentProcess, count: int, kind: str, timeout: float = WAIT_S
) -> list[dict[str, Any]]:
    """Until the security log holds ``count`` events of type ``kind``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        entries = security_log(agent)
        if sum(e["type"] == kind for e in entries) >= count:
            return entries
        assert asyncio.get_running_loop().time() < deadline, f"{count} x {kind} never logged"
        await asyncio.sleep(0.05)


async def events(
    csms: LoopbackCsms, count: int, *, since: int = 0, timeout: float = WAIT_S
) -> list[Received]:
    """The next ``count`` SecurityEventNotifications at or after ``since``."""
    found: list[Received] = []
    cursor = since
    for _ in range(count):
        message = await csms.wait_for_message(EVENT, since=cursor, timeout=timeout)
        found.append(message)
        cursor = message.index + 1
    return found


def as_sent(entry: dict[str, Any]) -> dict[str, str]:
    """A security log line as its SecurityEventNotification carries it."""
    payload = {"type": entry["type"], "timestamp": entry["timestamp"]}
    if entry.get("techInfo"):
        payload["techInfo"] = entry["techInfo"][:255]
    return payload


def assert_wire_matches_log(agent: AgentProcess, sent: Sequence[Received]) -> None:
    """Every event sent is a line of the security log, in the same order, and each line
    was sent: the log holds every event as a JSON object with its type and timestamp."""
    entries = security_log(agent)
    assert (agent.data_dir / "security.log").stat().st_mode & 0o777 == 0o600
    assert all(set(e) == {"timestamp", "type", "techInfo"} for e in entries), entries
    assert [r.payload for r in sent] == [as_sent(e) for e in entries]
    for entry in entries:
        assert RFC3339_Z.match(entry["timestamp"]), entry


async def up(csms: LoopbackCsms, agent: AgentProcess, *, since: int = 0) -> None:
    """The charger booted and its start-up event is delivered and answered, nothing queued
    (so that the events a test waits for after this are the ones it causes, and no message
    is in flight when the test makes the charger reconnect)."""
    await csms.wait_for("BootNotification", since=since)
    (startup,) = await events(csms, 1, since=since)
    assert startup.payload["type"] == "StartupOfTheDevice"
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)


def serial_presented(csms: LoopbackCsms) -> int:
    """The serial number of the client certificate of the latest connection."""
    presented = csms.client_certificates[-1]
    assert presented is not None
    return int(presented["serialNumber"], 16)


def identity_files(agent: AgentProcess) -> tuple[Path, Path]:
    own = agent.data_dir / "certs" / "charge-point"
    return own / "cert.pem", own / "key.pem"


class Relay:
    """A TCP relay on loopback in front of a CSMS (TLS passes through it untouched). While
    ``hold`` is set, a new connection is accepted and left hanging, neither forwarded nor
    closed, until the charger gives up on it: a connection attempt that neither succeeds
    nor fails."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold = False
        self.held = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.hold:
                self.held.set()
                await reader.read()  # until the charger closes it (or dies)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            writer.write_eof()


# ------------------------------------------------------------------ root certificates


async def profile_3(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> tuple[LoopbackCsms, AgentProcess, Issued]:
    """A mutual-TLS CSMS trusting ``ca`` and an agent up on it with security profile 3 and
    a factory certificate from ``ca`` (returned as the third item)."""
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    factory = ca.issue_client(CP_ID)
    agent = secured_agent(
        agent_factory, workdir, csms.url, profile=3, roots=ca, identity=factory, password=None
    )
    await agent.start()
    await up(csms, agent)
    return csms, agent, factory


async def test_roots_are_installed_listed_and_deleted(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert await installed(csms, CENTRAL) == {"status": "NotFound"}
    assert await installed(csms, MANUFACTURER) == {"status": "NotFound"}

    central_a = TestCa.create("CSMS Root A").cert
    central_b = TestCa.create("CSMS Root B").cert
    maker = TestCa.create("Maker Root")
    maker_sub = maker.intermediate("Maker Sub CA").cert
    for use, cert in (
        (CENTRAL, central_a),
        (CENTRAL, central_b),
        (MANUFACTURER, maker.cert),
        (MANUFACTURER, maker_sub),
    ):
        assert await install(csms, use, pem(cert)) == "Accepted", cert.subject
    assert await install(csms, CENTRAL, pem(central_a)) == "Accepted"  # again: no duplicate

    # Each kind lists its own roots; a root is its own issuer, the sub CA names its root.
    assert await listed(csms, CENTRAL) == {
        normalised(expected_hash_data(central_a, central_a)),
        normalised(expected_hash_data(central_b, central_b)),
    }
    maker_ids = {
        normalised(expected_hash_data(maker.cert, maker.cert)),
        normalised(expected_hash_data(maker_sub, maker.cert)),
    }
    assert await listed(csms, MANUFACTURER) == maker_ids
    assert maker_ids == {
        normalised(hash_data(maker.cert).to_ocpp()),
        normalised(hash_data(maker_sub, maker.cert).to_ocpp()),
    }
    roots = agent.data_dir / "certs"
    assert len(list((roots / "central-system-roots").glob("*.pem"))) == 2
    assert len(list((roots / "manufacturer-roots").glob("*.pem"))) == 2

    # DeleteCertificate: hex in upper case names the same certificate.
    sub_ids = {k: v.upper() for k, v in expected_hash_data(maker_sub, maker.cert).items()}
    sub_ids["hashAlgorithm"] = "SHA256"
    assert await delete(csms, sub_ids) == "Accepted"
    maker_root_ids = expected_hash_data(maker.cert, maker.cert)
    assert await delete(csms, maker_root_ids) == "Accepted"
    assert await delete(csms, maker_root_ids) == "NotFound"
    assert await installed(csms, MANUFACTURER) == {"status": "NotFound"}
    assert list((roots / "manufacturer-roots").glob("*.pem")) == []

    # Central System roots (one named with SHA384 here): on profile 0 over ws:// none is in
    # use to verify the CSMS, so even the last one may go (M04.FR.02 and M04's remarks).
    assert await delete(csms, expected_hash_data(central_a, central_a, "SHA384")) == "Accepted"
    last = expected_hash_data(central_b, central_b)
    assert await listed(csms, CENTRAL) == {normalised(last)}
    assert await delete(csms, last) == "Accepted"
    assert await installed(csms, CENTRAL) == {"status": "NotFound"}
    assert list((roots / "central-system-roots").glob("*.pem")) == []


async def test_install_certificate_refuses_what_is_no_root(
    agent: AgentProcess, csms: LoopbackCsms, ca: TestCa
) -> None:
    now = datetime.now(UTC)
    two = TestCa.create("One").pem() + TestCa.create("Two").pem()
    refused = {
        "a charge point certificate": pem(ca.issue_client(CP_ID).cert),
        "a server certificate": pem(ca.issue_server().cert),
        "a self-signed end-entity certificate": self_signed_end_entity(),
        "text": "not a certificate",
        "a broken PEM": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "two certificates": two,
        "an expired CA": TestCa.create(
            "Old", not_before=now - timedelta(days=60), not_after=now - timedelta(days=1)
        ).pem(),
        "a CA not valid yet": TestCa.create(
            "Future", not_before=now + timedelta(days=1), not_after=now + timedelta(days=60)
        ).pem(),
    }
    for what, certificate in refused.items():
        for use in (CENTRAL, MANUFACTURER):
            assert await install(csms, use, certificate) == "Rejected", (what, use)

    # What the schema refuses is a CALLERROR, in the OCPP-J 1.6 spelling.
    with pytest.raises(CsmsCallError) as too_long:
        await install(csms, CENTRAL, "A" * 5501)
    assert too_long.value.code == "TypeConstraintViolation"
    frame = csms.call_errors[-1]
    assert len(frame) == 5 and frame[2] == "TypeConstraintViolation", frame[:4]
    assert "too long" in frame[4]["cause"]
    with pytest.raises(CsmsCallError) as unknown_use:
        await install(csms, "V2GRootCertificate", TestCa.create("V2G").pem())
    assert unknown_use.value.code == "FormationViolation"
    frame = csms.call_errors[-1]
    assert len(frame) == 5 and frame[2] == "FormationViolation", frame
    assert "V2GRootCertificate" in frame[4]["cause"]

    assert await installed(csms, CENTRAL) == {"status": "NotFound"}
    assert await installed(csms, MANUFACTURER) == {"status": "NotFound"}

    # The store holds CertificateStoreMaxLength roots of both kinds together.
    got = await csms.call("GetConfiguration", {"key": ["CertificateStoreMaxLength"]})
    limit = int(got["configurationKey"][0]["value"])
    roots = [TestCa.create(f"Root {i}").pem() for i in range(limit + 1)]
    for i, root in enumerate(roots[:limit]):
        assert await install(csms, (CENTRAL, MANUFACTURER)[i % 2], root) == "Accepted", i
    assert await install(csms, CENTRAL, roots[limit]) == "Rejected"
    assert await install(csms, CENTRAL, roots[0]) == "Accepted"  # installed already
    first = x509.load_pem_x509_certificate(roots[1].encode())
    assert await delete(csms, expected_hash_data(first, first)) == "Accepted"
    assert await install(csms, CENTRAL, roots[limit]) == "Accepted"  # room again


async def test_the_root_that_verifies_the_csms_is_not_deleted(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    """M04.FR.06: on profile 2 the root the CSMS's certificate is verified with cannot be
    deleted (Failed), even while another root is installed; the other one can. The charger
    still reaches the CSMS afterwards."""
    csms = tls_csms(workdir, ca.intermediate("CSMS Sub CA").issue_server(), password=PASSWORD)
    started.append(await csms.start())
    agent = secured_agent(agent_factory, workdir, csms.url, profile=2, roots=ca)
    await agent.start()
    await up(csms, agent)
    other = TestCa.create("Unrelated Root").cert
    assert await install(csms, CENTRAL, pem(other)) == "Accepted"

    in_use = expected_hash_data(ca.cert, ca.cert)
    assert await delete(csms, in_use) == "Failed"
    assert await delete(csms, expected_hash_data(other, other)) == "Accepted"
    assert await delete(csms, in_use) == "Failed"
    assert await listed(csms, CENTRAL) == {normalised(in_use)}

    connections = len(csms.subprotocols)
    await agent.sim("network", "down")
    await csms.wait_disconnected(CP_ID)
    await agent.sim("network", "up")
    await reconnected(csms, connections)
    assert await delete(csms, in_use) == "Failed"


# ------------------------------------------------------- the charge point certificate


async def renewed_over_the_wire(
    csms: LoopbackCsms, agent: AgentProcess, ca: TestCa
) -> tuple[x509.CertificateSigningRequest, x509.Certificate]:
    """ExtendedTriggerMessage SignChargePointCertificate, the CSR signed by ``ca`` and sent
    back in CertificateSigned: the charger reconnects with the new certificate, confirms it
    and reports the change, and nothing stays queued. Returns the CSR and the certificate."""
    mark = csms.mark()
    answer = await csms.call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert answer == {"status": "Accepted"}
    request = await csms.wait_for("SignCertificate", since=mark, timeout=30)
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.is_signature_valid

    chain = ca.sign_csr(request["csr"])
    renewed = x509.load_pem_x509_certificate(chain.encode())
    before = len(csms.subprotocols)
    mark = csms.mark()
    answer = await csms.call("CertificateSigned", {"certificateChain": chain})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, before)
    assert serial_presented(csms) == renewed.serial_number
    await agent.wait_log("ChargePointCertificate confirmed by a successful connection")
    (changed,) = await events(csms, 1, since=mark)
    assert changed.payload["type"] == "ReconfigurationOfSecurityParameters"
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    return csr, renewed


async def test_certificate_renewal_over_mutual_tls(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent, factory = await profile_3(agent_factory, workdir, ca, started)
    assert serial_presented(csms) == factory.cert.serial_number
    cert_file, key_file = identity_files(agent)

    answer = await csms.call("ChangeConfiguration", {"key": "CpoName", "value": "ACME Charging"})
    assert answer == {"status": "Accepted"}
    csr, renewed = await renewed_over_the_wire(csms, agent, ca)
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [CP_ID]
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "ACME Charging"
    ]
    # A new key: not the one in use.
    assert csr.public_key() != factory.cert.public_key()

    # On disk: the certificate and the key the CSR was made for, the key private.
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.public_key() == csr.public_key()
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()) == renewed
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not (key_file.parent / "pending-key.pem").exists()
    previous_key = key_file.parent / "key.previous.pem"  # kept for a fallback, private too
    assert previous_key.stat().st_mode & 0o777 == 0o600

    # The new key never left the board: not on the wire, not in the log.
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    secret = format(key.private_numbers().private_value, "x")
    body = [line for line in key_file.read_text().splitlines() if "PRIVATE KEY" not in line]
    log = agent.log()
    for text in [log, *(frame.raw for frame in csms.frames)]:
        assert "PRIVATE KEY" not in text
        assert secret not in text
        assert not any(line in text for line in body)

    # A restart keeps the renewed identity (the factory one is not seeded over it).
    await agent.stop()
    before = len(csms.subprotocols)
    await agent.start()
    await reconnected(csms, before)
    assert serial_presented(csms) == renewed.serial_number
    assert csms.auth_failures == []


async def test_a_certificate_near_its_end_is_renewed_unasked(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    """On profile 3 a charge point certificate that expires within 30 days makes the
    agent send SignCertificate by itself once connected; one with years left does not."""
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    ending = ca.issue_client(CP_ID, not_after=datetime.now(UTC) + timedelta(days=10))
    agent = secured_agent(
        agent_factory, workdir, csms.url, profile=3, roots=ca, identity=ending, password=None
    )
    await agent.start()
    request = await csms.wait_for("SignCertificate")
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP_ID
    assert "ChargePointCertificate CN=CP001" in agent.log()

    answer = await csms.call("CertificateSigned", {"certificateChain": ca.sign_csr(request["csr"])})
    assert answer == {"status": "Accepted"}
    renewed = len(csms.subprotocols)
    await csms.wait_connections(renewed + 1)
    assert serial_presented(csms) != ending.cert.serial_number
    # The renewed certificate has years left: the next connection asks for nothing.
    assert len(csms.payloads("SignCertificate")) == 1


async def test_a_certificate_signed_that_does_not_fit_is_rejected_and_reported(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent, factory = await profile_3(agent_factory, workdir, ca, started)
    cert_file, key_file = identity_files(agent)
    identity = (cert_file.read_bytes(), key_file.read_bytes())

    async def refused(chain: str, reason: str) -> None:
        mark = csms.mark()
        answer = await csms.call("CertificateSigned", {"certificateChain": chain})
        assert answer == {"status": "Rejected"}, reason
        event = await csms.wait_for(
            EVENT, lambda p: p["type"] == "InvalidChargePointCertificate", since=mark
        )
        assert event["techInfo"].startswith(f"{reason}:"), event
        assert (cert_file.read_bytes(), key_file.read_bytes()) == identity, reason

    connections = len(csms.subprotocols)
    # Before any SignCertificate: a certificate nobody asked for.
    await refused(ca.issue_client(CP_ID).chain_pem(), "NoPendingRequest")

    async def sign_certificate() -> str:
        mark = csms.mark()
        answer = await csms.call(
            "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
        )
        assert answer == {"status": "Accepted"}
        csr: str = (await csms.wait_for("SignCertificate", since=mark))["csr"]
        return csr

    stale = await sign_certificate()
    csr = await sign_certificate()  # only the newest CSR's key can take a certificate
    now = datetime.now(UTC)
    await refused(ca.sign_csr(stale), "KeyMismatch")
    await refused(ca.issue_client(CP_ID).chain_pem(), "KeyMismatch")  # for another key
    await refused(TestCa.create("Rogue CA").sign_csr(csr), "ChainInvalid")
    # Signed by the right root, for the CSR's own key, but naming another charge point.
    another = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TestVendor"),
            x509.NameAttribute(NameOID.COMMON_NAME, "CP002"),
        ]
    )
    await refused(ca.sign_csr(csr, subject=another), "SubjectMismatch")
    await refused(
        ca.sign_csr(csr, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)),
        "Expired",
    )
    await refused(
        ca.sign_csr(csr, not_before=now + timedelta(days=1), not_after=now + timedelta(days=30)),
        "NotYetValid",
    )
    await refused("not a certificate chain", "Unparseable")
    assert len(csms.subprotocols) == connections  # nothing made it reconnect

    # The working certificate stays in use: a forced reconnect presents it again.
    await agent.sim("network", "down")
    await csms.wait_disconnected(CP_ID)
    await agent.sim("network", "up")
    await reconnected(csms, connections)
    assert serial_presented(csms) == factory.cert.serial_number

    # The CSR is still pending after all that, and after a restart: its certificate is
    # taken, here from a sub CA of the trusted root (the chain carries the intermediate,
    # which the CSMS needs to verify it).
    await agent.stop()
    connections = len(csms.subprotocols)
    mark = csms.mark()
    await agent.start()
    await up(csms, agent, since=mark)
    assert len(csms.subprotocols) == connections + 1
    assert serial_presented(csms) == factory.cert.serial_number
    chain = ca.intermediate("CSMS Sub CA").sign_csr(csr)
    connections = len(csms.subprotocols)
    mark = csms.mark()
    answer = await csms.call("CertificateSigned", {"certificateChain": chain})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, connections)
    assert serial_presented(csms) == x509.load_pem_x509_certificate(chain.encode()).serial_number
    await csms.wait_for(
        EVENT, lambda p: p["type"] == "ReconfigurationOfSecurityParameters", since=mark
    )
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    sent = csms.messages(EVENT)
    assert [r.payload["type"] for r in sent] == [
        "StartupOfTheDevice",
        *["InvalidChargePointCertificate"] * 8,
        "StartupOfTheDevice",
        "ReconfigurationOfSecurityParameters",
    ]
    assert_wire_matches_log(agent, sent)


async def test_a_v1_root_is_trusted_like_any_other(
    agent_factory: AgentFactory, workdir: Path, started: list[LoopbackCsms]
) -> None:
    """A CSMS whose PKI has an X.509 v1 root (no basicConstraints): seeded from the factory
    bundle, it verifies the CSMS on profile 3 and vouches for a renewed charge point
    certificate; InstallCertificate takes another such root."""
    old = TestCa.create("Old CSMS Root", v1=True)
    csms, agent, factory = await profile_3(agent_factory, workdir, old, started)
    assert serial_presented(csms) == factory.cert.serial_number

    _, renewed = await renewed_over_the_wire(csms, agent, old.intermediate("Old Sub CA"))
    assert serial_presented(csms) == renewed.serial_number

    another = TestCa.create("Another Old Root", v1=True)
    assert await install(csms, CENTRAL, another.pem()) == "Accepted"
    assert await listed(csms, CENTRAL) == {
        normalised(expected_hash_data(old.cert, old.cert)),
        normalised(expected_hash_data(another.cert, another.cert)),
    }


async def renew_with_a_root_the_csms_does_not_trust(
    csms: LoopbackCsms, rogue: TestCa
) -> x509.Certificate:
    """Install ``rogue`` as a Central System root and have it sign the charger's next CSR:
    a chain the charger can verify, for a certificate the CSMS will not accept."""
    assert await install(csms, CENTRAL, rogue.pem()) == "Accepted"
    mark = csms.mark()
    answer = await csms.call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert answer == {"status": "Accepted"}
    csr = (await csms.wait_for("SignCertificate", since=mark))["csr"]
    chain = rogue.sign_csr(csr)
    answer = await csms.call("CertificateSigned", {"certificateChain": chain})
    assert answer == {"status": "Accepted"}
    return x509.load_pem_x509_certificate(chain.encode())


async def test_a_renewed_certificate_that_cannot_connect_falls_back(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent, factory = await profile_3(agent_factory, workdir, ca, started)
    cert_file, key_file = identity_files(agent)
    old_key = key_file.read_bytes()

    before = len(csms.subprotocols)
    mark = csms.mark()
    await renew_with_a_root_the_csms_does_not_trust(csms, TestCa.create("Rogue CA"))
    await agent.wait_log("falling back to the previous one")
    await reconnected(csms, before)
    assert serial_presented(csms) == factory.cert.serial_number
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()) == factory.cert
    assert key_file.read_bytes() == old_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    changed, restored = await events(csms, 2, since=mark)
    assert changed.payload["techInfo"] == "ChargePointCertificate changed"
    assert restored.payload["type"] == "ReconfigurationOfSecurityParameters"
    assert "ChargePointCertificate restored" in restored.payload["techInfo"]

    # The fallback is on disk: a restart connects with the working identity at once.
    await agent.stop()
    before = len(csms.subprotocols)
    await agent.start()
    await reconnected(csms, before)
    assert serial_presented(csms) == factory.cert.serial_number


async def test_a_renewed_certificate_on_trial_survives_a_power_cut(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    relay = await Relay(csms.port).start()
    try:
        factory = ca.issue_client(CP_ID)
        url = f"wss://127.0.0.1:{relay.port}{csms.path}"
        agent = secured_agent(
            agent_factory, workdir, url, profile=3, roots=ca, identity=factory, password=None
        )
        await agent.start()
        await up(csms, agent)

        # The first attempt with the new certificate hangs: no failure is counted yet.
        relay.hold = True
        await renew_with_a_root_the_csms_does_not_trust(csms, TestCa.create("Rogue CA"))
        await asyncio.wait_for(relay.held.wait(), WAIT_S)
        await agent.kill9()

        relay.hold = False
        before = len(csms.subprotocols)
        await agent.start()
        # Three failed attempts take a second or two; time enough for several rounds.
        await csms.wait_connections(before + 1)
        assert serial_presented(csms) == factory.cert.serial_number
    finally:
        await relay.stop()


async def test_an_event_in_flight_when_the_renewed_certificate_is_taken_is_sent_once(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    agent = secured_agent(
        agent_factory,
        workdir,
        csms.url,
        profile=3,
        roots=ca,
        identity=ca.issue_client(CP_ID),
        password=None,
    )
    await agent.start()
    await up(csms, agent)
    mark = csms.mark()
    answer = await csms.call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert answer == {"status": "Accepted"}
    csr = (await csms.wait_for("SignCertificate", since=mark))["csr"]

    async def slow_answer(payload: dict[str, Any]) -> dict[str, Any]:
        """The CSMS takes its time over the first event: it answers once the charger has
        hung up, or after a second if it has not."""
        if len(csms.messages(EVENT, since=mark)) == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(csms.wait_disconnected(CP_ID), 1.0)
        return {}

    csms.responders[EVENT] = slow_answer
    answer = await csms.call("CertificateSigned", {"certificateChain": "not a chain"})
    assert answer == {"status": "Rejected"}
    await csms.wait_for(EVENT, since=mark)  # InvalidChargePointCertificate, not answered yet
    connections = len(csms.subprotocols)
    answer = await csms.call("CertificateSigned", {"certificateChain": ca.sign_csr(csr)})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, connections)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])
    sent = [r.payload["type"] for r in csms.messages(EVENT, since=mark)]
    assert sent == ["InvalidChargePointCertificate", "ReconfigurationOfSecurityParameters"]


# -------------------------------------------------------------------- security events


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
async def test_start_up_and_reset_are_reported(
    kind: str, agent: AgentProcess, csms: LoopbackCsms
) -> None:
    (startup,) = await events(csms, 1)
    assert startup.payload["type"] == "StartupOfTheDevice"
    stamp = startup.payload["timestamp"]
    assert RFC3339_Z.match(stamp), stamp
    sent_at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    boot = csms.messages("BootNotification")[0]
    assert startup.index > boot.index

    mark = csms.mark()
    assert await csms.call("Reset", {"type": kind}) == {"status": "Accepted"}
    reboot = await csms.wait_for_message("BootNotification", since=mark)
    (reset,) = await events(csms, 1, since=mark)
    assert reset.payload["type"] == "ResetOrReboot"
    assert reset.index > reboot.index
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)
    assert [r.payload["type"] for r in csms.messages(EVENT)] == [
        "StartupOfTheDevice",
        "ResetOrReboot",
    ]
    assert_wire_matches_log(agent, csms.messages(EVENT))


async def test_raising_to_profile_3_reconnects_with_the_certificate_and_is_reported(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca, password=PASSWORD)
    started.append(await csms.start())
    agent = secured_agent(
        agent_factory, workdir, csms.url, profile=2, roots=ca, identity=ca.issue_client(CP_ID)
    )
    await agent.start()
    await up(csms, agent)
    assert csms.client_certificates == [None]

    csms.password = None  # profile 3 authenticates with the certificate alone
    before = len(csms.subprotocols)
    mark = csms.mark()
    answer = await csms.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "3"})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, before)
    assert csms.client_certificates[-1] is not None
    await agent.wait_log("SecurityProfile confirmed by a successful connection")
    got = await csms.call("GetConfiguration", {"key": ["SecurityProfile"]})
    assert got["configurationKey"][0]["value"] == "3"
    (raised,) = await events(csms, 1, since=mark)
    assert raised.payload["type"] == "ReconfigurationOfSecurityParameters"
    assert "SecurityProfile" in raised.payload.get("techInfo", "")
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert_wire_matches_log(agent, csms.messages(EVENT))


async def test_an_untrusted_csms_is_reported_once_it_can_be_reached_even_after_kill9(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    """The agent first meets a CSMS whose certificate it does not trust: the event is logged
    and queued. Killed (-9) and started again, still unable to connect, it adds this start's
    events. Once the CSMS presents a trusted certificate on the same address, every queued
    event is delivered, in order, exactly once."""
    impostor = tls_csms(workdir, TestCa.create("Impostor CA").issue_server(), password=PASSWORD)
    started.append(await impostor.start())
    agent = secured_agent(agent_factory, workdir, impostor.url, profile=2, roots=ca)

    for start in (1, 2):
        await agent.start()
        await wait_security_log(agent, start, "InvalidCentralSystemCertificate")
        # It keeps trying, and the streak of refusals is one event.
        attempts = agent.log().count("reconnecting in")
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while agent.log().count("reconnecting in") < attempts + 3:
            assert asyncio.get_running_loop().time() < deadline, "no further attempts"
            await asyncio.sleep(0.05)
        await agent.wait_status(lambda s, n=start: s["queue"]["depth"] == 2 * n)
        assert [e["type"] for e in security_log(agent)] == [
            "StartupOfTheDevice",
            "InvalidCentralSystemCertificate",
        ] * start
        if start == 1:
            await agent.kill9()
    assert impostor.received == []
    assert impostor.client_certificates == []  # no TLS session was ever completed

    # The CSMS fixes its certificate: same address, a certificate from the trusted CA.
    await impostor.stop()
    csms = tls_csms(workdir, ca.issue_server(), password=PASSWORD, port=impostor.port)
    started.append(await csms.start())
    assert csms.url == impostor.url
    await booted(csms)
    sent = await events(csms, 4)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])
    assert csms.messages(EVENT) == sent  # exactly once
    assert all(r.index > csms.messages("BootNotification")[0].index for r in sent)
    assert [r.payload["type"] for r in sent] == [
        "StartupOfTheDevice",
        "InvalidCentralSystemCertificate",
    ] * 2
    assert "CERTIFICATE_VERIFY_FAILED" in sent[1].payload["techInfo"], sent[1].payload
    assert len({r.unique_id for r in sent}) == 4
    assert_wire_matches_log(agent, sent)
