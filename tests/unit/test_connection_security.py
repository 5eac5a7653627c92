"""The security profile policy without sockets: which endpoint each profile gives, what a
ChangeConfiguration may do to it, and the trial of a new setting with its fallback."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cpagent.security.connection import (
    TRIAL_ATTEMPTS,
    TRIAL_STATE_KEY,
    ConnectionSecurity,
    ProfileUnusable,
)
from cpagent.security.events import SecurityEventType
from cpagent.security.pki import CertificateStore, CertificateUse
from cpagent.testing.csms import server_tls_context
from cpagent.testing.pki import TestCa
from tests.unit.test_pki import handshake

URL = "ws://csms.example.com:8080/ocpp"
KEY = b"0123456789abcdef".hex()


class Rig:
    def __init__(self, tmp_path: Path, **values: str) -> None:
        self.values: dict[str, str | None] = {"SecurityProfile": "0", **values}
        self.state: dict[str, str] = {}
        self.restored: list[tuple[str, str | None]] = []
        self.reconnects = 0
        self.events: list[tuple[SecurityEventType, str | None]] = []
        self.store = CertificateStore(tmp_path / "certs")
        self.ca = TestCa.create()

    def security(self, *, plain_auth: bool = False) -> ConnectionSecurity:
        return ConnectionSecurity(
            base_url=URL,
            charge_point_id="CP1",
            certificates=lambda: self.store,
            allow_basic_auth_without_tls=plain_auth,
            value=self.values.get,
            restore=self.restore,
            reconnect=self.reconnect,
            report=lambda kind, info: self.events.append((kind, info)),
            trials=self,
        )

    def restore(self, key: str, previous: str | None) -> None:
        self.restored.append((key, previous))
        self.values[key] = previous

    def reconnect(self) -> None:
        self.reconnects += 1

    def get_state(self, key: str) -> str | None:
        return self.state.get(key)

    def set_state(self, key: str, value: str) -> None:
        self.state[key] = value

    def install_root(self) -> None:
        assert (
            self.store.install_root(
                CertificateUse.CENTRAL_SYSTEM_ROOT, self.ca.pem(), self.ca.cert.not_valid_before_utc
            )
            == "Accepted"
        )

    def install_identity(self, tmp_path: Path) -> None:
        cert, key = self.ca.issue_client("CP1").write(tmp_path, "cp")
        self.store.seed_identity(cert, key)


def test_each_profile_gives_its_scheme_auth_and_tls(tmp_path: Path) -> None:
    rig = Rig(tmp_path, AuthorizationKey=KEY)
    security = rig.security(plain_auth=True)
    plain = security.endpoint()
    assert (plain.profile, plain.url, plain.ssl_context) == (0, f"{URL}/CP1", None)
    assert plain.headers["Authorization"].startswith("Basic ")

    rig.values["SecurityProfile"] = "1"
    assert security.endpoint().url == f"{URL}/CP1" == security.url()

    rig.values["SecurityProfile"] = "2"
    with pytest.raises(ProfileUnusable, match="needs a CentralSystemRootCertificate"):
        security.endpoint()
    rig.install_root()
    tls = security.endpoint()
    assert tls.url == "wss://csms.example.com:8080/ocpp/CP1" == security.url()
    assert isinstance(tls.ssl_context, ssl.SSLContext)
    assert tls.ssl_context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert tls.ssl_context.check_hostname and "Authorization" in tls.headers

    rig.values["SecurityProfile"] = "3"
    with pytest.raises(ProfileUnusable, match="needs a charge point certificate"):
        security.endpoint()
    rig.install_identity(tmp_path)
    mutual = security.endpoint()
    assert mutual.headers == {} and mutual.ssl_context is not None


def test_profile_1_needs_permission_and_1_2_need_a_key(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SecurityProfile="1")
    with pytest.raises(ProfileUnusable, match="needs an AuthorizationKey"):
        rig.security(plain_auth=True).endpoint()
    rig.values["AuthorizationKey"] = KEY
    with pytest.raises(ProfileUnusable, match="allow_basic_auth_without_tls"):
        rig.security().endpoint()


def test_vet_only_raises_and_never_beyond_what_is_installed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SecurityProfile="2", AuthorizationKey=KEY)
    rig.install_root()
    security = rig.security()
    assert security.vet("SecurityProfile", "1") == "security profile 2 cannot be lowered to 1"
    assert security.vet("SecurityProfile", "2") == "security profile 2 is in force already"
    assert "needs a charge point certificate" in (security.vet("SecurityProfile", "3") or "")
    rig.install_identity(tmp_path)
    assert security.vet("SecurityProfile", "3") is None
    assert security.vet("HeartbeatInterval", "1") is None


def reissued(ca: TestCa) -> x509.Certificate:
    """``ca``'s root certificate issued again: another serial and validity, the same name
    and key."""
    return (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )


def test_the_root_the_csms_was_verified_with_is_in_use(tmp_path: Path) -> None:
    """M04.FR.06: on a TLS profile, the roots that must stay are those the CSMS's chain was
    verified up to at the last handshake (the same name and key); before any handshake, any
    root at all. Without TLS no root is in use."""
    rig = Rig(tmp_path, SecurityProfile="2", AuthorizationKey=KEY)
    rig.install_root()
    other = TestCa.create("Other Root")
    security = rig.security()
    assert security.still_verifies([other.cert]) is True
    assert security.still_verifies([]) is False

    server = rig.ca.intermediate("CSMS Sub CA").issue_server(("csms.example.com",), ())
    context = security.endpoint().ssl_context
    assert context is not None
    handshake(context, server_tls_context(*server.write(tmp_path, "csms")), "csms.example.com")

    assert security.still_verifies([other.cert]) is False
    assert security.still_verifies([other.cert, rig.ca.cert]) is True
    assert security.still_verifies([reissued(rig.ca)]) is True  # the same name and key
    assert security.still_verifies([]) is False

    for profile in ("0", "1"):
        plain = Rig(tmp_path / profile, SecurityProfile=profile, AuthorizationKey=KEY)
        assert plain.security(plain_auth=True).still_verifies([]) is True


def refused() -> Exception:
    return ssl.SSLCertVerificationError(1, "certificate verify failed")


def test_a_new_setting_falls_back_after_the_trial_attempts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, SecurityProfile="2", AuthorizationKey=KEY)
    security = rig.security()
    rig.values["SecurityProfile"] = "3"
    security.changing("SecurityProfile", "2")
    assert rig.reconnects == 1
    assert rig.events == [
        (SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS, "SecurityProfile raised to 3")
    ]
    for _ in range(TRIAL_ATTEMPTS - 1):
        assert security.failed(refused()) is False
    assert security.failed(refused()) is True
    assert rig.restored == [("SecurityProfile", "2")]
    assert rig.state[TRIAL_STATE_KEY] == ""
    kinds = [kind for kind, _ in rig.events]
    # The untrusted certificate is reported once for the streak, then the restoration.
    assert kinds == [
        SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
        SecurityEventType.INVALID_CENTRAL_SYSTEM_CERTIFICATE,
        SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
    ]
    assert security.failed(refused()) is False  # no trial any more: nothing to fall back to


def test_a_trial_survives_a_restart_and_a_connection_confirms_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, AuthorizationKey=KEY)
    rig.security().changing("AuthorizationKey", None)
    first = rig.security()
    assert first.failed(OSError("refused")) is False
    saved: Any = rig.state[TRIAL_STATE_KEY]
    assert '"failures": 1' in saved

    after_restart = rig.security()  # a power cut: the trial goes on where it stood
    for _ in range(TRIAL_ATTEMPTS - 2):
        assert after_restart.failed(OSError("refused")) is False
    assert after_restart.failed(OSError("refused")) is True
    assert rig.restored == [("AuthorizationKey", None)]

    rig.security().changing("AuthorizationKey", None)
    confirmed = rig.security()
    confirmed.connected()
    assert rig.state[TRIAL_STATE_KEY] == ""
    assert confirmed.failed(OSError("refused")) is False
