"""The certificate store of the OCPP 1.6 security extension, and the test CA it is tested with."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import DNSName, ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from cpagent.security import pki
from cpagent.security.pki import (
    CertificateHashData,
    CertificateStore,
    CertificateUse,
    PkiError,
    hash_data,
)
from cpagent.testing.pki import Issued, TestCa, version_1

CSMS = CertificateUse.CENTRAL_SYSTEM_ROOT
MANUFACTURER = CertificateUse.MANUFACTURER_ROOT
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def root() -> TestCa:
    return TestCa.create("CSO Root")


@pytest.fixture(scope="module")
def sub_ca(root: TestCa) -> TestCa:
    return root.intermediate("CSO Sub CA")


@pytest.fixture(scope="module")
def other_root() -> TestCa:
    return TestCa.create("Someone Else's Root")


@pytest.fixture
def store(tmp_path: Path, root: TestCa) -> CertificateStore:
    """A store trusting ``root`` as its Central System root."""
    store = CertificateStore(tmp_path / "certs")
    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"
    return store


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def own(store: CertificateStore, name: str) -> Path:
    return store.directory / "charge-point" / name


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def public_der(key: Any) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_file_public(path: Path) -> bytes:
    return public_der(serialization.load_pem_private_key(path.read_bytes(), None))


def renew(store: CertificateStore, ca: TestCa, name: str = "CP-1") -> x509.Certificate:
    """One SignCertificate / CertificateSigned round trip."""
    return store.accept_signed(ca.sign_csr(store.new_csr(name, "CPO")), NOW, common_name=name)


def self_signed(serial: int, key: Any | None = None) -> x509.Certificate:
    """A minimal self-signed CA with a chosen serial number (and key)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Serial Test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def sign_for(ca: TestCa, public_key: Any, usage: x509.ObjectIdentifier) -> str:
    """A leaf for ``public_key`` with a chosen extended key usage, signed by ``ca``."""
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP-1")]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake in memory; raises :class:`ssl.SSLError` when either side refuses."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for side in (client_side, server_side):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2 and not c_out.pending and not s_out.pending:
            # TLS 1.3: the server judges the client certificate after the client is done.
            server_side.write(b"ping")
            c_in.write(s_out.read())
            assert client_side.read(4) == b"ping"
            return
    raise AssertionError("handshake did not finish")


# --- hash data ---


@pytest.mark.parametrize("name", ["SHA256", "SHA384", "SHA512"])
def test_hash_data_of_a_leaf_is_the_ocsp_cert_id(sub_ca: TestCa, name: str) -> None:
    leaf = sub_ca.issue_client("CP-1").cert
    algorithm = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, sub_ca.cert, algorithm[name]).build()

    data = hash_data(leaf, sub_ca.cert, name.lower())

    assert data.hash_algorithm == name
    assert data.issuer_name_hash == request.issuer_name_hash.hex()
    assert data.issuer_key_hash == request.issuer_key_hash.hex()
    assert int(data.serial_number, 16) == request.serial_number


def test_hash_data_hashes_the_issuer_name_and_ec_point(sub_ca: TestCa) -> None:
    leaf = sub_ca.issue_client("CP-1").cert
    point = sub_ca.key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    data = hash_data(leaf, sub_ca.cert)

    assert data.issuer_name_hash == hashlib.sha256(sub_ca.cert.subject.public_bytes()).hexdigest()
    assert data.issuer_key_hash == hashlib.sha256(point).hexdigest()
    assert data.serial_number == format(leaf.serial_number, "x")


def test_a_root_is_its_own_issuer_also_for_rsa_keys() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(0x0001ABC, key)
    pkcs1 = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )

    data = hash_data(cert)

    assert data.issuer_key_hash == hashlib.sha256(pkcs1).hexdigest()
    assert data.issuer_name_hash == hashlib.sha256(cert.subject.public_bytes()).hexdigest()
    assert data.serial_number == "1abc"


def test_an_algorithm_ocpp_does_not_name_is_refused(root: TestCa) -> None:
    with pytest.raises(PkiError) as caught:
        hash_data(root.cert, algorithm="SHA1")
    assert caught.value.reason == "UnsupportedAlgorithm"


def test_hash_data_round_trips_through_ocpp_fields(root: TestCa) -> None:
    data = hash_data(root.cert)

    fields = data.to_ocpp()
    snake = {"hash_algorithm": "SHA256", "issuer_name_hash": data.issuer_name_hash}
    snake |= {"issuer_key_hash": data.issuer_key_hash, "serial_number": data.serial_number}

    assert fields == {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": data.issuer_name_hash,
        "issuerKeyHash": data.issuer_key_hash,
        "serialNumber": data.serial_number,
    }
    assert CertificateHashData.from_ocpp(fields) == data
    assert CertificateHashData.from_ocpp(snake) == data


