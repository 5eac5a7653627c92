"""What a refused TLS connection is reported as: the agent's own websocket client, with the
TLS context of security profiles 2 and 3, against a loopback TLS server that refuses it the
way OpenSSL servers do, with an alert. Checked: :func:`classify_connection_error` of the
exception the client really raises."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from cpagent.security.connection import tls_context
from cpagent.security.events import SecurityEventType, classify_connection_error
from cpagent.testing.pki import Issued, TestCa

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa.create("CSMS Root")


class RefusingServer:
    """A TLS server on 127.0.0.1 that wants a client certificate from ``client_ca`` and
    reads the HTTP request of whoever gets through, answering nothing."""

    def __init__(self, server: Issued, directory: Path, client_ca: TestCa) -> None:
        cert, key = server.write(directory, "server")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(cadata=client_ca.pem())
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(TIMEOUT_S)
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve_one, daemon=True)
        self.thread.start()

    def _serve_one(self) -> None:
        connection, _ = self.socket.accept()
        connection.settimeout(TIMEOUT_S)
        try:
            with self.context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1024)
        except (ssl.SSLError, OSError):
            pass  # the refusal: OpenSSL has sent its alert

    def close(self) -> None:
        self.thread.join(TIMEOUT_S)
        self.socket.close()


@pytest.fixture
def servers() -> Iterator[list[RefusingServer]]:
    started: list[RefusingServer] = []
    yield started
    for server in started:
        server.close()


async def refusal(
    server: RefusingServer, ca: TestCa, identity: tuple[Path, Path] | None
) -> BaseException:
    """The exception the agent's client gets from ``server``, over TLS 1.2."""
    context = tls_context(ca.pem(), identity)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(Exception) as caught:
        async with asyncio.timeout(TIMEOUT_S):
            async with connect(f"wss://localhost:{server.port}/ocpp/CP1", ssl=context):
                pass
    return caught.value


@pytest.mark.parametrize(
    "client",
    [
        pytest.param(lambda ca, other: other.issue_client("CP1"), id="from-an-unknown-ca"),
        pytest.param(
            lambda ca, other: ca.issue_client(
                "CP1",
                not_before=datetime.now(UTC) - timedelta(days=30),
                not_after=datetime.now(UTC) - timedelta(days=1),
            ),
            id="expired",
        ),
    ],
)
async def test_a_refused_charge_point_certificate_is_a_failed_authentication(
    tmp_path: Path,
    ca: TestCa,
    servers: list[RefusingServer],
    client: Callable[[TestCa, TestCa], Issued],
) -> None:
    server = RefusingServer(ca.issue_server(), tmp_path, client_ca=ca)
    servers.append(server)
    issued = client(ca, TestCa.create("Another Root"))

    err = await refusal(server, ca, issued.write(tmp_path, "charge-point"))

    assert isinstance(err, ssl.SSLError), repr(err)
    assert "ALERT" in str(err.reason)
    assert (
        classify_connection_error(err) is SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
    )


async def test_an_untrusted_server_is_an_invalid_central_system_certificate(
    tmp_path: Path, ca: TestCa, servers: list[RefusingServer]
) -> None:
    stranger = TestCa.create("Stranger Root")
    server = RefusingServer(stranger.issue_server(), tmp_path, client_ca=ca)
    servers.append(server)

    err = await refusal(server, ca, ca.issue_client("CP1").write(tmp_path, "charge-point"))

    assert isinstance(err, ssl.SSLCertVerificationError), repr(err)
    assert classify_connection_error(err) is SecurityEventType.INVALID_CENTRAL_SYSTEM_CERTIFICATE


def test_a_tls_error_wrapped_by_the_client_is_still_classified() -> None:
    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"  # as OpenSSL sets it
    wrapper = ConnectionError("did not receive a valid HTTP response")
    wrapper.__cause__ = alert

    assert (
        classify_connection_error(wrapper)
        is SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
    )
    closed = ConnectionError("did not receive a valid HTTP response")
    closed.__cause__ = EOFError("connection closed while reading HTTP status line")
    assert classify_connection_error(closed) is None
    assert classify_connection_error(ConnectionRefusedError()) is None
