"""Charge point keys in a PKCS#11 token, with a real SoftHSM token: the key references, the
helper process, the certificate store's token keys and TLS through pkcs11-provider.

SoftHSM reads ``SOFTHSM2_CONF`` once per process, so each pytest process makes one token
(:func:`soft_token`) and every test keeps its keys apart by label. python-pkcs11 is never
loaded into this process (pkcs11-provider may be): the token is inspected by a child process.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpagent.config import TokenSettings
from cpagent.security import der
from cpagent.security.keys import (
    KeyStorage,
    KeyUnusable,
    is_token_reference,
    openssl_supports_token_keys,
    token_reference,
)
from cpagent.security.pki import CertificateStore, CertificateUse, PkiError
from cpagent.security.token_helper import GENERATED_LABEL_PREFIX, Refused, Uri
from cpagent.testing.pki import TestCa
from cpagent.testing.softhsm import SoftToken, provider_installed
from tests.unit.test_pki import root, sub_ca

NOW = datetime.now(UTC)
CSMS = CertificateUse.CENTRAL_SYSTEM_ROOT
PEM_LABEL = "PKCS#11 PROVIDER URI"
URI_DESCRIPTION = b"PKCS#11 Provider URI v1.0"
TIMEOUT_S = 60
"""Bound on each socket operation and child process of a test."""

__all__ = ["root", "sub_ca"]  # fixtures, imported to be used here

pytestmark = pytest.mark.usefixtures("soft_token")

needs_provider = pytest.mark.skipif(
    not provider_installed() or not openssl_supports_token_keys(),
    reason="TLS with a token key needs pkcs11-provider (Debian: pkcs11-provider) and OpenSSL"
    " 3.0.7+",
)


# --- the token, and looking into it from a child process ---


@pytest.fixture
def token_keys(soft_token: SoftToken) -> KeyStorage:
    return KeyStorage(soft_token.settings)


@pytest.fixture
def store(tmp_path: Path, root: TestCa, token_keys: KeyStorage) -> CertificateStore:
    """A store making its keys in the token and trusting ``root`` as Central System root."""
    store = CertificateStore(tmp_path / "certs", keys=token_keys)
    assert store.install_root(CSMS, root.pem(), NOW) == "Accepted"
    return store


def classes(token: SoftToken, label: str) -> list[str]:
    return sorted(entry["class"] for entry in token.objects(label))


KEY_PAIR = ["PRIVATE_KEY", "PUBLIC_KEY"]


# --- references, decoded independently of keys.py ---


def reference_uri(stored: bytes) -> str:
    """The URI of a ``PKCS#11 PROVIDER URI`` PEM, checking it holds nothing else:
    SEQUENCE { VisibleString description, UTF8String uri }."""
    lines = stored.decode("ascii").splitlines()
    assert lines[0] == f"-----BEGIN {PEM_LABEL}-----"
    assert lines[-1] == f"-----END {PEM_LABEL}-----"
    assert all(len(line) <= 64 for line in lines)
    data = base64.b64decode("".join(lines[1:-1]), validate=True)
    tag, content, end = der.element(data, 0)
    assert (tag, end) == (0x30, len(data))
    tag, start, description_end = der.element(data, content)
    assert (tag, data[start:description_end]) == (0x1A, URI_DESCRIPTION)
    tag, start, uri_end = der.element(data, description_end)
    assert (tag, uri_end) == (0x0C, end)
    return data[start:uri_end].decode()


def label_of(stored: bytes) -> str:
    label = Uri.parse(reference_uri(stored)).label
    assert label is not None
    return label


def spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPO"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


NAME = subject("CP-1")


def unusable(action: Callable[[], object]) -> str:
    """The message of the :class:`KeyUnusable` ``action`` raises."""
    with pytest.raises(KeyUnusable) as caught:
        action()
    return str(caught.value)


def test_a_token_reference_round_trips() -> None:
    for uri in (
        "pkcs11:object=factory;type=private",
        "pkcs11:token=cp;id=%01%ff;object=a%20b;type=private",
        "pkcs11:object=" + "x" * 300 + ";type=private",  # a two-byte DER length
    ):
        stored = token_reference(uri)

        assert is_token_reference(stored)
        assert reference_uri(stored) == uri


def test_a_file_key_is_not_a_token_reference() -> None:
    stored = KeyStorage().generate()

    assert b"-----BEGIN PRIVATE KEY-----" in stored
    assert not is_token_reference(stored)
    assert isinstance(KeyStorage().public_key(stored), ec.EllipticCurvePublicKey)


def test_only_a_pkcs11_uri_makes_a_reference() -> None:
    assert "is not a PKCS#11 URI" in unusable(lambda: token_reference("file:/etc/key.pem"))


def _damage(stored: bytes, how: str) -> bytes:
    lines = stored.decode().splitlines()
    if how == "cut":
        return "\n".join([lines[0], lines[1][:20], lines[-1], ""]).encode()
    if how == "not-base64":
        return "\n".join([lines[0], "!!!!" + lines[1][4:], *lines[2:], ""]).encode()
    if how == "no-end-line":
        return "\n".join(lines[:-1]).encode()
    body = der.encode(0x30, der.encode(0x1A, b"Something Else v1.0") + der.encode(0x0C, b"pkcs11:"))
    encoded = base64.b64encode(body).decode()
    return f"{lines[0]}\n{encoded}\n{lines[-1]}\n".encode()


@pytest.mark.parametrize("how", ["cut", "not-base64", "no-end-line", "other-description"])
def test_a_damaged_reference_is_unusable(token_keys: KeyStorage, how: str) -> None:
    damaged = _damage(token_reference("pkcs11:object=cpagent-x;type=private"), how)

    assert is_token_reference(damaged)
    message = unusable(lambda: token_keys.public_key(damaged))
    assert "damaged PKCS#11 key reference" in message
    assert "damaged PKCS#11 key reference" in unusable(lambda: token_keys.sign_csr(damaged, NAME))


# --- keys made in the token ---


def test_a_generated_key_stays_in_the_token(soft_token: SoftToken, token_keys: KeyStorage) -> None:
    stored = token_keys.generate()

    assert is_token_reference(stored)
    assert b"PRIVATE KEY" not in stored
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(stored, password=None)
    uri = Uri.parse(reference_uri(stored))
    assert uri.token == soft_token.settings.token
    assert uri.label is not None
    assert uri.label.startswith("cpagent-charge-point-")
    assert uri.id is not None

    objects = {entry["class"]: entry for entry in soft_token.objects(uri.label)}
    assert sorted(objects) == KEY_PAIR
    private, public = objects["PRIVATE_KEY"], objects["PUBLIC_KEY"]
    assert private["ID"] == public["ID"] == uri.id.hex()
    assert private["SENSITIVE"] is True
    assert private["EXTRACTABLE"] is False
    assert private["PRIVATE"] is True
    assert private["ALWAYS_SENSITIVE"] is True
    assert private["NEVER_EXTRACTABLE"] is True
    assert private["VALUE"] == "unreadable: AttributeSensitive"

    key = token_keys.public_key(stored)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert point.hex() in public["EC_POINT"]
    assert KeyStorage(soft_token.settings).public_key(stored) == key  # read again, uncached


def test_each_generated_key_is_a_new_one(token_keys: KeyStorage) -> None:
    first, second = token_keys.generate(), token_keys.generate()

    assert label_of(first) != label_of(second)
    assert spki(token_keys.public_key(first)) != spki(token_keys.public_key(second))


def test_a_csr_is_signed_in_the_token(token_keys: KeyStorage) -> None:
    stored = token_keys.generate()
    public = token_keys.public_key(stored)
    assert isinstance(public, ec.EllipticCurvePublicKey)

    # Several signatures, so that r and s with their top bit set (a DER INTEGER needing a
    # leading zero byte) and clear are both most likely met.
    for number in range(6):
        name = subject(f"CP-{number}")
        csr = token_keys.sign_csr(stored, name)

        assert csr.is_signature_valid
        assert csr.subject == name
        assert spki(csr.public_key()) == spki(public)
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
        public.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256()))


def test_discard_removes_the_key_pair_from_the_token(
    soft_token: SoftToken, token_keys: KeyStorage
) -> None:
    stored = token_keys.generate()
    label = label_of(stored)
    assert classes(soft_token, label) == KEY_PAIR

    token_keys.discard(stored)

    assert classes(soft_token, label) == []
    token_keys.discard(stored)  # gone already: nothing to do, no error
    assert "no public key objects" in unusable(
        lambda: KeyStorage(soft_token.settings).reference(reference_uri(stored))
    )


def _import_factory_key(token: SoftToken, key: ec.EllipticCurvePrivateKey) -> tuple[str, bytes]:
    """Put ``key`` in the token as a factory would; its (distinct) label and id."""
    label, key_id = f"factory-{secrets.token_hex(6)}", secrets.token_bytes(8)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token.import_key(pem, label, key_id)
    return label, key_id


def test_discard_never_removes_a_factory_key(soft_token: SoftToken, token_keys: KeyStorage) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    label, key_id = _import_factory_key(soft_token, key)
    by_label = token_keys.reference(f"pkcs11:object={label};type=private")
    by_id = token_reference(Uri(soft_token.settings.token, None, key_id).format())

    assert spki(token_keys.public_key(by_label)) == spki(key.public_key())
    token_keys.discard(by_label)
    token_keys.discard(by_id)

    assert classes(soft_token, label) == KEY_PAIR
    assert spki(token_keys.public_key(by_id)) == spki(key.public_key())


def test_discard_leaves_file_keys_and_storages_without_a_token_alone(
    soft_token: SoftToken, token_keys: KeyStorage
) -> None:
    stored = token_keys.generate()

    KeyStorage().discard(stored)
    token_keys.discard(KeyStorage().generate())

    assert classes(soft_token, label_of(stored)) == KEY_PAIR


# --- what goes wrong, said in the log ---


def _write_pin(directory: Path, pin: str) -> Path:
    path = directory / "pin"
    path.write_text(pin)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda s, d: replace(s, token="no-such-token"),
            "no token labelled 'no-such-token'",
            id="wrong-token-label",
        ),
        pytest.param(
            lambda s, d: replace(s, pin_file=d / "missing-pin"),
            "missing-pin: No such file or directory",
            id="missing-pin-file",
        ),
        pytest.param(
            lambda s, d: replace(s, pin_file=_write_pin(d, "\n")), "is empty", id="empty-pin-file"
        ),
        pytest.param(
            # The only wrong PIN tried on this process's token.
            lambda s, d: replace(s, pin_file=_write_pin(d, "000000\n")),
            "refused the PIN in",
            id="wrong-pin",
        ),
        pytest.param(
            lambda s, d: replace(s, module=d / "no-such-pkcs11.so"),
            "no-such-pkcs11.so: ",
            id="missing-module",
        ),
    ],
)
def test_a_token_that_cannot_be_used_gives_a_reason(
    soft_token: SoftToken,
    tmp_path: Path,
    change: Callable[[TokenSettings, Path], TokenSettings],
    expected: str,
) -> None:
    settings = change(soft_token.settings, tmp_path)

    message = unusable(KeyStorage(settings).generate)

    assert expected in message
    assert "Traceback" not in message


def test_a_uri_naming_no_object_is_unusable(token_keys: KeyStorage) -> None:
    nothing = "pkcs11:object=cpagent-charge-point-nothing;type=private"

    assert "no public key objects" in unusable(lambda: token_keys.reference(nothing))
    assert "no public key objects" in unusable(
        lambda: token_keys.sign_csr(token_reference(nothing), NAME)
    )
    elsewhere = "pkcs11:token=another-token;object=x;type=private"
    assert "not in the configured token" in unusable(lambda: token_keys.reference(elsewhere))
    assert "names no object" in unusable(lambda: token_keys.reference("pkcs11:type=private"))


def test_a_reference_without_a_configured_token_is_unusable(token_keys: KeyStorage) -> None:
    stored = token_keys.generate()
    files_only = KeyStorage()

    assert "pkcs11_module" in unusable(lambda: files_only.public_key(stored))
    assert "pkcs11_module" in unusable(lambda: files_only.sign_csr(stored, NAME))
    assert "pkcs11_module" in unusable(lambda: files_only.prepare_tls(stored))
    token_keys.discard(stored)


# --- the helper process itself ---


def helper(request: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "cpagent.security.token_helper"],
        input=request,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_the_helper_answers_bad_json_with_an_error() -> None:
    answer = helper("{not json")

    assert list(answer) == ["error"]
    assert "bad token helper request" in answer["error"]


def test_the_helper_refuses_an_unknown_operation(soft_token: SoftToken) -> None:
    request = {
        "operation": "export_private_key",
        "module": str(soft_token.settings.module),
        "token": soft_token.settings.token,
        "pin_file": str(soft_token.settings.pin_file),
    }

    assert helper(json.dumps(request)) == {
        "error": "unknown operation 'export_private_key'",
    }
    assert "KeyError('module')" in helper(json.dumps({"operation": "generate"}))["error"]


def test_the_helper_makes_and_destroys_a_key(soft_token: SoftToken) -> None:
    settings = soft_token.settings
    request = {"module": str(settings.module), "token": settings.token}
    request["pin_file"] = str(settings.pin_file)

    uri = helper(json.dumps({**request, "operation": "generate"}))["result"]
    label = Uri.parse(uri).label
    assert label is not None
    destroyed = helper(json.dumps({**request, "operation": "destroy", "uri": uri}))

    assert destroyed == {"result": f"{label}, {label}"}
    assert classes(soft_token, label) == []


# --- RFC 7512 URIs ---


def test_a_uri_percent_encodes_ids_and_odd_labels() -> None:
    uri = Uri("charge point; A", "key; 2024 #1", bytes([0x00, 0x3B, 0x7F, 0xFF]))

    text = uri.format()

    assert text == (
        "pkcs11:token=charge%20point%3B%20A;id=%00%3b%7f%ff;object=key%3B%202024%20%231"
        ";type=private"
    )
    assert Uri.parse(text) == uri
    assert Uri.parse("pkcs11:object=a;id=%0A%Ff;type=private?pin-source=x") == Uri(
        None, "a", b"\x0a\xff"
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.none() | st.text(max_size=32),
    label=st.none() | st.text(max_size=32),
    key_id=st.none() | st.binary(max_size=20),
)
def test_any_uri_round_trips(token: str | None, label: str | None, key_id: bytes | None) -> None:
    if label is None and key_id is None:
        key_id = b"\x01"
    uri = Uri(token, label, key_id)

    assert Uri.parse(uri.format()) == uri


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pkcs11:token=cp;type=private", "names no object"),
        ("pkcs11:", "names no object"),
        ("file:///key.pem", "is not a PKCS#11 URI"),
    ],
)
def test_a_uri_without_an_object_is_refused(text: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        Uri.parse(text)


# --- the certificate store with token keys ---


def renew(store: CertificateStore, ca: TestCa, name: str = "CP-1") -> x509.Certificate:
    """One SignCertificate / CertificateSigned round trip."""
    return store.accept_signed(ca.sign_csr(store.new_csr(name, "CPO")), NOW, common_name=name)


def own(store: CertificateStore, name: str) -> Path:
    return store.directory / "charge-point" / name


def stored_keys(store: CertificateStore) -> dict[str, bytes]:
    """The key files of the store's identity, by name."""
    names = ("key.pem", "pending-key.pem", "key.previous.pem")
    return {name: own(store, name).read_bytes() for name in names if own(store, name).exists()}


