"""Network connection profiles (OCPP 2.0.1 B09, B10): moving the station to another CSMS,
and back to the one that worked when the new one cannot be reached.

Two loopback CSMSs stand for the old and the new back-end; the real agent is moved between
them with SetNetworkProfile, NetworkConfigurationPriority and Reset, as a CSMS operator
would. Waits are event-driven and bounded.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import CsmsCallError
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]
PASSWORD = "network-profile-pw"


@pytest.fixture
async def new_csms() -> AsyncIterator[LoopbackCsms]:
    async with LoopbackCsms(password=PASSWORD) as server:
        yield server
    assert server.schema_errors == [], server.schema_errors


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def profile(url: str, security: int = 1, version: str = "OCPP20") -> dict[str, Any]:
    return {
        "ocppVersion": version,
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 30,
        "securityProfile": security,
        "ocppInterface": "Wired0",
    }


async def set_variable(csms: LoopbackCsms, component: str, variable: str, value: str) -> str:
    answer = await csms.call(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "attributeValue": value,
                }
            ]
        },
    )
    status: str = answer["setVariableResult"][0]["attributeStatus"]
    return status


async def active_profile(csms: LoopbackCsms) -> str:
    answer = await csms.call(
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "ActiveNetworkProfile"},
                }
            ]
        },
    )
    value: str = answer["getVariableResult"][0]["attributeValue"]
    return value


async def started(agent_factory: AgentFactory, csms: LoopbackCsms) -> AgentProcess:
    agent = agent_factory(
        ocpp201={},
        csms={"password": PASSWORD, "allow_basic_auth_without_tls": True},
    )
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    return agent


@pytest.fixture
def csms_with_password(csms: LoopbackCsms) -> LoopbackCsms:
    csms.password = PASSWORD
    return csms


async def test_the_station_moves_to_a_new_csms_after_a_reset(
    agent_factory: AgentFactory, csms_with_password: LoopbackCsms, new_csms: LoopbackCsms
) -> None:
    old = csms_with_password
    agent = await started(agent_factory, old)
    assert await active_profile(old) == "1"
    answer = await old.call(
        "SetNetworkProfile", {"configurationSlot": 2, "connectionData": profile(new_csms.url)}
    )
    assert answer == {"status": "Accepted"}
    assert (
        await set_variable(old, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1")
        == "Accepted"
    )
    assert (await old.call("Reset", {"type": "Immediate"}))["status"] == "Accepted"
    boot = await new_csms.wait_for("BootNotification")
    assert boot["reason"] == "RemoteReset"
    await new_csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    assert await active_profile(new_csms) == "2"
    # The new back-end is kept across a restart.
    assert await agent.stop() == 0
    await agent.start()
    await new_csms.wait_for("BootNotification", lambda p: p["reason"] == "PowerUp")


async def test_a_profile_that_cannot_connect_falls_back_to_the_one_that_worked(
    agent_factory: AgentFactory, csms_with_password: LoopbackCsms
) -> None:
    csms = csms_with_password
    await started(agent_factory, csms)
    dead = f"ws://127.0.0.1:{closed_port()}/ocpp"
    answer = await csms.call(
        "SetNetworkProfile", {"configurationSlot": 3, "connectionData": profile(dead)}
    )
    assert answer == {"status": "Accepted"}
    assert (
        await set_variable(csms, "OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "2")
        == "Accepted"
    )
    assert (
        await set_variable(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", "3,1")
        == "Accepted"
    )
    mark = csms.mark()
    await csms.call("Reset", {"type": "Immediate"})
    await csms.wait_for("BootNotification", since=mark)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1, since=mark)
    assert await active_profile(csms) == "1"


async def test_profiles_the_station_cannot_use_are_rejected(
    agent_factory: AgentFactory, csms_with_password: LoopbackCsms
) -> None:
    csms = csms_with_password
    await started(agent_factory, csms)
    refused = [
        (1, profile("ws://127.0.0.1:1/ocpp")),  # the configured connection
        (2, profile("ws://127.0.0.1:1/ocpp", version="OCPP16")),
        (2, profile("http://127.0.0.1:1/ocpp")),
        (2, profile("ws://127.0.0.1:1/ocpp", security=2)),  # profile 2 needs wss://
        (2, profile("ws://127.0.0.1:1/ocpp", security=0)),  # below the one in use
    ]
    for slot, data in refused:
        answer = await csms.call(
            "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data}
        )
        assert answer["status"] == "Rejected", (slot, data, answer)
    # A priority naming a slot that holds no profile is refused too.
    assert (
        await set_variable(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority", "5,1")
        == "Rejected"
    )
    with pytest.raises(CsmsCallError):
        await csms.call("SetNetworkProfile", {"configurationSlot": 2})
