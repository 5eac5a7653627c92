"""How the agent proves who it is to the CSMS: the OCPP 1.6 security profiles.

The security extension ("Improved security for OCPP 1.6-J") defines four profiles, chosen
by the SecurityProfile configuration key:

* 0: no security of the agent's own (the URL as configured, ``ws://`` or ``wss://``);
* 1: HTTP basic auth (charge point id and AuthorizationKey) over plain ``ws://``, which
  puts the password on the wire in the clear, so only when the configuration explicitly
  allows it (``[csms] allow_basic_auth_without_tls``);
* 2: TLS (``wss://``) with the CSMS's server certificate verified against the installed
  CentralSystemRootCertificates and its host name checked, TLS 1.2 or newer, plus basic
  auth with the AuthorizationKey;
* 3: mutual TLS: as 2, with the charge point's own certificate instead of basic auth.

The URL's scheme follows the profile; host, port and path stay as configured.

A profile is only ever raised (:meth:`ConnectionSecurity.vet` refuses lowering it and a
profile whose prerequisites are missing), and a raised profile is on trial: the agent
reconnects with it at once, and if :data:`TRIAL_ATTEMPTS` attempts in a row fail it falls
back to the previous profile, persisting that, so a wrong certificate or key sent by the
CSMS cannot lock the charger out. A changed AuthorizationKey is tried the same way.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

from cpagent.exc import CpagentError
from cpagent.security.events import SecurityEventType, classify_connection_error

if TYPE_CHECKING:
    from cryptography import x509

    from cpagent.security.pki import CertificateStore

CERTS_DIR = "certs"
"""The certificate store's directory under ``data_dir``."""

CertificateSource = Callable[[], "CertificateStore"]
"""The certificate store, opened on first use: the ``cryptography`` package it loads
costs some 10 MB of memory, which a charger on profile 0 or 1 never needs to pay."""

log = logging.getLogger(__name__)

TRIAL_ATTEMPTS = 3
"""Failed connection attempts with a newly set profile or key before falling back."""

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
    )
)
"""The TLS 1.2 suites the security extension asks for (TLS 1.3 suites are all fine)."""


class ProfileUnusable(CpagentError):
    """A security profile cannot be used now: a certificate, key or setting it needs is
    missing. The message says which, fit for a log line and ``cpagent status``."""


@dataclass(frozen=True)
class Endpoint:
    """Everything a connection attempt needs: where, how to authenticate, which TLS."""

    profile: int
    url: str
    headers: dict[str, str] = field(repr=False)
    ssl_context: ssl.SSLContext | None = field(repr=False)


def basic_auth(charge_point_id: str, password: bytes) -> dict[str, str]:
    token = base64.b64encode(charge_point_id.encode() + b":" + password).decode()
    return {"Authorization": f"Basic {token}"}


def profile_url(profile: int, url: str) -> str:
    """``url`` with the scheme ``profile`` uses: as configured for 0, ``ws`` for 1, ``wss``
    for 2 and 3."""
    if profile == 0:
        return url
    return urlunsplit(("ws" if profile == 1 else "wss", *urlsplit(url)[1:]))


def tls_context(roots_pem: str | None, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    """A client context: server certificate required and verified against ``roots_pem``
    (the system's CAs when None), host name checked, TLS 1.2 or newer with the suites the
    security extension asks for, and ``identity`` (certificate chain, key) presented."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    if roots_pem is None:
        context.load_default_certs()
    else:
        context.load_verify_locations(cadata=roots_pem)
    if identity is not None:
        cert, key = identity
        context.load_cert_chain(cert, key)
    return context


def endpoint(
    profile: int,
    *,
    url: str,
    charge_point_id: str,
    authorization_key: bytes | None,
    certificates: CertificateSource,
    allow_basic_auth_without_tls: bool,
) -> Endpoint:
    """The endpoint for ``profile``; :class:`ProfileUnusable` naming what is missing."""
    target = f"{url.rstrip('/')}/{charge_point_id}"
    if profile == 0:
        headers = basic_auth(charge_point_id, authorization_key) if authorization_key else {}
        if urlsplit(target).scheme != "wss":
            return Endpoint(0, target, headers, None)
        return Endpoint(0, target, headers, tls_context(_roots_pem(certificates), None))
    if profile in (1, 2) and authorization_key is None:
        raise ProfileUnusable(f"security profile {profile} needs an AuthorizationKey")
    if profile == 1:
        if not allow_basic_auth_without_tls:
            raise ProfileUnusable(
                "security profile 1 sends the password unencrypted; set"
                " csms.allow_basic_auth_without_tls = true to allow it"
            )
        assert authorization_key is not None
        return Endpoint(
            1, profile_url(1, target), basic_auth(charge_point_id, authorization_key), None
        )
    roots_pem = _roots_pem(certificates)
    if roots_pem is None:
        raise ProfileUnusable(
            f"security profile {profile} needs a CentralSystemRootCertificate to verify"
            " the CSMS with"
        )
    if profile == 2:
        assert authorization_key is not None
        return Endpoint(
            2,
            profile_url(2, target),
            basic_auth(charge_point_id, authorization_key),
            tls_context(roots_pem, None),
        )
    identity = certificates().identity()
    if identity is None:
        raise ProfileUnusable("security profile 3 needs a charge point certificate and key")
    return Endpoint(3, profile_url(3, target), {}, tls_context(roots_pem, identity))


def _roots_pem(certificates: CertificateSource) -> str | None:
    """The installed CentralSystemRootCertificates as one PEM text; None if there are none."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from cpagent.security.pki import CertificateUse

    roots = certificates().roots(CertificateUse.CENTRAL_SYSTEM_ROOT)
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in roots) or None