def test_a_csr_key_is_made_in_the_token(
    soft_token: SoftToken, store: CertificateStore, sub_ca: TestCa
) -> None:
    csr = x509.load_pem_x509_csr(store.new_csr("CP-7", "CPO").encode())

    pending = stored_keys(store)["pending-key.pem"]
    assert is_token_reference(pending)
    assert csr.is_signature_valid
    assert csr.subject == subject("CP-7")
    assert spki(csr.public_key()) == spki(store.keys.public_key(pending))
    assert classes(soft_token, label_of(pending)) == KEY_PAIR

    leaf = store.accept_signed(
        sub_ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode()),
        NOW,
        common_name="CP-7",
    )

    assert stored_keys(store) == {"key.pem": pending}
    assert store.identity_certificate() == leaf
    assert leaf.subject == subject("CP-7")


def test_a_new_csr_destroys_the_key_of_the_one_before(
    soft_token: SoftToken, store: CertificateStore
) -> None:
    store.new_csr("CP-1", "CPO")
    first = stored_keys(store)["pending-key.pem"]

    store.new_csr("CP-1", "CPO")

    assert stored_keys(store)["pending-key.pem"] != first
    assert classes(soft_token, label_of(first)) == []


def test_a_csr_that_cannot_be_signed_leaves_no_key_in_the_token(
    soft_token: SoftToken, store: CertificateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that fails between making the key and signing the CSR (pulled out, a
    helper timeout) must not keep the orphan: on a smart card it would take a key slot."""
    made: list[bytes] = []
    generate = store.keys.generate

    def generate_and_note() -> bytes:
        made.append(generate())
        return made[-1]

    def fail(stored: bytes, name: x509.Name) -> x509.CertificateSigningRequest:
        raise KeyUnusable("the token went away")

    monkeypatch.setattr(store.keys, "generate", generate_and_note)
    monkeypatch.setattr(store.keys, "sign_csr", fail)
    with pytest.raises(PkiError) as refused:
        store.new_csr("CP-1", "CPO")

    assert refused.value.reason == "KeyUnusable"
    assert "the token went away" in str(refused.value)
    assert stored_keys(store) == {}
    (orphan,) = made
    assert classes(soft_token, label_of(orphan)) == []


def test_a_discarded_key_is_no_longer_vouched_for(token_keys: KeyStorage) -> None:
    stored = token_keys.generate()
    token_keys.public_key(stored)  # read once, so remembered

    token_keys.discard(stored)

    assert "no public key objects" in unusable(lambda: token_keys.public_key(stored))


def test_renewals_keep_the_current_and_previous_token_keys(
    soft_token: SoftToken, store: CertificateStore, sub_ca: TestCa
) -> None:
    labels = []
    for _ in range(3):
        leaf = renew(store, sub_ca)
        labels.append(label_of(stored_keys(store)["key.pem"]))
        assert spki(leaf.public_key()) == spki(store.keys.public_key(stored_keys(store)["key.pem"]))

    kept = {name: label_of(stored) for name, stored in stored_keys(store).items()}
    assert kept == {"key.pem": labels[2], "key.previous.pem": labels[1]}
    assert len(set(labels)) == 3
    assert all(label.startswith(GENERATED_LABEL_PREFIX) for label in labels)
    assert classes(soft_token, labels[0]) == []
    assert classes(soft_token, labels[1]) == KEY_PAIR
    assert classes(soft_token, labels[2]) == KEY_PAIR


def test_a_revert_removes_the_failed_new_key(
    soft_token: SoftToken, store: CertificateStore, sub_ca: TestCa
) -> None:
    first = renew(store, sub_ca)
    old = label_of(stored_keys(store)["key.pem"])
    renew(store, sub_ca)
    new = label_of(stored_keys(store)["key.pem"])

    assert store.revert_identity() is True

    assert {name: label_of(s) for name, s in stored_keys(store).items()} == {"key.pem": old}
    assert store.identity_certificate() == first
    assert classes(soft_token, new) == []
    assert classes(soft_token, old) == KEY_PAIR
    assert store.revert_identity() is False


def test_a_factory_token_key_is_seeded_and_outlives_renewals(
    tmp_path: Path, soft_token: SoftToken, store: CertificateStore, sub_ca: TestCa
) -> None:
    factory = sub_ca.issue_client("CP-Factory")
    label, _ = _import_factory_key(soft_token, factory.key)
    cert_path, _ = factory.write(tmp_path / "factory")
    uri = f"pkcs11:object={label};type=private"

    assert store.seed_identity(cert_path, uri) == []

    assert stored_keys(store) == {"key.pem": token_reference(uri)}
    assert store.identity_certificate() == factory.cert
    renew(store, sub_ca)
    renew(store, sub_ca)  # the factory key is replaced as "previous": discarded, kept
    assert classes(soft_token, label) == KEY_PAIR
    assert token_reference(uri) not in stored_keys(store).values()


def test_a_factory_token_key_for_another_certificate_is_refused(
    tmp_path: Path, soft_token: SoftToken, store: CertificateStore, sub_ca: TestCa
) -> None:
    label, _ = _import_factory_key(soft_token, ec.generate_private_key(ec.SECP256R1()))
    cert_path, _ = sub_ca.issue_client("CP-Factory").write(tmp_path / "factory")

    with pytest.raises(PkiError) as caught:
        store.seed_identity(cert_path, f"pkcs11:object={label};type=private")
    assert caught.value.reason == "KeyMismatch"
    assert stored_keys(store) == {}

    with pytest.raises(PkiError) as missing:
        store.seed_identity(cert_path, "pkcs11:object=no-such-factory-key;type=private")
    assert missing.value.reason == "KeyUnusable"
    assert "no public key objects" in str(missing.value)


# --- TLS with the key in the token, through pkcs11-provider in this process ---


VERSIONS = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}


def _serve_once(listener: socket.socket, context: ssl.SSLContext) -> x509.Certificate:
    """Accept one TLS client, answer ``ok`` and return the certificate it presented."""
    connection, _ = listener.accept()
    connection.settimeout(TIMEOUT_S)
    with context.wrap_socket(connection, server_side=True) as tls:
        presented = tls.getpeercert(binary_form=True)
        tls.sendall(b"ok")
    assert presented is not None
    return x509.load_der_x509_certificate(presented)


def mutual_tls(
    identity: tuple[Path, Path] | None,
    server_files: tuple[Path, Path],
    root: TestCa,
    version: ssl.TLSVersion,
    server_trusts: TestCa | None = None,
) -> x509.Certificate:
    """A TLS handshake with a local server requiring a client certificate from ``root`` (or
    ``server_trusts``); the client certificate the server accepted."""
    assert identity is not None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*server_files)
    server.load_verify_locations(cadata=(server_trusts or root).pem())
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=root.pem())
    client.load_cert_chain(*identity)
    for context in (server, client):
        context.minimum_version = context.maximum_version = version
    with socket.create_server(("127.0.0.1", 0)) as listener, ThreadPoolExecutor(1) as pool:
        listener.settimeout(TIMEOUT_S)
        seen = pool.submit(_serve_once, listener, server)
        address = listener.getsockname()
        with (
            socket.create_connection(address, timeout=TIMEOUT_S) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            # TLS 1.3: the server judges the client certificate after the client is done.
            assert tls.recv(2) == b"ok"
            assert tls.version() == VERSIONS[version]
        return seen.result(timeout=TIMEOUT_S)


@needs_provider
def test_tls_signs_with_the_token_key_before_and_after_a_renewal(
    tmp_path: Path, store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    server_files = sub_ca.issue_server().write(tmp_path / "server")
    for number in (1, 2):
        leaf = renew(store, sub_ca, f"CP-TLS-{number}")
        identity = store.identity()

        assert identity == (own(store, "cert.pem"), own(store, "key.pem"))
        assert is_token_reference(identity[1].read_bytes())
        for version in VERSIONS:
            seen = mutual_tls(identity, server_files, root, version)

            assert seen == leaf
            assert seen.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
                f"CP-TLS-{number}"
            )


@needs_provider
def test_tls_signs_with_a_seeded_factory_key(
    tmp_path: Path, soft_token: SoftToken, store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    factory = sub_ca.issue_client("CP-Factory")
    label, _ = _import_factory_key(soft_token, factory.key)
    cert_path, _ = factory.write(tmp_path / "factory")
    store.seed_identity(cert_path, f"pkcs11:object={label};type=private")
    server_files = sub_ca.issue_server().write(tmp_path / "server")

    for version in VERSIONS:
        assert mutual_tls(store.identity(), server_files, root, version) == factory.cert


@needs_provider
def test_a_stranger_server_does_not_accept_the_token_identity(
    tmp_path: Path, store: CertificateStore, root: TestCa, sub_ca: TestCa
) -> None:
    renew(store, sub_ca)
    server_files = sub_ca.issue_server().write(tmp_path / "server")
    stranger = TestCa.create("Stranger Root")

    with pytest.raises(ssl.SSLError, match="alert unknown ca"):
        mutual_tls(store.identity(), server_files, root, ssl.TLSVersion.TLSv1_3, stranger)
