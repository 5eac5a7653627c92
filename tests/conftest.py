"""Fixtures shared by the unit, hardware and integration tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.modbus_devices import NullModem
from cpagent.testing.softhsm import SoftToken


@pytest.fixture
async def csms() -> AsyncIterator[LoopbackCsms]:
    """The loopback CSMS of the integration and package tests; every frame it saw in either
    direction must have passed the OCPP schemas."""
    async with LoopbackCsms() as server:
        yield server
    assert server.schema_errors == [], server.schema_errors


@pytest.fixture
async def null_modem() -> AsyncIterator[NullModem]:
    """A serial cable between two ptys: devices on ``path_a``, the client on ``path_b``."""
    async with NullModem() as modem:
        yield modem


@pytest.fixture(scope="session")
def soft_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """This process's one SoftHSM token. SoftHSM reads ``SOFTHSM2_CONF`` once per process,
    so it is set here, before anything loads SoftHSM, and kept for the session; agents
    started by integration tests inherit it. Tests keep their keys apart by label."""
    token = SoftToken.create(tmp_path_factory.mktemp("softhsm"))
    if token is None:
        pytest.skip("SoftHSM is not installed (Debian package softhsm2)")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ.update(token.environment())
    yield token
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved
