"""The charge point's key in a PKCS#11 token (SoftHSM), end to end: the real ``cpagent run``
connects over mutual TLS with a factory key that lives in the token, renews its certificate
with a key it makes in the token, and keeps working across kill -9. What is checked is the
client certificate a TLS CSMS sees, the messages on the wire, and that no private key is ever
written under the charger's data directory. Needs Debian's softhsm2 and pkcs11-provider
(`.ci/run` installs them); skipped without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cpagent.testing import LoopbackCsms
from cpagent.testing.pki import TestCa
from cpagent.testing.softhsm import SoftToken, provider_installed, tls_supported
from tests.integration.conftest import AgentProcess, run_cli
from tests.integration.test_certificates import events, serial_presented, started, up
from tests.integration.test_csms_requests import cli_config
from tests.integration.test_security_profiles import CP_ID, reconnected, tls_csms, wait_log

__all__ = ["started"]  # the fixture, imported to be used here

AgentFactory = Callable[..., AgentProcess]
FACTORY_LABEL = "factory-identity"
URI_PEM = "-----BEGIN PKCS#11 PROVIDER URI-----"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """One SoftHSM token for this module's agents, found through SOFTHSM2_CONF, which the
    agents inherit. Each test puts its own factory key in it."""
    made = SoftToken.create(tmp_path_factory.mktemp("softhsm"))
    if made is None:
        pytest.skip("SoftHSM is not installed (Debian: softhsm2)")
    if not provider_installed() or not tls_supported():
        pytest.skip("pkcs11-provider is not installed, or OpenSSL is older than 3.0.7")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ.update(made.environment())
    yield made
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa.create("Test CSMS Root")


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


def token_keys(token: SoftToken) -> dict[str, dict[str, bool]]:
    """The token's private keys by label, with the attributes that keep them in: read by a
    separate process, as the test process shares nothing with the agent's token state."""
    script = """
import json, sys, pkcs11
from pkcs11 import Attribute, ObjectClass
settings = json.loads(sys.argv[1])
lib = pkcs11.lib(settings["module"])
with lib.get_token(token_label=settings["token"]).open(user_pin=settings["pin"]) as session:
    found = {
        key[Attribute.LABEL]: {
            "sensitive": key[Attribute.SENSITIVE],
            "extractable": key[Attribute.EXTRACTABLE],
        }
        for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
    }
print(json.dumps(found))
"""
    settings = token.settings
    request = {
        "module": str(settings.module),
        "token": settings.token,
        "pin": settings.pin_file.read_text().strip(),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(request)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    found: dict[str, dict[str, bool]] = json.loads(done.stdout)
    return found


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

    mark = csms.mark()
    answer = await csms.call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert answer == {"status": "Accepted"}
    request = await csms.wait_for("SignCertificate", since=mark, timeout=30)
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key() != factory.public_key()

    chain = ca.sign_csr(request["csr"])
    renewed = x509.load_pem_x509_certificate(chain.encode())
    before = len(csms.subprotocols)
    mark = csms.mark()
    answer = await csms.call("CertificateSigned", {"certificateChain": chain})
    assert answer == {"status": "Accepted"}
    await reconnected(csms, before)
    assert serial_presented(csms) == renewed.serial_number
    await wait_log(agent, "ChargePointCertificate confirmed by a successful connection")
    (changed,) = await events(csms, 1, since=mark)
    assert changed.payload["type"] == "ReconfigurationOfSecurityParameters"
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert csms.auth_failures == []
    assert_no_private_key_on_disk(agent)

    # The new key was made in the token, and cannot leave it; the factory key stays.
    keys = token_keys(token)
    made = [label for label in keys if label.startswith("cpagent-charge-point-")]
    assert made, keys
    for label in made:
        assert keys[label] == {"sensitive": True, "extractable": False}
    assert FACTORY_LABEL + "-renewal" in keys

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
    await wait_log(agent, "refused the PIN", timeout=30)
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
