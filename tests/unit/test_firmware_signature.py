"""Signed firmware: the signing certificate against manufacturer roots, the file's signature."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cpagent.security.firmware_signature import (
    CHUNK_BYTES,
    FirmwareSignatureError,
    verify_file_signature,
    verify_signing_certificate,
)
from cpagent.testing.pki import Issued, TestCa, sign_file

NOW = datetime.now(UTC)
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


@pytest.fixture(scope="module")
def root() -> TestCa:
    return TestCa.create("Manufacturer Root")


@pytest.fixture(scope="module")
def signer(root: TestCa) -> Issued:
    return root.issue_code_signing("Firmware Signer")


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "fw.bin"
    path.write_bytes(bytes(range(256)) * 4099)  # not a multiple of any chunk size
    return path


def issue(
    ca: TestCa,
    name: str,
    *,
    usages: list[x509.ObjectIdentifier] | None,
    key: PrivateKeyTypes | None = None,
    is_ca: bool = False,
) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """A certificate signed by ``ca`` with the given extendedKeyUsage (None: no extension)."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    public: CertificatePublicKeyTypes = key.public_key()  # type: ignore[assignment]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def refused(pem_text: str, roots: list[x509.Certificate], now: datetime = NOW) -> str:
    with pytest.raises(FirmwareSignatureError) as info:
        verify_signing_certificate(pem_text, roots, now)
    assert info.value.status == "InvalidCertificate"
    return str(info.value)


def bad_signature(path: Path, signature: str, cert: x509.Certificate) -> str:
    with pytest.raises(FirmwareSignatureError) as info:
        verify_file_signature(path, signature, cert)
    assert info.value.status == "InvalidSignature"
    return str(info.value)


# -- the signing certificate ------------------------------------------------------------------


def test_a_code_signing_leaf_of_an_installed_root_is_accepted(root: TestCa, signer: Issued) -> None:
    other_root = TestCa.create("Another Manufacturer")
    cert = verify_signing_certificate(signer.chain_pem(), [other_root.cert, root.cert], NOW)
    assert cert == signer.cert


def test_a_v1_manufacturer_root_vouches(root: TestCa) -> None:
    """An X.509 v1 root has no basicConstraints; as a trust anchor it is a name and a key."""
    old = TestCa.create("Old Manufacturer Root", v1=True)
    leaf = old.intermediate("Firmware CA").issue_code_signing("Firmware Signer")
    assert verify_signing_certificate(leaf.chain_pem(), [root.cert, old.cert], NOW) == leaf.cert


def test_an_installed_root_may_sign_firmware_itself(root: TestCa) -> None:
    """The signing certificate is a ManufacturerRootCertificate: it chains trivially."""
    other = TestCa.create("Another Manufacturer")
    assert verify_signing_certificate(root.pem(), [other.cert, root.cert], NOW) == root.cert
    old = TestCa.create("Old Manufacturer Root", v1=True)
    assert verify_signing_certificate(old.pem(), [old.cert], NOW) == old.cert

    assert "CN=Another Manufacturer" in refused(other.pem(), [root.cert])
    assert "expired at" in refused(root.pem(), [root.cert], NOW + timedelta(days=4000))


def test_intermediates_follow_the_leaf_and_are_needed(root: TestCa) -> None:
    sub = root.intermediate("Manufacturer Firmware CA")
    leaf = sub.issue_code_signing("Firmware Signer")
    assert verify_signing_certificate(leaf.chain_pem(), [root.cert], NOW) == leaf.cert
    assert "Firmware Signer" in refused(pem(leaf.cert), [root.cert])


def test_a_leaf_of_another_root_is_refused(signer: Issued) -> None:
    stranger = TestCa.create("Not The Manufacturer")
    assert "CN=Firmware Signer" in refused(signer.chain_pem(), [stranger.cert])


def test_without_manufacturer_roots_nothing_is_accepted(signer: Issued) -> None:
    assert "no ManufacturerRootCertificate is installed" in refused(signer.chain_pem(), [])


@pytest.mark.parametrize(
    ("offset", "word"),
    [(timedelta(days=-3), "expired at"), (timedelta(days=3), "is not valid before")],
)
def test_a_leaf_outside_its_validity_is_refused(root: TestCa, offset: timedelta, word: str) -> None:
    leaf = root.issue_code_signing(
        "Firmware Signer", not_before=NOW + offset - timedelta(days=1), not_after=NOW + offset
    )
    assert word in refused(leaf.chain_pem(), [root.cert])


def test_validity_is_judged_at_the_time_given(root: TestCa, signer: Issued) -> None:
    assert "expired at" in refused(signer.chain_pem(), [root.cert], NOW + timedelta(days=400))
    naive_now = NOW.replace(tzinfo=None)
    assert verify_signing_certificate(signer.chain_pem(), [root.cert], naive_now) == signer.cert


def test_an_expired_intermediate_is_refused(root: TestCa) -> None:
    sub = root.intermediate("Old Firmware CA", not_after=NOW - timedelta(minutes=1))
    leaf = sub.issue_code_signing("Firmware Signer")
    assert "CN=Old Firmware CA expired at" in refused(leaf.chain_pem(), [root.cert])


def test_a_tls_server_certificate_may_not_sign_firmware(root: TestCa) -> None:
    server = root.issue_server()
    assert "may not sign code" in refused(server.chain_pem(), [root.cert])


