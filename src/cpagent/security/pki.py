"""Certificates and keys of the charge point, for the OCPP 1.6 security extension (edition 3).

:class:`CertificateStore` keeps, in one directory, what InstallCertificate, DeleteCertificate,
GetInstalledCertificateIds, SignCertificate and CertificateSigned act on:

* ``central-system-roots/`` and ``manufacturer-roots/``: trusted root certificates, one PEM file
  each, named after the certificate's SHA-256 fingerprint (so installing twice is a no-op);
* ``charge-point/``: the charge point's TLS client identity, ``cert.pem`` (leaf, then
  intermediates) and ``key.pem``; ``pending-key.pem``, the key of the last CSR, waiting for its
  certificate; ``cert.previous.pem`` and ``key.previous.pem``, the identity before the last
  renewal, kept so :meth:`CertificateStore.revert_identity` can fall back to it. With a
  PKCS#11 token (:class:`~cpagent.security.keys.KeyStorage`) the key files are references to
  token objects, and a token key no file names any more is removed from the token.

Directories are 0700 and key files 0600 from their creation on. Every file is written under a
temporary name, fsynced and renamed, then the directory is fsynced: a power cut leaves either
the old file or the new one. A renewal changes two files (``cert.pem`` then ``key.pem``); if it
is cut between the two, the next :class:`CertificateStore` finds the certificate's key still
pending (or, after a cut :meth:`~CertificateStore.revert_identity`, still ``previous``) and
completes the swap.

The module knows nothing of OCPP messages except the status strings it returns and
:meth:`CertificateHashData.to_ocpp`/:meth:`~CertificateHashData.from_ocpp`. Everything here
blocks (files, key generation); call it from a worker thread. A lock serialises the methods of
one store, so concurrent calls from several threads are safe.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cpagent.exc import CpagentError
from cpagent.fsutil import fsync_dir
from cpagent.security import der
from cpagent.security.keys import KeyStorage, KeyUnusable

__all__ = [
    "HASH_ALGORITHMS",
    "CertificateHashData",
    "CertificateStore",
    "CertificateUse",
    "DeleteStatus",
    "InstallStatus",
    "PkiError",
    "PkiReason",
    "chain_verifier",
    "describe",
    "hash_data",
]

log = logging.getLogger(__name__)

HASH_ALGORITHMS = ("SHA256", "SHA384", "SHA512")
"""The OCPP HashAlgorithmEnumType values, in the spelling OCPP uses."""

InstallStatus = Literal["Accepted", "Rejected", "Failed"]
DeleteStatus = Literal["Accepted", "Failed", "NotFound"]

PkiReason = Literal[
    "Expired",
    "NotYetValid",
    "NotACa",
    "ChainInvalid",
    "ChainTooLarge",
    "KeyMismatch",
    "Unparseable",
    "UnsupportedAlgorithm",
    "InvalidSubject",
    "SubjectMismatch",
    "StoreFull",
    "NoPendingRequest",
    "KeyUnusable",
    "Io",
]

_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700
_SEEDED = "seeded.txt"
"""Per roots directory: fingerprints once copied from a factory bundle, so that a root the
Central System deleted is not seeded again at the next start."""


class CertificateUse(enum.StrEnum):
    """The kinds of root certificate OCPP installs (CertificateUseEnumType)."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"


class PkiError(CpagentError):
    """A certificate or key was refused or could not be stored; ``reason`` says why in one word.

    ========================  ======================================================
    ``Expired``               a certificate's notAfter is before ``now``
    ``NotYetValid``           a certificate's notBefore is after ``now``
    ``NotACa``                a v3 root without basicConstraints cA (or keyCertSign),
                              a v1 one that is not self-signed
    ``ChainInvalid``          the chain does not verify up to a Central System root
    ``ChainTooLarge``         the chain is longer than ``max_chain_size`` characters
    ``KeyMismatch``           the certificate is not for the key it should go with
    ``Unparseable``           not PEM, not a certificate or key, bad hash data
    ``UnsupportedAlgorithm``  a hash algorithm OCPP does not name
    ``InvalidSubject``        a CSR subject the X.509 rules refuse (empty, too long)
    ``SubjectMismatch``       a signed certificate that does not name this charge point
    ``StoreFull``             ``max_certificates`` roots are installed already
    ``NoPendingRequest``      a signed certificate arrived without an outstanding CSR
    ``Io``                    a file could not be read or written
    ========================  ======================================================

    The message is one line fit for a log.
    """

    def __init__(self, reason: PkiReason, message: str) -> None:
        super().__init__(message)
        self.reason: PkiReason = reason


