"""Signed firmware of the OCPP 1.6 security extension: who signed it, and that it is unchanged.

SignedUpdateFirmware carries a signing certificate and a signature over the firmware file's
bytes. The charge point checks them at two moments, one function each:

* :func:`verify_signing_certificate`, when the request arrives (and again before installing):
  the certificate (PEM, the leaf first, then any intermediates) must be valid at ``now``, chain
  up to one of the installed ManufacturerRootCertificates (or be one) and, if it has an
  extendedKeyUsage, allow codeSigning. A failure is answered ``InvalidCertificate``.
* :func:`verify_file_signature`, once the file is downloaded: the signature (base64) must
  verify over the file with the certificate's public key, RSA PKCS#1 v1.5 or ECDSA (a DER
  signature, as ``openssl dgst -sha256 -sign`` writes it), both with SHA-256. A failure is
  reported ``InvalidSignature`` and the file is not installed.

Both raise :class:`FirmwareSignatureError`, whose ``status`` is the OCPP word for the failure;
raising the matching security event is the caller's business. Both block (the second reads a
file of possibly hundreds of MB, in chunks): call them from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    Policy,
    VerificationError,
)

from cpagent.exc import CpagentError
from cpagent.security.pki import CertificateStore, CertificateUse, chain_verifier, describe

__all__ = [
    "CHUNK_BYTES",
    "FirmwareSignatureError",
    "SignatureStatus",
    "code_signing_verifier",
    "verify_file_signature",
    "verify_signing_certificate",
]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""The file is hashed this many bytes at a time, so memory does not grow with its size."""

SignatureStatus = Literal["InvalidCertificate", "InvalidSignature"]


class FirmwareSignatureError(CpagentError):
    """A signed firmware was refused. ``status`` is what OCPP calls the failure:
    ``InvalidCertificate`` (the SignedUpdateFirmware answer) or ``InvalidSignature`` (the
    SignedFirmwareStatusNotification); the message is one line for the log."""

    def __init__(self, status: SignatureStatus, message: str) -> None:
        super().__init__(message)
        self.status: SignatureStatus = status


def verify_with_manufacturer_roots(
    store: CertificateStore, pem: str, now: datetime
) -> x509.Certificate:
    """:func:`verify_signing_certificate` against the ManufacturerRootCertificates installed
    in ``store``; blocking (it reads them)."""
    return verify_signing_certificate(pem, store.roots(CertificateUse.MANUFACTURER_ROOT), now)


def verify_signing_certificate(
    pem: str, roots: Sequence[x509.Certificate], now: datetime
) -> x509.Certificate:
    """The signing certificate of ``pem``, once it is found fit to sign firmware at ``now``.

    ``pem`` holds the leaf first, then the intermediates that lead to one of ``roots`` (the
    installed ManufacturerRootCertificates), or is one of ``roots`` itself, which chains
    trivially; a naive ``now`` is taken as UTC. Raises
    :class:`FirmwareSignatureError` ``InvalidCertificate`` when ``pem`` holds no certificate,
    when a certificate is outside its validity, when the chain does not verify up to a root
    (no root at all included), or when an extendedKeyUsage lacks codeSigning (and
    anyExtendedKeyUsage).
    """
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as err:
        raise _invalid_certificate(f"not PEM certificates ({err})") from err
    if not chain:
        raise _invalid_certificate("no certificate")
    leaf = chain[0]
    if not roots:
        raise _invalid_certificate(
            f"{describe(leaf)}: no ManufacturerRootCertificate is installed to verify it"
        )
    at = now if now.tzinfo else now.replace(tzinfo=UTC)
    for cert in chain:
        if at < cert.not_valid_before_utc:
            raise _invalid_certificate(
                f"{describe(cert)} is not valid before {cert.not_valid_before_utc}"
            )
        if at > cert.not_valid_after_utc:
            raise _invalid_certificate(f"{describe(cert)} expired at {cert.not_valid_after_utc}")
    if leaf in roots:
        try:
            _allows_code_signing(None, leaf, _extended_key_usage(leaf))
        except ValueError as err:
            raise _invalid_certificate(str(err)) from err
        return leaf
    try:
        code_signing_verifier(roots, at).verify(leaf, chain[1:])
    except VerificationError as err:
        raise _invalid_certificate(f"{describe(leaf)}: {err}") from err
    return leaf


def code_signing_verifier(roots: Sequence[x509.Certificate], now: datetime) -> ClientVerifier:
    """An RFC 5280 verifier of code-signing chains up to ``roots`` at ``now``.

    cryptography offers TLS verifiers only, so this is its client verifier with the policies a
    code-signing chain needs: the extendedKeyUsage of any certificate in the chain, if present,
    must allow codeSigning (instead of clientAuth); a leaf needs no subjectAltName and may lack
    an authorityKeyIdentifier; a CA may lack keyUsage, and one it has must allow keyCertSign.
    Everything else (signatures, names, basicConstraints, validity, path length) is checked as
    for TLS.
    """
    return chain_verifier(roots, now, extended_key_usage=_allows_code_signing)


def verify_file_signature(path: Path, signature_b64: str, certificate: x509.Certificate) -> None:
    """Check that ``signature_b64`` signs the bytes of ``path`` with ``certificate``'s key.

    The file is hashed (SHA-256) in chunks of :data:`CHUNK_BYTES` and the digest verified as
    prehashed, so a file of any size is never held in memory. The base64 may contain line
    breaks. Raises :class:`FirmwareSignatureError` ``InvalidSignature`` when the base64 is
    malformed, the key is neither RSA nor EC, the signature does not match, or the file
    cannot be read (what cannot be verified is not installed either).
    """
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise _invalid_signature(f"the signature is not base64 ({err})") from err
    if not signature:
        raise _invalid_signature("the signature is empty")
    try:
        key = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError) as err:
        raise _invalid_signature(f"{describe(certificate)}: unusable public key ({err})") from err
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _invalid_signature(
            f"{describe(certificate)}: a {type(key).__name__} cannot sign firmware (RSA or EC)"
        )
    digest = _sha256_of(path)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        else:
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature as err:
        raise _invalid_signature(
            f"the signature of {path.name} does not match {describe(certificate)}"
        ) from err
    log.info("firmware: %s is signed by %s", path.name, describe(certificate))


def _sha256_of(path: Path) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError as err:
        raise _invalid_signature(f"cannot read {path}: {err}") from err
    return digest.finalize()


def _extended_key_usage(cert: x509.Certificate) -> x509.ExtendedKeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _allows_code_signing(
    policy: Policy | None, cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    if usage is None:
        return
    if not {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
        usage
    ):
        raise ValueError(f"{describe(cert)} may not sign code (extendedKeyUsage)")


def _invalid_certificate(message: str) -> FirmwareSignatureError:
    return FirmwareSignatureError("InvalidCertificate", f"firmware signing certificate: {message}")


def _invalid_signature(message: str) -> FirmwareSignatureError:
    return FirmwareSignatureError("InvalidSignature", f"firmware signature: {message}")
