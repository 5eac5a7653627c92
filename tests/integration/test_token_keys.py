"""The charge point's key in a PKCS#11 token (SoftHSM), end to end: the real ``cpagent run``
connects over mutual TLS with a factory key that lives in the token, renews its certificate
with a key it makes in the token, and keeps working across kill -9. What is checked is the
client certificate a TLS CSMS sees, the messages on the wire, and that no private key is ever
written under the charger's data directory. Needs Debian's softhsm2 and pkcs11-provider
(`.ci/run` installs them); skipped without them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cpagent.security.keys import openssl_supports_token_keys, reference_uri
from cpagent.testing import LoopbackCsms
from cpagent.testing.pki import TestCa
from cpagent.testing.softhsm import SoftToken, provider_installed
from tests.integration.conftest import AgentProcess, run_cli
from tests.integration.test_certificates import (
    renewed_over_the_wire,
    serial_presented,
    up,
)
from tests.integration.test_csms_requests import cli_config
from tests.integration.test_security_profiles import CP_ID, reconnected, tls_csms

AgentFactory = Callable[..., AgentProcess]
FACTORY_LABEL = "factory-identity"
URI_PEM = "-----BEGIN PKCS#11 PROVIDER URI-----"


@pytest.fixture
def token(soft_token: SoftToken) -> SoftToken:
    """The process's SoftHSM token, which the agents find through the SOFTHSM2_CONF they
    inherit; each test puts its own factory key in it."""
    if not provider_installed() or not openssl_supports_token_keys():
        pytest.skip("pkcs11-provider is not installed, or OpenSSL is older than 3.0.7")
    return soft_token


def token_agent(
    agent_factory: AgentFactory,
    workdir: Path,
    csms: LoopbackCsms,
    token: SoftToken,
    ca: TestCa,
    *,
    key_label: str,
    **security: Any,
) -> tuple[AgentProcess, x509.Certificate]:
    """An agent on security profile 3 whose factory key is in ``token`` under ``key_label``
    (imported there the way a factory would), with a certificate from ``ca``."""
    issued = ca.issue_client(CP_ID)
    token.import_key(issued.key_pem().encode(), key_label, os.urandom(8))
    cert_file = workdir / "charge-point.pem"
    cert_file.write_text(issued.chain_pem())
    roots = workdir / "csms-roots.pem"
    roots.write_text(ca.pem())
    agent = agent_factory(csms_url=csms.url, ocpp16={"SecurityProfile": 3})
    settings = token.settings
    agent.tables["security"] = {
        "csms_root_certificates": str(roots),
        "charge_point_certificate": str(cert_file),
        "charge_point_key": f"pkcs11:object={key_label};type=private",
        "pkcs11_module": str(settings.module),
        "pkcs11_token": settings.token,
        "pkcs11_pin_file": str(settings.pin_file),
        **security,
    }
    agent.write()
    return agent, issued.cert


def assert_no_private_key_on_disk(agent: AgentProcess) -> None:
    """Nothing under data_dir holds a private key: the key files are token references."""
    for path in agent.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
    key_file = agent.data_dir / "certs" / "charge-point" / "key.pem"
    assert key_file.read_text().startswith(URI_PEM)


async def test_a_factory_key_in_the_token_connects_and_a_renewed_key_is_made_there(
    agent_factory: AgentFactory,
    workdir: Path,
    ca: TestCa,
    token: SoftToken,
    started: list[LoopbackCsms],
) -> None:
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    agent, factory = token_agent(
        agent_factory, workdir, csms, token, ca, key_label=FACTORY_LABEL + "-renewal"
    )
    await agent.start()
    await up(csms, agent)
    assert serial_presented(csms) == factory.serial_number
    assert_no_private_key_on_disk(agent)

    csr, renewed = await renewed_over_the_wire(csms, agent, ca)
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key() != factory.public_key()
    assert csms.auth_failures == []
    assert_no_private_key_on_disk(agent)

    # The new key was made in the token, and cannot leave it; the factory key stays.
    key_file = agent.data_dir / "certs" / "charge-point" / "key.pem"
    uri = reference_uri(key_file.read_bytes())
    (made,) = [
        entry
        for entry in token.objects()
        if entry["class"] == "PRIVATE_KEY" and f"object={entry['LABEL']};" in uri
    ]
    assert made["LABEL"].startswith("cpagent-charge-point-")
    assert (made["SENSITIVE"], made["EXTRACTABLE"]) == (True, False)
    assert token.objects(FACTORY_LABEL + "-renewal")

    # kill -9, and the charger connects again with the token key of the renewed certificate.
    await agent.kill9()
    before = len(csms.subprotocols)
    mark = csms.mark()
    await agent.start()
    await reconnected(csms, before)
    await up(csms, agent, since=mark)
    assert serial_presented(csms) == renewed.serial_number


async def test_a_token_that_refuses_the_pin_is_reported_and_the_charger_keeps_running(
    agent_factory: AgentFactory,
    workdir: Path,
    ca: TestCa,
    token: SoftToken,
    started: list[LoopbackCsms],
) -> None:
    """A wrong PIN in the PIN file: the factory identity cannot be seeded, so profile 3
    cannot connect; the log names the cause, the charger stays up and answers status, and
    check-config points at nothing missing (the files exist; the PIN is wrong)."""
    csms = tls_csms(workdir, ca.issue_server(), client_ca=ca)
    started.append(await csms.start())
    wrong_pin = workdir / "wrong-pin"
    wrong_pin.write_text("000000\n")
    agent, _ = token_agent(
        agent_factory,
        workdir,
        csms,
        token,
        ca,
        key_label=FACTORY_LABEL + "-pin",
        pkcs11_pin_file=str(wrong_pin),
    )
    await agent.start()
    await agent.wait_log("refused the PIN", timeout=30)
    status = await agent.status()
    assert status["csms"]["connected"] is False
    assert csms.subprotocols == []
    assert not (agent.data_dir / "certs" / "charge-point" / "key.pem").exists()
    await agent.stop()


async def test_check_config_names_missing_token_files(workdir: Path) -> None:
    config = cli_config(workdir)
    security = [
        "[security]",
        'pkcs11_module = "/nonexistent/libvendor-pkcs11.so"',
        'pkcs11_token = "factory"',
        f'pkcs11_pin_file = "{workdir / "no-pin"}"',
        'charge_point_certificate = "cp.pem"',
        'charge_point_key = "pkcs11:object=cp;type=private"',
    ]
    config.write_text(config.read_text() + "\n".join(security) + "\n")
    result = await run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result
    assert "keys:           in PKCS#11 token 'factory' (/nonexistent/libvendor" in result.stdout
    assert "security.pkcs11_module: /nonexistent/libvendor-pkcs11.so does not exist" in (
        result.stderr
    )
    assert f"security.pkcs11_pin_file: {workdir / 'no-pin'} does not exist" in result.stderr

    without_token = config.read_text().replace('pkcs11_token = "factory"\n', "")
    config.write_text(without_token)
    result = await run_cli("check-config", "--config", str(config))
    assert result.returncode == 2, result
    assert "security.pkcs11_token: pkcs11_module, pkcs11_token and pkcs11_pin_file go" in (
        result.stderr
    )
    assert "security.charge_point_key: a pkcs11: URI needs" in result.stderr