@dataclass(frozen=True)
class CertificateHashData:
    """How OCPP names a certificate (CertificateHashDataType), as an OCSP CertID does.

    ``issuer_name_hash`` is the hex hash of the DER issuer name, ``issuer_key_hash`` the hex
    hash of the issuer's public key bits, ``serial_number`` the serial in hex. Hex compares
    case-insensitively and serials without leading zeros (:meth:`matches`), because Central
    Systems spell them in either case and some pad serials.
    """

    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str

    def to_ocpp(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any]) -> CertificateHashData:
        """Read the camelCase OCPP fields, or the snake_case ones of the ``ocpp`` library."""

        def field(camel: str, snake: str) -> str:
            value = data.get(camel, data.get(snake))
            if not isinstance(value, str):
                raise PkiError("Unparseable", f"certificate hash data without a string {camel}")
            return value

        return cls(
            hash_algorithm=field("hashAlgorithm", "hash_algorithm"),
            issuer_name_hash=field("issuerNameHash", "issuer_name_hash"),
            issuer_key_hash=field("issuerKeyHash", "issuer_key_hash"),
            serial_number=field("serialNumber", "serial_number"),
        )

    def matches(self, other: CertificateHashData) -> bool:
        return (
            self.hash_algorithm.upper() == other.hash_algorithm.upper()
            and self.issuer_name_hash.lower() == other.issuer_name_hash.lower()
            and self.issuer_key_hash.lower() == other.issuer_key_hash.lower()
            and _plain_serial(self.serial_number) == _plain_serial(other.serial_number)
        )


