"""A small certificate authority for tests and for trying TLS setups with the loopback CSMS.

::

    root = TestCa.create()
    ca = root.intermediate("Test Sub CA")
    server = ca.issue_server()                       # localhost, 127.0.0.1, ::1
    cert_path, key_path = server.write(tmp_dir, "server")
    chain = ca.sign_csr(csr_pem)                     # the answer to a SignCertificate CSR

Every key is EC P-256 and every signature SHA-256. Certificates carry the extensions an RFC
5280 verifier expects (basicConstraints, keyUsage, subject and authority key identifiers), so
server chains pass a strict verifier too; client certificates have no subjectAltName, like
real charge point certificates. Validity defaults to one hour ago until a year
(a CA: ten years) from now; pass ``not_before``/``not_after`` for an expired or not yet valid
certificate, and other ``hostnames``/``ips`` for one that names the wrong host.
``TestCa.create(name, v1=True)`` makes an X.509 version 1 root, without any extension, as
old CAs (and ``openssl x509 -req`` without an extensions file) make them; :func:`version_1`
turns any certificate into a v1 one.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from cpagent.security import der

__all__ = ["Issued", "TestCa", "version_1"]

_PEM = serialization.Encoding.PEM
_Ext = tuple[x509.ExtensionType, bool]
"""An extension and whether it is critical."""
_LEAF_DAYS = 365
_CA_DAYS = 3650


@dataclass(frozen=True)
class Issued:
    """An end-entity certificate with its key and the intermediates up to (not incl.) the root."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    intermediates: tuple[x509.Certificate, ...] = ()

    def chain_pem(self) -> str:
        """The certificate, then its intermediates: what a TLS peer presents."""
        return _pem(self.cert, *self.intermediates)

    def key_pem(self) -> str:
        return _key_pem(self.key)

    def write(self, directory: Path, name: str = "cert") -> tuple[Path, Path]:
        """Write ``<name>.pem`` (the chain) and ``<name>-key.pem`` (0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}-key.pem"
        cert_path.write_text(self.chain_pem())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(self.key_pem())
        return cert_path, key_path


@dataclass(frozen=True)
class TestCa:
    """A CA certificate and key; ``parent`` is the CA that signed it (None for a root)."""

    __test__ = False
    """Not a pytest test class, whatever its name."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    parent: TestCa | None = None

    @classmethod
    def create(
        cls,
        name: str = "Test Root CA",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        v1: bool = False,
    ) -> TestCa:
        """A new self-signed root CA with the common name ``name``; with ``v1``, an X.509
        version 1 certificate (no basicConstraints, no extension at all)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        cert = _sign(
            subject,
            key.public_key(),
            issuer_name=subject,
            issuer_key=key,
            extensions=_ca_extensions(),
            not_before=not_before,
            not_after=not_after or _now() + timedelta(days=_CA_DAYS),
        )
        return cls(version_1(cert, key) if v1 else cert, key)

    def intermediate(
        self,
        name: str = "Test Intermediate CA",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> TestCa:
        """A CA signed by this one."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(
            _name(name),
            key.public_key(),
            _ca_extensions(),
            not_before,
            not_after or _now() + timedelta(days=_CA_DAYS),
        )
        return TestCa(cert, key, self)

    @property
    def root(self) -> TestCa:
        return self.parent.root if self.parent else self

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its parents, root excluded: the intermediates of what it issues."""
        if self.parent is None:
            return ()
        return (self.cert, *self.parent.chain)

    def pem(self) -> str:
        """This CA's own certificate."""
        return _pem(self.cert)

    def issue_server(
        self,
        hostnames: Iterable[str] = ("localhost",),
        ips: Iterable[str] = ("127.0.0.1", "::1"),
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A TLS server certificate (serverAuth) naming ``hostnames`` and ``ips`` in its SAN."""
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if not names:
            raise ValueError("a server certificate needs a host name or an IP address")
        common_name = names[0].value if isinstance(names[0], x509.DNSName) else str(names[0].value)
        extra: list[_Ext] = [(x509.SubjectAlternativeName(names), False)]
        return self._issue_leaf(
            common_name, ExtendedKeyUsageOID.SERVER_AUTH, not_before, not_after, extra
        )

    def issue_client(
        self,
        common_name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A TLS client certificate (clientAuth) such as a charge point's; no SAN."""
        return self._issue_leaf(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, not_before, not_after)

    def issue_code_signing(
        self,
        common_name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A firmware signing certificate (codeSigning)."""
        return self._issue_leaf(
            common_name, ExtendedKeyUsageOID.CODE_SIGNING, not_before, not_after
        )

    def sign_csr(
        self,
        csr_pem: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        subject: x509.Name | None = None,
    ) -> str:
        """Sign a CSR as a Central System would: a clientAuth certificate for the CSR's subject
        and key, returned as PEM with the intermediates after it. A CSR whose signature does not
        verify raises :class:`ValueError`. ``subject`` replaces the CSR's, for a certificate
        that names another charge point (a CA's mistake, or an attack).
        """
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not verify")
        cert = self._issue(
            csr.subject if subject is None else subject,
            csr.public_key(),
            _leaf_extensions(ExtendedKeyUsageOID.CLIENT_AUTH),
            not_before,
            not_after,
        )
        return _pem(cert, *self.chain)

    def _issue_leaf(
        self,
        common_name: str,
        usage: ObjectIdentifier,
        not_before: datetime | None,
        not_after: datetime | None,
        extra: list[_Ext] | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = _leaf_extensions(usage) + (extra or [])
        cert = self._issue(_name(common_name), key.public_key(), extensions, not_before, not_after)
        return Issued(cert, key, self.chain)

    def _issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        extensions: list[_Ext],
        not_before: datetime | None,
        not_after: datetime | None,
    ) -> x509.Certificate:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        return _sign(
            subject,
            public_key,
            issuer_name=self.cert.subject,
            issuer_key=self.key,
            extensions=[*extensions, (aki, False)],
            not_before=not_before,
            not_after=not_after,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_extensions() -> list[_Ext]:
    return [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(ca=True), True),
    ]


def _leaf_extensions(usage: ObjectIdentifier) -> list[_Ext]:
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(ca=False), True),
        (x509.ExtendedKeyUsage([usage]), False),
    ]


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    issuer_name: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[_Ext],
    not_before: datetime | None,
    not_after: datetime | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - timedelta(hours=1))
        .not_valid_after(not_after or _now() + timedelta(days=_LEAF_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def version_1(cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """``cert`` as an X.509 version 1 certificate, signed again by ``issuer_key``: its
    to-be-signed part without the version field and the extensions, which v1 does not have.
    (``cryptography`` builds v3 certificates only.)"""
    tbs = cert.tbs_certificate_bytes
    _, pos, end = der.element(tbs, 0)
    fields = []
    while pos < end:
        tag, _, field_end = der.element(tbs, pos)
        if tag not in (0xA0, 0xA3):  # [0] version, [3] extensions
            fields.append(tbs[pos:field_end])
        pos = field_end
    body = der.encode(0x30, b"".join(fields))
    signature = issuer_key.sign(body, ec.ECDSA(hashes.SHA256()))
    algorithm = fields[1]  # after the serial number: the signature AlgorithmIdentifier
    return x509.load_der_x509_certificate(
        der.encode(0x30, body + algorithm + der.encode(0x03, b"\x00" + signature))
    )


def _pem(*certs: x509.Certificate) -> str:
    return "".join(cert.public_bytes(_PEM).decode() for cert in certs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def sign_file(issued: Issued, path: Path) -> str:
    """The base64 signature of the bytes of ``path`` by ``issued``'s key, as SignedUpdateFirmware
    carries it: ECDSA (DER) with SHA-256 for an EC key, PKCS#1 v1.5 with SHA-256 for an RSA key.

    For tests, and for trying a firmware signing setup; the file is hashed in chunks, so a
    firmware image of any size can be signed. Another kind of key raises :class:`TypeError`.
    """
    digest = hashes.Hash(hashes.SHA256())
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    prehashed = Prehashed(hashes.SHA256())
    key: PrivateKeyTypes = issued.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(digest.finalize(), ec.ECDSA(prehashed))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(digest.finalize(), padding.PKCS1v15(), prehashed)
    else:
        raise TypeError(f"a {type(key).__name__} cannot sign firmware (RSA or EC)")
    return base64.b64encode(signature).decode("ascii")