def _anchor_recorder(note: Callable[[bytes | None], None]) -> type[ssl.SSLObject]:
    """An ``SSLObject`` class (for ``SSLContext.sslobject_class``) that hands ``note`` the
    last certificate of the verified chain (DER) after each completed handshake: the root
    the peer was verified with; None where the ``ssl`` module cannot tell."""

    class RecordingAnchor(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            note(_verified_root(self))

    return RecordingAnchor


def _verified_root(tls: ssl.SSLObject) -> bytes | None:
    """The verified chain's last certificate, DER. Python 3.13 publishes the chain as DER;
    3.11 and 3.12 have it unpublished, as certificate objects that give PEM."""
    chain_of = getattr(tls, "get_verified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_verified_chain", None
    )
    try:
        root = chain_of()[-1] if chain_of is not None else None
        if root is None or isinstance(root, bytes):
            return root
        return ssl.PEM_cert_to_DER_cert(root.public_bytes())
    except (ssl.SSLError, ValueError, IndexError, AttributeError, TypeError):
        return None


def _same_name_and_key(cert: x509.Certificate, other: x509.Certificate) -> bool:
    """The same trust anchor: OpenSSL picks a root by its name and checks with its key."""
    from cryptography.exceptions import UnsupportedAlgorithm

    if cert == other:
        return True
    try:
        return cert.subject == other.subject and cert.public_key() == other.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False


@dataclass
class _Trial:
    """A raised profile, a new key or certificate on probation, and what to fall back to.
    Persisted, so a power cut during the trial does not leave the new setting in force for
    good: the trial goes on after the restart."""

    key: str
    previous: str | None
    failures: int = 0

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "previous": self.previous, "failures": self.failures})

    @classmethod
    def from_json(cls, text: str | None) -> _Trial | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(str(data["key"]), data["previous"], int(data["failures"]))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable security setting trial dropped: %.200r", text)
            return None


Persist = Callable[[str, str | None], None]
"""Store (or, with None, forget) a configuration key's value; called when falling back."""

Report = Callable[[SecurityEventType, str | None], None]
"""Record a security event (with its techInfo)."""


class TrialStore(Protocol):
    """Where the setting on trial is kept across restarts (one small text value)."""

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...


TRIAL_STATE_KEY = "security.trial"