def hash_data(
    cert: x509.Certificate, issuer: x509.Certificate | None = None, algorithm: str = "SHA256"
) -> CertificateHashData:
    """The OCPP hash data of ``cert``; ``issuer`` defaults to ``cert`` (a root is its own).

    The name hash covers ``cert``'s issuer field, which is the issuer's subject; only the key
    hash needs the issuer's certificate. ``algorithm`` is one of :data:`HASH_ALGORITHMS`, in
    any case; another raises :class:`PkiError` ``UnsupportedAlgorithm``.
    """
    name = algorithm.upper()
    if name not in HASH_ALGORITHMS:
        raise PkiError("UnsupportedAlgorithm", f"hash algorithm {algorithm!r} is not one of OCPP's")
    digest = name.lower()
    return CertificateHashData(
        hash_algorithm=name,
        issuer_name_hash=hashlib.new(digest, cert.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.new(digest, _public_key_bits(issuer or cert)).hexdigest(),
        serial_number=format(cert.serial_number, "x"),
    )


class CertificateStore:
    """Root certificates and the charge point's identity under ``directory``.

    ``max_certificates`` is CertificateStoreMaxLength, counted over both kinds of root;
    ``max_chain_size`` is CertificateSignedMaxChainSize, in characters of PEM. Both may be
    changed on the instance. ``keys`` is where new keys are made (files by default).
    Creating a store creates its directories (0700, tightening looser
    ones), removes temporary files a power cut left behind and completes a cut identity swap;
    it raises :class:`PkiError` ``Io`` when it cannot.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_certificates: int = 20,
        max_chain_size: int = 10000,
        keys: KeyStorage | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.keys = keys or KeyStorage()
        self.max_certificates = max_certificates
        self.max_chain_size = max_chain_size
        self._lock = threading.RLock()
        self._root_dirs = {
            CertificateUse.CENTRAL_SYSTEM_ROOT: self.directory / "central-system-roots",
            CertificateUse.MANUFACTURER_ROOT: self.directory / "manufacturer-roots",
        }
        own = self.directory / "charge-point"
        self._cert = own / "cert.pem"
        self._key = own / "key.pem"
        self._pending_key = own / "pending-key.pem"
        self._previous_cert = own / "cert.previous.pem"
        self._previous_key = own / "key.previous.pem"
        try:
            for path in (self.directory, *self._root_dirs.values(), own):
                path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
                if path.stat().st_mode & 0o777 != _DIR_MODE:
                    path.chmod(_DIR_MODE)
                for stale in path.glob(".*.tmp"):
                    stale.unlink()
            self._complete_identity_swap()
        except OSError as err:
            raise PkiError("Io", f"certificate store {self.directory}: {err}") from err

    # --- root certificates ---

    def roots(self, use: CertificateUse) -> list[x509.Certificate]:
        """The installed roots of one kind, in file name order; unreadable files are skipped."""
        with self._lock:
            return [cert for _, cert in self._root_files(use)]

    def install_root(self, use: CertificateUse, pem: str, now: datetime) -> InstallStatus:
        """Install one PEM certificate as a root of kind ``use`` (InstallCertificate).

        ``"Rejected"`` when ``pem`` is not exactly one certificate, not a CA (basicConstraints
        cA, and keyCertSign if keyUsage is present; or a self-signed X.509 v1 certificate,
        which has no extensions), outside its validity at ``now``, or when
        ``max_certificates`` roots are installed already; ``"Failed"`` when it cannot be
        written. A certificate installed already is ``"Accepted"`` and left as it is. Why it was
        not accepted is logged.
        """
        with self._lock:
            try:
                certs = _load_certificates(pem.encode(), "certificate")
                if len(certs) != 1:
                    raise PkiError("Unparseable", f"{len(certs)} certificates, expected one")
                cert = certs[0]
                _check_ca(cert)
                _check_validity(cert, _utc(now), "certificate")
                path = self._root_path(use, cert)
                if path.exists():
                    return "Accepted"
                self._check_room()
            except PkiError as err:
                log.warning("InstallCertificate %s rejected (%s): %s", use, err.reason, err)
                return "Rejected"
            except OSError as err:
                log.error("InstallCertificate %s failed: %s", use, err)
                return "Failed"
            try:
                _write_atomic(path, cert.public_bytes(_PEM), _CERT_MODE)
            except OSError as err:
                log.error("InstallCertificate %s failed: %s", use, err)
                return "Failed"
            log.info("installed %s %s", use, describe(cert))
            return "Accepted"

    def delete(
        self,
        hash_data: CertificateHashData,
        *,
        still_verifies: Callable[[list[x509.Certificate]], bool] = bool,
    ) -> DeleteStatus:
        """Delete the roots ``hash_data`` names (DeleteCertificate).

        ``"NotFound"`` when none matches (an unknown hash algorithm matches none); ``"Failed"``
        when a file cannot be removed, or when Central System roots would go that are in use
        to verify the Central System (M04.FR.06): ``still_verifies`` is asked whether the
        connection would still verify it with the Central System roots that would be left
        (:meth:`ConnectionSecurity.still_verifies
        <cpagent.security.connection.ConnectionSecurity.still_verifies>`); by default,
        whether any is left. Any other root may go, the last ones included (M04.FR.02).
        """
        with self._lock:
            try:
                installed = self._installed()
                try:
                    doomed = [
                        (use, path)
                        for use, path, cert in installed
                        if hash_data.matches(
                            self._hash_data(cert, installed, hash_data.hash_algorithm)
                        )
                    ]
                except PkiError as err:
                    log.warning("DeleteCertificate: %s", err)
                    return "NotFound"
                if not doomed:
                    return "NotFound"
                going = {path for _, path in doomed}
                central = [
                    (path, cert)
                    for use, path, cert in installed
                    if use is CertificateUse.CENTRAL_SYSTEM_ROOT
                ]
                left = [cert for path, cert in central if path not in going]
                if len(left) < len(central) and not still_verifies(left):
                    log.warning(
                        "DeleteCertificate refused: it names the Central System root in use"
                        " to verify the Central System"
                    )
                    return "Failed"
                for use, path in doomed:
                    path.unlink()
                    fsync_dir(path.parent)
                    log.info("deleted %s %s", use, path.name)
            except OSError as err:
                log.error("DeleteCertificate failed: %s", err)
                return "Failed"
            return "Accepted"

    def installed_ids(self, use: CertificateUse) -> list[CertificateHashData]:
        """SHA256 hash data of each root of kind ``use`` (GetInstalledCertificateIds).

        A root that is not self-issued is hashed with the installed root that signed it as
        issuer; when none did, with itself, the best the store can do.
        """
        with self._lock:
            installed = self._installed()
            return [self._hash_data(cert, installed) for u, _, cert in installed if u == use]

    def seed(self, use: CertificateUse, bundle_path: Path) -> list[str]:
        """Install the roots of a factory PEM bundle that were never seeded; return warnings.

        Meant for every start-up: each certificate of the bundle is copied once, so a root the
        Central System deleted later stays deleted. Validity is not checked (the clock may not
        be set yet at start-up; :meth:`expiring` reports old roots). Certificates that are not
        CAs, or that do not fit in ``max_certificates``, are left out with a warning for the
        caller to log. An unreadable or certificate-free bundle raises :class:`PkiError`.
        """
        with self._lock:
            try:
                data = bundle_path.read_bytes()
            except OSError as err:
                raise PkiError("Io", f"root bundle {bundle_path}: {err}") from err
            certs = _load_certificates(data, f"root bundle {bundle_path}")
            warnings: list[str] = []
            try:
                seeded_path = self._root_dirs[use] / _SEEDED
                seeded = set(seeded_path.read_text().split()) if seeded_path.exists() else set()
                added = set()
                for cert in certs:
                    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
                    if fingerprint in seeded:
                        continue
                    path = self._root_path(use, cert)
                    if not path.exists():
                        try:
                            _check_ca(cert)
                            self._check_room()
                        except PkiError as err:
                            warnings.append(f"{bundle_path}: {describe(cert)} left out: {err}")
                            continue
                        _write_atomic(path, cert.public_bytes(_PEM), _CERT_MODE)
                        log.info("seeded %s %s from %s", use, describe(cert), bundle_path)
                    added.add(fingerprint)
                if added:
                    text = "".join(f"{f}\n" for f in sorted(seeded | added))
                    _write_atomic(seeded_path, text.encode(), _CERT_MODE)
            except OSError as err:
                raise PkiError("Io", f"seeding {use} from {bundle_path}: {err}") from err
            return warnings

    # --- the charge point's identity ---

    def identity(self) -> tuple[Path, Path] | None:
        """``(cert.pem, key.pem)`` for a TLS client context, or None without a usable pair.

        A pair whose key does not belong to the certificate is not usable (logged). For a
        key in a token, the ``ssl`` module is made able to load ``key.pem`` first.
        """
        with self._lock:
            chain = _read_chain(self._cert)
            stored = _read_stored(self._key)
            key = self._public_key(self._key, stored)
            if chain is None or stored is None or key is None:
                return None
            if not _same_key(chain[0], key):
                log.warning("%s is not the certificate of %s; no identity", self._cert, self._key)
                return None
            try:
                self.keys.prepare_tls(stored)
            except KeyUnusable as err:
                log.error("identity %s unusable: %s", describe(chain[0]), err)
                return None
            return self._cert, self._key

    def identity_certificate(self) -> x509.Certificate | None:
        """The charge point's own (leaf) certificate, or None."""
        with self._lock:
            chain = _read_chain(self._cert)
            return chain[0] if chain else None

    def new_csr(self, common_name: str, organization: str) -> str:
        """Make a fresh EC P-256 key pending and return a PEM CSR for it (SignCertificate).

        The key is made where :attr:`keys` makes keys; :class:`PkiError` ``KeyUnusable``
        when that fails (a token that is missing or refuses the PIN).

        The subject is ``O=organization`` (left out when empty) and ``CN=common_name``; the CSR
        is signed with SHA-256. A CSR made earlier is forgotten: only the newest pending key
        can take a signed certificate. The current identity stays in use until then.
        """
        with self._lock:
            attributes = []
            try:
                if organization:
                    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
                attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
                subject = x509.Name(attributes)
            except ValueError as err:
                raise PkiError("InvalidSubject", f"CSR subject: {err}") from err
            try:
                stored = self.keys.generate()
            except KeyUnusable as err:
                raise PkiError("KeyUnusable", f"new key for a CSR: {err}") from err
            try:
                csr = self.keys.sign_csr(stored, subject)
            except KeyUnusable as err:
                self.keys.discard(stored)
                raise PkiError("KeyUnusable", f"signing a CSR: {err}") from err
            replaced = _read_stored(self._pending_key)
            try:
                _write_atomic(self._pending_key, stored, _KEY_MODE)
            except OSError as err:
                self.keys.discard(stored)
                raise PkiError("Io", f"writing {self._pending_key}: {err}") from err
            self._forget(replaced)
            log.info("new key pending for a CSR for %s", subject.rfc4514_string())
            return csr.public_bytes(_PEM).decode()

    def accept_signed(self, chain_pem: str, now: datetime, *, common_name: str) -> x509.Certificate:
        """Take the certificate chain of CertificateSigned as the new identity; return its leaf.

        ``chain_pem`` is the leaf, then its intermediates; ``common_name`` is the charge point's
        own, the one its CSR asked for. It is refused with :class:`PkiError`
        when longer than ``max_chain_size`` (``ChainTooLarge``), without a pending CSR key
        (``NoPendingRequest``), unparseable, when the leaf is not for the pending key
        (``KeyMismatch``), when a certificate is outside its validity at ``now`` (``Expired``,
        ``NotYetValid``), when the chain does not verify up to an installed Central System
        root as a TLS client certificate (``ChainInvalid``) or when the leaf's subject does
        not hold exactly one CN, ``common_name`` (A00.FR.511), and an O (A00.FR.509)
        (``SubjectMismatch``): A02.FR.06's checks. The chain checks are RFC 5280's, but
        for two omissions OpenSSL tolerates too, so a root :meth:`install_root` accepts can
        vouch: the leaf needs no subjectAltName (charge point certificates name the charger
        in their CN) nor authorityKeyIdentifier, and a CA no keyUsage. On success the current
        identity becomes the previous one, the pending key the current key.
        """
        with self._lock:
            if len(chain_pem) > self.max_chain_size:
                raise PkiError(
                    "ChainTooLarge",
                    f"chain of {len(chain_pem)} characters, more than {self.max_chain_size}",
                )
            pending = self._read_key(self._pending_key)
            if pending is None:
                raise PkiError("NoPendingRequest", "no CSR key is pending")
            chain = _load_certificates(chain_pem.encode(), "signed certificate chain")
            leaf = chain[0]
            if not _same_key(leaf, pending):
                raise PkiError("KeyMismatch", f"{describe(leaf)} is not for the pending CSR key")
            for cert in chain:
                _check_validity(cert, _utc(now), describe(cert))
            self._verify_client_chain(chain, _utc(now))
            _check_names_charge_point(leaf, common_name)
            try:
                self._rotate_in(chain)
            except OSError as err:
                raise PkiError("Io", f"storing the new identity: {err}") from err
            log.info("new identity %s, valid until %s", describe(leaf), leaf.not_valid_after_utc)
            return leaf

    def revert_identity(self) -> bool:
        """Put the identity before the last renewal back; False when there is none.

        For a fallback when the new identity fails to connect. The new one is discarded, so
        a second call does nothing more. A previous pair whose key does not fit its
        certificate is not put back.
        """
        with self._lock:
            chain = _read_chain(self._previous_cert)
            key = self._read_key(self._previous_key)
            if chain is None or key is None:
                return False
            if not _same_key(chain[0], key):
                log.warning("previous identity not restored: its key does not fit")
                return False
            replaced = _read_stored(self._key)
            try:
                _move(self._previous_cert, self._cert)
                _move(self._previous_key, self._key)
            except OSError as err:
                raise PkiError("Io", f"restoring the previous identity: {err}") from err
            self._forget(replaced)
            log.warning("reverted to the previous identity %s", describe(chain[0]))
            return True

    def seed_identity(self, cert_path: Path, key: Path | str) -> list[str]:
        """Copy a factory certificate chain and key in when there is no identity yet.

        ``key`` is a PEM key file, or the ``pkcs11:`` URI of a key in the token of
        :attr:`keys`. Returns warnings for the caller to log: a source key file readable by
        group or others is accepted (the copy is 0600) but reported. Raises
        :class:`PkiError` when the certificate or key cannot be read or parsed, or the key
        is not the certificate's.
        """
        with self._lock:
            if self.identity() is not None:
                return []
            key_mode = 0
            try:
                chain_bytes = cert_path.read_bytes()
                if isinstance(key, str):
                    key_bytes = self.keys.reference(key)
                else:
                    key_bytes = key.read_bytes()
                    key_mode = key.stat().st_mode & 0o777
            except OSError as err:
                raise PkiError("Io", f"factory identity: {err}") from err
            except KeyUnusable as err:
                raise PkiError("KeyUnusable", f"factory key {key}: {err}") from err
            chain = _load_certificates(chain_bytes, str(cert_path))
            try:
                public_key = self.keys.public_key(key_bytes)
            except KeyUnusable as err:
                raise PkiError("Unparseable", f"{key}: {err}") from err
            if not _same_key(chain[0], public_key):
                raise PkiError("KeyMismatch", f"{key} is not the key of {cert_path}")
            warnings = []
            if key_mode & 0o077:
                warnings.append(
                    f"{key} is readable by others than its owner (mode {key_mode:04o});"
                    " the stored copy is 0600"
                )
            try:
                _write_atomic(self._cert, _chain_pem(chain), _CERT_MODE)
                _write_atomic(self._key, key_bytes, _KEY_MODE)
            except OSError as err:
                raise PkiError("Io", f"storing the factory identity: {err}") from err
            log.info("seeded identity %s from %s", describe(chain[0]), cert_path)
            return warnings

    def expiring(self, now: datetime, within: timedelta) -> list[tuple[str, datetime]]:
        """Installed certificates whose notAfter is before ``now + within``, soonest first.

        Covers the roots and the identity's chain (already expired ones included), each named
        by kind and subject, e.g. ``("CentralSystemRootCertificate CN=Root", notAfter)``.
        """
        with self._lock:
            named = [(f"{use} {describe(c)}", c) for use, _, c in self._installed()]
            chain = _read_chain(self._cert) or []
            named += [
                (f"ChargePointCertificate{'' if i == 0 else ' chain'} {describe(c)}", c)
                for i, c in enumerate(chain)
            ]
            limit = _utc(now) + within
            found = [(n, c.not_valid_after_utc) for n, c in named if c.not_valid_after_utc < limit]
            return sorted(found, key=lambda item: item[1])

    # --- internals ---

    def _root_files(self, use: CertificateUse) -> Iterator[tuple[Path, x509.Certificate]]:
        directory = self._root_dirs[use]
        if not directory.is_dir():
            return
        for path in sorted(directory.glob("*.pem")):
            chain = _read_chain(path)
            if chain:
                yield path, chain[0]

    def _installed(self) -> list[tuple[CertificateUse, Path, x509.Certificate]]:
        return [(use, path, cert) for use in CertificateUse for path, cert in self._root_files(use)]

    def _root_path(self, use: CertificateUse, cert: x509.Certificate) -> Path:
        return self._root_dirs[use] / f"{cert.fingerprint(hashes.SHA256()).hex()}.pem"

    def _check_room(self) -> None:
        count = len(self._installed())
        if count >= self.max_certificates:
            raise PkiError("StoreFull", f"{count} roots installed, the most allowed")

    @staticmethod
    def _hash_data(
        cert: x509.Certificate,
        installed: list[tuple[CertificateUse, Path, x509.Certificate]],
        algorithm: str = "SHA256",
    ) -> CertificateHashData:
        issuer = cert
        if cert.issuer != cert.subject:
            for _, _, candidate in installed:
                if candidate.subject == cert.issuer and _signed_by(cert, candidate):
                    issuer = candidate
                    break
        return hash_data(cert, issuer, algorithm)

    def _verify_client_chain(self, chain: list[x509.Certificate], now: datetime) -> None:
        roots = self.roots(CertificateUse.CENTRAL_SYSTEM_ROOT)
        if not roots:
            raise PkiError("ChainInvalid", "no Central System root is installed to verify it")
        try:
            chain_verifier(roots, now).verify(chain[0], chain[1:])
        except VerificationError as err:
            raise PkiError("ChainInvalid", f"{describe(chain[0])}: {err}") from err

    def _rotate_in(self, chain: list[x509.Certificate]) -> None:
        replaced = _read_stored(self._previous_key)
        if self._cert.exists() and self._key.exists():
            _write_atomic(self._previous_key, self._key.read_bytes(), _KEY_MODE)
            _write_atomic(self._previous_cert, self._cert.read_bytes(), _CERT_MODE)
        else:
            for stale in (self._previous_key, self._previous_cert):
                stale.unlink(missing_ok=True)
        _write_atomic(self._cert, _chain_pem(chain), _CERT_MODE)
        _move(self._pending_key, self._key)
        self._forget(replaced)

    def _complete_identity_swap(self) -> None:
        """Finish a renewal or revert cut between its ``cert.pem`` and ``key.pem`` renames."""
        chain = _read_chain(self._cert)
        if chain is None:
            return
        key = self._read_key(self._key)
        if key is not None and _same_key(chain[0], key):
            return
        for candidate in (self._pending_key, self._previous_key):
            other = self._read_key(candidate)
            if other is not None and _same_key(chain[0], other):
                replaced = _read_stored(self._key)
                _move(candidate, self._key)
                self._forget(replaced)
                log.warning("completed an interrupted identity change with %s", candidate.name)
                return

    def _read_key(self, path: Path) -> PublicKeyTypes | None:
        """The public half of the key stored at ``path``; None when absent or unusable."""
        return self._public_key(path, _read_stored(path))

    def _public_key(self, path: Path, stored: bytes | None) -> PublicKeyTypes | None:
        if stored is None:
            return None
        try:
            return self.keys.public_key(stored)
        except KeyUnusable as err:
            log.warning("ignoring %s: %s", path, err)
            return None

    def _forget(self, replaced: bytes | None) -> None:
        """Remove a replaced token key from the token, unless a key file still names it."""
        if replaced is None:
            return
        kept = (self._key, self._pending_key, self._previous_key)
        if all(_read_stored(path) != replaced for path in kept):
            self.keys.discard(replaced)


def _utc(now: datetime) -> datetime:
    """``now`` as an aware datetime; naive ones are taken as UTC, as elsewhere in cpagent."""
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _plain_serial(serial: str) -> str:
    return serial.strip().lower().lstrip("0") or "0"


def _public_key_bits(cert: x509.Certificate) -> bytes:
    """The content of the subjectPublicKey BIT STRING, without its unused-bits byte."""
    try:
        spki = cert.public_key().public_bytes(_DER, _SPKI)
    except (UnsupportedAlgorithm, ValueError) as err:
        raise PkiError("Unparseable", f"{describe(cert)}: public key: {err}") from err
    _, content, _ = der.element(spki, 0)
    _, _, algorithm_end = der.element(spki, content)
    tag, bits, bits_end = der.element(spki, algorithm_end)
    if tag != 0x03:
        raise PkiError("Unparseable", f"{describe(cert)}: no public key BIT STRING")
    return spki[bits + 1 : bits_end]


def describe(cert: x509.Certificate) -> str:
    """A certificate in a log line: its subject, or its serial when it has none."""
    return cert.subject.rfc4514_string() or f"certificate {cert.serial_number:x}"


def _load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise PkiError("Unparseable", f"{what}: not PEM certificates ({err})") from err
    if not certs:
        raise PkiError("Unparseable", f"{what}: no certificate")
    return certs


def _read_chain(path: Path) -> list[x509.Certificate] | None:
    try:
        return _load_certificates(path.read_bytes(), str(path))
    except FileNotFoundError:
        return None
    except (OSError, PkiError) as err:
        log.warning("ignoring %s: %s", path, err)
        return None


def _read_stored(path: Path) -> bytes | None:
    """A key file's bytes; None when it is absent or unreadable (logged)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("ignoring %s: %s", path, err)
        return None


def _same_key(cert: x509.Certificate, key: PublicKeyTypes) -> bool:
    try:
        return cert.public_key().public_bytes(_DER, _SPKI) == key.public_bytes(_DER, _SPKI)
    except (UnsupportedAlgorithm, ValueError):
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_names_charge_point(cert: x509.Certificate, common_name: str) -> None:
    """A charge point certificate's subject: exactly one CN, the charge point's own
    (A00.FR.511), and the owner's organization in an O (A00.FR.509). Which organization is the
    CA's to vouch for; the charger asked for CpoName, which may have changed since."""
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [common_name]:
        raise PkiError(
            "SubjectMismatch",
            f"{describe(cert)} does not name this charge point (CN={common_name})",
        )
    if not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        raise PkiError("SubjectMismatch", f"{describe(cert)} names no organization (O)")


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _check_ca(cert: x509.Certificate) -> None:
    """A root may be installed: a v3 CA (basicConstraints cA, and keyCertSign if it has a
    keyUsage), or a self-signed v1 certificate, which has no extensions to say so and is a
    trust anchor by being installed (RFC 5280 6.1), as OpenSSL takes it too."""
    if cert.version is x509.Version.v1:
        if not _self_signed(cert):
            raise PkiError("NotACa", f"{describe(cert)} is an X.509 v1 certificate but no root")
        return
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError("NotACa", f"{describe(cert)} is not a CA (basicConstraints cA)")
    with contextlib.suppress(x509.ExtensionNotFound):
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise PkiError("NotACa", f"{describe(cert)} may not sign certificates (keyUsage)")


ExtendedKeyUsageRule = Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]
"""A check of a certificate's extendedKeyUsage (None: it has none): raises ValueError."""


