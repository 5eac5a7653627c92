"""OCPP 1.6 security profiles end to end: the real ``cpagent run`` against a loopback CSMS
over TLS, with a CA the test makes. What is checked is what an operator sees: whether the
charger connects (BootNotification), how (basic auth, the client certificate it presents),
what it answers to ChangeConfiguration, and the reason it logs when it refuses a CSMS.
Waits are event-driven or bounded polls of the agent's log."""

from __future__ import annotations

import contextlib
import socketserver
import ssl
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import server_tls_context
from cpagent.testing.pki import Issued, TestCa
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]

PASSWORD = "0123456789abcdef-secret"  # [csms] password: the key until the CSMS sets one
KEY = b"s3cret-pa55word!".hex()  # an AuthorizationKey the CSMS sets: 16 bytes, hex
CP_ID = "CP001"


def tls_csms(
    workdir: Path, server: Issued, *, client_ca: TestCa | None = None, **kw: Any
) -> LoopbackCsms:
    cert, key = server.write(workdir, "csms")
    context = server_tls_context(cert, key, client_roots_pem=client_ca.pem() if client_ca else None)
    return LoopbackCsms(ssl_context=context, **kw)


def secured_agent(
    agent_factory: AgentFactory,
    workdir: Path,
    url: str,
    *,
    profile: int,
    roots: TestCa | None,
    identity: Issued | None = None,
    password: str | None = PASSWORD,
    **csms: Any,
) -> AgentProcess:
    agent = agent_factory(csms_url=url, ocpp16={"SecurityProfile": profile}, csms=csms)
    if password is not None:
        agent.tables["csms"]["password"] = password
    security: dict[str, Any] = {}
    if roots is not None:
        path = workdir / "csms-roots.pem"
        path.write_text(roots.pem())
        security["csms_root_certificates"] = str(path)
    if identity is not None:
        cert, key = identity.write(workdir, "charge-point")
        security |= {"charge_point_certificate": str(cert), "charge_point_key": str(key)}
    if security:
        agent.tables["security"] = security
    agent.write()
    return agent


async def booted(csms: LoopbackCsms) -> dict[str, Any]:
    return await csms.wait_for("BootNotification")


async def reconnected(csms: LoopbackCsms, connections: int) -> None:
    """The charger came back: one connection more than ``connections``."""
    await csms.wait_connections(connections + 1)