@pytest.mark.parametrize(
    "usages",
    [None, [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], [SERVER_AUTH, CODE_SIGNING]],
    ids=["no-extendedKeyUsage", "anyExtendedKeyUsage", "several"],
)
def test_an_extended_key_usage_is_optional_but_binding(
    root: TestCa, usages: list[x509.ObjectIdentifier] | None
) -> None:
    cert, _ = issue(root, "Firmware Signer", usages=usages)
    assert verify_signing_certificate(pem(cert), [root.cert], NOW) == cert


def test_an_intermediate_restricted_to_other_uses_is_refused(root: TestCa) -> None:
    for usages, accepted in (([CODE_SIGNING], True), ([SERVER_AUTH], False)):
        sub_cert, sub_key = issue(root, "Restricted CA", usages=usages, is_ca=True)
        assert isinstance(sub_key, ec.EllipticCurvePrivateKey)
        sub = TestCa(sub_cert, sub_key, root)
        chain = sub.issue_code_signing("Firmware Signer").chain_pem()
        if accepted:
            verify_signing_certificate(chain, [root.cert], NOW)
        else:
            assert "may not sign code" in refused(chain, [root.cert])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "text", "broken-pem"],
)
def test_garbage_is_an_invalid_certificate(root: TestCa, text: str) -> None:
    assert refused(text, [root.cert]).startswith("firmware signing certificate: ")


# -- the file's signature ---------------------------------------------------------------------


def test_an_ec_signature_over_the_file_verifies(signer: Issued, firmware: Path) -> None:
    verify_file_signature(firmware, sign_file(signer, firmware), signer.cert)


def test_an_rsa_code_signing_certificate_works_end_to_end(root: TestCa, firmware: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert, _ = issue(root, "RSA Firmware Signer", usages=[CODE_SIGNING], key=rsa_key)
    checked = verify_signing_certificate(pem(cert), [root.cert], NOW)
    issued = Issued(cert, rsa_key)  # type: ignore[arg-type]  # Issued is typed for EC keys
    verify_file_signature(firmware, sign_file(issued, firmware), checked)
    # What a signer without prehashing produces is the same PKCS#1 v1.5 signature.
    plain = rsa_key.sign(firmware.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    verify_file_signature(firmware, base64.b64encode(plain).decode(), checked)
    pss = rsa_key.sign(
        firmware.read_bytes(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    bad_signature(firmware, base64.b64encode(pss).decode(), checked)


def test_a_changed_file_fails(signer: Issued, firmware: Path) -> None:
    signature = sign_file(signer, firmware)
    data = bytearray(firmware.read_bytes())
    data[len(data) // 2] ^= 0x01
    firmware.write_bytes(bytes(data))
    assert "does not match CN=Firmware Signer" in bad_signature(firmware, signature, signer.cert)


def test_a_changed_signature_fails(signer: Issued, firmware: Path) -> None:
    raw = bytearray(base64.b64decode(sign_file(signer, firmware)))
    raw[-1] ^= 0x01
    bad_signature(firmware, base64.b64encode(bytes(raw)).decode(), signer.cert)


def test_a_signature_by_another_key_fails(root: TestCa, signer: Issued, firmware: Path) -> None:
    other = root.issue_code_signing("Someone Else")
    bad_signature(firmware, sign_file(other, firmware), signer.cert)


@pytest.mark.parametrize("text", ["", "   ", "not base64!", "QUJD=x"], ids=repr)
def test_a_signature_that_is_not_base64_fails(signer: Issued, firmware: Path, text: str) -> None:
    bad_signature(firmware, text, signer.cert)


def test_a_signature_may_be_wrapped_over_lines(signer: Issued, firmware: Path) -> None:
    signature = sign_file(signer, firmware)
    wrapped = "\n".join(signature[i : i + 16] for i in range(0, len(signature), 16)) + "\n"
    verify_file_signature(firmware, wrapped, signer.cert)


def test_a_key_that_cannot_sign_firmware_fails(root: TestCa, firmware: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert, _ = issue(root, "Ed25519 Signer", usages=[CODE_SIGNING], key=key)
    signature = base64.b64encode(key.sign(firmware.read_bytes())).decode()
    assert "Ed25519PublicKey cannot sign firmware" in bad_signature(firmware, signature, cert)


def test_a_missing_file_fails(signer: Issued, firmware: Path) -> None:
    signature = sign_file(signer, firmware)
    firmware.unlink()
    assert "cannot read" in bad_signature(firmware, signature, signer.cert)


def test_a_large_file_is_streamed_not_read_whole(signer: Issued, tmp_path: Path) -> None:
    size = 50 * 2**20 + 7
    path = tmp_path / "big.bin"
    with path.open("wb") as out:  # sparse: no disk space, no memory to make it
        out.truncate(size)
        out.seek(size - 1)
        out.write(b"\x01")
    signature = sign_file(signer, path)
    tracemalloc.start()
    try:
        verify_file_signature(path, signature, signer.cert)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CHUNK_BYTES, f"peak {peak} bytes for a {size} byte file"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_signatures_made_by_openssl_verify(signer: Issued, firmware: Path, tmp_path: Path) -> None:
    """The signature format the docstring promises: ``openssl dgst -sha256 -sign``."""
    _, key_path = signer.write(tmp_path / "keys", "signer")
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key_path), str(firmware)],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    verify_file_signature(firmware, base64.b64encode(signature).decode(), signer.cert)