def test_hash_data_without_a_field_is_unparseable() -> None:
    with pytest.raises(PkiError) as caught:
        CertificateHashData.from_ocpp({"hashAlgorithm": "SHA256", "issuerNameHash": "00"})
    assert caught.value.reason == "Unparseable"


def test_matching_ignores_hex_case_and_leading_zeros() -> None:
    data = CertificateHashData("SHA256", "ab01", "cd02", "1f")

    assert data.matches(CertificateHashData("sha256", "AB01", "CD02", "001F"))
    assert not data.matches(CertificateHashData("SHA256", "ab01", "cd02", "1e"))
    assert not data.matches(CertificateHashData("SHA256", "ab01", "cd03", "1f"))
    assert not data.matches(CertificateHashData("SHA384", "ab01", "cd02", "1f"))


# --- the store's directories ---


def test_a_new_store_has_private_directories(tmp_path: Path) -> None:
    loose = tmp_path / "certs" / "manufacturer-roots"
    loose.mkdir(parents=True, mode=0o755)
    loose.chmod(0o755)

    store = CertificateStore(tmp_path / "certs")

    assert files(store.directory) == ["central-system-roots", "charge-point", "manufacturer-roots"]
    for path in (store.directory, *store.directory.iterdir()):
        assert mode(path) == 0o700, path


def test_temporary_files_left_by_a_power_cut_are_removed(tmp_path: Path) -> None:
    CertificateStore(tmp_path / "certs")
    stale = tmp_path / "certs" / "charge-point" / ".key.pem.1234abcd.tmp"
    stale.write_text("half a key")

    CertificateStore(tmp_path / "certs")

    assert not stale.exists()


def test_a_store_that_cannot_be_created_raises_io(tmp_path: Path) -> None:
    (tmp_path / "certs").write_text("a file, not a directory")

    with pytest.raises(PkiError) as caught:
        CertificateStore(tmp_path / "certs")
    assert caught.value.reason == "Io"


# --- InstallCertificate, GetInstalledCertificateIds ---