def chain_verifier(
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    extended_key_usage: ExtendedKeyUsageRule | None = None,
) -> ClientVerifier:
    """An RFC 5280 verifier of chains up to ``roots`` at ``now``, for certificates that do
    not name a TLS server: cryptography's client verifier, with a leaf that needs no
    subjectAltName and may lack an authorityKeyIdentifier, and CAs that may lack keyUsage
    (one they have must allow keyCertSign), as OpenSSL allows. ``extended_key_usage``
    replaces the clientAuth rule, on the leaf and the CAs alike (code signing, say)."""
    leaf_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.KeyUsage, Criticality.AGNOSTIC, _may_sign_certificates
    )
    if extended_key_usage is not None:
        leaf_policy = leaf_policy.may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, extended_key_usage
        )
        ca_policy = ca_policy.may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, extended_key_usage
        )
    return (
        PolicyBuilder()
        .store(Store([_trust_anchor(root) for root in roots]))
        .time(now)
        .extension_policies(ca_policy=ca_policy, ee_policy=leaf_policy)
        .build_client_verifier()
    )


def _trust_anchor(root: x509.Certificate) -> x509.Certificate:
    """``root`` as the verifier can trust it. RFC 5280 6.1 makes a trust anchor a name and a
    key; cryptography's verifier wants X.509 v3 certificates, so a self-signed v1 root is
    given to it as a v3 CA certificate with the root's name, key, serial and validity. The
    verifier does not check a trust anchor's own signature, so a throwaway key signs it."""
    if root.version is not x509.Version.v1 or not _self_signed(root):
        return root
    return (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(root.subject)
        .public_key(root.public_key())
        .serial_number(root.serial_number)
        .not_valid_before(root.not_valid_before_utc)
        .not_valid_after(root.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


def _may_sign_certificates(
    policy: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    """The verifier's side of :func:`_check_ca`: no keyUsage, or one with keyCertSign."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(f"{describe(cert)} may not sign certificates (keyUsage)")


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise PkiError("NotYetValid", f"{what} is not valid before {cert.not_valid_before_utc}")
    if now > cert.not_valid_after_utc:
        raise PkiError("Expired", f"{what} expired at {cert.not_valid_after_utc}")


def _chain_pem(chain: list[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(_PEM) for cert in chain)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``; the file has ``mode`` from its creation on."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _move(source: Path, target: Path) -> None:
    os.replace(source, target)
    fsync_dir(target.parent)
