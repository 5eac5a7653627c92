"""Security events: what the security extension asks a charge point to report and keep.

Every event is appended to the security log (a file under ``data_dir``, uploaded by GetLog
SecurityLog) and queued durably as a SecurityEventNotification, like transaction messages:
it survives an outage and a restart and is never dropped. :func:`classify_connection_error`
turns a failed connection attempt into the event it stands for, if any.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from websockets.exceptions import InvalidStatus

from cpagent.timeutil import parse_iso

log = logging.getLogger(__name__)

TECH_INFO_MAX = 255
"""SecurityEventNotification's techInfo is a CiString255."""

LOG_MAX_BYTES = 1024 * 1024
"""The security log is rotated once past this size; one older file is kept."""


class SecurityEventType(enum.StrEnum):
    """The security extension's events (OCPP 1.6 security whitepaper, appendix 1)."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE = "CentralSystemFailedToAuthenticate"
    SETTING_SYSTEM_TIME = "SettingSystemTime"
    STARTUP_OF_THE_DEVICE = "StartupOfTheDevice"
    RESET_OR_REBOOT = "ResetOrReboot"
    SECURITY_LOG_WAS_CLEARED = "SecurityLogWasCleared"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    MEMORY_EXHAUSTION = "MemoryExhaustion"
    INVALID_MESSAGES = "InvalidMessages"
    ATTEMPTED_REPLAY_ATTACKS = "AttemptedReplayAttacks"
    TAMPER_DETECTION_ACTIVATED = "TamperDetectionActivated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"
    INVALID_TLS_VERSION = "InvalidTLSVersion"
    INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"


ROUTINE_EVENTS = frozenset(
    {
        SecurityEventType.FIRMWARE_UPDATED,
        SecurityEventType.SETTING_SYSTEM_TIME,
        SecurityEventType.STARTUP_OF_THE_DEVICE,
        SecurityEventType.RESET_OR_REBOOT,
        SecurityEventType.SECURITY_LOG_WAS_CLEARED,
        SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
    }
)
"""Events that normal operation produces (a start, a reset, a CSMS-ordered change): logged
at INFO. Every other event tells of a failure or an attack and is logged as a WARNING."""


@dataclass(frozen=True)
class SecurityEvent:
    type: SecurityEventType
    timestamp: str
    """RFC 3339, UTC."""
    tech_info: str | None = None

    def payload(self) -> dict[str, str]:
        """The SecurityEventNotification.req payload."""
        out = {"type": str(self.type), "timestamp": self.timestamp}
        if self.tech_info:
            out["techInfo"] = self.tech_info[:TECH_INFO_MAX]
        return out


_TLS_VERSION_REASONS = {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "WRONG_SSL_VERSION"}
_TLS_CIPHER_REASONS = {"NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
_REFUSED_CERTIFICATE_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
}
"""OpenSSL's reasons for the alerts a server sends when it refuses the client certificate
(our own verdict on the server's certificate is an SSLCertVerificationError)."""


def classify_connection_error(err: BaseException) -> SecurityEventType | None:
    """The security event a failed connection attempt stands for; None for a plain
    network failure (refused, unreachable, reset), which is no security matter.

    A TLS error wrapped by the websocket client (its ``__cause__``) counts as well. A
    server refusing the charger's certificate is a FailedToAuthenticateAtCentralSystem,
    when its alert reaches the agent: under TLS 1.3 the alert follows the handshake, and
    Python's asyncio TLS transport reports it as a closed connection, which is left alone.
    """
    if isinstance(err, InvalidStatus) and err.response.status_code in (401, 403):
        return SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
    if isinstance(err, ssl.SSLCertVerificationError):
        return SecurityEventType.INVALID_CENTRAL_SYSTEM_CERTIFICATE
    if isinstance(err, ssl.SSLError):
        reason = getattr(err, "reason", None) or ""
        if reason in _TLS_VERSION_REASONS:
            return SecurityEventType.INVALID_TLS_VERSION
        if reason in _TLS_CIPHER_REASONS:
            return SecurityEventType.INVALID_TLS_CIPHER_SUITE
        if reason in _REFUSED_CERTIFICATE_REASONS:
            return SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
    if err.__cause__ is not None and err.__cause__ is not err:
        return classify_connection_error(err.__cause__)
    return None


class SecurityLog:
    """The security log: one JSON object per line (timestamp, type, techInfo), appended
    and flushed to disk at every event; rotated to ``<path>.1`` past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, event: SecurityEvent) -> None:
        line = json.dumps(
            {"timestamp": event.timestamp, "type": str(event.type), "techInfo": event.tech_info},
            separators=(",", ":"),
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def lines(self, start: datetime | None = None, stop: datetime | None = None) -> Iterator[str]:
        """The log's lines, oldest first, as ``timestamp type techInfo`` text, within
        [start, stop] when given (aware datetimes). Unreadable lines are skipped."""
        for path in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            for raw in text.splitlines():
                try:
                    entry = json.loads(raw)
                    when = parse_iso(entry["timestamp"])
                except (ValueError, KeyError, TypeError):
                    continue
                if (start is not None and when < start) or (stop is not None and when > stop):
                    continue
                info = entry.get("techInfo")
                yield f"{entry['timestamp']} {entry['type']}" + (f" {info}" if info else "")
