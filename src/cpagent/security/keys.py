"""Where the charge point's private keys live: 0600 PEM files, or a PKCS#11 token.

The certificate store keeps one small PEM file per key either way (``key.pem``,
``pending-key.pem``, ``key.previous.pem``). For a file key it is the key itself. For a token
key it is a reference: a ``PKCS#11 PROVIDER URI`` PEM naming the token object by RFC 7512 URI,
the format of OpenSSL 3's pkcs11-provider. Once :func:`load_provider` has loaded that provider
into this process's OpenSSL, the ``ssl`` module loads such a reference like any key file and
the TLS handshake is signed inside the token: the key is generated there, marked sensitive and
not extractable, and never exists on the board's storage or in its memory.

A token key is made, read and used for a CSR by a helper process
(:mod:`cpagent.security.token_helper`), and used in TLS through the provider. Everything here
blocks: call it from a worker thread.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import re
import ssl
import subprocess
import sys
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from cpagent.config import TokenSettings
from cpagent.exc import CpagentError
from cpagent.security import der

__all__ = [
    "KeyStorage",
    "KeyUnusable",
    "TokenSettings",
    "is_token_reference",
    "load_provider",
    "openssl_supports_token_keys",
    "reference_uri",
    "token_reference",
]

log = logging.getLogger(__name__)

_URI_PEM_LABEL = "PKCS#11 PROVIDER URI"
_URI_DESCRIPTION = b"PKCS#11 Provider URI v1.0"
_PEM = serialization.Encoding.PEM
_P256 = ec.SECP256R1()
_MIN_OPENSSL = (3, 0, 7)
"""The oldest OpenSSL pkcs11-provider supports."""


class KeyUnusable(CpagentError):
    """A key that cannot be made, read or used: the token is missing, refuses the PIN, has
    no such object, or the file is not a key. The message says which, for the log."""


def is_token_reference(stored: bytes) -> bool:
    """Whether a stored key file is a token reference rather than a key."""
    return f"-----BEGIN {_URI_PEM_LABEL}-----".encode() in stored


def token_reference(uri: str) -> bytes:
    """The PEM that stands for the token key ``uri`` (``pkcs11:...;type=private``)."""
    if not uri.startswith("pkcs11:"):
        raise KeyUnusable(f"{uri!r} is not a PKCS#11 URI")
    body = der.encode(0x30, der.encode(0x1A, _URI_DESCRIPTION) + der.encode(0x0C, uri.encode()))
    encoded = base64.encodebytes(body).decode().replace("\n", "")
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return "\n".join(
        [f"-----BEGIN {_URI_PEM_LABEL}-----", *lines, f"-----END {_URI_PEM_LABEL}-----", ""]
    ).encode()


def reference_uri(stored: bytes) -> str:
    """The URI a token reference names; :class:`KeyUnusable` when it is damaged."""
    match = re.search(
        rf"-----BEGIN {_URI_PEM_LABEL}-----(.*?)-----END {_URI_PEM_LABEL}-----".encode(),
        stored,
        re.DOTALL,
    )
    try:
        if match is None:
            raise ValueError("no PEM block")
        data = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        _, content, end = der.element(data, 0)
        _, desc_start, desc_end = der.element(data, content)
        _, uri_start, uri_end = der.element(data, desc_end)
        if data[desc_start:desc_end] != _URI_DESCRIPTION or uri_end != end:
            raise ValueError("not a PKCS#11 provider URI")
        return data[uri_start:uri_end].decode()
    except (ValueError, IndexError) as err:
        raise KeyUnusable(f"damaged PKCS#11 key reference: {err}") from err


class KeyStorage:
    """Makes, reads, signs with and forgets the charge point's keys.

    With ``token`` (None: files only), :meth:`generate` makes keys in that token; a store
    may hold keys of both kinds (a factory file key, say, then token keys from renewals),
    so every other method goes by the stored bytes it is given.
    """

    def __init__(self, token: TokenSettings | None = None) -> None:
        self.token = token
        self._public_keys: dict[bytes, PublicKeyTypes] = {}

    def generate(self) -> bytes:
        """A new EC P-256 key, as the bytes to store for it."""
        if self.token is None:
            key = ec.generate_private_key(_P256)
            return key.private_bytes(
                _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        return token_reference(self._token("generate"))

    def reference(self, uri: str) -> bytes:
        """The stored bytes for a key already in the token (a factory key), checked to be
        there and to have its public half."""
        stored = token_reference(uri)
        self.public_key(stored)
        return stored

    def public_key(self, stored: bytes) -> PublicKeyTypes:
        """The public half of a stored key; :class:`KeyUnusable` when it cannot be read."""
        if is_token_reference(stored):
            if stored not in self._public_keys:
                spki = self._token("public_key", uri=reference_uri(stored))
                self._public_keys[stored] = serialization.load_der_public_key(_b64(spki))
            return self._public_keys[stored]
        try:
            return serialization.load_pem_private_key(stored, password=None).public_key()
        except (ValueError, TypeError) as err:
            raise KeyUnusable("not an unencrypted PEM private key") from err

    def sign_csr(self, stored: bytes, subject: x509.Name) -> x509.CertificateSigningRequest:
        """A CSR for ``subject`` signed with the stored EC key (SHA-256)."""
        if is_token_reference(stored):
            subject_der = base64.b64encode(subject.public_bytes()).decode()
            csr_der = self._token("sign_csr", uri=reference_uri(stored), subject=subject_der)
            csr = x509.load_der_x509_csr(_b64(csr_der))
            if not csr.is_signature_valid:
                token = self._require_token().describe()
                raise KeyUnusable(f"{token}: the CSR's signature does not verify")
            return csr
        try:
            key = serialization.load_pem_private_key(stored, password=None)
        except (ValueError, TypeError) as err:
            raise KeyUnusable("not an unencrypted PEM private key") from err
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyUnusable("a CSR is signed with an EC key")
        return (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )

    def discard(self, stored: bytes) -> None:
        """Destroy a token key cpagent made once no file names it; nothing for file keys
        (the file itself is the key). Failures are logged: a leftover object only uses room."""
        self._public_keys.pop(stored, None)
        if not is_token_reference(stored) or self.token is None:
            return
        try:
            self._token("destroy", uri=reference_uri(stored))
        except KeyUnusable as err:
            log.warning("could not remove a replaced key from the token: %s", err)

    def prepare_tls(self, stored: bytes) -> None:
        """Make the key loadable by the ``ssl`` module: for a token key, load the provider."""
        if is_token_reference(stored):
            load_provider(self._require_token())

    def _require_token(self) -> TokenSettings:
        if self.token is None:
            raise KeyUnusable(
                "the key is in a PKCS#11 token, but [security] names no pkcs11_module"
            )
        return self.token

    def _token(self, operation: str, **arguments: str) -> str:
        """Run one token operation in a helper process and return its result.

        The helper loads the token's PKCS#11 module, logs in, acts, logs out and exits. In
        this process, the module is pkcs11-provider's alone: PKCS#11 login state is shared
        by everything in a process, and a second user logging out would log the TLS
        connection's key out too. A vendor module that crashes or hangs takes the helper
        down, not the agent.
        """
        token = self._require_token()
        request = {
            "operation": operation,
            "module": str(token.module),
            "token": token.token,
            "pin_file": str(token.pin_file),
            **arguments,
        }
        command = [sys.executable, "-m", "cpagent.security.token_helper"]
        try:
            done = subprocess.run(
                command,
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=TOKEN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise KeyUnusable(f"{token.describe()}: no answer in {TOKEN_TIMEOUT_S} s") from err
        except OSError as err:
            raise KeyUnusable(f"cannot run the token helper: {err}") from err
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            detail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise KeyUnusable(
                f"{token.describe()}: the token helper failed (exit {done.returncode}): {detail[0]}"
            ) from None
        if "error" in answer:
            raise KeyUnusable(str(answer["error"]))
        return str(answer["result"])


TOKEN_TIMEOUT_S = 60
"""Longest wait for one token operation: key generation on a smart card takes seconds."""


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def openssl_supports_token_keys() -> bool:
    """Whether the ``ssl`` module's OpenSSL is one pkcs11-provider works with (3.0.7+)."""
    major, minor, _, patch, _ = ssl.OPENSSL_VERSION_INFO  # 3.x: the patch is 4th
    return (major, minor, patch) >= _MIN_OPENSSL