def test_an_installed_root_is_stored_under_its_fingerprint(tmp_path: Path, root: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs")

    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"

    fingerprint = hashlib.sha256(root.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    roots_dir = store.directory / "central-system-roots"
    assert files(roots_dir) == [f"{fingerprint}.pem"]
    assert x509.load_pem_x509_certificate((roots_dir / f"{fingerprint}.pem").read_bytes()) == (
        root.cert
    )
    assert store.roots(CSMS) == [root.cert]
    assert store.roots(MANUFACTURER) == []
    assert store.installed_ids(CSMS) == [hash_data(root.cert)]
    assert store.installed_ids(MANUFACTURER) == []


def test_installing_twice_is_accepted_and_keeps_one_copy(
    store: CertificateStore, root: TestCa
) -> None:
    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"

    assert len(files(store.directory / "central-system-roots")) == 1


def test_the_kinds_of_root_are_kept_apart(store: CertificateStore, other_root: TestCa) -> None:
    assert store.install_root(MANUFACTURER, other_root.pem(), NOW) == "Accepted"

    assert store.roots(MANUFACTURER) == [other_root.cert]
    assert store.installed_ids(MANUFACTURER) == [hash_data(other_root.cert)]
    assert len(store.roots(CSMS)) == 1


def test_an_installed_intermediate_is_hashed_with_its_installed_issuer(
    store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    assert store.install_root(MANUFACTURER, sub_ca.pem(), NOW) == "Accepted"

    assert store.installed_ids(MANUFACTURER) == [hash_data(sub_ca.cert, root.cert)]


def _odd_root(*, ca: bool, cert_sign: bool | None) -> TestCa:
    """A self-signed CA with basicConstraints ``ca`` and, unless None, a keyUsage."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd Root")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if cert_sign is not None:
        usage = x509.KeyUsage(True, False, False, False, False, cert_sign, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    return TestCa(builder.sign(key, hashes.SHA256()), key)


@pytest.mark.parametrize(
    "make_pem",
    [
        pytest.param(lambda ca: "not a certificate", id="garbage"),
        pytest.param(lambda ca: ca.pem()[:200], id="truncated"),
        pytest.param(lambda ca: ca.issue_client("CP-1").chain_pem(), id="not-a-ca"),
        pytest.param(lambda ca: _odd_root(ca=False, cert_sign=None).pem(), id="ca-false"),
        pytest.param(lambda ca: _odd_root(ca=True, cert_sign=False).pem(), id="no-keyCertSign"),
        pytest.param(lambda ca: ca.pem() + TestCa.create().pem(), id="two-certificates"),
        pytest.param(
            lambda ca: pem(version_1(ca.issue_client("CP-1").cert, ca.key)), id="v1-not-a-root"
        ),
        pytest.param(
            lambda ca: pem(version_1(TestCa.create("Forged", v1=True).cert, ca.key)),
            id="v1-self-issued-not-self-signed",
        ),
        pytest.param(
            lambda ca: TestCa.create(not_before=NOW - 3 * DAY, not_after=NOW - DAY).pem(),
            id="expired",
        ),
        pytest.param(lambda ca: TestCa.create(not_before=NOW + DAY).pem(), id="not-yet-valid"),
    ],
)
def test_unusable_roots_are_rejected(tmp_path: Path, root: TestCa, make_pem: Any) -> None:
    store = CertificateStore(tmp_path / "certs")
    assert (
        store.install_root(MANUFACTURER, _odd_root(ca=True, cert_sign=True).pem(), NOW)
        == "Accepted"
    )
    assert (
        store.install_root(MANUFACTURER, _odd_root(ca=True, cert_sign=None).pem(), NOW)
        == "Accepted"
    )

    assert store.install_root(MANUFACTURER, make_pem(root), NOW) == "Rejected"

    assert len(files(store.directory / "manufacturer-roots")) == 2


def test_a_self_signed_v1_root_is_a_trust_anchor(tmp_path: Path) -> None:
    """RFC 5280 6.1: a trust anchor is configured data, a name and a key, not a certificate
    to judge by its extensions; an X.509 v1 root has none, and vouches as OpenSSL lets it."""
    old = TestCa.create("Old Root", v1=True)
    store = CertificateStore(tmp_path / "certs")

    assert store.install_root(CSMS, old.pem(), NOW) == "Accepted"

    assert store.roots(CSMS) == [old.cert]
    assert store.installed_ids(CSMS) == [hash_data(old.cert)]
    assert renew(store, old).issuer == old.cert.subject
    sub = old.intermediate("Sub CA of an old root")
    assert renew(store, sub).issuer == sub.cert.subject

    bundle = tmp_path / "factory-roots.pem"
    bundle.write_text(old.pem())
    fresh = CertificateStore(tmp_path / "fresh")
    assert fresh.seed(CSMS, bundle) == []
    assert fresh.roots(CSMS) == [old.cert]


def test_a_full_store_rejects_another_root(tmp_path: Path, root: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs", max_certificates=2)
    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"
    assert store.install_root(MANUFACTURER, TestCa.create().pem(), NOW) == "Accepted"

    assert store.install_root(CSMS, TestCa.create().pem(), NOW) == "Rejected"
    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"
    assert len(store.roots(CSMS)) == 1


def test_a_root_that_cannot_be_written_failed(
    tmp_path: Path, root: TestCa, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CertificateStore(tmp_path / "certs")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert store.install_root(CSMS, root.pem(), NOW) == "Failed"

    assert files(store.directory / "central-system-roots") == []


# --- DeleteCertificate ---


def test_a_root_named_by_its_hash_data_is_deleted(
    store: CertificateStore, other_root: TestCa
) -> None:
    store.install_root(MANUFACTURER, other_root.pem(), NOW)
    fields = hash_data(other_root.cert, algorithm="SHA384").to_ocpp()
    shouted = {k: v.upper() for k, v in fields.items()}

    assert store.delete(CertificateHashData.from_ocpp(shouted)) == "Accepted"

    assert files(store.directory / "manufacturer-roots") == []
    assert len(store.roots(CSMS)) == 1


def test_deleting_an_unknown_certificate_is_not_found(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    assert store.delete(hash_data(sub_ca.cert)) == "NotFound"
    unknown = CertificateHashData("MD5", "00", "00", "1")
    assert store.delete(unknown) == "NotFound"

    assert len(store.roots(CSMS)) == 1


def test_the_last_central_system_root_is_not_deleted(
    store: CertificateStore, root: TestCa, other_root: TestCa
) -> None:
    store.install_root(CSMS, other_root.pem(), NOW)

    assert store.delete(hash_data(other_root.cert)) == "Accepted"
    assert store.delete(hash_data(root.cert)) == "Failed"

    assert store.roots(CSMS) == [root.cert]


def test_a_root_in_use_is_not_deleted_while_others_may_be(
    store: CertificateStore, root: TestCa, other_root: TestCa
) -> None:
    """M04.FR.06: ``still_verifies`` judges the Central System roots a deletion would leave."""
    store.install_root(CSMS, other_root.pem(), NOW)
    store.install_root(MANUFACTURER, TestCa.create("Maker").pem(), NOW)
    judged: list[list[x509.Certificate]] = []

    def verified_by_root(remaining: list[x509.Certificate]) -> bool:
        judged.append(remaining)
        return root.cert in remaining

    assert store.delete(hash_data(root.cert), still_verifies=verified_by_root) == "Failed"
    assert judged == [[other_root.cert]]
    assert sorted(store.roots(CSMS), key=str) == sorted([root.cert, other_root.cert], key=str)
    assert store.delete(hash_data(other_root.cert), still_verifies=verified_by_root) == "Accepted"
    maker = store.installed_ids(MANUFACTURER)[0]
    assert store.delete(maker, still_verifies=lambda remaining: False) == "Accepted"
    assert store.roots(CSMS) == [root.cert]


def test_the_last_root_may_go_when_no_connection_uses_it(
    store: CertificateStore, root: TestCa
) -> None:
    assert store.delete(hash_data(root.cert), still_verifies=lambda remaining: True) == "Accepted"
    assert store.roots(CSMS) == []


def test_a_root_that_cannot_be_removed_failed(
    store: CertificateStore, other_root: TestCa, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.install_root(MANUFACTURER, other_root.pem(), NOW)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert store.delete(hash_data(other_root.cert)) == "Failed"
    monkeypatch.undo()

    assert store.roots(MANUFACTURER) == [other_root.cert]


# --- SignCertificate ---


def test_a_csr_is_for_a_new_pending_p256_key(store: CertificateStore) -> None:
    csr = x509.load_pem_x509_csr(store.new_csr("CP-0042", "Example CPO").encode())

    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-0042"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    pending = own(store, "pending-key.pem")
    assert mode(pending) == 0o600
    assert key_file_public(pending) == public_der(csr)
    assert store.identity() is None


def test_a_new_csr_replaces_the_pending_key(store: CertificateStore, sub_ca: TestCa) -> None:
    first = store.new_csr("CP-1", "CPO")
    second = store.new_csr("CP-1", "CPO")

    assert key_file_public(own(store, "pending-key.pem")) == public_der(
        x509.load_pem_x509_csr(second.encode())
    )
    with pytest.raises(PkiError) as caught:
        store.accept_signed(sub_ca.sign_csr(first), NOW, common_name="CP-1")
    assert caught.value.reason == "KeyMismatch"


@pytest.mark.parametrize("common_name", ["", "x" * 65])
def test_a_subject_x509_refuses_is_invalid(store: CertificateStore, common_name: str) -> None:
    with pytest.raises(PkiError) as caught:
        store.new_csr(common_name, "CPO")
    assert caught.value.reason == "InvalidSubject"
    assert not own(store, "pending-key.pem").exists()


# --- CertificateSigned ---


def test_a_signed_chain_becomes_the_identity(store: CertificateStore, sub_ca: TestCa) -> None:
    csr = store.new_csr("CP-1", "CPO")
    pending_public = key_file_public(own(store, "pending-key.pem"))
    chain = sub_ca.sign_csr(csr)

    leaf = store.accept_signed(chain, NOW, common_name="CP-1")

    assert store.identity() == (own(store, "cert.pem"), own(store, "key.pem"))
    stored = x509.load_pem_x509_certificates(own(store, "cert.pem").read_bytes())
    assert stored == [leaf, sub_ca.cert]
    assert stored == x509.load_pem_x509_certificates(chain.encode())
    assert key_file_public(own(store, "key.pem")) == pending_public == public_der(leaf)
    assert mode(own(store, "key.pem")) == 0o600
    assert store.identity_certificate() == leaf
    assert files(store.directory / "charge-point") == ["cert.pem", "key.pem"]


def test_a_renewal_keeps_the_previous_identity(store: CertificateStore, sub_ca: TestCa) -> None:
    first = renew(store, sub_ca)
    first_key = own(store, "key.pem").read_bytes()

    second = renew(store, sub_ca)

    assert second != first
    assert store.identity_certificate() == second
    previous = x509.load_pem_x509_certificates(own(store, "cert.previous.pem").read_bytes())
    assert previous == [first, sub_ca.cert]
    assert own(store, "key.previous.pem").read_bytes() == first_key
    assert mode(own(store, "key.previous.pem")) == 0o600
    assert not own(store, "pending-key.pem").exists()


def test_a_chain_signed_directly_by_the_root_or_with_the_root_is_accepted(
    store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    assert renew(store, root).issuer == root.cert.subject
    chain = sub_ca.sign_csr(store.new_csr("CP-1", "CPO")) + root.pem()
    assert store.accept_signed(chain, NOW, common_name="CP-1").issuer == sub_ca.cert.subject


def test_a_root_without_key_usage_vouches_like_in_openssl(tmp_path: Path) -> None:
    bare = _odd_root(ca=True, cert_sign=None)
    store = CertificateStore(tmp_path / "certs")
    assert store.install_root(CSMS, bare.pem(), NOW) == "Accepted"

    assert renew(store, bare).issuer == bare.cert.subject


def test_a_ca_that_may_not_sign_certificates_does_not_vouch(tmp_path: Path) -> None:
    signer = _odd_root(ca=True, cert_sign=False)
    store = CertificateStore(tmp_path / "certs")
    store.install_root(CSMS, TestCa.create().pem(), NOW)
    (store.directory / "central-system-roots" / "planted.pem").write_text(signer.pem())

    with pytest.raises(PkiError) as caught:
        renew(store, signer)
    assert caught.value.reason == "ChainInvalid"
    assert "keyUsage" in str(caught.value)


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


SUBJECTS: dict[str, tuple[tuple[x509.ObjectIdentifier, str], ...]] = {
    "another-charge-point": ((NameOID.ORGANIZATION_NAME, "CPO"), (NameOID.COMMON_NAME, "CP-2")),
    "a-longer-name": ((NameOID.ORGANIZATION_NAME, "CPO"), (NameOID.COMMON_NAME, "CP-10")),
    "no-common-name": ((NameOID.ORGANIZATION_NAME, "CPO"),),
    "two-common-names": (
        (NameOID.ORGANIZATION_NAME, "CPO"),
        (NameOID.COMMON_NAME, "CP-1"),
        (NameOID.COMMON_NAME, "CP-2"),
    ),
    "no-organization": ((NameOID.COMMON_NAME, "CP-1"),),
}
"""Subjects a signed certificate for the CSR's key may not carry: A00.FR.511 (the CN is this
charge point's) and A00.FR.509 (an O names the owner)."""


def test_the_subject_may_name_the_organization_differently(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    """The O is the CPO's, which the CA vouches for; only its presence is the charger's to
    check. The CN is compared exactly, as the charger asked for it."""
    csr = store.new_csr("CP-1", "CPO")
    subject = name((NameOID.ORGANIZATION_NAME, "CPO Ltd"), (NameOID.COMMON_NAME, "CP-1"))

    leaf = store.accept_signed(sub_ca.sign_csr(csr, subject=subject), NOW, common_name="CP-1")

    assert leaf.subject == subject
    assert store.identity_certificate() == leaf


def _refusal_chain(
    case: str, store: CertificateStore, root: TestCa, sub_ca: TestCa, other: TestCa
) -> str:
    """Make ``store``'s CSR and answer it the way ``case`` names."""
    csr = store.new_csr("CP-1", "CPO")
    if case == "wrong-ca":
        return other.intermediate().sign_csr(csr)
    if case == "expired":
        return sub_ca.sign_csr(csr, not_before=NOW - 3 * DAY, not_after=NOW - DAY)
    if case == "not-yet-valid":
        return sub_ca.sign_csr(csr, not_before=NOW + DAY)
    if case == "intermediate-expired":
        old = root.intermediate(not_before=NOW - 3 * DAY, not_after=NOW - DAY)
        return old.sign_csr(csr, not_before=NOW - 2 * DAY)
    if case == "intermediate-missing":
        return sub_ca.sign_csr(csr).split("-----END CERTIFICATE-----")[0] + (
            "-----END CERTIFICATE-----\n"
        )
    if case == "server-certificate":
        public = x509.load_pem_x509_csr(csr.encode()).public_key()
        return sign_for(root, public, ExtendedKeyUsageOID.SERVER_AUTH)
    if case == "key-mismatch":
        return sub_ca.issue_client("CP-1").chain_pem()
    if case in SUBJECTS:
        return sub_ca.sign_csr(csr, subject=name(*SUBJECTS[case]))
    if case == "too-large":
        return sub_ca.sign_csr(csr) + " " * 10_000
    if case == "unparseable":
        return "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"
    if case == "empty":
        return ""
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-ca", "ChainInvalid"),
        ("intermediate-missing", "ChainInvalid"),
        ("server-certificate", "ChainInvalid"),
        ("expired", "Expired"),
        ("intermediate-expired", "Expired"),
        ("not-yet-valid", "NotYetValid"),
        ("key-mismatch", "KeyMismatch"),
        *((case, "SubjectMismatch") for case in SUBJECTS),
        ("too-large", "ChainTooLarge"),
        ("unparseable", "Unparseable"),
        ("empty", "Unparseable"),
    ],
)
def test_a_bad_chain_is_refused_and_changes_nothing(
    store: CertificateStore,
    root: TestCa,
    sub_ca: TestCa,
    other_root: TestCa,
    case: str,
    reason: str,
) -> None:
    current = renew(store, sub_ca)
    before = {name: own(store, name).read_bytes() for name in files(own(store, ""))}
    chain = _refusal_chain(case, store, root, sub_ca, other_root)
    pending = own(store, "pending-key.pem").read_bytes()

    with pytest.raises(PkiError) as caught:
        store.accept_signed(chain, NOW, common_name="CP-1")

    assert caught.value.reason == reason
    assert str(caught.value)
    assert store.identity_certificate() == current
    assert own(store, "pending-key.pem").read_bytes() == pending
    for name, content in before.items():
        assert own(store, name).read_bytes() == content


def test_a_chain_of_two_intermediates_is_accepted(store: CertificateStore, sub_ca: TestCa) -> None:
    deeper = sub_ca.intermediate("CSO Sub Sub CA")

    leaf = renew(store, deeper)

    stored = x509.load_pem_x509_certificates(own(store, "cert.pem").read_bytes())
    assert stored == [leaf, deeper.cert, sub_ca.cert]
    assert deeper.chain == (deeper.cert, sub_ca.cert)


def test_a_chain_without_a_pending_request_is_refused(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    chain = sub_ca.issue_client("CP-1").chain_pem()

    with pytest.raises(PkiError) as caught:
        store.accept_signed(chain, NOW, common_name="CP-1")
    assert caught.value.reason == "NoPendingRequest"


def test_the_chain_size_limit_is_the_configured_one(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    chain = sub_ca.sign_csr(store.new_csr("CP-1", "CPO"))
    store.max_chain_size = len(chain) - 1

    with pytest.raises(PkiError) as caught:
        store.accept_signed(chain, NOW, common_name="CP-1")
    assert caught.value.reason == "ChainTooLarge"

    store.max_chain_size = len(chain)
    store.accept_signed(chain, NOW, common_name="CP-1")


def test_only_central_system_roots_vouch_for_the_identity(
    tmp_path: Path, root: TestCa, sub_ca: TestCa
) -> None:
    store = CertificateStore(tmp_path / "certs")
    store.install_root(MANUFACTURER, root.pem(), NOW)

    with pytest.raises(PkiError) as caught:
        renew(store, sub_ca)
    assert caught.value.reason == "ChainInvalid"
    assert store.identity() is None


def test_validity_is_judged_at_the_given_time(store: CertificateStore, sub_ca: TestCa) -> None:
    chain = sub_ca.sign_csr(store.new_csr("CP-1", "CPO"), not_after=NOW + 2 * DAY)

    with pytest.raises(PkiError) as caught:
        store.accept_signed(chain, NOW + 3 * DAY, common_name="CP-1")
    assert caught.value.reason == "Expired"

    store.accept_signed(chain, (NOW + DAY).replace(tzinfo=None), common_name="CP-1")


# --- fallback and interrupted changes ---


def test_revert_puts_the_previous_identity_back(store: CertificateStore, sub_ca: TestCa) -> None:
    first = renew(store, sub_ca)
    first_key = own(store, "key.pem").read_bytes()
    renew(store, sub_ca)

    assert store.revert_identity() is True

    assert store.identity_certificate() == first
    assert own(store, "key.pem").read_bytes() == first_key
    assert mode(own(store, "key.pem")) == 0o600
    assert files(store.directory / "charge-point") == ["cert.pem", "key.pem"]
    assert store.revert_identity() is False
    assert store.identity_certificate() == first


def test_there_is_nothing_to_revert_to_after_the_first_identity(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    assert store.revert_identity() is False
    leaf = renew(store, sub_ca)

    assert store.revert_identity() is False
    assert store.identity_certificate() == leaf


def test_a_previous_pair_that_does_not_fit_is_not_restored(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    current = renew(store, sub_ca)
    own(store, "key.previous.pem").write_bytes(sub_ca.issue_client("x").key_pem().encode())

    assert store.revert_identity() is False
    assert store.identity_certificate() == current


def test_a_renewal_cut_between_its_renames_is_completed(
    store: CertificateStore, sub_ca: TestCa, monkeypatch: pytest.MonkeyPatch
) -> None:
    renew(store, sub_ca)

    def power_cut(source: Path, target: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pki, "_move", power_cut)
    with pytest.raises(PkiError) as caught:
        renew(store, sub_ca, "CP-2")
    assert caught.value.reason == "Io"
    monkeypatch.undo()
    assert store.identity() is None

    reopened = CertificateStore(store.directory)

    leaf = reopened.identity_certificate()
    assert leaf is not None
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-2"
    assert reopened.identity() is not None
    assert key_file_public(own(store, "key.pem")) == public_der(leaf)
    assert not own(store, "pending-key.pem").exists()


def test_a_revert_cut_between_its_renames_is_completed(
    store: CertificateStore, sub_ca: TestCa, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = renew(store, sub_ca)
    renew(store, sub_ca)
    real_move = pki._move
    moves: list[str] = []

    def cut_after_one(source: Path, target: Path) -> None:
        if moves:
            raise OSError(5, "Input/output error")
        moves.append(source.name)
        real_move(source, target)

    monkeypatch.setattr(pki, "_move", cut_after_one)
    with pytest.raises(PkiError):
        store.revert_identity()
    monkeypatch.undo()
    assert store.identity() is None

    reopened = CertificateStore(store.directory)

    assert reopened.identity() is not None
    assert reopened.identity_certificate() == first


def test_a_first_identity_after_a_lost_one_has_no_previous(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    renew(store, sub_ca)
    own(store, "cert.pem").unlink()

    renew(store, sub_ca)

    assert not own(store, "cert.previous.pem").exists()
    assert not own(store, "key.previous.pem").exists()
    assert store.revert_identity() is False


def test_a_key_that_does_not_fit_the_certificate_is_no_identity(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    own(store, "key.pem").write_text(sub_ca.issue_client("x").key_pem())

    assert store.identity() is None


# --- factory provisioning ---


def test_a_factory_bundle_is_seeded_once(tmp_path: Path, root: TestCa, other_root: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs")
    bundle = tmp_path / "roots.pem"
    leaf = root.issue_client("not a root")
    bundle.write_text(root.pem() + leaf.chain_pem() + other_root.pem())

    warnings = store.seed(CSMS, bundle)

    assert len(warnings) == 1
    assert "not a root" in warnings[0]
    assert sorted(store.installed_ids(CSMS), key=str) == sorted(
        [hash_data(root.cert), hash_data(other_root.cert)], key=str
    )
    assert store.delete(hash_data(other_root.cert)) == "Accepted"

    store.seed(CSMS, bundle)
    assert store.roots(CSMS) == [root.cert]

    newcomer = TestCa.create("Added Later")
    bundle.write_text(root.pem() + other_root.pem() + newcomer.pem())
    assert store.seed(CSMS, bundle) == []
    assert sorted(store.installed_ids(CSMS), key=str) == sorted(
        [hash_data(root.cert), hash_data(newcomer.cert)], key=str
    )


def test_seeding_does_not_judge_validity_but_respects_the_limit(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certs", max_certificates=1)
    expired = TestCa.create("Old", not_before=NOW - 3 * DAY, not_after=NOW - DAY)
    bundle = tmp_path / "roots.pem"
    bundle.write_text(expired.pem() + TestCa.create("One Too Many").pem())

    warnings = store.seed(MANUFACTURER, bundle)

    assert store.roots(MANUFACTURER) == [expired.cert]
    assert len(warnings) == 1
    assert "One Too Many" in warnings[0]


@pytest.mark.parametrize(("content", "reason"), [(None, "Io"), ("no PEM here", "Unparseable")])
def test_an_unusable_bundle_raises(tmp_path: Path, content: str | None, reason: str) -> None:
    store = CertificateStore(tmp_path / "certs")
    bundle = tmp_path / "roots.pem"
    if content is not None:
        bundle.write_text(content)

    with pytest.raises(PkiError) as caught:
        store.seed(CSMS, bundle)
    assert caught.value.reason == reason


def test_a_factory_identity_is_copied_with_a_private_key(tmp_path: Path, sub_ca: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs")
    factory = sub_ca.issue_client("CP-1")
    cert_path, key_path = factory.write(tmp_path / "factory")
    key_path.chmod(0o644)

    warnings = store.seed_identity(cert_path, key_path)

    assert len(warnings) == 1
    assert str(key_path) in warnings[0]
    assert store.identity() == (own(store, "cert.pem"), own(store, "key.pem"))
    assert mode(own(store, "key.pem")) == 0o600
    assert x509.load_pem_x509_certificates(own(store, "cert.pem").read_bytes()) == [
        factory.cert,
        sub_ca.cert,
    ]
    assert key_file_public(own(store, "key.pem")) == public_der(factory.key)


def test_a_private_factory_key_gives_no_warning(tmp_path: Path, sub_ca: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs")
    cert_path, key_path = sub_ca.issue_client("CP-1").write(tmp_path / "factory")

    assert store.seed_identity(cert_path, key_path) == []
    assert store.identity() is not None


def test_a_renewed_identity_is_not_overwritten_by_the_factory_one(
    tmp_path: Path, store: CertificateStore, sub_ca: TestCa
) -> None:
    renewed = renew(store, sub_ca)
    cert_path, key_path = sub_ca.issue_client("factory").write(tmp_path / "factory")

    assert store.seed_identity(cert_path, key_path) == []
    assert store.identity_certificate() == renewed


def test_a_factory_key_for_another_certificate_is_refused(tmp_path: Path, sub_ca: TestCa) -> None:
    store = CertificateStore(tmp_path / "certs")
    cert_path, _ = sub_ca.issue_client("CP-1").write(tmp_path / "factory", "a")
    _, key_path = sub_ca.issue_client("CP-1").write(tmp_path / "factory", "b")

    with pytest.raises(PkiError) as caught:
        store.seed_identity(cert_path, key_path)
    assert caught.value.reason == "KeyMismatch"
    assert files(store.directory / "charge-point") == []


# --- expiry ---


def test_certificates_expiring_soon_are_named_soonest_first(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certs")
    root = TestCa.create("Long Lived Root")
    short_ca = root.intermediate("Short CA", not_after=NOW + 20 * DAY)
    fading = TestCa.create("Fading Root", not_after=NOW + 10 * DAY)
    store.install_root(CSMS, root.pem(), NOW)
    store.install_root(MANUFACTURER, fading.pem(), NOW)
    leaf = store.accept_signed(
        short_ca.sign_csr(store.new_csr("CP-1", "CPO"), not_after=NOW + 5 * DAY),
        NOW,
        common_name="CP-1",
    )

    soon = store.expiring(NOW, timedelta(days=30))

    assert soon == [
        ("ChargePointCertificate CN=CP-1,O=CPO", leaf.not_valid_after_utc),
        ("ManufacturerRootCertificate CN=Fading Root", fading.cert.not_valid_after_utc),
        ("ChargePointCertificate chain CN=Short CA", short_ca.cert.not_valid_after_utc),
    ]
    assert [name for name, _ in store.expiring(NOW, timedelta(days=7))] == [soon[0][0]]
    assert store.expiring(NOW - 400 * DAY, timedelta(days=1)) == []
    assert len(store.expiring(NOW + 40 * DAY, timedelta(0))) == 3


# --- the test CA itself, in real TLS handshakes ---


def test_the_store_identity_passes_a_tls_server_that_trusts_the_root(
    tmp_path: Path, store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    identity = store.identity()
    assert identity is not None
    server_cert = sub_ca.issue_server().write(tmp_path / "server")

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*server_cert)
    server.load_verify_locations(cadata=root.pem())
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(
        cadata="".join(
            c.public_bytes(serialization.Encoding.PEM).decode() for c in store.roots(CSMS)
        )
    )
    client.load_cert_chain(*identity)

    handshake(client, server, "localhost")

    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    stranger.load_cert_chain(*server_cert)
    stranger.load_verify_locations(cadata=TestCa.create().pem())
    stranger.verify_mode = ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLError):
        handshake(client, stranger, "localhost")


@pytest.mark.parametrize(
    ("hostname", "issued", "ok"),
    [
        ("localhost", {}, True),
        ("127.0.0.1", {}, True),
        ("::1", {}, True),
        ("localhost", {"hostnames": ("csms.example",), "ips": ()}, False),
        ("127.0.0.1", {"ips": ("10.0.0.1",)}, False),
        ("localhost", {"not_before": NOW - 3 * DAY, "not_after": NOW - DAY}, False),
    ],
)
def test_server_certificates_name_their_hosts(
    tmp_path: Path, root: TestCa, sub_ca: TestCa, hostname: str, issued: Any, ok: bool
) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*sub_ca.issue_server(**issued).write(tmp_path))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=root.pem())

    if ok:
        handshake(client, server, hostname)
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(client, server, hostname)


def test_test_ca_certificates_pass_a_strict_verifier(root: TestCa, sub_ca: TestCa) -> None:
    server = sub_ca.intermediate().issue_server()
    builder = PolicyBuilder().store(Store([root.cert])).time(NOW)

    chain = builder.build_server_verifier(DNSName("localhost")).verify(
        server.cert, list(server.intermediates)
    )

    assert chain[-1] == root.cert
    assert len(chain) == 4


def _usages(issued: Issued) -> list[x509.ObjectIdentifier]:
    return list(issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_test_ca_issues_what_it_is_asked_for(tmp_path: Path, root: TestCa) -> None:
    ca = root.intermediate("Sub")
    client = ca.issue_client("CP-9", not_after=NOW + DAY)
    signer = ca.issue_code_signing("Firmware Signer")
    server = ca.issue_server(("a.example", "b.example"), ("192.0.2.1",))

    assert _usages(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _usages(signer) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert _usages(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert client.cert.not_valid_after_utc == (NOW + DAY).replace(microsecond=0)
    with pytest.raises(x509.ExtensionNotFound):
        client.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["a.example", "b.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
    assert ca.root is root
    assert ca.chain == (ca.cert,)
    assert root.chain == ()
    assert x509.load_pem_x509_certificates(client.chain_pem().encode()) == [client.cert, ca.cert]
    signer.cert.verify_directly_issued_by(ca.cert)
    ca.cert.verify_directly_issued_by(root.cert)

    cert_path, key_path = client.write(tmp_path / "out", "client")
    assert (cert_path.name, key_path.name) == ("client.pem", "client-key.pem")
    assert mode(key_path) == 0o600
    assert key_file_public(key_path) == public_der(client.key)


def test_a_csr_with_a_broken_signature_is_not_signed(
    store: CertificateStore, sub_ca: TestCa
) -> None:
    csr = x509.load_pem_x509_csr(store.new_csr("CP-1", "CPO").encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    broken = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)

    with pytest.raises(ValueError, match="signature"):
        sub_ca.sign_csr(broken.decode())