async def profile_2(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> tuple[LoopbackCsms, AgentProcess]:
    """A TLS CSMS demanding PASSWORD, and an agent booted on it with security profile 2."""
    csms = tls_csms(workdir, ca.issue_server(), password=PASSWORD)
    started.append(await csms.start())
    agent = secured_agent(agent_factory, workdir, csms.url, profile=2, roots=ca)
    await agent.start()
    await booted(csms)
    return csms, agent


# ------------------------------------------------------------------------- profiles


async def test_profile_2_tls_with_basic_auth(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent = await profile_2(agent_factory, workdir, ca, started)
    assert csms.auth_failures == []
    assert csms.client_certificates == [None]  # profile 2 presents no certificate
    await agent.wait_log("(security profile 2)")
    status = await agent.status()
    assert status["csms"]["url"] == f"{csms.url}/{CP_ID}"
    assert status["csms"]["security_profile"] == 2


async def test_profile_3_mutual_tls(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    identity = ca.issue_client(CP_ID)
    agent = secured_agent(
        agent_factory, workdir, csms.url, profile=3, roots=ca, identity=identity, password=None
    )
    await agent.start()
    await booted(csms)
    (presented,) = csms.client_certificates
    assert presented is not None
    assert presented["subject"] == ((("commonName", CP_ID),),)
    key_file = agent.data_dir / "certs" / "charge-point" / "key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("why", "server", "logged"),
    [
        ("wrong CA", lambda ca: TestCa.create("Another CA").issue_server(), "not trusted"),
        (
            "wrong host name",
            lambda ca: ca.issue_server(hostnames=("csms.example.com",), ips=()),
            "not trusted",
        ),
        (
            "expired",
            lambda ca: ca.issue_server(
                not_before=datetime.now(UTC) - timedelta(days=30),
                not_after=datetime.now(UTC) - timedelta(days=1),
            ),
            "not trusted",
        ),
    ],
)
async def test_an_untrusted_csms_is_refused(
    why: str,
    server: Callable[[TestCa], Issued],
    logged: str,
    agent_factory: AgentFactory,
    workdir: Path,
    ca: TestCa,
    started: list[LoopbackCsms],
) -> None:
    csms = tls_csms(workdir, server(ca), password=PASSWORD)
    started.append(await csms.start())
    agent = secured_agent(agent_factory, workdir, csms.url, profile=2, roots=ca)
    await agent.start()
    await agent.wait_log(logged)
    await agent.wait_log("reconnecting in")  # it keeps trying, and keeps refusing
    assert csms.received == [], why
    assert agent.proc is not None and agent.proc.returncode is None


async def test_profile_1_needs_explicit_permission(
    agent_factory: AgentFactory, workdir: Path, csms: LoopbackCsms
) -> None:
    csms.password = PASSWORD
    refused = secured_agent(agent_factory, workdir / "a", csms.url, profile=1, roots=None)
    await refused.start()
    await refused.wait_log("security profile 1 sends the password unencrypted")
    assert csms.received == []
    await refused.stop()

    allowed = agent_factory(
        "b",
        ocpp16={"SecurityProfile": 1},
        csms={"password": PASSWORD, "allow_basic_auth_without_tls": True},
    )
    await allowed.start()
    await booted(csms)
    assert csms.auth_failures == []


# --------------------------------------------------------------- changing the profile


async def test_profile_is_only_raised_and_never_beyond_what_is_installed(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    """A05.FR.01: a value lower than or equal to the profile in force is Rejected, and
    nothing changes; A05.FR.04: so is profile 3 without a charge point certificate."""
    csms, agent = await profile_2(agent_factory, workdir, ca, started)

    async def change(value: str) -> str:
        answer = await csms.call("ChangeConfiguration", {"key": "SecurityProfile", "value": value})
        status: str = answer["status"]
        return status

    assert await change("1") == "Rejected"
    assert await change("0") == "Rejected"
    assert await change("3") == "Rejected"  # no charge point certificate yet
    await agent.wait_log("needs a charge point certificate and key")
    assert await change("2") == "Rejected"  # the profile in force already
    await agent.wait_log("security profile 2 is in force already")
    got = await csms.call("GetConfiguration", {"key": ["SecurityProfile"]})
    assert got["configurationKey"][0]["value"] == "2"
    assert len(csms.client_certificates) == 1  # no reconnection happened


async def test_a_profile_that_cannot_connect_falls_back(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, csms: LoopbackCsms
) -> None:
    """Profile 1 on a plain CSMS, raised to 2 (roots are installed, so it is accepted): the
    TLS handshake fails against the plain server, and after the trial attempts the agent
    goes back to profile 1, persisted, and connects again."""
    csms.password = PASSWORD
    agent = secured_agent(
        agent_factory,
        workdir,
        csms.url,
        profile=1,
        roots=ca,
        allow_basic_auth_without_tls=True,
    )
    await agent.start()
    await booted(csms)
    before = len(csms.subprotocols)
    answer = await csms.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"})
    assert answer == {"status": "Accepted"}
    await agent.wait_log("falling back to the previous one")
    await reconnected(csms, before)
    got = await csms.call("GetConfiguration", {"key": ["SecurityProfile"]})
    assert got["configurationKey"][0]["value"] == "1"

    # The fallback is persisted: a restart connects with profile 1 at once.
    await agent.stop()
    before = len(csms.subprotocols)
    await agent.start()
    await reconnected(csms, before)


# ------------------------------------------------------------------- AuthorizationKey


@pytest.mark.parametrize("name", ["AuthorizationKey", "authorizationKEY"])  # a CiString50
async def test_authorization_key_is_write_only_and_used_at_once(
    name: str,
    agent_factory: AgentFactory,
    workdir: Path,
    ca: TestCa,
    started: list[LoopbackCsms],
) -> None:
    csms, agent = await profile_2(agent_factory, workdir, ca, started)

    bad = await csms.call("ChangeConfiguration", {"key": name, "value": "abc"})
    assert bad == {"status": "Rejected"}

    csms.password = bytes.fromhex(KEY)
    before = len(csms.subprotocols)
    answer = await csms.call("ChangeConfiguration", {"key": name, "value": KEY})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, before)  # reconnected with the new key
    assert csms.auth_failures == []
    # The old connection was closed normally (RFC 6455 §7.4.1), not as an error (1011).
    assert await csms.wait_closed(before) == [1000] * before

    got = await csms.call("GetConfiguration", {"key": ["AuthorizationKey"]})
    assert got["configurationKey"] == [{"key": "AuthorizationKey", "readonly": False}]
    assert KEY not in agent.log() and KEY.upper() not in agent.log()
    assert "AuthorizationKey changed to ***" in agent.log()


async def test_a_wrong_authorization_key_falls_back_to_the_previous_one(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa, started: list[LoopbackCsms]
) -> None:
    csms, agent = await profile_2(agent_factory, workdir, ca, started)
    before = len(csms.subprotocols)
    # The CSMS sets a key it then does not accept (it still expects the old password).
    answer = await csms.call("ChangeConfiguration", {"key": "AuthorizationKey", "value": KEY})
    assert answer == {"status": "Accepted"}
    await agent.wait_log("falling back to the previous one")
    await reconnected(csms, before)
    assert len(csms.auth_failures) >= 3


class OldTlsServer(socketserver.ThreadingTCPServer):
    """A server that speaks TLS 1.1 at most: every handshake from the agent fails with
    OpenSSL's protocol-version alert, as it would against an outdated back-end."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1 at all
        with warnings.catch_warnings():  # deprecated versions: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.load_cert_chain(cert, key)
        self.context = context
        self.handshakes = 0
        super().__init__(("127.0.0.1", 0), socketserver.BaseRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.handshakes += 1
        with contextlib.suppress(OSError), self.context.wrap_socket(request, server_side=True):
            pass
        self.shutdown_request(request)


async def test_a_csms_offering_only_tls_1_1_is_refused(
    agent_factory: AgentFactory, workdir: Path, ca: TestCa
) -> None:
    server = OldTlsServer(*ca.issue_server().write(workdir, "csms"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"wss://127.0.0.1:{server.server_address[1]}/ocpp"
        agent = secured_agent(agent_factory, workdir, url, profile=2, roots=ca)
        await agent.start()
        await agent.wait_log("security event InvalidTLSVersion")
        await agent.wait_log("reconnecting in")
        # The event is logged, then written to the security log by a worker thread.
        security_log = agent.data_dir / "security.log"
        await agent.wait_log('"type":"InvalidTLSVersion"', path=security_log)
        log = security_log.read_text()
        assert log.count('"type":"InvalidTLSVersion"') == 1  # once for the streak of failures
        assert server.handshakes >= 1
    finally:
        server.shutdown()
        server.server_close()