class ConnectionSecurity:
    """The SecurityProfile and AuthorizationKey as the session uses them, with fallback.

    ``value`` reads a key's current value, ``restore`` writes one back (persisted and in
    effect) on a fallback; ``reconnect`` asks the session to drop its connection (to use
    new settings at once); ``report`` records security events: a changed or restored
    setting, and each new kind of failure to connect that is a security matter (a CSMS
    certificate not trusted, authentication refused, TLS version or suites), once per
    streak of failures. ``base_url`` is ``[csms] url``. Besides the two keys, a renewed
    charge point certificate is put on trial under the name ``ChargePointCertificate``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        charge_point_id: str,
        certificates: CertificateSource,
        allow_basic_auth_without_tls: bool,
        value: Callable[[str], str | None],
        restore: Persist,
        reconnect: Callable[[], None],
        report: Report,
        trials: TrialStore,
    ) -> None:
        self.base_url = base_url
        self.charge_point_id = charge_point_id
        self.certificates = certificates
        self.allow_basic_auth_without_tls = allow_basic_auth_without_tls
        self._value = value
        self._restore = restore
        self._reconnect = reconnect
        self._report = report
        self._trials = trials
        self._trial = _Trial.from_json(trials.get_state(TRIAL_STATE_KEY))
        if self._trial is not None:
            log.warning(
                "%s is still on trial from before the restart: it falls back after %d more"
                " failed connection attempts",
                self._trial.key,
                TRIAL_ATTEMPTS - self._trial.failures,
            )
        self._failing: SecurityEventType | None = None
        self._anchor: bytes | None = None
        """The root the CSMS's chain was verified up to at the last TLS handshake (DER), if
        the ``ssl`` module could tell."""
        self._handshakes = _anchor_recorder(self._verified_with)

    @property
    def profile(self) -> int:
        return int(self._value("SecurityProfile") or "0")

    def _key(self) -> bytes | None:
        value = self._value("AuthorizationKey")
        return bytes.fromhex(value) if value else None

    def url(self) -> str:
        """The websocket URL of the profile in force (cheap: no certificate is read)."""
        return profile_url(self.profile, f"{self.base_url.rstrip('/')}/{self.charge_point_id}")

    def endpoint(self, profile: int | None = None) -> Endpoint:
        """The endpoint of ``profile`` (default: the one in force); :class:`ProfileUnusable`
        if it cannot be used. Its TLS handshakes note the root the CSMS is verified with."""
        found = endpoint(
            self.profile if profile is None else profile,
            url=self.base_url,
            charge_point_id=self.charge_point_id,
            authorization_key=self._key(),
            certificates=self.certificates,
            allow_basic_auth_without_tls=self.allow_basic_auth_without_tls,
        )
        if found.ssl_context is not None:
            found.ssl_context.sslobject_class = self._handshakes
        return found

    def still_verifies(self, roots: Sequence[x509.Certificate]) -> bool:
        """Whether the connection in force could still verify the CSMS if ``roots`` were the
        only CentralSystemRootCertificates left (DeleteCertificate, M04.FR.06).

        Without TLS (profile 1, or 0 over ``ws://``) no root is in use: True. With TLS, the
        root in use is the one the CSMS's chain was verified up to at the last handshake: a
        root with its name and key must be left. Before any handshake (or where the ``ssl``
        module cannot tell), the next connection may need any of them: one must be left.
        """
        if urlsplit(self.url()).scheme != "wss":
            return True
        if self._anchor is None:
            return bool(roots)
        from cryptography import x509

        anchor = x509.load_der_x509_certificate(self._anchor)
        return any(_same_name_and_key(root, anchor) for root in roots)

    def _verified_with(self, anchor: bytes | None) -> None:
        self._anchor = anchor

    def vet(self, key: str, value: str) -> str | None:
        """Why ChangeConfiguration of ``key`` to ``value`` (canonical) must be Rejected, or
        None. SecurityProfile is only ever raised (A05.FR.01: a value lower than or equal to
        the one in force is Rejected), and not to one that cannot be used."""
        if key != "SecurityProfile":
            return None
        wanted, current = int(value), self.profile
        if wanted < current:
            return f"security profile {current} cannot be lowered to {wanted}"
        if wanted == current:
            return f"security profile {current} is in force already"
        try:
            self.endpoint(wanted)
        except (ProfileUnusable, ssl.SSLError, OSError) as err:
            return str(err)
        return None

    def changing(self, key: str, previous: str | None) -> None:
        """``key`` (SecurityProfile, AuthorizationKey or ChargePointCertificate) changed
        from ``previous``: put the new value on trial and reconnect with it."""
        if key not in ("SecurityProfile", "AuthorizationKey", "ChargePointCertificate"):
            return
        if self._trial is None or self._trial.key != key:
            self._set_trial(_Trial(key, previous))
        detail = f"{key} changed" if key != "SecurityProfile" else f"{key} raised to {self.profile}"
        self._report(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS, detail)
        log.info("%s: reconnecting to the CSMS with it", detail)
        self._reconnect()

    def connected(self) -> None:
        """A connection was established: a setting on trial has proven itself."""
        if self._trial is not None:
            log.info("%s confirmed by a successful connection", self._trial.key)
            self._set_trial(None)
        self._failing = None

    def failed(self, err: BaseException) -> bool:
        """A connection attempt failed with ``err``; True if that made the agent fall back."""
        kind = classify_connection_error(err)
        if kind is not None and kind is not self._failing:
            self._report(kind, str(err) or type(err).__name__)
        self._failing = kind
        trial = self._trial
        if trial is None:
            return False
        trial.failures += 1
        if trial.failures < TRIAL_ATTEMPTS:
            self._set_trial(trial)
            return False
        self._set_trial(None)
        log.warning(
            "cannot connect with the new %s after %d attempts; falling back to the previous one",
            trial.key,
            trial.failures,
        )
        self._restore(trial.key, trial.previous)
        self._report(
            SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
            f"{trial.key} restored: the new one could not connect",
        )
        return True

    def _set_trial(self, trial: _Trial | None) -> None:
        self._trial = trial
        self._trials.set_state(TRIAL_STATE_KEY, trial.to_json() if trial is not None else "")