_provider_lock = threading.Lock()
_provider_for: TokenSettings | None = None


def load_provider(token: TokenSettings) -> None:
    """Load pkcs11-provider for ``token`` into the OpenSSL the ``ssl`` module uses, once.

    It is configured through a short-lived OpenSSL configuration file naming the module and
    the PIN file (never the PIN). The default provider is activated with it, as a loaded
    provider otherwise replaces the built-in ones. Raises :class:`KeyUnusable` naming what is
    missing: OpenSSL 3.0.7 or newer, the provider itself.
    """
    global _provider_for
    with _provider_lock:
        if _provider_for is not None:
            if _provider_for != token:
                log.warning("pkcs11-provider stays loaded for %s", _provider_for.describe())
            return
        if not openssl_supports_token_keys():
            raise KeyUnusable(
                f"keys in a PKCS#11 token need OpenSSL 3.0.7+, not {ssl.OPENSSL_VERSION}"
            )
        for value in (str(token.module), str(token.pin_file)):
            if re.search(r"[\s$#\"'\\]", value):
                raise KeyUnusable(
                    f"{value!r}: PKCS#11 paths may not contain spaces, $, #, quotes or \\"
                )
        libssl = ctypes.CDLL(_ssl_extension())
        load_config = libssl.OSSL_LIB_CTX_load_config
        load_config.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        load_config.restype = ctypes.c_int
        available = libssl.OSSL_PROVIDER_available
        available.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        available.restype = ctypes.c_int
        config = _PROVIDER_CONFIG.format(module=token.module, pin_file=token.pin_file)
        with tempfile.NamedTemporaryFile("w", prefix="cpagent-pkcs11-", suffix=".cnf") as file:
            file.write(config)
            file.flush()
            loaded = load_config(None, file.name.encode())
        if loaded != 1 or available(None, b"pkcs11") != 1:
            raise KeyUnusable(
                "OpenSSL could not load pkcs11-provider: install Debian's pkcs11-provider"
                f" package (bookworm: from bookworm-backports); {_openssl_errors(libssl)}"
            )
        _provider_for = token
        log.info("pkcs11-provider loaded for %s", token.describe())


_PROVIDER_CONFIG = """\
openssl_conf = cpagent_openssl
[cpagent_openssl]
providers = cpagent_providers
[cpagent_providers]
default = cpagent_default
pkcs11 = cpagent_pkcs11
[cpagent_default]
activate = 1
[cpagent_pkcs11]
pkcs11-module-path = {module}
pkcs11-module-token-pin = file:{pin_file}
activate = 1
"""


def _ssl_extension() -> str:
    """The ``_ssl`` extension: looking OpenSSL's symbols up through it finds the very
    libcrypto the ``ssl`` module is linked with."""
    import _ssl

    path = getattr(_ssl, "__file__", None)
    if path is None:
        raise KeyUnusable("this Python's ssl module is built in; cannot reach its OpenSSL")
    return str(path)


def _openssl_errors(library: ctypes.CDLL) -> str:
    get_error = library.ERR_get_error
    get_error.restype = ctypes.c_ulong
    describe = library.ERR_error_string
    describe.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
    describe.restype = ctypes.c_char_p
    errors = []
    while code := get_error():
        errors.append(describe(code, None).decode(errors="replace"))
    return "; ".join(errors) or "no OpenSSL error"
